// Simulated MMU and TLB: see hostsim/mmu.h. Hosted only (uses the standard library).
#include "hostsim/mmu.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "capmem/env.h"
#include "capmem/pt.h"

namespace capmem::hostsim {

namespace {
// Per simulated CPU: the Mmu current on it. `current` is changed under `lock` by the
// thread bound to the CPU (and cleared by ~Mmu) and read by shootdowns from any thread
// under `lock` (lock order: a slot's lock, then an Mmu's tlb_lock_). The owning thread
// may also read it without the lock (nobody else makes an Mmu current there): invlpg
// with no Mmu current (the fault benchmarks, most unit tests) then touches no lock
// another CPU's shootdown takes, as a real invlpg waits for no other CPU.
struct alignas(64) CpuSlot {  // one cache line per CPU: no false sharing between CPUs
  std::mutex lock;
  std::atomic<Mmu*> current{nullptr};
};
CpuSlot g_slots[env::kMaxCpus];

constexpr std::uint64_t kPageMask = PAGE_SIZE - 1;

[[noreturn]] void die(const char* msg) {
  std::fprintf(stderr, "hostsim mmu: %s\n", msg);
  std::abort();
}

// Error-code bits that describe the access itself (SDM 4.7): W/R, U/S, I/D.
std::uint32_t access_bits(AccessKind kind, Privilege priv) {
  std::uint32_t e = 0;
  if (kind == AccessKind::Write) e |= pt::ErrorCode::kWrite;
  if (priv == Privilege::User) e |= pt::ErrorCode::kUser;
  if (kind == AccessKind::Fetch) e |= pt::ErrorCode::kFetch;  // reported because EFER.NXE = 1
  return e;
}
}  // namespace

void current_mmu_invlpg(VirtAddr va) {
  CpuSlot& s = g_slots[env::cpu_id()];
  if (s.current.load(std::memory_order_relaxed) == nullptr) return;  // owner's read: see CpuSlot
  const std::lock_guard<std::mutex> g(s.lock);
  if (Mmu* m = s.current.load(std::memory_order_relaxed)) m->invlpg(va);
}

std::uint64_t shootdown_all_cpus(PhysAddr root, VirtAddr va, std::uint64_t pages) {
  std::uint64_t dropped = 0;
  const unsigned n = env::cpu_count();
  const unsigned self = env::cpu_id();
  for (unsigned cpu = 0; cpu < n; ++cpu) {
    CpuSlot& s = g_slots[cpu];
    // No Mmu current there: nothing to drop, and no write to that CPU's slot (taking its
    // lock would bounce the line its own invlpg reads). Re-read under the lock below.
    if (s.current.load(std::memory_order_relaxed) == nullptr) continue;
    const std::lock_guard<std::mutex> g(s.lock);
    // The calling CPU invalidates locally whatever it has loaded (as invlpg did before);
    // the others only if they may hold the root's translations.
    if (Mmu* m = s.current.load(std::memory_order_relaxed))
      dropped += m->shootdown(cpu == self ? PhysAddr{} : root, va, pages);
  }
  return dropped;
}

Mmu::~Mmu() {
  for (CpuSlot& s : g_slots) {
    const std::lock_guard<std::mutex> g(s.lock);
    if (s.current.load(std::memory_order_relaxed) == this) s.current.store(nullptr, std::memory_order_relaxed);
  }
}
void Mmu::make_current() {
  CpuSlot& s = g_slots[env::cpu_id()];
  const std::lock_guard<std::mutex> g(s.lock);
  s.current.store(this, std::memory_order_relaxed);
}
Mmu* Mmu::current() {
  CpuSlot& s = g_slots[env::cpu_id()];
  const std::lock_guard<std::mutex> g(s.lock);
  return s.current.load(std::memory_order_relaxed);
}
void Mmu::clear_current() {
  CpuSlot& s = g_slots[env::cpu_id()];
  const std::lock_guard<std::mutex> g(s.lock);
  s.current.store(nullptr, std::memory_order_relaxed);
}

std::uint64_t Mmu::shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages) {
  const std::lock_guard<std::mutex> g(tlb_lock_);
  const bool all = root == PhysAddr{} || root == cr3_;  // PCIDE = 0: only the loaded CR3's entries
  // Counted as this CPU would execute it: invlpg per page, or one non-global flush (CR3
  // reload) for a range over kShootdownFlushPages. Only a CPU with the root loaded is a target.
  if (all) {
    if (pages > kShootdownFlushPages) ++counters_.flushes;
    else counters_.invalidations += pages;
  }
  const std::uint64_t first = va.value() >> 12;
  std::uint64_t n = 0;
  if (pages <= tlb_.size()) {
    for (std::uint64_t i = 0; i < pages; ++i) {
      const auto it = tlb_.find(first + i);
      if (it != tlb_.end() && (all || it->second.global)) {
        tlb_.erase(it);
        ++n;
      }
    }
  } else {
    for (auto it = tlb_.begin(); it != tlb_.end();) {
      if (it->first - first < pages && (all || it->second.global)) {
        it = tlb_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
  }
  shootdown_dropped_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

void Mmu::load_cr3(PhysAddr pml4) {
  const std::lock_guard<std::mutex> g(tlb_lock_);
  cr3_ = PhysAddr{pml4.value() & pt::kAddrMask};
  ++counters_.flushes;
  // SDM 4.10.4.1: MOV to CR3 (PCIDE = 0) invalidates all TLB entries except global ones.
  for (auto it = tlb_.begin(); it != tlb_.end();) {
    if (it->second.global) ++it;
    else it = tlb_.erase(it);
  }
}

void Mmu::invlpg(VirtAddr va) {
  const std::lock_guard<std::mutex> g(tlb_lock_);
  ++counters_.invalidations;
  tlb_.erase(va.value() >> 12);  // INVLPG drops the page's entry even if global (SDM 4.10.4.1)
}

void Mmu::flush_all() {
  const std::lock_guard<std::mutex> g(tlb_lock_);
  ++counters_.flushes;
  tlb_.clear();
}

// SDM 4.6 with CR0.WP = 1, EFER.NXE = 1, SMEP = SMAP = 0. Returns the access bits of the
// error code if the access is not allowed, 0 if it is.
std::uint32_t Mmu::violation(bool writable, bool user, bool no_execute, AccessKind kind, Privilege priv) {
  bool bad = false;
  if (priv == Privilege::User && !user) bad = true;         // user access to a supervisor page
  if (kind == AccessKind::Write && !writable) bad = true;   // WP = 1: ring 0 too
  if (kind == AccessKind::Fetch && no_execute) bad = true;  // XD somewhere on the walk
  return bad ? (access_bits(kind, priv) | pt::ErrorCode::kPresent) : 0;
}

MmuResult Mmu::fault(VirtAddr va, std::uint32_t error_code) {
  ++counters_.page_faults;
  // SDM 4.10.4.1: a page fault invalidates the TLB entries for the faulting address, so
  // the retried instruction re-walks the tables (this makes a "spurious" fault after a
  // permission upgrade without invlpg heal itself on retry).
  if (tlb_.erase(va.value() >> 12) != 0) ++counters_.fault_invalidations;
  return MmuResult{.ok = false, .pa = PhysAddr{}, .fault = PageFault{.cr2 = va, .error_code = error_code}};
}

MmuResult Mmu::walk(VirtAddr va, AccessKind kind, Privilege priv) {
  if (!va.canonical()) die("non-canonical access (#GP, not modelled)");
  ++counters_.misses;
  // SDM 4.5.4: CR3 -> PML4E -> PDPTE -> PDE -> PTE; a PDPTE/PDE with PS = 1 maps a
  // 1 GiB / 2 MiB page. Rights combine over every level (SDM 4.6.1).
  pt::EntryWord* used[4];
  unsigned nused = 0;
  bool writable = true;
  bool user = true;
  bool no_execute = false;
  std::uint64_t table = cr3_.value();
  pt::EntryWord* leaf = nullptr;
  std::uint64_t pfn = 0;
  for (unsigned l = 4; l >= 1; --l) {
    const auto level = static_cast<pt::Level>(l);
    auto* words = static_cast<pt::EntryWord*>(env::phys_to_virt(PhysAddr{table}));
    pt::EntryWord* slot = &words[pt::index_at(va, level)];
    const std::uint64_t e = pt::AtomicEntryAccess::load(slot);  // one read per entry, like the CPU
    if ((e & pt::bit(pt::Bit::Present)) == 0) return fault(va, access_bits(kind, priv));
    writable = writable && (e & pt::bit(pt::Bit::Writable)) != 0;
    user = user && (e & pt::bit(pt::Bit::User)) != 0;
    no_execute = no_execute || (e & pt::bit(pt::Bit::NoExecute)) != 0;
    used[nused++] = slot;
    if (l == 1 || ((l == 3 || l == 2) && (e & pt::bit(pt::Bit::PageSize)) != 0)) {
      // Leaf. A large page's address field starts at bit 30 / 21 (bit 12 is its PAT).
      const std::uint64_t span = pt::entry_span(level);
      const std::uint64_t base = e & pt::kAddrMask & ~(span - 1);
      pfn = (base + (va.value() & (span - 1))) >> 12;
      leaf = slot;
      break;
    }
    table = e & pt::kAddrMask;
  }
  if (const std::uint32_t err = violation(writable, user, no_execute, kind, priv)) return fault(va, err);
  // SDM 4.8: the CPU sets A in every paging-structure entry it used and D in the leaf on
  // a write. This model sets them only for an access that is allowed (the SDM permits A
  // to be set by a walk that then faults; choosing "never" keeps tests deterministic).
  // Locked read-modify-writes, as the CPU's own (rule 7.3: software changes entries with
  // single atomic accesses too, so neither side loses the other's bits).
  for (unsigned i = 0; i < nused; ++i) pt::AtomicEntryAccess::fetch_or(used[i], pt::bit(pt::Bit::Accessed));
  if (kind == AccessKind::Write) pt::AtomicEntryAccess::fetch_or(leaf, pt::bit(pt::Bit::Dirty));
  const std::uint64_t leaf_now = pt::AtomicEntryAccess::load(leaf);  // a PTE, or a PDPTE/PDE with PS
  tlb_[va.value() >> 12] = TlbEntry{.pfn = pfn,
                                    .writable = writable,
                                    .user = user,
                                    .no_execute = no_execute,
                                    .dirty = (leaf_now & pt::bit(pt::Bit::Dirty)) != 0,
                                    .global = (leaf_now & pt::bit(pt::Bit::Global)) != 0};
  return MmuResult{.ok = true, .pa = PhysAddr{(pfn << 12) | (va.value() & kPageMask)}, .fault = {}};
}

MmuResult Mmu::translate(VirtAddr va, AccessKind kind, Privilege priv) {
  const std::lock_guard<std::mutex> g(tlb_lock_);
  return translate_locked(va, kind, priv);
}

MmuResult Mmu::translate_locked(VirtAddr va, AccessKind kind, Privilege priv) {
  const auto it = tlb_.find(va.value() >> 12);
  if (it == tlb_.end()) return walk(va, kind, priv);
  const TlbEntry& t = it->second;
  // The CPU may check rights against the cached entry without re-walking (SDM 4.10.2.2,
  // 4.10.4.3): a stale, narrower entry faults, a stale wider one is honoured.
  if (const std::uint32_t err = violation(t.writable, t.user, t.no_execute, kind, priv)) {
    ++counters_.hits;
    return fault(va, err);
  }
  if (kind == AccessKind::Write && !t.dirty) {
    // First write through an entry cached with D = 0: the CPU must set D in the PTE in
    // memory (SDM 4.8); modelled as a re-walk, which also sees any change made since.
    ++counters_.dirty_assists;
    tlb_.erase(it);
    return walk(va, kind, priv);
  }
  ++counters_.hits;
  return MmuResult{.ok = true, .pa = PhysAddr{(t.pfn << 12) | (va.value() & kPageMask)}, .fault = {}};
}

GuestAccess Mmu::access(std::uint32_t va, unsigned width, AccessKind kind, std::uint64_t value) {
  if (width != 1 && width != 2 && width != 4 && width != 8) die("guest access width must be 1, 2, 4 or 8");
  const std::uint64_t first = va;
  const std::uint64_t last = first + width - 1;  // not wrapped: may be >= 2^32
  const std::uint64_t pages[2] = {first & ~kPageMask, last & ~kPageMask};
  const unsigned npages = pages[0] == pages[1] ? 1 : 2;
  PageFault prev{};
  unsigned same = 0;
  for (;;) {
    // x86 restarts the whole instruction after a fault: translate and check every page of
    // the access, in address order, before any byte moves.
    PhysAddr frame[2];
    bool faulted = false;
    PageFault f{};
    for (unsigned i = 0; i < npages; ++i) {
      const std::uint64_t start = i == 0 ? first : pages[1];  // first byte of the access in this page
      if (start >= kGuestLimit) {
        // Past the 32-bit guest space: a not-present fault at the first such byte.
        ++counters_.page_faults;
        f = PageFault{.cr2 = VirtAddr{start}, .error_code = access_bits(kind, Privilege::User)};
        faulted = true;
        break;
      }
      const MmuResult r = translate(VirtAddr{start}, kind, Privilege::User);
      if (!r.ok) {
        f = r.fault;
        faulted = true;
        break;
      }
      frame[i] = PhysAddr{r.pa.value() & ~kPageMask};
    }
    if (!faulted) {
      std::uint64_t result = 0;
      for (unsigned b = 0; b < width; ++b) {
        const std::uint64_t a = first + b;
        const unsigned i = (a & ~kPageMask) == pages[0] ? 0 : 1;
        auto* byte = static_cast<std::uint8_t*>(env::phys_to_virt(frame[i] + (a & kPageMask)));
        if (kind == AccessKind::Write) *byte = static_cast<std::uint8_t>(value >> (8 * b));
        else result |= std::uint64_t{*byte} << (8 * b);
      }
      return GuestAccess{.status = AccessStatus::Ok, .value = result, .cr2 = {}, .error_code = 0};
    }
    same = (same > 0 && f.cr2 == prev.cr2 && f.error_code == prev.error_code) ? same + 1 : 1;
    prev = f;
    if (same >= kMaxSameFault)
      return GuestAccess{.status = AccessStatus::FaultLoop, .value = 0, .cr2 = f.cr2, .error_code = f.error_code};
    if (entry_ == nullptr || !entry_(entry_ctx_, f.cr2, f.error_code))
      return GuestAccess{.status = AccessStatus::Fault, .value = 0, .cr2 = f.cr2, .error_code = f.error_code};
  }
}

GuestAccess Mmu::load(std::uint32_t va, unsigned width) { return access(va, width, AccessKind::Read, 0); }
GuestAccess Mmu::store(std::uint32_t va, unsigned width, std::uint64_t value) {
  return access(va, width, AccessKind::Write, value);
}
GuestAccess Mmu::fetch(std::uint32_t va, unsigned width) { return access(va, width, AccessKind::Fetch, 0); }

}  // namespace capmem::hostsim
