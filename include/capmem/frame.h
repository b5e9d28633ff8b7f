// Physical frame allocator: carves 4 KiB frames out of the RAM ranges the seam reports,
// one descriptor per frame, O(1) alloc/free and descriptor -> PA -> direct-map pointer; PA ->
// descriptor is a binary search over the managed ranges (at most kMaxRanges = 64, usually 1-3).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "capmem/env.h"
#include "capmem/internal/spinlock.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem {

// What a frame is currently used for. Checked on every transition, so a frame freed
// twice, a table freed as a page or a page referenced after its last release traps.
enum class FrameKind : std::uint8_t {
  Free = 0,  // on the free list; `link` is the next free frame
  Page,      // a DataCap page (PageRef): `hash` is valid, `refs` counts PageRefs + mappings
  Table,     // a page-table frame: `link` threads the owning table's owned list
  Slab,      // backs small objects (see internal/slab.h); `link` threads the slab's frame list
  Zero,      // the global read-only zero frame: never freed, refcount pinned
  Reserved,  // allocator metadata or outside usable RAM: never handed out
};

// One per physical frame. Layout pinned below: 64 bytes and 64-byte aligned (the array
// starts on a page), one cache line per frame like Linux's struct page, so the descriptor
// array costs 1.6% of RAM and no two frames share a line: `refs` is written with locked
// instructions by whichever CPU maps or drops the frame, and `link` by whichever CPU's
// cache holds it. Invariants:
//   - kind == Free        <=> the frame is on the start-up list, on one CPU's depot list
//                             or in one CPU's cache, refs == 0.
//   - kind == Page/Table/Slab => refs >= 1 (the last unref() returns the frame).
//   - `hash` (Page) and `link` (Free/Table/Slab) share storage: a live page never sits
//     on a list, a listed frame has no page hash.
//   - `pfn` never changes after init: desc -> PA is a field read.
struct alignas(64) FrameDesc {
  std::atomic<std::uint32_t> refs;  // intrusive reference count (atomic: any CPU may drop)
  FrameKind kind;
  std::uint8_t adopted;  // set once by PageRef::adopt (fbl-style adoption check)
  std::uint16_t flags;   // kind-specific
  union {
    FrameDesc* link = nullptr;  // kind == Free/Table/Slab: intrusive singly linked list
    Hash32 hash;                // kind == Page: rule 1.3 hash, or 32 zero bytes (unhashed)
  };
  std::uint64_t pfn;
  std::uint64_t reserved_[2] = {};  // pads to a cache line (see above)

  [[nodiscard]] PhysAddr phys() const { return PhysAddr::from_pfn(pfn); }
  [[nodiscard]] void* virt() const { return env::phys_to_virt(phys()); }
};
static_assert(sizeof(FrameDesc) == 64, "frame descriptor layout is pinned: one cache line");
static_assert(alignof(FrameDesc) == 64);

enum class AllocFlags : unsigned { None = 0, Zero = 1 };

struct FrameStats {
  std::uint64_t total;   // frames handed to the allocator for general use
  std::uint64_t free;    // on the start-up list, on a CPU's depot list or in a CPU's cache
  std::uint64_t in_use;  // total - free (includes the zero frame)
  std::uint64_t cached;  // of `free`: held in per-CPU caches (each <= kCacheHigh)
  std::uint64_t depot;   // of `free`: on the per-CPU depot lists (any CPU may take them)
};

