#include "capmem/frame.h"

#include <new>

#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

namespace {
constinit FrameAllocator g_frames;
}  // namespace

FrameAllocator& frames() { return g_frames; }

void FrameAllocator::lock() {
  while (lock_.exchange(true, std::memory_order_acquire)) {
    while (lock_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
  }
}
void FrameAllocator::unlock() { lock_.store(false, std::memory_order_release); }

Result<void> FrameAllocator::init(const env::PhysRange* ranges, std::size_t count) {
  if (descs_ != nullptr || count == 0 || count > kMaxRanges) return Status::InvalidArgument;
  std::uint64_t frames_total = 0;
  std::size_t largest = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (!ranges[i].base.page_aligned() || (ranges[i].size & (PAGE_SIZE - 1)) != 0 || ranges[i].size == 0)
      return Status::InvalidArgument;
    if (i > 0 && ranges[i].base.value() < ranges[i - 1].base.value() + ranges[i - 1].size)
      return Status::InvalidArgument;  // must be ascending and disjoint
    frames_total += ranges[i].size / PAGE_SIZE;
    if (ranges[i].size > ranges[largest].size) largest = i;
  }
  const std::uint64_t meta_bytes = frames_total * sizeof(FrameDesc);
  const std::uint64_t meta_frames = (meta_bytes + PAGE_SIZE - 1) / PAGE_SIZE;
  // Need the metadata plus the zero frame plus at least one usable frame.
  if (ranges[largest].size / PAGE_SIZE < meta_frames + 2) return Status::InvalidArgument;

  descs_ = static_cast<FrameDesc*>(env::phys_to_virt(ranges[largest].base));
  std::uint64_t next = 0;
  for (std::size_t i = 0; i < count; ++i) {
    ranges_[i] = Range{.first_pfn = ranges[i].base.pfn(), .frames = ranges[i].size / PAGE_SIZE, .descs = descs_ + next};
    next += ranges_[i].frames;
  }
  nranges_ = count;

  // Thread the free list so that low addresses come out first (push in reverse).
  free_head_ = nullptr;
  free_ = 0;
  for (std::size_t ri = count; ri-- > 0;) {
    const Range& r = ranges_[ri];
    for (std::uint64_t f = r.frames; f-- > 0;) {
      FrameDesc* d = new (&r.descs[f]) FrameDesc{};
      d->pfn = r.first_pfn + f;
      const bool meta = (ri == largest) && f < meta_frames;
      if (meta) {
        d->kind = FrameKind::Reserved;
        continue;
      }
      d->kind = FrameKind::Free;
      d->link = free_head_;
      free_head_ = d;
      ++free_;
    }
  }
  total_ = free_;

  zero_ = alloc(FrameKind::Zero, AllocFlags::Zero);
  CAPMEM_ASSERT(zero_ != nullptr);
  zero_->hash = Hash32{};
  return {};
}

Result<void> FrameAllocator::init_from_env() {
  env::PhysRange r[kMaxRanges];
  const std::size_t n = env::memory_ranges(r, kMaxRanges);
  return init(r, n);
}

FrameDesc* FrameAllocator::alloc(FrameKind kind, AllocFlags flags) {
  CAPMEM_ASSERT(kind != FrameKind::Free && kind != FrameKind::Reserved);
  lock();
  ++allocs_;
  if (exhausted_ || (fail_at_ != 0 && allocs_ == fail_at_) || free_head_ == nullptr) {
    if (fail_at_ == allocs_) fail_at_ = 0;
    unlock();
    return nullptr;
  }
  FrameDesc* d = free_head_;
  CAPMEM_ASSERT(d->kind == FrameKind::Free && d->refs.load(std::memory_order_relaxed) == 0);
  free_head_ = d->link;
  --free_;
  d->kind = kind;
  d->refs.store(1, std::memory_order_relaxed);
  d->adopted = 0;
  const bool poisoned = (d->flags & kFlagPoisoned) != 0;
  d->flags = 0;
  d->hash = Hash32{};
  unlock();

  auto* bytes = static_cast<std::uint8_t*>(d->virt());
  if (poisoned) {
    // Use-after-free detector: every byte of a free frame must still hold the poison.
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
  if (flags == AllocFlags::Zero) mem::zero_page(bytes);
  return d;
}

void FrameAllocator::release_locked(FrameDesc* d) {
  d->kind = FrameKind::Free;
  d->flags = poison_ ? kFlagPoisoned : 0;
  d->adopted = 0;
  d->link = free_head_;
  free_head_ = d;
  ++free_;
}

void FrameAllocator::free(FrameDesc* d) {
  CAPMEM_ASSERT(d != nullptr);
  if (d->kind == FrameKind::Free) env::panic("frame freed twice");
  if (d->kind == FrameKind::Zero || d->kind == FrameKind::Reserved) env::panic("freeing a pinned frame");
  if (d->refs.load(std::memory_order_relaxed) > 1) env::panic("freeing a frame that is still referenced");
  d->refs.store(0, std::memory_order_relaxed);
  if (poison_) mem::fill_page(d->virt(), kPoison);
  lock();
  release_locked(d);
  unlock();
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
  if (poison_) mem::fill_page(d->virt(), kPoison);
  lock();
  release_locked(d);
  unlock();
  return true;
}

FrameDesc* FrameAllocator::desc_of(PhysAddr pa) const {
  const std::uint64_t pfn = pa.pfn();
  for (std::size_t i = 0; i < nranges_; ++i) {
    const Range& r = ranges_[i];
    if (pfn >= r.first_pfn && pfn - r.first_pfn < r.frames) return &r.descs[pfn - r.first_pfn];
  }
  return nullptr;
}

FrameStats FrameAllocator::stats() const {
  return FrameStats{.total = total_, .free = free_, .in_use = total_ - free_};
}

}  // namespace capmem
