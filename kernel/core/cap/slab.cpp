#include "capmem/internal/slab.h"

#include "capmem/log.h"

namespace capmem {

SlabStats Slab::stats() const {
  const SpinGuard g(lock_);
  return SlabStats{.objects = objects_, .frames = frames_};
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

void* Slab::alloc() {
  CAPMEM_ASSERT(size_ != 0 && size_ <= kMaxObject);
  env::IrqState irq = lock_.lock();
  if (partial_ == nullptr) {
    lock_.unlock(irq);
    FrameDesc* d = frames().alloc(FrameKind::Slab);
    if (d == nullptr) return nullptr;
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
  FrameHdr* h = partial_;
  void* obj = h->free_list;
  h->free_list = *static_cast<void**>(obj);
  ++h->in_use;
  ++objects_;
  if (h->free_list == nullptr) unlink(h);
  lock_.unlock(irq);
  __builtin_memset(obj, 0, size_);
  return obj;
}

void Slab::free(void* p) {
  CAPMEM_ASSERT(p != nullptr);
  auto* h = reinterpret_cast<FrameHdr*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{PAGE_SIZE - 1});
  // Checked under the lock: in_use changes under it (alloc/free of a neighbour object on
  // another CPU), so reading it before locking was a data race.
  const env::IrqState irq = lock_.lock();
  if (h->owner != this || h->in_use == 0) {
    lock_.unlock(irq);
    env::panic("Slab::free: pointer not from this slab");
  }
  const bool was_full = h->free_list == nullptr;
  *static_cast<void**>(p) = h->free_list;
  h->free_list = p;
  --h->in_use;
  --objects_;
  FrameDesc* release = nullptr;
  if (h->in_use == 0) {
    if (!was_full) unlink(h);
    --frames_;
    release = h->desc;
  } else if (was_full) {
    push(h);
  }
  lock_.unlock(irq);
  if (release != nullptr) {
    h->owner = nullptr;
    frames().free(release);
  }
}

}  // namespace capmem
