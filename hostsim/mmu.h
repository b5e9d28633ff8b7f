// Simulated MMU and TLB for hosted builds (see docs/architecture.md, "hostsim").
//
// The Mmu walks the SAME page tables the core built (pt::PageTable), in simulated physical
// memory (env::phys_to_virt), from a simulated CR3, with the architectural semantics of
// x86-64 4-level paging under CR0.WP = 1, EFER.NXE = 1, CR4.PGE = 1, CR4.PCIDE = 0,
// SMEP = SMAP = 0 (Intel SDM Vol. 3A 4.5 walk, 4.6 access rights, 4.7 page-fault error
// code, 4.8 accessed/dirty, 4.10 TLB).
//
// The TLB caches final translations (page number -> frame + combined rights) and never
// evicts on its own: the worst case for code that forgets an invalidation. An entry goes
// away only through invlpg of its page, a CR3 load (non-global entries), flush_all(), or a
// page fault on that page (SDM 4.10.4.1: a #PF invalidates the faulting address's entries).
//
// Used by the fault-path tests: PageTable::map_leaf / translate + Mmu::load/store with a
// fault entry callback + counters().
//
// Many CPUs (hostsim/cpus.h): an Mmu is made current on the simulated CPU of the calling
// host thread; each simulated CPU has at most one current Mmu (its MMU, TLB and CR3).
// env::tlb_shootdown reaches the TLB of every simulated CPU from any host thread, so the
// TLB (and CR3) is guarded by a mutex; everything else of an Mmu (counters, the fault
// entry) belongs to the host thread that runs accesses through it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "capmem/types.h"

namespace capmem::hostsim {

// invlpg on the Mmu current on the calling thread's simulated CPU (no-op when none is):
// env::tlb_invalidate_page.
void current_mmu_invlpg(VirtAddr va);
// env::tlb_shootdown: Mmu::shootdown on the current Mmu of every started simulated CPU;
// returns the entries dropped.
std::uint64_t shootdown_all_cpus(PhysAddr root, VirtAddr va, std::uint64_t pages);

enum class AccessKind : std::uint8_t { Read, Write, Fetch };
enum class Privilege : std::uint8_t { Supervisor, User };

struct PageFault {
  VirtAddr cr2;              // the linear address that faulted (not rounded to the page)
  std::uint32_t error_code;  // pt::ErrorCode bits (Intel SDM Vol. 3A 4.7)
};

// One translation: ok with pa, or the page fault the CPU would raise.
struct MmuResult {
  bool ok;
  PhysAddr pa;      // valid if ok (frame + page offset)
  PageFault fault;  // valid if !ok
};

struct TlbCounters {
  std::uint64_t hits = 0;                 // translations served from the TLB
  std::uint64_t misses = 0;               // translations that walked the tables
  std::uint64_t invalidations = 0;        // invlpg executed (whether or not the page was cached)
  std::uint64_t flushes = 0;              // CR3 loads and flush_all()
  std::uint64_t fault_invalidations = 0;  // entries dropped because their page faulted (SDM 4.10.4.1)
  std::uint64_t dirty_assists = 0;        // writes through a cached entry with D = 0 (re-walk)
  std::uint64_t page_faults = 0;          // page faults raised (each delivered or returned)
};

// The kernel's #PF entry as seen by a guest access: true = the handler fixed something,
// re-execute the whole access (as the CPU re-executes the instruction); false = the access
// ends with a guest page fault the caller sees.
using FaultEntry = bool (*)(void* ctx, VirtAddr cr2, std::uint32_t error_code);

enum class AccessStatus : std::uint8_t {
  Ok,         // the access completed (value holds a loaded value)
  Fault,      // a page fault the handler declined (or no handler): cr2 + error_code
  FaultLoop,  // the same fault (cr2, error code) kMaxSameFault times in a row: the handler
              // keeps answering "retry" without making progress
};

struct GuestAccess {
  AccessStatus status;
  std::uint64_t value;       // loaded value, little-endian (Ok loads/fetches)
  VirtAddr cr2;              // Fault / FaultLoop
  std::uint32_t error_code;  // Fault / FaultLoop
};

class Mmu {
 public:
  // Guest addresses are 32-bit (rule 4.1): any byte of a guest access at or past 2^32 is a
  // not-present page fault at the first such byte (CR2 = 2^32), without a walk.
  static constexpr std::uint64_t kGuestLimit = std::uint64_t{1} << 32;
  static constexpr unsigned kMaxSameFault = 4;

