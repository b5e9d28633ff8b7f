// The recompiler's guest address space and its copy-on-write #PF handler (docs/rules.md section 4).
//
// One entry point, Run::handle_page_fault(), decides every outcome of a guest page
// fault. The bare-metal #PF vector and hostsim's simulated MMU both call it; the software
// "interpreter" access path (fault::interp_load / interp_store below, hostsim's
// EngineKind::Interpreter) calls it too, so the two engines materialize pages through the
// same routines and charge identical gas.
//
// Guest layout (rule 4.1): guest address == native virtual address, in PML4 slot 0.
//   [0, CODE_BASE)                    never mapped: null guard
//   [CODE_BASE, CODE_BASE + code size) code cap, read-only, materialized by 2 MiB cluster
//   [DATA_BASE, DATA_BASE + mem size)  `mem` cap: pinned ranges read-only (by cluster),
//                                     the rest copy-on-write (by page)
// Everything else is outside every region: a guest page fault.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "capmem/datacap.h"
#include "capmem/mapper.h"
#include "capmem/pt.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem::fault {

inline constexpr std::uint64_t CODE_BASE = 4ull << 20;    // rule 4.1
inline constexpr std::uint64_t DATA_BASE = 256ull << 20;  // rule 4.1
inline constexpr std::uint64_t GUEST_LIMIT = 1ull << 32;  // guest addresses are 32-bit
// Kernel-owned per-run pages (context, stack, JIT arena) live in PML4 slot 1, outside every
// guest address (rule 4.1); the kernel image maps a run's ring-3 code here (guest_run.h).
inline constexpr std::uint64_t JIT_BASE = 1ull << 39;      // rule 4.1: PML4 slot 1 (512 GiB)
inline constexpr std::uint64_t CLUSTER_SIZE = 2ull << 20;  // read-only fault-around (4.5)
inline constexpr std::uint64_t PAGES_PER_CLUSTER = CLUSTER_SIZE / PAGE_SIZE;

// The x86 page-fault error code handle_page_fault() takes is pt::ErrorCode (pt.h, Intel SDM
// Vol. 3A 4.7), defined once for the core, hostsim's MMU and the kernel.

// Gas (rule 4.5): one table of costs shared by both engines.
struct GasCosts {
  std::uint64_t page_in;  // a read fault in a CoW range, or one read-only 2 MiB cluster
  std::uint64_t cow;      // one private copy made by a write
};
inline constexpr GasCosts kGasCosts{.page_in = 20, .cow = 50};

// What the handler answers. Nothing else decides these outcomes.
enum class Outcome : std::uint8_t {
  Retry,        // the page is now mapped as needed: re-execute the access
  GuestFault,   // a property of the guest program: fault at `addr` (charged nothing)
  OutOfGas,     // the next charge does not fit: nothing was allocated or charged
  OutOfFrames,  // host side: no frame for a copy or a table; nothing changed, retryable
  Busy,         // the access did not start: Run::try_enter() refused (rule 3.9), nothing changed
  NeedPage,     // rule 8.2 (RunConfig::resolve_missing): the access met a Missing page; nothing
                // allocated, mapped or charged; Run::pending() names it. The host resolves it
                // (DataCap::resolve*) and re-executes the access, or calls Run::decline()
};
const char* outcome_name(Outcome o);

// Rule 8.2: what a NeedPage asks for: page `page` of the run's `region` cap
// (RunConfig::code / mem), Missing(hash), met at guest address `addr`.
struct PageRequest {
  Region region;
  std::uint32_t page;
  Hash32 hash;
  VirtAddr addr;
};

struct Answer {
  Outcome outcome;
  VirtAddr addr;  // the faulting address (CR2) for GuestFault/OutOfGas/OutOfFrames/NeedPage
};

// A read-only range of the `mem` cap, in pages relative to DATA_BASE.
struct PinnedRange {
  std::uint32_t first_page;
  std::uint32_t pages;
};