// Frame allocator with per-CPU caches (docs/rules.md rule 7.4; docs/smp.md "Frame allocator").
//
// Structure (Bonwick & Adams 2001 "magazines" in front of a depot; Linux's per-CPU page
// lists in front of its zones):
//   - per CPU (indexed by env::cpu_id()) a cache of at most kCacheHigh free frames, touched
//     only by its own CPU. alloc() pops from it and free()/unref() push onto it with plain
//     loads and stores: no lock, no locked instruction.
//   - the depot behind the caches: one start-up list (every frame init() found, never used
//     yet) under lock_, and per CPU a depot list under that depot's own lock. An empty
//     cache takes kCacheBatch frames in one locked step: from its own CPU's depot list
//     first (frames this CPU freed, whose lines are still in its caches), then from the
//     start-up list, then from another CPU's depot list. A cache that grows past kCacheHigh
//     gives kCacheBatch back to its own CPU's depot list. So frames stay on the CPU that
//     used them unless another CPU runs short (a 4 KiB copy into a frame another CPU just
//     wrote moves 64 lines between cores: BM_CowFault/threads:2, docs/performance.md).
// Locks: SpinLock (interrupts off while held). refill() and drain() hold one lock at a
// time; stats() holds lock_ and takes each depot lock in turn under it. No lock
// is held while calling anything outside this class but env::cpu_id/irq_save/irq_restore.
// Bound (rule 7.4): when alloc() on one CPU returns nullptr (OutOfFrames), its own cache,
// the start-up list and every depot list were empty when it looked, and every other CPU's
// cache holds at most kCacheHigh frames: at most (cpu_count() - 1) * kCacheHigh free frames
// are out of its reach. No CPU ever asks another to drain; drain_local() lets a CPU give
// its own cache back (idle, offline).
// Counts: `count` of each cache is written only by its CPU (relaxed atomic stores: plain
// movs on x86) and read by stats(); every list count changes under its list's lock, and a
// cache's count changes together with the list its frames move to or from. So stats() is
// exact whenever no alloc/free is in flight.
// Fault injection (inject_failure_at, set_exhausted) arms `hooks_`; while armed every
// allocation is counted and checked under lock_ (tests only, so the fast path reads one
// flag).

class FrameAllocator {
 public:
  // Ranges the allocator indexes. init() takes any number: past kMaxRanges it bridges the
  // smallest gaps between neighbours (the gap's frames get Reserved descriptors, 64 bytes
  // per 4 KiB of gap, and are never handed out) until at most kMaxRanges remain.
  static constexpr std::size_t kMaxRanges = 64;
  // The most ranges init_from_env() reads from env::memory_ranges(); an environment keeps at
  // most this many (Linux keeps 128 E820 entries; a PVH or Multiboot2 map from QEMU has 2-3).
  static constexpr std::size_t kMaxEnvRanges = 256;
  // Per-CPU cache: refill/drain batch and the most frames one cache holds (128 KiB).
  // The depot lists behind the caches have no bound: their frames are in reach of every CPU.
  static constexpr std::uint32_t kCacheBatch = 16;
  static constexpr std::uint32_t kCacheHigh = 2 * kCacheBatch;

  constexpr FrameAllocator() = default;
  FrameAllocator(const FrameAllocator&) = delete;
  FrameAllocator& operator=(const FrameAllocator&) = delete;

  // Takes ownership of the given ranges, however many (see kMaxRanges): places the
  // descriptor array in the first frames of the largest range (those frames are Reserved),
  // threads every other frame onto the free list and sets up the zero frame. Ranges are
  // page-aligned, ascending and disjoint. Returns InvalidArgument for unusable input (none,
  // misaligned, overlapping, or the largest range too small for the descriptors).
  Result<void> init(const env::PhysRange* ranges, std::size_t count);
  // Convenience: init from env::memory_ranges().
  Result<void> init_from_env();
  [[nodiscard]] bool initialized() const { return descs_ != nullptr; }

  // O(1). Returns nullptr when out of frames (or when an injected failure fires).
  // The frame comes back with kind `kind`, refs == 1, adopted == 0. Fast path: a pop from
  // this CPU's cache; O(kCacheBatch) under the lock once per kCacheBatch allocations.
  [[nodiscard]] FrameDesc* alloc(FrameKind kind, AllocFlags flags = AllocFlags::None);
  // O(1). `d` must be live with refs == 0 or 1 (the caller's last reference). Any CPU may
  // free any frame: it lands in the freeing CPU's cache.
  void free(FrameDesc* d);
  // Give this CPU's cached frames to its depot list, in reach of every CPU (an idle or
  // departing CPU).
  void drain_local();

  // Reference counting on live frames. ref() traps on a free frame and on overflow;
  // unref() traps below zero and frees the frame when the count reaches zero.
  void ref(FrameDesc* d);
  // Returns true if this dropped the last reference (the frame is now free).
  bool unref(FrameDesc* d);

  // O(log #ranges): descriptor for a physical address inside a managed range (a Reserved
  // one inside a bridged gap), nullptr outside every range.
  [[nodiscard]] FrameDesc* desc_of(PhysAddr pa) const;
  [[nodiscard]] FrameDesc* desc_of_virt(const void* p) const { return desc_of(env::virt_to_phys(p)); }

