#include "capmem/internal/slab.h"

#include "capmem/log.h"

namespace capmem {

namespace {
// Every slab that has held a frame: pushed once by its first refill, never removed (slabs
// have static storage duration), walked by drain_slab_caches().
constinit std::atomic<Slab*> g_slabs{nullptr};
}  // namespace

void drain_slab_caches(unsigned cpu) { Slab::drain_all(cpu); }

void Slab::drain_all(unsigned cpu) {
  for (Slab* s = g_slabs.load(std::memory_order_acquire); s != nullptr; s = s->next_registered_) s->drain(cpu);
}

void Slab::register_once() {
  if (registered_.exchange(true, std::memory_order_relaxed)) return;
  Slab* head = g_slabs.load(std::memory_order_relaxed);
  do {
    next_registered_ = head;
  } while (!g_slabs.compare_exchange_weak(head, this, std::memory_order_release, std::memory_order_relaxed));
}

SlabStats Slab::stats() const {
  const SpinGuard g(lock_);
  std::uint64_t cached = 0;
  for (const CpuCache& c : caches_) cached += c.count.load(std::memory_order_relaxed);
  return SlabStats{.objects = out_ - cached, .cached = cached, .frames = frames_};
}

void Slab::unlink(FrameHdr* h) {
  if (h->prev != nullptr) h->prev->next = h->next;
  else partial_ = h->next;
  if (h->next != nullptr) h->next->prev = h->prev;
  h->prev = h->next = nullptr;
}

void Slab::push(FrameHdr* h) {
  h->prev = nullptr;
  h->next = partial_;
  if (partial_ != nullptr) partial_->prev = h;
  partial_ = h;
}

// Fills the empty cache `c` with up to kCacheBatch objects from the partial frames, taking
// a new frame from frames() first when no frame has a free object. Returns false only when
// no object could be had. The cache's count changes together with out_, under lock_.
bool Slab::refill(CpuCache& c) {
  CAPMEM_ASSERT(size_ != 0 && size_ <= kMaxObject);
  register_once();
  env::IrqState irq = lock_.lock();
  if (partial_ == nullptr) {
    lock_.unlock(irq);
    FrameDesc* d = frames().alloc(FrameKind::Slab);
    if (d == nullptr) return false;
    auto* base = static_cast<std::uint8_t*>(d->virt());
    auto* h = reinterpret_cast<FrameHdr*>(base);
    *h = FrameHdr{
        .prev = nullptr, .next = nullptr, .free_list = nullptr, .in_use = 0, .unused = 0, .owner = this, .desc = d};
    // Thread the objects in address order (at least one, as 0 < size_ <= kMaxObject).
    const std::size_t n = per_frame();
    CAPMEM_ASSERT(n >= 1);
    void** link = &h->free_list;
    for (std::size_t i = 0; i < n; ++i) {
      void* obj = base + kHeader + i * size_;
      *link = obj;
      link = static_cast<void**>(obj);
    }
    *link = nullptr;
    irq = lock_.lock();
    push(h);
    ++frames_;
  }
  std::uint32_t taken = 0;
  while (taken < kCacheBatch && partial_ != nullptr) {
    FrameHdr* h = partial_;
    void* obj = h->free_list;
    CAPMEM_ASSERT(obj != nullptr);  // on the partial list: it has a free object
    h->free_list = *static_cast<void**>(obj);
    ++h->in_use;
    if (h->free_list == nullptr) unlink(h);
    *static_cast<void**>(obj) = c.head;
    c.head = obj;
    ++taken;
  }
  out_ += taken;
  c.count.store(c.count.load(std::memory_order_relaxed) + taken, std::memory_order_relaxed);
  lock_.unlock(irq);
  return true;
}

// Gives the first `n` (<= count) objects of cache `c` back to their frames; frames left
// with nothing out go back to frames() after unlocking.
void Slab::drain(CpuCache& c, std::uint32_t n) {
  if (n == 0) return;
  FrameHdr* release = nullptr;  // threaded through FrameHdr::next (off the partial list)
  env::IrqState irq = lock_.lock();
  for (std::uint32_t i = 0; i < n; ++i) {
    void* p = c.head;
    c.head = *static_cast<void**>(p);
    auto* h = reinterpret_cast<FrameHdr*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{PAGE_SIZE - 1});
    if (h->owner != this || h->in_use == 0) {
      lock_.unlock(irq);
      env::panic("Slab::free: pointer not from this slab, or freed twice");
    }
    const bool was_full = h->free_list == nullptr;
    *static_cast<void**>(p) = h->free_list;
    h->free_list = p;
    --h->in_use;
    if (h->in_use == 0) {
      if (!was_full) unlink(h);
      --frames_;
      h->next = release;
      release = h;
    } else if (was_full) {
      push(h);
    }
  }
  out_ -= n;
  c.count.store(c.count.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  lock_.unlock(irq);
  while (release != nullptr) {
    FrameHdr* h = release;
    release = h->next;
    h->owner = nullptr;
    frames().free(h->desc);
  }
}

void Slab::drain(unsigned cpu) {
  if (cpu >= env::kMaxCpus) return;
  CpuCache& c = caches_[cpu];
  drain(c, c.count.load(std::memory_order_relaxed));
}

void* Slab::alloc() {
  CpuCache& c = caches_[env::cpu_id()];
  if (c.head == nullptr && !refill(c)) return nullptr;
  void* obj = c.head;
  c.head = *static_cast<void**>(obj);
  c.count.store(c.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  __builtin_memset(obj, 0, size_);
  return obj;
}

void Slab::free(void* p) {
  CAPMEM_ASSERT(p != nullptr);
  // `owner` is fixed while the frame is held (and `p` says it is); in_use is checked when
  // the object leaves the cache, under the lock.
  const auto* h =
      reinterpret_cast<const FrameHdr*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{PAGE_SIZE - 1});
  if (h->owner != this) env::panic("Slab::free: pointer not from this slab");
  CpuCache& c = caches_[env::cpu_id()];
  if (p == c.head) env::panic("Slab::free: object freed twice");
  *static_cast<void**>(p) = c.head;
  c.head = p;
  const std::uint32_t n = c.count.load(std::memory_order_relaxed) + 1;
  c.count.store(n, std::memory_order_relaxed);
  if (n > kCacheHigh) drain(c, kCacheBatch);
}

}  // namespace capmem
