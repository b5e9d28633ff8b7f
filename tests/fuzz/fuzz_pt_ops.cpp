// libFuzzer target: sequences of page-table operations on pt::PageTable (include/capmem/pt.h)
// against a std::map model, checked after every operation through the core's translate()
// AND through hostsim's simulated MMU/TLB (hostsim/mmu.h), which walks the same tables.
//
// Input: 4-byte records {op, a, b, c} (at most kMaxOps; a trailing partial record is
// ignored). `a` picks one of the 8 addresses in kVas, `b` is a LeafFlags byte
// (bit 0 writable, 1 user, 2 no_execute, 3 global, 4 write_through, 5 cache_disable,
// 6 pat, 7 holds_ref), `c` picks the physical page (kFrameChoices). Operations (op % 10):
//   0 map_leaf   1 unmap   2 protect   3 MMU user write at kVas[a] (sets D through the CPU)
//   4 clear()    5 teardown() + create()    6 inject_failure_at(a % 4) (0 disarms)
//   7 set_exhausted(a & 1)    8 map/unmap/protect with a bad argument (a % 6 picks which)
//   9 MMU supervisor write at kVas[a] (CR0.WP = 1: needs R/W too)
// The model predicts every status exactly, including OutOfFrames: it knows which of the
// PML4E/PDPTE/PDE entries exist, so how many tables a map must allocate, and it replays
// the allocator's one-shot failure counter. After each op, for every address of kVas:
//   - translate(): NotMapped, or the model's pa (+ offset), flags, effective rights, A/D;
//   - the MMU (through its TLB, so a missing invlpg shows up as a stale entry): user
//     read/write/fetch and supervisor read succeed or fault with the SDM error code;
//   - owned_tables() == 1 + distinct entries ever built since the last clear;
//   - free frames == baseline - tables, and each pool frame's refs == 1 + its HoldsRef leaves.
// A failed operation (OutOfFrames, bad argument, NotMapped) changes nothing.
//
// Seeds: tests/fuzz/corpus/pt_ops/ is written by tests/fuzz/gen_corpus_pt_fault.py (scenarios:
// map/translate, shared and disjoint paths, protect narrowing/widening, injected failures
// at each table level, exhaustion, clear, teardown, bad arguments).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "capmem/frame.h"
#include "capmem/pt.h"
#include "fuzz_common.h"
#include "hostsim/mmu.h"

using namespace capmem;
using hostsim::AccessKind;
using hostsim::Mmu;
using hostsim::Privilege;
using pt::LeafFlags;
using pt::PageTable;

// Named (not anonymous) so tests/sim/test_fuzz_regressions_pt.cpp can include this file.
namespace fuzz_pt_ops {

constexpr std::size_t kMaxOps = 128;

// Spread so that walks share all, some or none of their tables:
//   0,1 same PT; 2 same PD, other PT; 3 same PDPT, other PD; 4 other PML4E (slot 1);
//   5 last page of the lower half (last index at every level); 6,7 upper half, sharing
//   the PML4E/PDPTE only with each other as 7 is the very last page.
constexpr std::uint64_t kVas[8] = {
    0x0000000010000000ull, 0x0000000010001000ull, 0x0000000010200000ull, 0x0000000050000000ull,
    0x0000008000000000ull, 0x00007ffffffff000ull, 0xffff800000000000ull, 0xfffffffffffff000ull,
};
constexpr std::uint64_t kUnmanagedPa = 0x000ff00000000000ull;  // inside 52 bits, not RAM

LeafFlags flags_of(std::uint8_t b) {
  return LeafFlags{.writable = (b & 1) != 0,
                   .user = (b & 2) != 0,
                   .no_execute = (b & 4) != 0,
                   .global = (b & 8) != 0,
                   .write_through = (b & 16) != 0,
                   .cache_disable = (b & 32) != 0,
                   .pat = (b & 64) != 0,
                   .holds_ref = (b & 128) != 0};
}

struct Leaf {
  PhysAddr pa;
  LeafFlags flags;
  bool accessed = false;
  bool dirty = false;
};

struct Model {
  std::map<std::uint64_t, Leaf> leaves;
  std::set<std::uint64_t> pml4e, pdpte, pde;  // entries built since the last clear (va >> 39/30/21)
  // FrameAllocator's failure injection, replayed: the `pending`-th attempt from now fails.
  std::uint64_t pending = 0;
  bool exhausted = false;

