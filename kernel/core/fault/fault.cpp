// The copy-on-write #PF handler (docs/rules.md section 4). See include/capmem/fault.h and
// docs/fault-path.md for the step-by-step account and the invariants.
#include "capmem/fault.h"

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "capmem/page.h"

namespace capmem::fault {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Retry: return "retry";
    case Outcome::GuestFault: return "guest page fault";
    case Outcome::OutOfGas: return "out of gas";
    case Outcome::OutOfFrames: return "out of frames";
    case Outcome::Busy: return "busy: another run over one of its caps is executing";
    case Outcome::NeedPage: return "need page: the access met a Missing page (rule 8.2)";
  }
  return "?";
}

// --- The two seams of this file: the page table and the cap ------------------------------
namespace {

// Leaf permissions for guest pages: user, never executable from the data side (the
// recompiled code runs from the JIT arena, never from guest memory), read-only or not.
// Every guest mapping holds a frame reference (rule "a frame stays alive as long as any
// page table maps it"); teardown drops it.
pt::LeafFlags guest_leaf(bool writable) {
  return pt::LeafFlags{.writable = writable, .user = true, .no_execute = true, .holds_ref = true};
}

// The frame a read maps: the effective page's frame, or the shared zero frame for Empty
// (which is also what a page past the cap's extent reads as). nullptr only for Missing.
FrameDesc* source_frame(const DataCap& cap, std::uint32_t page, bool* missing) {
  const SlotView s = cap.effective(page);
  *missing = s.kind == SlotKind::Missing;
  if (s.kind == SlotKind::Loaded) return s.frame;
  if (s.kind == SlotKind::Empty) return frames().zero_frame();
  return nullptr;
}

}  // namespace

Result<void> RunConfig::check() const {
  if (table == nullptr || code == nullptr || mem == nullptr) return Status::InvalidArgument;
  if (!code->holds() || !mem->holds()) return Status::EmptyCap;             // rule 3.10
  if (code->size() > DATA_BASE - CODE_BASE) return Status::RegionTooLarge;  // rule 4.1
  if (mem->size() > GUEST_LIMIT - DATA_BASE) return Status::RegionTooLarge;
  return {};
}

namespace {
// The constructor's refusal of a RunConfig that check() rejects, naming rule and region.
[[noreturn]] void refuse_config(const RunConfig& cfg, Status st) {
  if (st == Status::EmptyCap) env::panic("rule 3.10: fault::Run over an empty cap (its code or mem holds nothing)");
  if (st == Status::RegionTooLarge) {
    if (cfg.code->size() > DATA_BASE - CODE_BASE)
      env::panic(
          "rule 4.1: fault::Run's code region [CODE_BASE, CODE_BASE + code size) would reach DATA_BASE "
          "(code cap over 252 MiB)");
    env::panic(
        "rule 4.1: fault::Run's data region [DATA_BASE, DATA_BASE + mem size) would pass 4 GiB "
        "(mem cap over 3840 MiB)");
  }
  env::panic("fault::Run: RunConfig without a page table, code cap or mem cap");
}
}  // namespace

const MapperOps& Run::mapper_ops() {
  static constexpr MapperOps kOps = {
      .try_hold = [](MapperNode& n) { return of(n).try_hold(); },
      .release = [](MapperNode& n) { of(n).release_hold(); },
      .prepare = [](MapperNode& n, std::uint32_t page) { return of(n).prepare(n.region, page); },
      .protect = [](MapperNode& n, std::uint32_t page) { of(n).protect_page(n.region, page); },
      .refresh = [](MapperNode& n, std::uint32_t page) { of(n).refresh_page(n.region, page); },
      .published = [](MapperNode& n, std::uint32_t page) { of(n).published(n.region, page); },
  };
  return kOps;
}

Run::Run(const RunConfig& cfg)
    : cfg_(cfg),
      gas_(cfg.gas),
      gas_start_(cfg.gas),
      code_node_{.ops = &mapper_ops(), .owner = this, .region = Region::Code},
      mem_node_{.ops = &mapper_ops(), .owner = this, .region = Region::Mem} {
  if (const auto st = cfg_.check(); !st.ok()) refuse_config(cfg_, st.status());
  cfg_.code->attach_mapper(&code_node_);
  cfg_.mem->attach_mapper(&mem_node_);
}

