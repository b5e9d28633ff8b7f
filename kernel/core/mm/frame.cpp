#include "capmem/frame.h"

#include <new>

#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

namespace {
constinit FrameAllocator g_frames;
}  // namespace

FrameAllocator& frames() { return g_frames; }

namespace {
std::uint64_t end_of(const env::PhysRange& r) { return r.base.value() + r.size; }

// How many ranges `in` becomes when every gap of at most `gap` bytes is bridged.
std::size_t spans_bridging(const env::PhysRange* in, std::size_t count, std::uint64_t gap) {
  std::size_t spans = 1;
  for (std::size_t i = 1; i < count; ++i)
    if (in[i].base.value() - end_of(in[i - 1]) > gap) ++spans;
  return spans;
}

// The smallest gap such that bridging every gap up to it leaves at most `max` ranges: 0 when
// `count` <= `max` (nothing bridged). O(count^2) at start-up, no scratch memory.
std::uint64_t bridge_gap(const env::PhysRange* in, std::size_t count, std::size_t max) {
  if (count <= max) return 0;
  std::uint64_t best = ~std::uint64_t{0};
  for (std::size_t i = 1; i < count; ++i) {
    const std::uint64_t g = in[i].base.value() - end_of(in[i - 1]);
    if (g < best && spans_bridging(in, count, g) <= max) best = g;
  }
  return best;
}
}  // namespace

Result<void> FrameAllocator::init(const env::PhysRange* ranges, std::size_t count) {
  if (descs_ != nullptr || ranges == nullptr || count == 0) return Status::InvalidArgument;
  std::size_t largest = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (!ranges[i].base.page_aligned() || (ranges[i].size & (PAGE_SIZE - 1)) != 0 || ranges[i].size == 0)
      return Status::InvalidArgument;
    if (i > 0 && ranges[i].base.value() < end_of(ranges[i - 1]))
      return Status::InvalidArgument;  // must be ascending and disjoint
    if (ranges[i].size > ranges[largest].size) largest = i;
  }
  // Spans: the ranges with every gap of at most `gap` bridged (more than kMaxRanges ranges
  // only). A bridged gap's frames get descriptors too, Reserved: never handed out.
  const std::uint64_t gap = bridge_gap(ranges, count, kMaxRanges);
  std::size_t nspans = 0;
  std::uint64_t span_frames = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (i == 0 || ranges[i].base.value() - end_of(ranges[i - 1]) > gap) {
      ranges_[nspans++] = Range{.first_pfn = ranges[i].base.pfn(), .frames = 0, .descs = nullptr};
    }
    Range& sp = ranges_[nspans - 1];
    sp.frames = ranges[i].base.pfn() + ranges[i].size / PAGE_SIZE - sp.first_pfn;
  }
  for (std::size_t k = 0; k < nspans; ++k) span_frames += ranges_[k].frames;
  const std::uint64_t meta_bytes = span_frames * sizeof(FrameDesc);
  const std::uint64_t meta_frames = (meta_bytes + PAGE_SIZE - 1) / PAGE_SIZE;
  // Need the metadata plus the zero frame plus at least one usable frame.
  if (ranges[largest].size / PAGE_SIZE < meta_frames + 2) {
    for (std::size_t k = 0; k < nspans; ++k) ranges_[k] = Range{};
    return Status::InvalidArgument;
  }

  descs_ = static_cast<FrameDesc*>(env::phys_to_virt(ranges[largest].base));
  std::uint64_t next = 0;
  for (std::size_t k = 0; k < nspans; ++k) {
    ranges_[k].descs = descs_ + next;
    next += ranges_[k].frames;
  }
  nranges_ = nspans;

  // One pass, in reverse so that low addresses come out first: every frame of every range
  // (Free, or Reserved for the descriptors themselves) and of every bridged gap (Reserved).
  free_head_ = nullptr;
  free_ = 0;
  std::size_t k = nspans - 1;
  for (std::size_t ri = count; ri-- > 0;) {
    const Range& sp = ranges_[k];
    const std::uint64_t first = ranges[ri].base.pfn();
    const std::uint64_t usable_end = first + ranges[ri].size / PAGE_SIZE;
    // Up to the next range when it is in the same span (the gap between them is bridged).
    const std::uint64_t stop =
        ri + 1 < count && ranges[ri + 1].base.pfn() < sp.first_pfn + sp.frames ? ranges[ri + 1].base.pfn() : usable_end;
    for (std::uint64_t pfn = stop; pfn-- > first;) {
      FrameDesc* d = new (&sp.descs[pfn - sp.first_pfn]) FrameDesc{};
      d->pfn = pfn;
      const bool meta = ri == largest && pfn - first < meta_frames;
      if (pfn >= usable_end || meta) {
        d->kind = FrameKind::Reserved;
        continue;
      }
      d->kind = FrameKind::Free;
      d->link = free_head_;
      free_head_ = d;
      ++free_;
    }
    if (first == sp.first_pfn && k > 0) --k;
  }
  total_ = free_;
  CAPMEM_ASSERT(free_head_ != nullptr);  // the size check above left at least two frames

  // Straight from the start-up list (no CPU cache is involved before the first alloc()).
  zero_ = free_head_;
  free_head_ = zero_->link;
  --free_;
  hand_out(zero_, FrameKind::Zero, AllocFlags::Zero);  // refs 1, never counted again
  zero_->hash = Hash32{};
  return {};
}