// Counters a person can follow (capmem demo prints them).
struct Counters {
  std::uint64_t page_in = 0;        // CoW-range pages mapped read-only (each charged)
  std::uint64_t clusters = 0;       // read-only 2 MiB clusters materialized (each charged)
  std::uint64_t cluster_pages = 0;  // pages mapped by those clusters (not charged)
  std::uint64_t cow = 0;            // private copies published into the overlay (each charged)
  std::uint64_t recopies = 0;       // private copies of pages whose CoW was already paid (rule 3.8)
  std::uint64_t repages = 0;        // page-ins of pages already paid for (rule 3.8, not charged)
  std::uint64_t spurious = 0;       // faults on pages already mapped as needed
  std::uint64_t guest_faults = 0;
  std::uint64_t out_of_frames = 0;
  std::uint64_t need_page = 0;  // NeedPage answers (rule 8.2; resolve_missing runs only)
};

struct RunConfig {
  pt::PageTable* table;                 // per-run table; PML4 slot 0 must start empty (rule 4.2)
  const DataCap* code;                  // read-only code image at CODE_BASE
  DataCap* mem;                         // the frame's memory at DATA_BASE; writes land in its overlay
  std::span<const PinnedRange> pinned;  // sorted, disjoint, inside mem
  std::uint64_t gas;
  GasCosts costs = kGasCosts;
  // Rule 8.1/8.2: an access to a Missing page answers Outcome::NeedPage (gas checked first,
  // 8.3) instead of a guest fault. Off: section 4 exactly as before.
  bool resolve_missing = false;

  // What Run's constructor enforces (it traps with a message naming the rule and region):
  // InvalidArgument for a null table or cap; EmptyCap (rule 3.10) if `code` or `mem` holds
  // nothing; RegionTooLarge (rule 4.1) if the code region [CODE_BASE, CODE_BASE + code
  // size) would reach DATA_BASE (code cap over 252 MiB) or the data region [DATA_BASE,
  // DATA_BASE + mem size) would pass 4 GiB (mem cap over 3840 MiB). Nothing is clipped.
  // `code` and `mem` may be one cap: it is then on that cap's mapper list twice (mapper.h).
  [[nodiscard]] Result<void> check() const;
};