  [[nodiscard]] FrameDesc* zero_frame() const { return zero_; }
  [[nodiscard]] FrameStats stats() const;
  // Frames in CPU `cpu`'s cache right now (exact while that CPU is not allocating).
  [[nodiscard]] std::uint32_t cached_on(unsigned cpu) const {
    return cpu < env::kMaxCpus ? caches_[cpu].count.load(std::memory_order_relaxed) : 0;
  }

  // --- Testing and fault injection (available in the kernel build too) ---------------
  // Fail the n-th allocation from now (1 = the next one), counted over every CPU; 0
  // disables. One-shot.
  void inject_failure_at(std::uint64_t n);
  // Make every allocation fail while `on` (an allocator "limited on purpose").
  void set_exhausted(bool on);
  // Number of allocation attempts so far, over every CPU (for sweeping inject_failure_at
  // over a scenario). Exact when no allocation is in flight.
  [[nodiscard]] std::uint64_t alloc_attempts() const;
  // Debug poisoning: a frame freed while poisoning is on is filled with kPoison (and
  // marked in its flags) and checked when it is handed out again: a write after free is
  // reported through env::panic. Set it while one CPU runs (tests: at start-up).
  void set_poison(bool on) { poison_.store(on, std::memory_order_relaxed); }
  static constexpr std::uint8_t kPoison = 0xa5;
  static constexpr std::uint32_t kMaxRefs = 0xffff0000u;
  static constexpr std::uint16_t kFlagPoisoned = 1;  // FrameDesc::flags of a Free frame

 private:
  struct Range {
    std::uint64_t first_pfn;
    std::uint64_t frames;
    FrameDesc* descs;  // descs[i] describes first_pfn + i
  };
  // One CPU's cache. `head` threads free frames through FrameDesc::link; only the owning
  // CPU touches head and writes count/attempts (relaxed load + store, never an RMW: the
  // fast path has no locked instruction); stats() and alloc_attempts() read them.
  // Invariant: count == length of the head list <= kCacheHigh, between operations.
  struct alignas(64) CpuCache {
    FrameDesc* head = nullptr;
    std::atomic<std::uint32_t> count{0};
    std::atomic<std::uint64_t> attempts{0};  // fast-path allocation attempts on this CPU
  };
  // One CPU's depot list: frames its cache gave back. Filled only by its own CPU; emptied
  // by its own CPU first and by any CPU that finds nothing nearer. head/count under lock.
  struct alignas(64) DepotList {
    SpinLock lock;
    FrameDesc* head = nullptr;
    std::uint64_t count = 0;
  };
  CpuCache& local_cache() { return caches_[env::cpu_id()]; }
  bool refill(CpuCache& c);
  void drain(CpuCache& c, std::uint32_t n);
  bool injected_failure();
  void release(FrameDesc* d);
  FrameDesc* hand_out(FrameDesc* d, FrameKind kind, AllocFlags flags);
  [[gnu::cold]] static void check_poison(const FrameDesc* d);

  Range ranges_[kMaxRanges]{};
  std::size_t nranges_ = 0;
  FrameDesc* descs_ = nullptr;
  FrameDesc* zero_ = nullptr;
  std::uint64_t total_ = 0;
  // Under lock_:
  FrameDesc* free_head_ = nullptr;  // the start-up list
  std::uint64_t free_ = 0;          // its length
  std::uint64_t allocs_ = 0;        // attempts counted while hooks_ was armed
  std::uint64_t fail_at_ = 0;       // fail when allocs_ reaches this (0: off)
  bool exhausted_ = false;
  // Written under lock_, read by the fast path: exhausted_ || fail_at_ != 0.
  std::atomic<bool> hooks_{false};
  std::atomic<bool> poison_{false};
  SpinLock lock_;
  CpuCache caches_[env::kMaxCpus]{};
  DepotList depots_[env::kMaxCpus]{};
};

// The one allocator every page, table and slab draws from.
FrameAllocator& frames();

// Gives every slab's per-CPU object cache on CPU `cpu` back to its slab, and the slab frames
// that leaves empty back to frames() (internal/slab.h; docs/smp.md "Slabs"). Call it on
// `cpu` itself (an idle or departing CPU, beside drain_local()), or while `cpu` runs no core
// code (a test whose threads have joined). An object in a CPU's slab cache keeps its slab
// frame in use, so a leak check that compares stats().in_use calls this first.
void drain_slab_caches(unsigned cpu);

}  // namespace capmem