Result<void> FrameAllocator::init_from_env() {
  // Start-up only (one CPU, once): a static buffer rather than 4 KiB of stack.
  static env::PhysRange r[kMaxEnvRanges];
  const std::size_t n = env::memory_ranges(r, kMaxEnvRanges);
  return init(r, n);
}

// --- Fault injection (armed: every attempt counted and checked under the lock) ----------

bool FrameAllocator::injected_failure() {
  const SpinGuard g(lock_);
  ++allocs_;
  const bool fail = exhausted_ || (fail_at_ != 0 && allocs_ == fail_at_);
  if (fail_at_ != 0 && allocs_ >= fail_at_) fail_at_ = 0;  // one-shot
  hooks_.store(exhausted_ || fail_at_ != 0, std::memory_order_relaxed);
  return fail;
}

void FrameAllocator::inject_failure_at(std::uint64_t n) {
  const SpinGuard g(lock_);
  fail_at_ = n != 0 ? allocs_ + n : 0;
  hooks_.store(exhausted_ || fail_at_ != 0, std::memory_order_relaxed);
}

void FrameAllocator::set_exhausted(bool on) {
  const SpinGuard g(lock_);
  exhausted_ = on;
  hooks_.store(exhausted_ || fail_at_ != 0, std::memory_order_relaxed);
}

std::uint64_t FrameAllocator::alloc_attempts() const {
  const SpinGuard g(lock_);
  std::uint64_t n = allocs_;
  for (const CpuCache& c : caches_) n += c.attempts.load(std::memory_order_relaxed);
  return n;
}

// --- Per-CPU caches ------------------------------------------------------------------------