// The per-run context published before entering ring 3. It owns no page and no table:
// the page table owns its tables, mappings hold references to the frames they map
// (pt holds_ref), and the overlay owns published pages. It owns the frames of its "paid"
// bitmap (below), allocated only by checkpoints, never by the fault path.
//
// Checkpoints (rules 3.8, 3.9). A Run registers with its `code` and its `mem` cap for its
// whole life: one MapperNode per region (mapper.h) on each cap's list, attached by the
// constructor, detached by the destructor; the caps must outlive the run and must not be
// moved from or assigned to while it maps them (each traps with the rule 3.9 message).
// Everything below holds for the code cap as for the mem cap: a code checkpoint is Busy
// while the run executes, and a paused run's code leaves follow the code cap's new pages.
// A run is *executing* between enter() and leave() (or for the life of an Executing
// guard): the engines (hostsim's GuestCpu around each guest access, the interpreter, the
// kernel around run_user) mark it; otherwise it is *paused*. DataCap::flush, copy,
// write_page, write_slot, put_page and place_shared on a cap that an executing run maps
// return Status::Busy and change nothing. On a cap that only paused runs map they are
// checkpoints: before the call settles the overlay, DataCap asks each run to
// write-protect its writable leaves of that cap (protect_page: pt protect, which
// invalidates the TLB entry through env::tlb_invalidate_page); after a write_page /
// place_shared it asks each run to re-point the leaves of the pages it changed at their
// new effective frames (refresh_page). The next guest store to such a page faults and
// copies again from the cap, so every store lands in the cap and none leaks into a copy.
//
// Across CPUs (rule 3.8 + section 7; docs/smp.md "Checkpoints across CPUs"). The run's
// state is one atomic word, state_: its low bits count enter() depth (executing while
// non-zero), its high bits count checkpoint holds (kHold each). The protocol:
//   - enter() moves the word from "no hold" to depth + 1 with one CAS (acquire). While a
//     checkpoint holds the run it WAITS (spins with `pause`) until the hold is released:
//     a checkpoint is short and never waits for the run, so the wait is bounded; the
//     caller (an engine, enter_guest) sees no new failure. Because the checkpoint may be
//     waiting for this CPU's answer to a TLB shootdown (rule 7.2), enter() must not be
//     called with interrupts off on a CPU that answers shootdowns by interrupt (open in
//     the kernel image, whose run_on work enters runs with interrupts off: docs/smp.md).
//   - leave() drops the depth with one release RMW: the run's stores and faults so far
//     happen-before whatever a checkpoint that claims the run next does.
//   - a checkpoint (DataCap's RunsHold) claims every attached run with a CAS from depth 0
//     to +kHold (acquire). If any run is executing it releases the claims it took and
//     returns Busy: nothing changed. Holds of several checkpoints may stack (place_shared
//     reads another cap's runs); enter() waits for all of them. The hold is released
//     (release RMW) once the call has protected / refreshed the runs' leaves, so the
//     run's next store faults on the new leaves and lands in the cap.
// A run's table, paid bitmap and counters are touched only by the executing CPU or by a
// checkpoint holding the run, never both at once; the paid and stale bitmaps of a paused
// run also by the fault path of the run that has the turn of the cap (rule 3.9, below).
//
// Several runs over one cap (rule 3.9; docs/fault-path.md "Several runs over one cap").
// They take turns: the outermost try_enter() takes the turn of the run's `mem` cap
// exclusively and that of its `code` cap shared (a code cap is only read by the runs that
// map it as code, so those run at once; one that maps it as `mem` excludes them all).
// A turn that another run holds is REFUSED with Status::Busy (nothing changed), never
// waited for: a turn lasts a guest quantum, and on one CPU a wait would never end. enter()
// is try_enter() that traps on refusal, for callers that know their runs take turns. A
// publish (the CoW fault's overlay insert) on a cap tells every other mapper of it
// (MapperOps::published): each is paused, it records its own paid bits for the page (its
// later re-copy is free) and marks the page stale; its next outermost entry, before any
// guest code, unmaps every stale leaf with the shootdown of rule 7.2 (every CPU that may
// hold its table: the CPUs it has left) and maps the cap's current page read-only. So
// every store lands in the cap, a run reads its own stores at once and another run's no
// later than its next entry, and each run pays one CoW per page it writes.
// Gas: a run pays one page-in and one CoW per page at most (rule 4.5 + 3.8 + 3.9): the
// "paid" bitmap (2 bits per mem page, in frames allocated by prepare: at a checkpoint, or
// in another run's fault path before it publishes, never in the run's own fault) records
// the pages whose page-in / CoW a checkpoint or another run's publish took away, and the
// handler charges nothing for them again, so gas depends neither on when the host took
// checkpoints nor on how the runs over a cap took turns.
//
// Invariants (between faults):
//   - every present leaf in slot 0 maps the current effective page of a region (the
//     shared zero frame for Empty), read-only unless it is a private copy that is also
//     the mem cap's overlay entry for that page; except, while the run is paused, a leaf
//     of a page marked in its stale bitmap (another run published over it, rule 3.9): it
//     maps the page the run saw, read-only, until the next outermost entry re-points it;
//   - a read-only cluster is charged in `charged_` iff its first fault mapped every
//     non-Missing page of every read-only range inside it (rule 4.5); a checkpoint keeps
//     them mapped (refresh_page re-points them, unmaps only pages that became Missing);
//   - a CoW-range page with a present leaf has paid its page-in (or CoW), and a writable
//     leaf its CoW, either as a charge or through the paid bitmap;
//   - gas_left() only decreases, and only by costs.page_in / costs.cow after success.
class Run {
 public:
  explicit Run(const RunConfig& cfg);
  ~Run();
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  // --- Rules 3.8, 3.9: executing or paused -------------------------------------------
  // try_enter() before guest code may run (ring 3 entry, an engine's access), leave()
  // after. They nest (an engine inside a caller's guard): the run is executing until the
  // outermost leave(). leave() without enter() traps. The outermost try_enter() takes the
  // turns of the run's caps (Busy, nothing changed, while another run over one of them
  // executes: rule 3.9) and then brings stale leaves up to date (published pages of other
  // runs: TLB shootdown, so call it with interrupts on where shootdowns are answered by
  // interrupt); it waits while a checkpoint holds the run (see "Across CPUs" above). One
  // CPU enters a run at a time (rule 7.1). enter() is try_enter() or a trap.
  [[nodiscard]] Status try_enter();
  void enter();
  void leave();
  [[nodiscard]] bool executing() const { return (state_.load(std::memory_order_acquire) & kDepthMask) != 0; }
  class Executing {
   public:
    explicit Executing(Run& r) : run_(r) { run_.enter(); }
    ~Executing() { run_.leave(); }
    Executing(const Executing&) = delete;
    Executing& operator=(const Executing&) = delete;

