// Internal to the core (include/capmem/internal/): a layout the public headers need to see,
// not an API an embedder calls. The public API is datacap.h, fault.h, pt.h, frame.h, page.h,
// slot.h, codec.h, hash.h, status.h and the seam env.h.
// Fixed-size object slab on top of the frame allocator: the only "heap" of the core.
// Every tree node, overlay node, Missing-hash box and backing header comes from one of
// these. O(1) alloc and free, lock-free on the fast path (per-CPU caches, rule 7.4); a slab
// frame left with no object handed out or cached goes straight back to frames().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/internal/spinlock.h"

namespace capmem {

struct SlabStats {
  std::uint64_t objects;  // objects currently allocated (handed out by alloc(), not freed)
  std::uint64_t cached;   // free objects held in per-CPU caches (each <= Slab::kCacheHigh)
  std::uint64_t frames;   // frames currently held (each holds >= 1 live or cached object)
};

// Slab with per-CPU object caches (rule 7.4; docs/smp.md "Slabs: per-CPU caches"), the frame
// allocator's structure one level up (Bonwick & Adams 2001 "magazines" in front of a depot):
//   - per CPU (env::cpu_id()) a LIFO cache of at most kCacheHigh free objects, touched only
//     by its own CPU. alloc() pops from it and free() pushes onto it with plain loads and
//     stores: no lock, no locked instruction.
//   - the depot behind the caches: the slab's frames, each threading its free objects, and
//     the list of frames with a free object (`partial_`), under lock_. An empty cache takes
//     up to kCacheBatch objects in one locked step (a new frame from frames() first if no
//     frame has one); a cache that grows past kCacheHigh gives kCacheBatch back in one
//     locked step, and a frame left with nothing out goes back to frames().
// Bound (rule 7.4): when alloc() on one CPU returns nullptr (OutOfFrames), its own cache and
// every slab frame were empty when it looked and frames() had none; every other CPU's cache
// of this slab holds at most kCacheHigh objects, so at most (cpu_count() - 1) * kCacheHigh
// objects (and as many frames) are out of its reach. No CPU asks another to drain;
// drain(cpu) gives one CPU's cache back (that CPU itself, or one that runs no core code).
// Counts: each cache's `count` is written only by its CPU (relaxed atomic stores) and by
// refill/drain together with `out_` under lock_; stats() adds them up under lock_. So stats()
// is exact whenever no alloc()/free() of this slab is in flight.
// Leak checks: an object in a CPU's cache keeps its frame held, so frames().stats() counts it
// in use; drain_slab_caches() (frame.h) gives every slab's cache on a CPU back first.
// A Slab must have static storage duration: its first refill links it, once, into the list
// drain_slab_caches() walks, and it is never unlinked.
class Slab {
 public:
  // `obj_size` bytes per object (rounded up to 16), at most kMaxObject.
  static constexpr std::size_t kHeader = 64;  // per-frame header at the frame's start
  static constexpr std::size_t kMaxObject = PAGE_SIZE - kHeader;
  // Per-CPU cache: refill/drain batch and the most objects one CPU's cache holds.
  static constexpr std::uint32_t kCacheBatch = 8;
  static constexpr std::uint32_t kCacheHigh = 2 * kCacheBatch;

  constexpr explicit Slab(std::size_t obj_size) : size_((obj_size + 15) & ~std::size_t{15}) {}
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  // O(1). Returns zero-filled storage of size() bytes (16-byte aligned), or nullptr when
  // this CPU's cache is empty, no slab frame has a free object and frames() has none (or an
  // injected failure fires). Fast path: a pop from this CPU's cache.
  [[nodiscard]] void* alloc();
  // O(1). `p` must come from alloc() of this slab (on any CPU): it lands in this CPU's cache.
  void free(void* p);
  // Gives CPU `cpu`'s cached objects back to their frames (frames left empty go back to
  // frames()). Call it on `cpu` itself, or while `cpu` runs no core code.
  void drain(unsigned cpu);

  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] std::size_t per_frame() const { return (PAGE_SIZE - kHeader) / size_; }
  // Taken under the slab lock: exact whenever no alloc()/free() of this slab is in flight
  // (rule 7.4), and never a torn or racy read while one is.
  [[nodiscard]] SlabStats stats() const;
  // Objects in CPU `cpu`'s cache right now (exact while that CPU is not in alloc/free).
  [[nodiscard]] std::uint32_t cached_on(unsigned cpu) const {
    return cpu < env::kMaxCpus ? caches_[cpu].count.load(std::memory_order_relaxed) : 0;
  }
  // Every slab that has ever held a frame, for drain_slab_caches() (frame.h).
  static void drain_all(unsigned cpu);

 private:
  // Header at offset 0 of every slab frame (kind Slab). Invariants (under lock_):
  //   - `free_list` threads the frame's free objects that no cache holds (first 8 bytes of
  //     each);
  //   - `in_use` == objects out of this frame (handed out, or in some CPU's cache),
  //     1 <= in_use while the frame is held;
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

  // One CPU's cache: `head` threads free objects through their first 8 bytes. Only its CPU
  // touches `head` and writes `count` (drain(cpu) of a CPU that runs no core code aside).
  // Invariant: count == length of the head list <= kCacheHigh, between operations.
  struct alignas(64) CpuCache {
    void* head = nullptr;
    std::atomic<std::uint32_t> count{0};
  };

  void unlink(FrameHdr* h);
  void push(FrameHdr* h);
  bool refill(CpuCache& c);
  void drain(CpuCache& c, std::uint32_t n);
  void register_once();

  // `partial_`, `out_`, `frames_` and every FrameHdr field but `owner`/`desc` of a held frame
  // (fixed while the frame is held) are read and written only under lock_ (a SpinLock:
  // interrupts off while held). Lock order: a slab lock is never held while calling frames()
  // (refill and drain call it after unlocking), so slab locks nest inside nothing.
  std::size_t size_;
  FrameHdr* partial_ = nullptr;  // frames with at least one free object
  std::uint64_t out_ = 0;        // objects out of frames: handed out + cached
  std::uint64_t frames_ = 0;
  SpinLock lock_;
  std::atomic<bool> registered_{false};
  Slab* next_registered_ = nullptr;  // set once, before this slab is published
  CpuCache caches_[env::kMaxCpus]{};
};

}  // namespace capmem