// Fills the empty cache `c` with up to kCacheBatch frames: from this CPU's depot list, else
// the start-up list, else another CPU's depot list (nearest first in CPU order). One lock at
// a time; the cache's count changes under the lock of the list the frames came from, so
// stats() never sees them on both or neither.
bool FrameAllocator::refill(CpuCache& c) {
  // Moves up to kCacheBatch frames from the front of the list (head, count) to the cache.
  const auto fill = [&c](SpinLock& lock, FrameDesc*& head, std::uint64_t& count) {
    const SpinGuard g(lock);
    FrameDesc* const first = head;
    FrameDesc* last = nullptr;
    std::uint32_t n = 0;
    for (FrameDesc* d = first; d != nullptr && n < kCacheBatch; d = d->link) {
      last = d;
      ++n;
    }
    if (n == 0) return false;
    head = last->link;
    count -= n;
    last->link = c.head;
    c.head = first;
    c.count.store(c.count.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    return true;
  };
  const auto fill_from_depot = [&fill](DepotList& dl) { return fill(dl.lock, dl.head, dl.count); };
  const unsigned self = env::cpu_id();
  if (fill_from_depot(depots_[self]) || fill(lock_, free_head_, free_)) return true;
  const unsigned ncpu = env::cpu_count();
  for (unsigned i = 1; i < ncpu; ++i)
    if (fill_from_depot(depots_[(self + i) % ncpu])) return true;
  return false;
}

// Moves the first `n` (<= count) frames of cache `c` to this CPU's depot list.
void FrameAllocator::drain(CpuCache& c, std::uint32_t n) {
  if (n == 0) return;
  FrameDesc* first = c.head;
  FrameDesc* last = first;
  for (std::uint32_t i = 1; i < n; ++i) last = last->link;
  DepotList& dl = depots_[env::cpu_id()];
  const SpinGuard g(dl.lock);
  c.head = last->link;
  last->link = dl.head;
  dl.head = first;
  dl.count += n;
  c.count.store(c.count.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

void FrameAllocator::drain_local() {
  CpuCache& c = local_cache();
  drain(c, c.count.load(std::memory_order_relaxed));
}

// --- Alloc / free ------------------------------------------------------------------------

FrameDesc* FrameAllocator::alloc(FrameKind kind, AllocFlags flags) {
  CAPMEM_ASSERT(kind != FrameKind::Free && kind != FrameKind::Reserved);
  CpuCache& c = local_cache();
  if (hooks_.load(std::memory_order_relaxed)) {
    if (injected_failure()) return nullptr;
  } else {
    c.attempts.store(c.attempts.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  if (c.head == nullptr && !refill(c)) return nullptr;
  FrameDesc* d = c.head;
  c.head = d->link;
  c.count.store(c.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  return hand_out(d, kind, flags);
}

[[gnu::always_inline]] inline FrameDesc* FrameAllocator::hand_out(FrameDesc* d, FrameKind kind, AllocFlags flags) {
  CAPMEM_ASSERT(d->kind == FrameKind::Free && d->refs.load(std::memory_order_relaxed) == 0);
  d->kind = kind;
  d->refs.store(1, std::memory_order_relaxed);
  d->adopted = 0;
  const bool poisoned = (d->flags & kFlagPoisoned) != 0;
  d->flags = 0;
  d->hash = Hash32{};

  // The direct-map address only when the bytes are touched: the fast path stays on the
  // descriptor.
  if (poisoned) check_poison(d);
  if (flags == AllocFlags::Zero) mem::zero_page(d->virt());
  return d;
}

// Use-after-free detector: every byte of a free frame must still hold the poison.
void FrameAllocator::check_poison(const FrameDesc* d) {
  const auto* bytes = static_cast<const std::uint8_t*>(d->virt());
  for (std::size_t i = 0; i < PAGE_SIZE; ++i) {
    if (bytes[i] != kPoison) {
      log::str("capmem: frame pfn=0x");
      log::hex(d->pfn);
      log::str(" written after free at offset ");
      log::dec(i);
      log::nl();
      env::panic("frame written after free");
    }
  }
}

// A frame whose last reference is gone: onto this CPU's cache (no lock), spilling one
// batch to this CPU's depot list when the cache passes kCacheHigh.
[[gnu::always_inline]] inline void FrameAllocator::release(FrameDesc* d) {
  const bool poison = poison_.load(std::memory_order_relaxed);
  if (poison) mem::fill_page(d->virt(), kPoison);
  d->kind = FrameKind::Free;
  d->flags = poison ? kFlagPoisoned : 0;
  d->adopted = 0;
  CpuCache& c = local_cache();
  d->link = c.head;
  c.head = d;
  const std::uint32_t n = c.count.load(std::memory_order_relaxed) + 1;
  c.count.store(n, std::memory_order_relaxed);
  if (n > kCacheHigh) drain(c, kCacheBatch);
}

void FrameAllocator::free(FrameDesc* d) {
  CAPMEM_ASSERT(d != nullptr);
  if (d->kind == FrameKind::Free) env::panic("frame freed twice");
  if (d->kind == FrameKind::Zero || d->kind == FrameKind::Reserved) env::panic("freeing a pinned frame");
  if (d->refs.load(std::memory_order_relaxed) > 1) env::panic("freeing a frame that is still referenced");
  d->refs.store(0, std::memory_order_relaxed);
  release(d);
}

void FrameAllocator::ref(FrameDesc* d) {
  if (d->kind == FrameKind::Zero) return;  // pinned: never counted, never freed
  if (d->kind == FrameKind::Free || d->kind == FrameKind::Reserved) env::panic("ref() on a frame that is not live");
  const std::uint32_t old = d->refs.fetch_add(1, std::memory_order_relaxed);
  if (old == 0) env::panic("ref() on a frame whose count already reached zero");
  if (old >= kMaxRefs) env::panic("frame reference count overflow");
}

bool FrameAllocator::unref(FrameDesc* d) {
  if (d->kind == FrameKind::Zero) return false;
  if (d->kind == FrameKind::Free || d->kind == FrameKind::Reserved) env::panic("unref() on a frame that is not live");
  const std::uint32_t old = d->refs.fetch_sub(1, std::memory_order_acq_rel);
  if (old == 0) env::panic("frame reference count dropped below zero");
  if (old != 1) return false;
  release(d);
  return true;
}

// Binary search: the ranges are ascending and disjoint.
FrameDesc* FrameAllocator::desc_of(PhysAddr pa) const {
  const std::uint64_t pfn = pa.pfn();
  std::size_t lo = 0, hi = nranges_;  // the range holding pfn, if any, is in [lo, hi)
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (ranges_[mid].first_pfn <= pfn) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  if (lo == hi) return nullptr;
  const Range& r = ranges_[lo];
  if (pfn >= r.first_pfn && pfn - r.first_pfn < r.frames) return &r.descs[pfn - r.first_pfn];
  return nullptr;
}

// lock_, then every depot list's lock in CPU order (refill and drain hold one lock at a
// time, so this order cannot deadlock): no frame is in flight between the lists and caches
// counted here while no alloc/free is.
FrameStats FrameAllocator::stats() const {
  const SpinGuard g(lock_);
  std::uint64_t cached = 0;
  std::uint64_t depot = 0;
  for (unsigned i = 0; i < env::kMaxCpus; ++i) {
    const SpinGuard gd(depots_[i].lock);
    depot += depots_[i].count;
    cached += caches_[i].count.load(std::memory_order_relaxed);
  }
  const std::uint64_t free = free_ + depot + cached;
  return FrameStats{.total = total_, .free = free, .in_use = total_ - free, .cached = cached, .depot = depot};
}

}  // namespace capmem