Run::~Run() {
  CAPMEM_ASSERT(state_.load(std::memory_order_relaxed) == 0);
  cfg_.mem->detach_mapper(&mem_node_);
  cfg_.code->detach_mapper(&code_node_);
  for (FrameDesc*& f : paid_) {
    if (f != nullptr) frames().unref(f);
    f = nullptr;
  }
  for (auto& region : stale_) {
    for (FrameDesc*& f : region) {
      if (f != nullptr) frames().unref(f);
      f = nullptr;
    }
  }
}

Status Run::try_enter() {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  const bool outermost = (s & kDepthMask) == 0;  // one CPU enters a run at a time (7.1)
  if (outermost) {
    // Rule 3.9: refused, not waited for, while another run over one of its caps executes.
    if (!cfg_.mem->take_turn(this, true)) return Status::Busy;
    if (shares_code_turn() && !cfg_.code->take_turn(this, false)) {
      cfg_.mem->give_turn(this, true);
      return Status::Busy;
    }
  }
  for (;;) {
    if (s >= kHold) {  // a checkpoint holds the run: wait for its release (bounded)
      __builtin_ia32_pause();
      s = state_.load(std::memory_order_relaxed);
      continue;
    }
    CAPMEM_ASSERT((s & kDepthMask) != kDepthMask);
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed)) break;
  }
  if (outermost && (stale_any_[0] || stale_any_[1])) settle_stale();
  return Status::Ok;
}

void Run::enter() {
  if (try_enter() != Status::Ok)
    env::panic("rule 3.9: entering a run while another run over one of its caps executes (use try_enter)");
}

void Run::leave() {
  const std::uint32_t s = state_.fetch_sub(1, std::memory_order_release);
  CAPMEM_ASSERT((s & kDepthMask) != 0 && s < kHold);
  if ((s & kDepthMask) == 1) {  // outermost: this run's turns end (rule 3.9)
    if (shares_code_turn()) cfg_.code->give_turn(this, false);
    cfg_.mem->give_turn(this, true);
  }
}