   private:
    Run& run_;
  };
  // try_enter() for a scope: ok() says whether the run entered (Busy otherwise, rule 3.9);
  // the destructor leaves only if it did.
  class Entered {
   public:
    explicit Entered(Run& r) : run_(r), ok_(r.try_enter() == Status::Ok) {}
    ~Entered() {
      if (ok_) run_.leave();
    }
    Entered(const Entered&) = delete;
    Entered& operator=(const Entered&) = delete;
    [[nodiscard]] bool ok() const { return ok_; }

   private:
    Run& run_;
    bool ok_;
  };

  // THE entry point: the #PF vector and hostsim's MMU call this with CR2 and the x86
  // error code. Runs with interrupts off, allocates only frames, never hashes, and never
  // fails half-way (rule 4.4/4.6).
  Answer handle_page_fault(VirtAddr cr2, std::uint32_t error_code);

  // Rule 8.2: the request of the last NeedPage answer, until the run's next fault or
  // decline(); nullptr when there is none.
  [[nodiscard]] const PageRequest* pending() const;
  // Rule 8.2: the host will not supply the pending page: the request becomes the guest page
  // fault of rule 4.3 (counted in guest_faults) and that Answer is returned. Traps with no
  // pending request.
  Answer decline();

  [[nodiscard]] std::uint64_t gas_left() const { return gas_; }
  [[nodiscard]] std::uint64_t gas_used() const { return gas_start_ - gas_; }
  [[nodiscard]] const Counters& counters() const { return counters_; }
  [[nodiscard]] pt::PageTable& table() const { return *cfg_.table; }
  [[nodiscard]] const RunConfig& config() const { return cfg_; }

 private:
  // --- The mapper operations (mapper.h), called by DataCap through mapper_ops() -------
  static const MapperOps& mapper_ops();
  static Run& of(MapperNode& n) { return *static_cast<Run*>(n.owner); }
  // Prepare: make sure the paid bitmap (mem) and the stale bitmap of `region` can record
  // `page` (allocates at most one frame each; OutOfFrames changes nothing visible). A page
  // this run does not map needs nothing.
  Status prepare(Region region, std::uint32_t page);
  Status reserve_paid(std::uint32_t page);
  // Write-protect the run's leaf of mem `page` if it is writable (records its CoW as
  // paid; prepare must have succeeded). Code leaves are never writable. Cannot fail.
  void protect_page(Region region, std::uint32_t page);
  // After the cap's effective page changed under a checkpoint: re-point the run's leaf (if
  // any) at the new effective frame, read-only, or unmap it if the page is Missing now
  // (records what was paid; prepare must have succeeded). Cannot fail.
  void refresh_page(Region region, std::uint32_t page);
  // Rule 3.9: another run published `page` of this run's cap (this run paused, the caller
  // inside a fault: no shootdown). Records the paid bits and marks the page stale.
  void published(Region region, std::uint32_t page);
  // At the outermost entry: every stale leaf unmapped (shootdown) and re-mapped read-only
  // at the cap's current page (unmapped if Missing).
  void settle_stale();
  [[nodiscard]] bool own_publish(Region region) const;
  [[nodiscard]] const DataCap& cap_of(Region region) const { return region == Region::Code ? *cfg_.code : *cfg_.mem; }
  [[nodiscard]] static std::uint64_t region_base(Region region) {
    return region == Region::Code ? CODE_BASE : DATA_BASE;
  }
  [[nodiscard]] bool shares_code_turn() const { return cfg_.code != cfg_.mem; }
  enum class Kind : std::uint8_t { None, Code, Pinned, Cow };
  struct Where {
    Kind kind;
    const DataCap* cap;
    std::uint32_t page;    // page index inside `cap`
    std::uint64_t lo, hi;  // the region's VA bounds [lo, hi) (for cluster clipping)
  };
  Where classify(VirtAddr va) const;
  Answer fault(VirtAddr va) {
    ++counters_.guest_faults;
    return {Outcome::GuestFault, va};
  }
  // Rule 8.2: the access at `va` met the Missing page `w.page` of `w.cap`: records the
  // request and answers NeedPage (nothing allocated, mapped or charged; the caller checked
  // gas first, 8.3). Reads the slot's hash; never hashes (8.5).
  Answer need_page(const Where& w, VirtAddr va);
  // Rule 8.3: is a Missing page (no source frame) a NeedPage after the gas check rather
  // than the guest page fault of 4.3?
  [[nodiscard]] bool resolving() const { return cfg_.resolve_missing; }
  Answer map_cluster(const Where& w, VirtAddr va);
  Answer page_in(const Where& w, VirtAddr va);
  Answer copy_on_write(const Where& w, VirtAddr va);
  bool cluster_charged(std::uint64_t cluster) const { return (charged_[cluster / 64] >> (cluster % 64)) & 1; }
  std::uint64_t map_readonly_range(const Where& w, std::uint64_t lo, std::uint64_t hi, VirtAddr skip);

