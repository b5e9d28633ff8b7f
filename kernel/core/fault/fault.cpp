// The copy-on-write #PF handler (docs/rules.md section 4). See include/capmem/fault.h and
// docs/fault-path.md for the step-by-step account and the invariants.
#include "capmem/fault.h"

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

Run::Run(const RunConfig& cfg) : cfg_(cfg), gas_(cfg.gas), gas_start_(cfg.gas) { cfg_.mem->attach_run(this); }

Run::~Run() {
  CAPMEM_ASSERT(state_.load(std::memory_order_relaxed) == 0);
  cfg_.mem->detach_run(this);
  for (FrameDesc*& f : paid_) {
    if (f != nullptr) frames().unref(f);
    f = nullptr;
  }
}

void Run::enter() {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s >= kHold) {  // a checkpoint holds the run: wait for its release (bounded)
      __builtin_ia32_pause();
      s = state_.load(std::memory_order_relaxed);
      continue;
    }
    CAPMEM_ASSERT((s & kDepthMask) != kDepthMask);
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
  }
}

void Run::leave() {
  const std::uint32_t s = state_.fetch_sub(1, std::memory_order_release);
  CAPMEM_ASSERT((s & kDepthMask) != 0 && s < kHold);
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

Status Run::reserve_paid(std::uint32_t page) {
  CAPMEM_ASSERT(held());  // a checkpoint holds this paused run (rule 3.8)
  FrameDesc*& chunk = paid_[page / kPaidPagesPerChunk];
  if (chunk != nullptr || cfg_.table->root().value() == 0) return Status::Ok;
  if (!cfg_.table->translate(mem_va(page)).ok()) return Status::Ok;  // nothing mapped: nothing to record
  chunk = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  return chunk != nullptr ? Status::Ok : Status::OutOfFrames;
}

void Run::protect_page(std::uint32_t page) {
  CAPMEM_ASSERT(held());                        // a checkpoint holds this paused run (rule 3.8)
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

void Run::refresh_page(std::uint32_t page) {
  CAPMEM_ASSERT(held());  // a checkpoint holds this paused run (rule 3.8)
  if (cfg_.table->root().value() == 0) return;
  const VirtAddr va = mem_va(page);
  auto t = cfg_.table->translate(va);
  if (!t.ok()) return;  // not mapped: the next access faults and sees the new page
  const bool pinned = pinned_page(page);
  if (!pinned) set_paid(page, t->flags.writable ? kPaidRead | kPaidWrite : kPaidRead);
  bool missing = false;
  FrameDesc* f = source_frame(*cfg_.mem, page, &missing);
  if (f == nullptr) {  // Missing now: the next access is a guest page fault (rule 2.1)
    const auto r = cfg_.table->unmap(va);
    CAPMEM_ASSERT(r.ok());
    return;
  }
  // The leaf exists, so its tables do: replacing it allocates nothing and cannot fail. The
  // old leaf's TLB entry is invalidated before its frame reference is dropped (pt.h).
  const auto r = cfg_.table->map_leaf(va, f->phys(), guest_leaf(false));
  CAPMEM_ASSERT(r.ok());
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
  const bool write = (error_code & pt::ErrorCode::kWrite) != 0;
  const Where w = classify(cr2);
  if (w.kind == Kind::None) return fault(cr2);                       // null guard, gaps (4.3)
  if ((error_code & pt::ErrorCode::kFetch) != 0) return fault(cr2);  // guest memory is never code
  if (write && w.kind != Kind::Cow) return fault(cr2);               // read-only range (4.3)

  // Spurious or stale-TLB fault: the page is already mapped as this access needs it
  // (another CPU's fault, or a TLB entry older than the PTE). Invalidate and retry,
  // charging nothing.
  const VirtAddr page_va = cr2.page_base();
  if (auto t = cfg_.table->translate(page_va); t.ok() && (!write || t->flags.writable)) {
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

// Read-only region: materialize the whole 2 MiB cluster at once, one page-in charge per
// cluster (rule 4.5): every non-Missing page of every read-only range inside the cluster
// (the code region clipped to the cluster, or each pinned range that meets it). A cluster
// is exactly one page table (PT), so building the path for the faulting page is the only
// step that can fail; every other leaf lands in that same PT and cannot fail (prepare,
// then commit).
Answer Run::map_cluster(const Where& w, VirtAddr va) {
  bool missing = false;
  FrameDesc* first = source_frame(*w.cap, w.page, &missing);
  if (missing) return fault(va);  // rule 2.1: a Missing page is a guest page fault
  const std::uint64_t cluster = va.value() / CLUSTER_SIZE;
  const bool charge = !cluster_charged(cluster);
  if (charge && gas_ < cfg_.costs.page_in) return {Outcome::OutOfGas, va};

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
  // unmapped, so touching one faults and is reported as a guest page fault then).
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
  if (missing) return fault(va);
  const bool charge = (paid(w.page) & kPaidRead) == 0;
  if (charge && gas_ < cfg_.costs.page_in) return {Outcome::OutOfGas, va};
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
  if (missing) return fault(va);
  const bool charge = (paid(w.page) & kPaidWrite) == 0;
  if (charge && gas_ < cfg_.costs.cow) return {Outcome::OutOfGas, va};  // before anything is allocated

  auto reservation = cfg_.mem->reserve_overlay(w.page);
  if (!reservation.ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};
  }
  // An Empty source needs a zeroed frame, not a copy of the zero frame (docs/edge-cases.md).
  const std::uint8_t* from = src == frames().zero_frame() ? nullptr : static_cast<const std::uint8_t*>(src->virt());
  auto copy = PageRef::unhashed_copy(from);  // rule 1.3: sentinel hash, no SHA-256
  if (!copy.ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};  // reservation released by its destructor
  }
  // map_leaf invalidates the TLB entry when it replaces a present (read-only) leaf, and a
  // not-present leaf is never cached (SDM 4.10.2.3): no second invlpg here.
  if (!cfg_.table->map_leaf(va.page_base(), copy->phys(), guest_leaf(true)).ok()) {
    ++counters_.out_of_frames;
    return {Outcome::OutOfFrames, va};  // page and reservation released: overlay untouched
  }
  cfg_.mem->publish(reservation.release_value(), copy.release_value());
  if (charge) {
    gas_ -= cfg_.costs.cow;
    ++counters_.cow;
  } else {
    ++counters_.recopies;
  }
  return {Outcome::Retry, va};
}

}  // namespace capmem::fault