  std::size_t tables() const { return pml4e.size() + pdpte.size() + pde.size(); }
  unsigned missing_tables(std::uint64_t va) const {
    if (!pml4e.count(va >> 39)) return 3;
    if (!pdpte.count(va >> 30)) return 2;
    if (!pde.count(va >> 21)) return 1;
    return 0;
  }
  // One allocation attempt: does it fail? (frame.cpp: allocs_++, fail if exhausted or at fail_at_)
  bool attempt_fails() {
    bool fail = exhausted;
    if (pending != 0) {
      if (pending == 1) fail = true;
      --pending;
    }
    return fail;
  }
  // build_path allocates the missing tables one by one and stops at the first failure.
  bool allocations_succeed(unsigned n) {
    for (unsigned i = 0; i < n; ++i)
      if (attempt_fails()) return false;
    return true;
  }
  void build(std::uint64_t va) {
    pml4e.insert(va >> 39);
    pdpte.insert(va >> 30);
    pde.insert(va >> 21);
  }
  void clear() {
    leaves.clear();
    pml4e.clear();
    pdpte.clear();
    pde.clear();
  }
};

struct Harness {
  FrameDesc* pool[4] = {};
  Model model;
  Mmu mmu;
  PageTable table;
  std::uint64_t baseline = 0;  // free frames with the pool and an empty table (PML4 only)

  explicit Harness(PageTable&& t) : table(static_cast<PageTable&&>(t)) {}

  PhysAddr frame_pa(std::uint8_t c) const {
    switch (c % 8) {
      case 4: return frames().zero_frame()->phys();
      case 5: return PhysAddr{kUnmanagedPa};
      case 6: return pool[0]->phys();
      case 7: return pool[1]->phys();
      default: return pool[c % 8]->phys();
    }
  }

  void check_status(Status got, Status want, const char* what, std::uint64_t va) {
    FUZZ_CHECK_MSG(got == want, "%s va=%#llx: got %s, model says %s", what, static_cast<unsigned long long>(va),
                   status_name(got), status_name(want));
  }

  // One MMU access to `va` (offset 0x678 inside the page) against the model.
  void mmu_access(std::uint64_t va, AccessKind kind, Privilege priv) {
    const std::uint64_t at = va + 0x678;
    const auto r = mmu.translate(VirtAddr{at}, kind, priv);
    const auto it = model.leaves.find(va);
    std::uint32_t want_err = (kind == AccessKind::Write ? pt::ErrorCode::kWrite : 0) |
                             (priv == Privilege::User ? pt::ErrorCode::kUser : 0) |
                             (kind == AccessKind::Fetch ? pt::ErrorCode::kFetch : 0);
    bool allowed = false;
    if (it != model.leaves.end()) {
      const LeafFlags& f = it->second.flags;
      allowed = (priv == Privilege::Supervisor || f.user) && (kind != AccessKind::Write || f.writable) &&
                (kind != AccessKind::Fetch || !f.no_execute);
      want_err |= pt::ErrorCode::kPresent;
    }
    FUZZ_CHECK_MSG(r.ok == allowed, "mmu kind=%d priv=%d va=%#llx: ok=%d, model says %d", static_cast<int>(kind),
                   static_cast<int>(priv), static_cast<unsigned long long>(at), r.ok, allowed);
    if (allowed) {
      FUZZ_CHECK_MSG(r.pa == it->second.pa + 0x678, "mmu va=%#llx: pa %#llx, model %#llx",
                     static_cast<unsigned long long>(at), static_cast<unsigned long long>(r.pa.value()),
                     static_cast<unsigned long long>(it->second.pa.value() + 0x678));
      it->second.accessed = true;
      if (kind == AccessKind::Write) it->second.dirty = true;
    } else {
      FUZZ_CHECK_MSG(r.fault.cr2 == VirtAddr{at} && r.fault.error_code == want_err,
                     "mmu va=%#llx: fault cr2=%#llx err=%#x, model err=%#x", static_cast<unsigned long long>(at),
                     static_cast<unsigned long long>(r.fault.cr2.value()), r.fault.error_code, want_err);
    }
  }

  void check_translate(std::uint64_t va) {
    const auto t = table.translate(VirtAddr{va + 0x123});
    const auto it = model.leaves.find(va);
    if (it == model.leaves.end()) {
      FUZZ_CHECK_MSG(!t.ok() && t.status() == Status::NotMapped, "translate va=%#llx: %s, model says NotMapped",
                     static_cast<unsigned long long>(va), t.ok() ? "mapped" : status_name(t.status()));
      return;
    }
    const Leaf& l = it->second;
    FUZZ_CHECK_MSG(t.ok(), "translate va=%#llx: %s, model says mapped", static_cast<unsigned long long>(va),
                   status_name(t.status()));
    FUZZ_CHECK_MSG(t->pa == l.pa + 0x123, "translate va=%#llx: pa %#llx, model %#llx",
                   static_cast<unsigned long long>(va), static_cast<unsigned long long>(t->pa.value()),
                   static_cast<unsigned long long>(l.pa.value()));
    FUZZ_CHECK_MSG(t->flags == l.flags, "translate va=%#llx: flags differ from the model",
                   static_cast<unsigned long long>(va));
    // Intermediate entries only ever widen to what some leaf needed, and every present leaf
    // was mapped/protected with its current flags: the effective rights are the leaf's.
    FUZZ_CHECK_MSG(t->effective.writable == l.flags.writable && t->effective.user == l.flags.user &&
                       t->effective.executable == !l.flags.no_execute,
                   "translate va=%#llx: effective rights differ from the leaf's", static_cast<unsigned long long>(va));
    FUZZ_CHECK_MSG(t->accessed == l.accessed && t->dirty == l.dirty, "translate va=%#llx: A/D %d/%d, model %d/%d",
                   static_cast<unsigned long long>(va), t->accessed, t->dirty, l.accessed, l.dirty);
  }