  // Paid bitmap: 2 bits per mem page (kPaidRead: its page-in is paid, kPaidWrite: its CoW
  // is paid), in 4 KiB frames of kPaidPagesPerChunk pages, allocated on demand by
  // reserve_paid. A null chunk: nothing paid in it.
  static constexpr unsigned kPaidRead = 1, kPaidWrite = 2;
  static constexpr std::uint32_t kPaidPagesPerChunk = PAGE_SIZE * 8 / 2;
  [[nodiscard]] unsigned paid(std::uint32_t page) const;
  void set_paid(std::uint32_t page, unsigned bits);
  [[nodiscard]] VirtAddr mem_va(std::uint32_t page) const {
    return VirtAddr{DATA_BASE + std::uint64_t{page} * PAGE_SIZE};
  }
  [[nodiscard]] bool pinned_page(std::uint32_t page) const;

  RunConfig cfg_;
  std::uint64_t gas_;
  std::uint64_t gas_start_;
  Counters counters_{};
  // Rule 3.8 across CPUs: enter() depth in the low bits, checkpoint holds (kHold each)
  // above them. See "Across CPUs" above for who changes it and how.
  static constexpr std::uint32_t kDepthMask = 0xFFFF;
  static constexpr std::uint32_t kHold = 0x10000;
  std::atomic<std::uint32_t> state_{0};
  // DataCap's checkpoint claim: CAS depth 0 -> +kHold; false (nothing changed) while the
  // run is executing. release_hold() undoes one successful try_hold().
  bool try_hold();
  void release_hold();
  [[nodiscard]] bool paused() const { return (state_.load(std::memory_order_relaxed) & kDepthMask) == 0; }
  [[nodiscard]] bool held() const {
    const std::uint32_t s = state_.load(std::memory_order_relaxed);
    return s >= kHold && (s & kDepthMask) == 0;
  }
  // One bit per 2 MiB cluster of the 4 GiB guest space: read-only clusters already charged.
  std::uint64_t charged_[GUEST_LIMIT / CLUSTER_SIZE / 64]{};
  FrameDesc* paid_[tree::kMaxPages / kPaidPagesPerChunk]{};
  // Rule 3.9: pages of each region (index: Region) that another run published since this
  // run's last entry, one bit per page in 4 KiB frames of kStalePagesPerChunk pages
  // (allocated by prepare, in the publisher's fault path); stale_any_ says a region has
  // one. Written only while this run is paused by the run that has the turn of that
  // region's cap; read and cleared by this run's outermost try_enter().
  static constexpr std::uint32_t kStalePagesPerChunk = PAGE_SIZE * 8;
  FrameDesc* stale_[2][tree::kMaxPages / kStalePagesPerChunk]{};
  bool stale_any_[2]{};
  // Rule 8.2: the request of the last NeedPage answer while has_pending_ (cleared by the
  // next handle_page_fault or by decline()).
  PageRequest pending_{};
  bool has_pending_ = false;
  // This run's entries on its caps' mapper lists (mapper.h), one per region.
  MapperNode code_node_;
  MapperNode mem_node_;
};

// Guest accesses through software checks (the "interpreter" engine): every access is
// checked against the run's page table exactly as the MMU would check it (present,
// writable, user), and a failing check calls Run::handle_page_fault with the same CR2
// and error code the CPU would produce. An access that straddles two pages checks both
// before touching either (x86 restarts the whole instruction).
struct AccessResult {
  Outcome outcome;      // Retry means the access completed
  VirtAddr addr;        // for a stopped access: where
  std::uint64_t value;  // loaded value (little-endian)
};
AccessResult interp_load(Run& run, std::uint32_t addr, unsigned width);
AccessResult interp_store(Run& run, std::uint32_t addr, unsigned width, std::uint64_t value);

}  // namespace capmem::fault