bool Run::try_hold() {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & kDepthMask) != 0) return false;  // executing: the checkpoint is Busy
    CAPMEM_ASSERT(s <= ~std::uint32_t{0} - kHold);
    if (state_.compare_exchange_weak(s, s + kHold, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
}

void Run::release_hold() {
  const std::uint32_t s = state_.fetch_sub(kHold, std::memory_order_release);
  CAPMEM_ASSERT(s >= kHold);
}

// --- Rule 3.8: checkpoints (called by DataCap while this run is paused) -------------------

unsigned Run::paid(std::uint32_t page) const {
  const FrameDesc* f = paid_[page / kPaidPagesPerChunk];
  if (f == nullptr) return 0;
  const std::uint32_t i = page % kPaidPagesPerChunk;
  return (static_cast<const std::uint8_t*>(f->virt())[i / 4] >> (2 * (i % 4))) & 3u;
}

void Run::set_paid(std::uint32_t page, unsigned bits) {
  FrameDesc* f = paid_[page / kPaidPagesPerChunk];
  CAPMEM_ASSERT(f != nullptr);  // reserve_paid(page) came first
  const std::uint32_t i = page % kPaidPagesPerChunk;
  static_cast<std::uint8_t*>(f->virt())[i / 4] |= static_cast<std::uint8_t>(bits << (2 * (i % 4)));
}

bool Run::pinned_page(std::uint32_t page) const {
  for (const PinnedRange& r : cfg_.pinned)
    if (page >= r.first_page && page - r.first_page < r.pages) return true;
  return false;
}

// The run executing here is the publisher itself: its code region shows its mem cap.
bool Run::own_publish(Region region) const {
  if (paused()) return false;
  CAPMEM_ASSERT(region == Region::Code && cfg_.code == cfg_.mem);
  return true;
}

Status Run::prepare(Region region, std::uint32_t page) {
  // Paused: held by a checkpoint (3.8), or another run has the turn (3.9).
  if (own_publish(region)) return Status::Ok;  // published() re-points at once, no frame needed
  if (cfg_.table->root().value() == 0) return Status::Ok;
  const VirtAddr va{region_base(region) + std::uint64_t{page} * PAGE_SIZE};
  if (!cfg_.table->translate(va).ok()) return Status::Ok;  // nothing mapped: nothing to record
  if (region == Region::Mem)
    if (const Status st = reserve_paid(page); st != Status::Ok) return st;
  FrameDesc*& chunk = stale_[static_cast<unsigned>(region)][page / kStalePagesPerChunk];
  if (chunk != nullptr) return Status::Ok;
  chunk = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  return chunk != nullptr ? Status::Ok : Status::OutOfFrames;
}

Status Run::reserve_paid(std::uint32_t page) {
  FrameDesc*& chunk = paid_[page / kPaidPagesPerChunk];
  if (chunk != nullptr || cfg_.table->root().value() == 0) return Status::Ok;
  if (!cfg_.table->translate(mem_va(page)).ok()) return Status::Ok;  // nothing mapped: nothing to record
  chunk = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  return chunk != nullptr ? Status::Ok : Status::OutOfFrames;
}

void Run::protect_page(Region region, std::uint32_t page) {
  CAPMEM_ASSERT(held());                        // a checkpoint holds this paused run (rule 3.8)
  if (region == Region::Code) return;           // code leaves are never writable (4.3)
  if (cfg_.table->root().value() == 0) return;  // torn down: nothing mapped
  const VirtAddr va = mem_va(page);
  auto t = cfg_.table->translate(va);
  if (!t.ok() || !t->flags.writable) return;
  set_paid(page, kPaidRead | kPaidWrite);
  // Same frame, read-only; protect() invalidates the TLB entry through the seam (on many
  // CPUs: a shootdown of every CPU that may cache it, rule 7.2).
  const auto r = cfg_.table->protect(va, guest_leaf(false));
  CAPMEM_ASSERT(r.ok());
}

void Run::refresh_page(Region region, std::uint32_t page) {
  CAPMEM_ASSERT(held());  // a checkpoint holds this paused run (rule 3.8)
  if (cfg_.table->root().value() == 0) return;
  const VirtAddr va{region_base(region) + std::uint64_t{page} * PAGE_SIZE};
  auto t = cfg_.table->translate(va);
  if (!t.ok()) return;  // not mapped: the next access faults and sees the new page
  if (region == Region::Mem && !pinned_page(page))
    set_paid(page, t->flags.writable ? kPaidRead | kPaidWrite : kPaidRead);
  bool missing = false;
  FrameDesc* f = source_frame(cap_of(region), page, &missing);
  if (f == nullptr) {  // Missing now: the next access is a guest page fault (4.3) or a NeedPage (8.2)
    const auto r = cfg_.table->unmap(va);
    CAPMEM_ASSERT(r.ok());
    return;
  }
  // The old leaf (another frame, or this one writable) may be cached on any CPU that still
  // has this table loaded (a CPU the run has left; a kernel with PCIDs keeps it there), not
  // only on this one: unmap shoots it down everywhere before it drops the old frame's
  // reference (rule 7.2), then the new leaf goes into the empty entry. Its tables exist, so
  // mapping it allocates nothing and cannot fail.
  const auto u = cfg_.table->unmap(va);
  CAPMEM_ASSERT(u.ok());
  const auto r = cfg_.table->map_leaf(va, f->phys(), guest_leaf(false));
  CAPMEM_ASSERT(r.ok());
}

// Rule 3.9: called from another run's CoW fault (interrupts off, no shootdown allowed)
// while this run is paused; prepare(region, page) succeeded. A writable leaf becomes
// read-only at once (same frame, invalidation left to settle_stale); the leaf is re-pointed
// at the new page by this run's next entry (settle_stale); the paid bits are recorded now,
// so the re-copy or re-page-in it causes is free.
void Run::published(Region region, std::uint32_t page) {
  if (cfg_.table->root().value() == 0) return;
  const VirtAddr va{region_base(region) + std::uint64_t{page} * PAGE_SIZE};
  auto t = cfg_.table->translate(va);
  if (!t.ok()) return;  // not mapped: the next access faults and sees the new page
  if (own_publish(region)) {
    // code == mem and this run's own CoW: its code leaf of the page follows at once. Its
    // table is loaded on this CPU alone (7.1), so map_leaf's local invlpg is the whole
    // invalidation, and replacing a present leaf needs no frame.
    const SlotView v = cfg_.mem->effective(page);
    CAPMEM_ASSERT(v.kind == SlotKind::Loaded);  // just published
    const auto m = cfg_.table->map_leaf(va, v.frame->phys(), guest_leaf(false));
    CAPMEM_ASSERT(m.ok());
    return;
  }
  if (region == Region::Mem && !pinned_page(page))
    set_paid(page, t->flags.writable ? kPaidRead | kPaidWrite : kPaidRead);
  if (t->flags.writable) {
    // No run keeps a writable leaf on a page the cap no longer holds: read-only now, same
    // frame (still referenced by the leaf). A CPU this run left may still cache the old
    // translation: settle_stale shoots it down before this run executes again.
    const auto p = cfg_.table->protect(va, guest_leaf(false), pt::PageTable::Shootdown::ByCaller);
    CAPMEM_ASSERT(p.ok());
  }
  const auto r = static_cast<unsigned>(region);
  FrameDesc* chunk = stale_[r][page / kStalePagesPerChunk];
  CAPMEM_ASSERT(chunk != nullptr);  // prepare(region, page) came first
  const std::uint32_t i = page % kStalePagesPerChunk;
  static_cast<std::uint64_t*>(chunk->virt())[i / 64] |= std::uint64_t{1} << (i % 64);
  stale_any_[r] = true;
}

void Run::settle_stale() {
  for (const Region region : {Region::Code, Region::Mem}) {
    const auto r = static_cast<unsigned>(region);
    if (!stale_any_[r]) continue;
    stale_any_[r] = false;
    for (std::uint32_t c = 0; c < tree::kMaxPages / kStalePagesPerChunk; ++c) {
      if (stale_[r][c] == nullptr) continue;
      auto* words = static_cast<std::uint64_t*>(stale_[r][c]->virt());
      for (std::uint32_t w = 0; w < kStalePagesPerChunk / 64; ++w) {
        for (std::uint64_t m = words[w]; m != 0; m &= m - 1) {
          const std::uint32_t page = c * kStalePagesPerChunk + w * 64 + static_cast<std::uint32_t>(__builtin_ctzll(m));
          const VirtAddr va{region_base(region) + std::uint64_t{page} * PAGE_SIZE};
          if (cfg_.table->root().value() == 0 || !cfg_.table->translate(va).ok()) continue;
          // Unmap first: pt shoots the leaf down on every CPU that may hold this table (the
          // CPUs this run has left, rule 7.2) before the old frame loses this reference.
          auto u = cfg_.table->unmap(va);
          CAPMEM_ASSERT(u.ok());
          bool missing = false;
          FrameDesc* f = source_frame(cap_of(region), page, &missing);
          if (f == nullptr) continue;  // Missing now: the next access faults (4.3) or asks (8.2)
          // The tables of the path stay (unmap never frees one): this cannot need a frame.
          const auto m2 = cfg_.table->map_leaf(va, f->phys(), guest_leaf(false));
          CAPMEM_ASSERT(m2.ok());
        }
        words[w] = 0;
      }
    }
  }
}

Run::Where Run::classify(VirtAddr va) const {
  const std::uint64_t a = va.value();
  const std::uint64_t code_end = CODE_BASE + cfg_.code->size();
  if (a >= CODE_BASE && a < code_end && code_end <= DATA_BASE)
    return {Kind::Code, cfg_.code, static_cast<std::uint32_t>((a - CODE_BASE) / PAGE_SIZE), CODE_BASE, code_end};
  const std::uint64_t data_end = DATA_BASE + cfg_.mem->size();
  if (a >= DATA_BASE && a < data_end && data_end <= GUEST_LIMIT) {
    const auto page = static_cast<std::uint32_t>((a - DATA_BASE) / PAGE_SIZE);
    for (const PinnedRange& r : cfg_.pinned) {
      if (page >= r.first_page && page - r.first_page < r.pages) {
        const std::uint64_t lo = DATA_BASE + std::uint64_t{r.first_page} * PAGE_SIZE;
        return {Kind::Pinned, cfg_.mem, page, lo, lo + std::uint64_t{r.pages} * PAGE_SIZE};
      }
    }
    return {Kind::Cow, cfg_.mem, page, DATA_BASE, data_end};
  }
  return {Kind::None, nullptr, 0, 0, 0};
}

Answer Run::handle_page_fault(VirtAddr cr2, std::uint32_t error_code) {
  has_pending_ = false;  // a request lives until the run's next fault (rule 8.2)
  const bool write = (error_code & pt::ErrorCode::kWrite) != 0;
  const Where w = classify(cr2);
  if (w.kind == Kind::None) return fault(cr2);                       // null guard, gaps (4.3)
  if ((error_code & pt::ErrorCode::kFetch) != 0) return fault(cr2);  // guest memory is never code
  if (write && w.kind != Kind::Cow) return fault(cr2);               // read-only range (4.3)

  // Spurious or stale-TLB fault: the page is already mapped as this access needs it
  // (another CPU's fault, or a TLB entry older than the PTE). Invalidate and retry,
  // charging nothing.
  const VirtAddr page_va = cr2.page_base();
  if (auto e = cfg_.table->leaf_entry(page_va); e.ok() && (!write || e->writable())) {
    env::tlb_invalidate_page(page_va);
    ++counters_.spurious;
    return {Outcome::Retry, cr2};
  }

  switch (w.kind) {
    case Kind::Code:
    case Kind::Pinned: return map_cluster(w, cr2);
    case Kind::Cow: return write ? copy_on_write(w, cr2) : page_in(w, cr2);
    case Kind::None: break;
  }
  return fault(cr2);
}

// Rule 8.2: with resolve_missing, a Missing page ends the access with a request the host
// answers (DataCap::resolve* then the same access again, or decline()). The handler only
// reads the slot's hash (8.5: no hashing, no allocation, no waiting).
Answer Run::need_page(const Where& w, VirtAddr va) {
  const SlotView v = w.cap->effective(w.page);
  CAPMEM_ASSERT(v.kind == SlotKind::Missing && v.hash != nullptr);
  pending_ = PageRequest{
      .region = w.kind == Kind::Code ? Region::Code : Region::Mem, .page = w.page, .hash = *v.hash, .addr = va};
  has_pending_ = true;
  ++counters_.need_page;
  return {Outcome::NeedPage, va};
}

const PageRequest* Run::pending() const { return has_pending_ ? &pending_ : nullptr; }

Answer Run::decline() {
  if (!has_pending_) env::panic("rule 8.2: Run::decline() without a pending NeedPage request");
  has_pending_ = false;
  return fault(pending_.addr);  // the guest page fault of rule 4.3, charging nothing
}

// Read-only region: materialize the whole 2 MiB cluster at once, one page-in charge per
// cluster (rule 4.5): every non-Missing page of every read-only range inside the cluster
// (the code region clipped to the cluster, or each pinned range that meets it). A cluster
// is exactly one page table (PT), so building the path for the faulting page is the only
// step that can fail; every other leaf lands in that same PT and cannot fail (prepare,
// then commit).
Answer Run::map_cluster(const Where& w, VirtAddr va) {
  bool missing = false;
  FrameDesc* first = source_frame(*w.cap, w.page, &missing);
  if (missing && !resolving()) return fault(va);  // rule 4.3: a Missing page is a guest page fault
  const std::uint64_t cluster = va.value() / CLUSTER_SIZE;
  const bool charge = !cluster_charged(cluster);
  if (charge && gas_ < cfg_.costs.page_in) return {Outcome::OutOfGas, va};
  // Rule 8.2/8.3: gas first, then the Missing test. A cluster not charged yet stays
  // uncharged (its re-executed access charges it once and maps it whole); in a charged
  // cluster the resolved page is mapped free below (the "!charge" path).
  if (missing) return need_page(w, va);

  // Prepare: the faulting page's leaf (builds PDPT/PD/PT as needed; no partial path).
  if (!cfg_.table->map_leaf(va.page_base(), first->phys(), guest_leaf(false)).ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};
  }
  // Cluster charged earlier: it was mapped whole then, and a checkpoint re-points its
  // pages rather than unmapping them (refresh_page), so only a page that was Missing then
  // and is not now arrives here.
  if (!charge) return {Outcome::Retry, va};

  // Commit: the rest of the cluster's read-only pages, skipping Missing pages (they stay
  // unmapped, so touching one faults then: a guest page fault, or with resolve_missing a
  // NeedPage whose resolved page is mapped free by the "!charge" path above, rule 8.3).
  const std::uint64_t lo = cluster * CLUSTER_SIZE, hi = lo + CLUSTER_SIZE;
  std::uint64_t mapped = 1;
  if (w.kind == Kind::Code) {
    mapped += map_readonly_range(w, lo > w.lo ? lo : w.lo, hi < w.hi ? hi : w.hi, va.page_base());
  } else {
    for (const PinnedRange& r : cfg_.pinned) {
      const std::uint64_t rlo = DATA_BASE + std::uint64_t{r.first_page} * PAGE_SIZE;
      const std::uint64_t rhi = rlo + std::uint64_t{r.pages} * PAGE_SIZE;
      if (rhi <= lo || rlo >= hi) continue;
      mapped += map_readonly_range(w, rlo > lo ? rlo : lo, rhi < hi ? rhi : hi, va.page_base());
    }
  }
  charged_[cluster / 64] |= std::uint64_t{1} << (cluster % 64);
  gas_ -= cfg_.costs.page_in;
  ++counters_.clusters;
  counters_.cluster_pages += mapped;
  return {Outcome::Retry, va};
}