  void check_all() {
    for (std::uint64_t va : kVas) check_translate(va);
    for (std::uint64_t va : kVas) {
      mmu_access(va, AccessKind::Read, Privilege::User);
      mmu_access(va, AccessKind::Fetch, Privilege::User);
      mmu_access(va, AccessKind::Read, Privilege::Supervisor);
    }
    FUZZ_CHECK_MSG(table.owned_tables() == 1 + model.tables(), "owned_tables %zu, model %zu", table.owned_tables(),
                   1 + model.tables());
    const std::uint64_t free = frames().stats().free;
    FUZZ_CHECK_MSG(free + model.tables() == baseline, "free frames %llu, model %llu",
                   static_cast<unsigned long long>(free), static_cast<unsigned long long>(baseline - model.tables()));
    for (FrameDesc* d : pool) {
      std::uint32_t want = 1;
      for (const auto& [va, l] : model.leaves)
        if (l.flags.holds_ref && l.pa == d->phys()) ++want;
      FUZZ_CHECK_MSG(d->refs.load() == want, "pool frame %#llx refs %u, model %u",
                     static_cast<unsigned long long>(d->phys().value()), d->refs.load(), want);
    }
  }

  void op_map(std::uint64_t va, std::uint8_t fb, std::uint8_t c) {
    const LeafFlags f = flags_of(fb);
    const PhysAddr pa = frame_pa(c);
    Status want = Status::Ok;
    if (f.holds_ref && frames().desc_of(pa) == nullptr) want = Status::InvalidArgument;
    else if (!model.allocations_succeed(model.missing_tables(va))) want = Status::OutOfFrames;
    const auto r = table.map_leaf(VirtAddr{va}, pa, f);
    check_status(r.status(), want, "map_leaf", va);
    if (!r.ok()) return;
    const bool replaced = model.leaves.count(va) != 0;
    FUZZ_CHECK_MSG(r.value() == (replaced ? pt::MapOutcome::Replaced : pt::MapOutcome::Mapped),
                   "map_leaf va=%#llx: outcome", static_cast<unsigned long long>(va));
    model.build(va);
    model.leaves[va] = Leaf{.pa = pa, .flags = f};
  }

  void op_unmap(std::uint64_t va) {
    const auto r = table.unmap(VirtAddr{va});
    check_status(r.status(), model.leaves.count(va) ? Status::Ok : Status::NotMapped, "unmap", va);
    model.leaves.erase(va);
  }

  void op_protect(std::uint64_t va, std::uint8_t fb) {
    const LeafFlags f = flags_of(fb);
    const auto it = model.leaves.find(va);
    Status want = Status::Ok;
    if (it == model.leaves.end()) want = Status::NotMapped;
    else if (it->second.flags.holds_ref != f.holds_ref) want = Status::InvalidArgument;
    const auto r = table.protect(VirtAddr{va}, f);
    check_status(r.status(), want, "protect", va);
    if (r.ok()) it->second.flags = f;  // frame and A/D kept
  }