  Mmu() = default;
  ~Mmu();
  Mmu(const Mmu&) = delete;
  Mmu& operator=(const Mmu&) = delete;

  // env::tlb_invalidate_page (invlpg from the core) reaches the Mmu current on the
  // calling thread's simulated CPU; env::tlb_shootdown reaches the current Mmu of every CPU.
  void make_current();
  static Mmu* current();
  static void clear_current();

  // mov cr3: new root (bits 51:12); flushes every non-global TLB entry (SDM 4.10.4.1).
  void load_cr3(PhysAddr pml4);
  [[nodiscard]] PhysAddr cr3() const {
    const std::lock_guard<std::mutex> g(tlb_lock_);
    return cr3_;
  }
  // invlpg: drops the page's entry, global or not (SDM 4.10.4.1).
  void invlpg(VirtAddr va);
  // Drops every entry including global ones (like toggling CR4.PGE).
  void flush_all();
  // The receiving end of a TLB shootdown (any host thread): drops the cached entries of
  // [va, va + pages * 4 KiB) if `root` is PhysAddr{} or this Mmu's CR3, and the global
  // ones in the range whatever the root. Returns the number dropped (also added to
  // shootdown_dropped()).
  // counters(): a target CPU counts `pages` invalidations, or one flush for more than
  // kShootdownFlushPages (the kernel reloads CR3 there). counters() is read by the thread
  // bound to this Mmu's CPU while no other CPU shoots down.
  static constexpr std::uint64_t kShootdownFlushPages = 64;
  std::uint64_t shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages);
  [[nodiscard]] std::uint64_t shootdown_dropped() const { return shootdown_dropped_.load(std::memory_order_relaxed); }

  // Translate one linear address for one access, through the TLB, setting A/D like the
  // CPU. A fault here only reports (and drops the TLB entry); it calls no handler.
  MmuResult translate(VirtAddr va, AccessKind kind, Privilege priv);

  // Ring-3 guest accesses of width 1, 2, 4 or 8 at guest address `va` (may straddle two
  // pages; may run past 2^32). Every page of the access is translated and checked before
  // any byte moves; on a fault the entry callback runs and the whole access restarts.
  void set_fault_entry(FaultEntry fn, void* ctx) {
    entry_ = fn;
    entry_ctx_ = ctx;
  }
  GuestAccess load(std::uint32_t va, unsigned width);
  GuestAccess store(std::uint32_t va, unsigned width, std::uint64_t value);
  GuestAccess fetch(std::uint32_t va, unsigned width);  // instruction fetch (I/D checks)

  [[nodiscard]] const TlbCounters& counters() const { return counters_; }
  void reset_counters() { counters_ = TlbCounters{}; }
  [[nodiscard]] std::size_t tlb_entries() const {
    const std::lock_guard<std::mutex> g(tlb_lock_);
    return tlb_.size();
  }
  [[nodiscard]] bool tlb_cached(VirtAddr va) const {
    const std::lock_guard<std::mutex> g(tlb_lock_);
    return tlb_.count(va.value() >> 12) != 0;
  }

 private:
  struct TlbEntry {
    std::uint64_t pfn;  // frame of this 4 KiB page (large pages are cached per 4 KiB piece)
    bool writable;      // AND of R/W over the walk
    bool user;          // AND of U/S
    bool no_execute;    // OR of XD
    bool dirty;         // D was set when cached (or set since through this entry)
    bool global;        // leaf G
  };
  MmuResult translate_locked(VirtAddr va, AccessKind kind, Privilege priv);
  MmuResult walk(VirtAddr va, AccessKind kind, Privilege priv);
  static std::uint32_t violation(bool writable, bool user, bool no_execute, AccessKind kind, Privilege priv);
  MmuResult fault(VirtAddr va, std::uint32_t error_code);
  GuestAccess access(std::uint32_t va, unsigned width, AccessKind kind, std::uint64_t value);

  mutable std::mutex tlb_lock_;  // guards cr3_ and tlb_ (shootdowns come from other threads)
  PhysAddr cr3_{};
  std::unordered_map<std::uint64_t, TlbEntry> tlb_;  // key: linear page number
  std::atomic<std::uint64_t> shootdown_dropped_{0};
  TlbCounters counters_{};
  FaultEntry entry_ = nullptr;
  void* entry_ctx_ = nullptr;
};

}  // namespace capmem::hostsim