// Maps every non-Missing page of [lo, hi) (inside one cluster, so inside the PT the
// faulting page's leaf already built) read-only, except `skip`; returns how many.
std::uint64_t Run::map_readonly_range(const Where& w, std::uint64_t lo, std::uint64_t hi, VirtAddr skip) {
  const std::uint64_t region_base = w.kind == Kind::Code ? CODE_BASE : DATA_BASE;
  std::uint64_t mapped = 0;
  for (std::uint64_t a = lo; a < hi; a += PAGE_SIZE) {
    if (a == skip.value()) continue;
    const auto page = static_cast<std::uint32_t>((a - region_base) / PAGE_SIZE);
    bool miss = false;
    FrameDesc* f = source_frame(*w.cap, page, &miss);
    if (f == nullptr) continue;
    const auto r = cfg_.table->map_leaf(VirtAddr{a}, f->phys(), guest_leaf(false));
    CAPMEM_ASSERT(r.ok());  // same PT as the faulting page: cannot need a table
    ++mapped;
  }
  return mapped;
}

// CoW range, read: map the source frame read-only (rule 4.3).
// A page whose page-in a checkpoint already recorded as paid is not charged again (3.8).
Answer Run::page_in(const Where& w, VirtAddr va) {
  bool missing = false;
  FrameDesc* src = source_frame(*w.cap, w.page, &missing);
  if (missing && !resolving()) return fault(va);
  const bool charge = (paid(w.page) & kPaidRead) == 0;
  if (charge && gas_ < cfg_.costs.page_in) return {Outcome::OutOfGas, va};
  if (missing) return need_page(w, va);  // rule 8.3: after the gas check
  if (!cfg_.table->map_leaf(va.page_base(), src->phys(), guest_leaf(false)).ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};
  }
  if (charge) {
    gas_ -= cfg_.costs.page_in;
    ++counters_.page_in;
  } else {
    ++counters_.repages;
  }
  return {Outcome::Retry, va};
}