  void op_bad(std::uint8_t a, std::uint64_t va, std::uint8_t fb) {
    LeafFlags f = flags_of(fb);
    switch (a % 6) {
      case 0: {  // non-canonical: every entry point says so
        const VirtAddr nc{0x0000800000000000ull | (va & 0x7ffffffff000ull)};
        check_status(table.map_leaf(nc, pool[0]->phys(), f).status(), Status::NotCanonical, "map_leaf", nc.value());
        check_status(table.unmap(nc).status(), Status::NotCanonical, "unmap", nc.value());
        check_status(table.protect(nc, f).status(), Status::NotCanonical, "protect", nc.value());
        check_status(table.translate(nc).status(), Status::NotCanonical, "translate", nc.value());
        break;
      }
      case 1: {  // misaligned va
        const VirtAddr m{va + 8};
        check_status(table.map_leaf(m, pool[0]->phys(), f).status(), Status::Misaligned, "map_leaf", m.value());
        check_status(table.unmap(m).status(), Status::Misaligned, "unmap", m.value());
        check_status(table.protect(m, f).status(), Status::Misaligned, "protect", m.value());
        break;
      }
      case 2:
        check_status(table.map_leaf(VirtAddr{va}, pool[1]->phys() + 0x800, f).status(), Status::Misaligned,
                     "map_leaf(pa+0x800)", va);
        break;
      case 3:
        check_status(table.map_leaf(VirtAddr{va}, PhysAddr{std::uint64_t{1} << 52}, f).status(),
                     Status::InvalidArgument, "map_leaf(pa=2^52)", va);
        break;
      case 4:
        f.holds_ref = true;
        check_status(table.map_leaf(VirtAddr{va}, PhysAddr{kUnmanagedPa}, f).status(), Status::InvalidArgument,
                     "map_leaf(holds_ref, unmanaged)", va);
        break;
      case 5: {  // protect that would flip holds_ref
        const auto it = model.leaves.find(va);
        if (it == model.leaves.end()) break;
        f.holds_ref = !it->second.flags.holds_ref;
        check_status(table.protect(VirtAddr{va}, f).status(), Status::InvalidArgument, "protect(holds_ref flip)", va);
        break;
      }
    }
  }

  // Back to an empty table; a failed create() (predicted by the model) is retried disarmed.
  void recreate() {
    table.teardown();
    model.clear();
    FUZZ_CHECK_MSG(table.empty() && table.owned_tables() == 0, "teardown left tables");
    FUZZ_CHECK_MSG(frames().stats().free == baseline + 1, "teardown: free %llu, want %llu",
                   static_cast<unsigned long long>(frames().stats().free),
                   static_cast<unsigned long long>(baseline + 1));
    const bool fails = !model.allocations_succeed(1);
    {
      auto t = PageTable::create();
      FUZZ_CHECK_MSG(t.ok() != fails, "create(): %s, model says %s", t.ok() ? "ok" : "failed",
                     fails ? "OutOfFrames" : "ok");
      if (t.ok()) table = t.release_value();
    }
    if (fails) {
      frames().set_exhausted(false);
      frames().inject_failure_at(0);
      model.exhausted = false;
      model.pending = 0;
      auto t = PageTable::create();
      FUZZ_CHECK_MSG(t.ok(), "create() disarmed");
      table = t.release_value();
    }
    // Global leaves survive a CR3 load (SDM 4.10.4.1): after a teardown drop them too.
    mmu.load_cr3(table.root());
    mmu.flush_all();
  }
};

// One input; aborts on the first disagreement.
int run_one(const std::uint8_t* data, std::size_t size) {
  FrameLeakGuard leak;
  {
    auto t = PageTable::create();
    if (!t.ok()) std::abort();
    Harness h(t.release_value());
    for (unsigned i = 0; i < 4; ++i) {
      h.pool[i] = frames().alloc(FrameKind::Page);
      if (h.pool[i] == nullptr) std::abort();
      std::memset(h.pool[i]->virt(), 0x10 + i, PAGE_SIZE);
    }
    h.baseline = frames().stats().free;
    h.mmu.make_current();  // the core's invlpg reaches this MMU
    h.mmu.load_cr3(h.table.root());

    const std::size_t nops = size / 4 < kMaxOps ? size / 4 : kMaxOps;
    for (std::size_t i = 0; i < nops; ++i) {
      const std::uint8_t* r = data + 4 * i;
      const std::uint8_t op = r[0] % 10, a = r[1], b = r[2], c = r[3];
      const std::uint64_t va = kVas[a % 8];
      switch (op) {
        case 0: h.op_map(va, b, c); break;
        case 1: h.op_unmap(va); break;
        case 2: h.op_protect(va, b); break;
        case 3: h.mmu_access(va, AccessKind::Write, Privilege::User); break;
        case 4:
          h.table.clear();
          h.model.clear();
          h.mmu.load_cr3(h.table.root());
          h.mmu.flush_all();
          break;
        case 5: h.recreate(); break;
        case 6:
          frames().inject_failure_at(a % 4);
          h.model.pending = a % 4;
          break;
        case 7:
          frames().set_exhausted((a & 1) != 0);
          h.model.exhausted = (a & 1) != 0;
          break;
        case 8: h.op_bad(a >> 3, va, b); break;
        case 9: h.mmu_access(va, AccessKind::Write, Privilege::Supervisor); break;
      }
      h.check_all();
    }
    frames().set_exhausted(false);
    frames().inject_failure_at(0);
    Mmu::clear_current();
    h.table.teardown();
    for (FrameDesc* d : h.pool) frames().unref(d);
  }
  return 0;
}

}  // namespace fuzz_pt_ops

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz_pt_ops::run_one(data, size);
}
