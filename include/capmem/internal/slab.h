// Internal to the core (include/capmem/internal/): a layout the public headers need to see,
// not an API an embedder calls. The public API is datacap.h, fault.h, pt.h, frame.h, page.h,
// slot.h, codec.h, hash.h, status.h and the seam env.h.
// Fixed-size object slab on top of the frame allocator: the only "heap" of the core.
// Every tree node, overlay node, Missing-hash box and backing header comes from one of
// these. O(1) alloc and free; an empty slab frame goes straight back to frames(), so a
// test's all-free check sees no slab leak.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "capmem/frame.h"
#include "capmem/internal/spinlock.h"

namespace capmem {

struct SlabStats {
  std::uint64_t objects;  // objects currently allocated
  std::uint64_t frames;   // frames currently held (each holds >= 1 live object)
};

class Slab {
 public:
  // `obj_size` bytes per object (rounded up to 16), at most kMaxObject.
  static constexpr std::size_t kHeader = 64;  // per-frame header at the frame's start
  static constexpr std::size_t kMaxObject = PAGE_SIZE - kHeader;

  constexpr explicit Slab(std::size_t obj_size) : size_((obj_size + 15) & ~std::size_t{15}) {}
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  // O(1). Returns zero-filled storage of size() bytes (16-byte aligned), or nullptr when a
  // new frame is needed and frames() has none (or an injected failure fires).
  [[nodiscard]] void* alloc();
  // O(1). `p` must come from alloc() of this slab. Frees the frame when it becomes empty.
  void free(void* p);

  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] std::size_t per_frame() const { return (PAGE_SIZE - kHeader) / size_; }
  // Taken under the slab lock: exact whenever no alloc()/free() of this slab is in flight
  // (rule 7.4), and never a torn or racy read while one is.
  [[nodiscard]] SlabStats stats() const;

 private:
  // Header at offset 0 of every slab frame (kind Slab). Invariants:
  //   - `free_list` threads the frame's free objects (first 8 bytes of each);
  //   - `in_use` == objects handed out from this frame, 1 <= in_use while the frame is held;
  //   - the frame is on the slab's partial list (prev/next) iff in_use < per_frame().
  struct FrameHdr {
    FrameHdr* prev;
    FrameHdr* next;
    void* free_list;
    std::uint32_t in_use;
    std::uint32_t unused;
    Slab* owner;
    FrameDesc* desc;
  };
  static_assert(sizeof(FrameHdr) <= kHeader);

  void unlink(FrameHdr* h);
  void push(FrameHdr* h);

  // Everything below `size_` (and every FrameHdr field but `owner`/`desc` of a held frame,
  // which are fixed while the frame is held) is read and written only under lock_ (a
  // SpinLock: interrupts off while held). Lock order: a slab lock is never held while calling
  // frames() (alloc and free call it after unlocking), so slab locks nest inside nothing.
  std::size_t size_;
  FrameHdr* partial_ = nullptr;  // frames with at least one free object
  std::uint64_t objects_ = 0;
  std::uint64_t frames_ = 0;
  SpinLock lock_;
};

}  // namespace capmem