// CoW range, write (rule 4.4): allocate + copy -> map the leaf -> invlpg -> publish.
// Everything that can fail (the overlay's nodes, the private frame, the page-table path)
// is obtained before anything visible changes; a failure releases what was obtained and
// leaves the page table, the overlay and the gas exactly as they were. A page whose CoW a
// checkpoint took away (write-protected, rule 3.8) is copied again without a charge.
Answer Run::copy_on_write(const Where& w, VirtAddr va) {
  bool missing = false;
  FrameDesc* src = source_frame(*w.cap, w.page, &missing);
  if (missing && !resolving()) return fault(va);
  const bool charge = (paid(w.page) & kPaidWrite) == 0;
  if (charge && gas_ < cfg_.costs.cow) return {Outcome::OutOfGas, va};  // before anything is allocated
  if (missing) return need_page(w, va);                                 // rule 8.3: after the gas check

  // An Empty source needs a zeroed frame, not a copy of the zero frame (docs/edge-cases.md).
  const std::uint8_t* from = src == frames().zero_frame() ? nullptr : static_cast<const std::uint8_t*>(src->virt());
  auto copy = PageRef::unhashed_frame(from);  // rule 1.3: sentinel hash, no SHA-256
  if (!copy.ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};
  }
  auto reservation = cfg_.mem->reserve_overlay(w.page, &mem_node_);
  if (!reservation.ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};  // the frame goes back, unwritten
  }
  copy->unhashed_fill(from);
  // map_leaf invalidates the TLB entry when it replaces a present (read-only) leaf, and a
  // not-present leaf is never cached (SDM 4.10.2.3): no second invlpg here.
  if (!cfg_.table->map_leaf(va.page_base(), copy->phys(), guest_leaf(true)).ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};  // page and reservation released: overlay untouched
  }
  cfg_.mem->publish(reservation.release_value(), copy.release_value(), &mem_node_);
  if (charge) {
    gas_ -= cfg_.costs.cow;
    ++counters_.cow;
  } else {
    ++counters_.recopies;
  }
  return {Outcome::Retry, va};
}

}  // namespace capmem::fault
