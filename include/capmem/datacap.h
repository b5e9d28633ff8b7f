// DataCap (section 3): an immutable, shared, canonical backing (a persistent merkle tree
// of page slots, internal/tree.h) plus a copy-on-write overlay owned by the cap
// (internal/overlay.h).
//
// Value semantics: a DataCap owns one reference to its Backing and owns its Overlay.
// It is move-only; copy() is the explicit, fallible O(1)-backing copy (rule 3.1).
// Invariants:
//   - backing_ != nullptr for every cap made by a factory. A default-constructed or
//     moved-from cap is *empty* (rule 3.10): it may be destroyed or assigned to; every
//     call returning a Result answers Status::EmptyCap, every other call traps;
//   - every Loaded slot in the backing holds a hashed page whose bytes are not all zero,
//     and slots at or past backing_->extent are Empty (rule 3.2);
//   - overlay entries are at pages < page_count(); an overlay entry shadows the backing
//     when it is Loaded or Missing (rule 3.3); an explicit Empty entry is inert (it neither
//     shadows nor changes anything at flush, rule 3.5) but counts as an entry, so the cap
//     has no root until a flush drops it.
//   - mappers_ lists the nodes of the mappers (fault::Runs) that map this cap, one per
//     region (mapper.h; rules 3.8 and 3.9); a cap with mappers attached is neither moved
//     from, assigned to nor destroyed (each traps with the rule 3.9 message);
//   - turn_ is 0 (no mapper executes), the owner of the one mapper that executes over
//     this cap exclusively, or 2 * readers + 1 for mappers that share it (rule 3.9:
//     take_turn / give_turn).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "capmem/codec.h"
#include "capmem/internal/overlay.h"
#include "capmem/internal/tree.h"
#include "capmem/mapper.h"
#include "capmem/page.h"
#include "capmem/slot.h"
#include "capmem/status.h"

namespace capmem {

inline constexpr std::uint64_t kMaxCapSize = std::uint64_t{tree::kMaxPages} * PAGE_SIZE;  // 4 GiB

// Progress of a long build (from_bytes, decode): `report(ctx, done)` is called with the
// input bytes consumed so far, about every kProgressStep bytes and once at the end, on the
// caller's thread, never from the fault path. `cancel(ctx)`, when set, is asked at each of
// those points but the last, before `report`: true stops the build, which returns
// Status::Cancelled (decode: DecodeError names it with the input offset reached) after
// releasing everything it took (frames, tree nodes, backing). A caller that does not cancel
// leaves `cancel` null: BuildProgress{.report = ..., .ctx = ...} is unchanged.
struct BuildProgress {
  static constexpr std::uint64_t kProgressStep = 1ull << 20;
  void (*report)(void* ctx, std::uint64_t done) = nullptr;
  void* ctx = nullptr;
  bool (*cancel)(void* ctx) = nullptr;
  void operator()(std::uint64_t done) const {
    if (report != nullptr) report(ctx, done);
  }
  [[nodiscard]] bool cancelled() const { return cancel != nullptr && cancel(ctx); }
};

class DataCap {
 public:
  DataCap() = default;
  DataCap(DataCap&& o) noexcept;
  DataCap& operator=(DataCap&& o) noexcept;
  DataCap(const DataCap&) = delete;
  DataCap& operator=(const DataCap&) = delete;
  ~DataCap();

  // --- Construction ------------------------------------------------------------------
  // All Empty. size: a non-zero multiple of 4096 (InvalidArgument: rule 3.10, every cap
  // has at least one page) and <= 4 GiB (TooLarge).
  static Result<DataCap> create(std::uint64_t size);
  // Rule 3.6: size = max(target, len) rounded up to a page, at least one page; all-zero
  // pages are Empty. Pages are hashed in batches; the tree is built bottom up. `progress`
  // hears the bytes of `content` done so far and may cancel (Cancelled).
  static Result<DataCap> from_bytes(const std::uint8_t* content, std::size_t len, std::uint64_t target = 0,
                                    BuildProgress progress = {});
  // Rule 3.1: shares the backing (O(1)); the overlay entries are copied (the only part
  // that can fail, OutOfFrames, and only if the overlay is non-empty). A checkpoint (3.8):
  // Busy while a run that maps this cap executes; the paused runs' writable leaves are
  // write-protected first, so the copy never sees a later guest store.
  [[nodiscard]] Result<DataCap> copy() const;

  // --- Reads (rule 3.7) ----------------------------------------------------------------
  // False for an empty cap (default-constructed or moved from, rule 3.10); the accessors
  // below that return no status trap on an empty cap.
  [[nodiscard]] bool holds() const { return backing_ != nullptr; }
  [[nodiscard]] std::uint64_t size() const { return live("size()")->size; }
  [[nodiscard]] std::uint32_t page_count() const {
    return static_cast<std::uint32_t>(live("page_count()")->size / PAGE_SIZE);
  }
  // Length of the backing's trimmed slot array (rule 3.2).
  [[nodiscard]] std::uint32_t extent() const { return live("extent()")->extent; }
  // The fault path's lookup: effective slot of `page` without touching a refcount. A page
  // at or past page_count() reads Empty here (callers bound-check against size()).
  [[nodiscard]] SlotView effective(std::uint32_t page) const;
  // Effective slot of `page` as a counted value; OutOfExtent past page_count().
  [[nodiscard]] Result<Slot> slot(std::uint32_t page) const;
  // The page holding byte `offset`: Empty / Loaded (frame) / Missing; OutOfExtent past size.
  [[nodiscard]] Result<SlotView> page_at(std::uint64_t offset) const;
  // Copies the effective bytes [offset, offset + len) to out: zeros for Empty,
  // MissingPage if any page in the range is Missing, OutOfExtent if the range passes
  // size(). On failure nothing is written.
  Result<void> read(std::uint64_t offset, std::uint8_t* out, std::size_t len) const;

  // --- Mappers: checkpoints (rule 3.8) and turns (rule 3.9); mapper.h ------------------
  // copy, write_page, write_slot, put_page, place_shared, flush and the resolve calls are
  // checkpoints for the mappers of this cap (whatever region they map it as): Busy (nothing
  // changed) while one of them is executing; with all of them paused, every store they made
  // before the call is in the result and every store after they resume lands in the cap (fault.h
  // "Checkpoints"). A run attaches one node per region in its constructor and detaches
  // them in its destructor. The list and the turn are registration, not content: they
  // change on a const cap (a run's code cap is const to it).
  void attach_mapper(MapperNode* n) const;
  void detach_mapper(MapperNode* n) const;
  [[nodiscard]] bool mapped_by_run() const { return mappers_ != nullptr; }
  // Rule 3.9: mappers take turns. A run takes its mem cap's turn exclusively (no other
  // mapper of the cap executes meanwhile) and its code cap's shared (runs that only read
  // the cap run at once; an exclusive holder excludes them). take_turn is false, nothing
  // changed, when the turn is not free for that kind (acquire on success); give_turn ends
  // it (release). Called by a run's try_enter() / leave(), never by the fault path.
  [[nodiscard]] bool take_turn(const void* owner, bool exclusive) const;
  void give_turn(const void* owner, bool exclusive) const;

  // --- Overlay writes ------------------------------------------------------------------
  // Loaded(page) into the overlay (hashed or unhashed page; all-zero sticks, rule 3.3).
  Result<void> write_page(std::uint32_t page, PageRef p);
  // Any slot into the overlay (Missing makes the next flush fail; Empty is inert).
  Result<void> write_slot(std::uint32_t page, Slot s);
  // Fault path (rule 4.4): prepare (may fail, overlay untouched) and publish (cannot fail;
  // no flush may happen in between). OutOfExtent past page_count(). `by` is the node of
  // the mapper whose fault publishes (it has the turn, rule 3.9): reserve_overlay also
  // prepares every other mapper for the page (MapperOps::prepare; OutOfFrames changes
  // nothing), and publish tells them (MapperOps::published).
  Result<OverlayReservation> reserve_overlay(std::uint32_t page, const MapperNode* by = nullptr);
  void publish(OverlayReservation&& r, PageRef p, const MapperNode* by = nullptr);
  [[nodiscard]] std::uint32_t overlay_count() const { return (void)live("overlay_count()"), overlay_.count(); }

  // --- Backing writes (each makes a new backing; the old one, maybe shared, is kept) ----
  // Puts one page into the backing while constructing a cap (rule 3.7). An unhashed page
  // is hashed in place if nobody else references it, InvalidArgument otherwise; an
  // all-zero page becomes Empty. Costs 20 node hashes (use from_bytes / decode in bulk).
  Result<void> put_page(std::uint32_t page, PageRef p);
  // Places every effective page of `b` at page-aligned byte offset `offset` of this cap's
  // backing, by reference (pages past this cap's size are dropped). b's unhashed overlay
  // pages are copied and hashed (b keeps its own); all-zero pages become Empty.
  // Misaligned / OutOfExtent (offset > size) / OutOfFrames; on failure nothing changes.
  Result<void> place_shared(const DataCap& b, std::uint64_t offset);
  // --- Resolving Missing pages (rule 8.4; docs/rules.md section 8) -------------------
  // A checkpoint-class call (rule 3.8): Busy while a run that maps the cap executes (checked
  // first, before any byte is read; the hold lasts through the copy and the hash, a few
  // microseconds, during which a run of the cap that enters on another CPU waits). Page
  // `page` must be < page_count() (OutOfExtent) and its effective slot (overlay entry or
  // backing, rule 3.3) Missing(h) (NotMissing otherwise: a late or duplicate answer), h
  // neither zero(32) nor the all-zero page's root (UnresolvableMissing). The source must hold exactly 4096 bytes
  // (BadLength); they are read once (5.3, one copy_in of [0, 4096)) into a fresh aligned frame and hashed there;
  // HashMismatch unless that hash is h. On success the slot becomes Loaded where the
  // Missing slot was, keeping the root and rehashing no node (2.3): a backing slot in place
  // when this cap alone holds the backing and the tree path to it (no allocation), else by
  // a path copy into a new backing that takes size, extent and root from the old one (other
  // caps sharing the old nodes keep their Missing slot); an overlay entry in place. Paused
  // runs' leaves of the page are refreshed (prepared first). Every failure (OutOfFrames
  // included) leaves the cap, its root, the frame and slab counts exactly as before. Never
  // called from the fault path (8.5). Cost: one 4 KiB copy and one page hash, plus (path
  // copy) 4 tree nodes and a backing from their slabs.
  Result<void> resolve(std::uint32_t page, const ByteSource& src);
  // The same from memory: ByteSource::memory(bytes, len) (len != 4096 is BadLength).
  Result<void> resolve(std::uint32_t page, const std::uint8_t* bytes, std::size_t len);
  // The same with a page shared by reference, no copy and no SHA-256: `p` must be a hashed
  // page (UnhashedPage for an unhashed copy, rule 1.3) whose hash is h (HashMismatch). The
  // slot takes its own reference; the caller keeps `p` (a host cache verifies each distinct
  // page once and hands it to any number of caps).
  Result<void> resolve_page(std::uint32_t page, PageRef p);
  // A prefetch batch in one transaction (in place, or one new backing with shared path
  // nodes copied once; byte items hashed 16 at a time through the multi-buffer page hash):
  // all or nothing.
  // Each item names its page and either `ref` (non-null: a hashed page, as resolve_page) or
  // `src` (bytes, as resolve). On failure nothing changed, the status is the first failing
  // item's (in item order) and *failed (if non-null) is that item's index (0 for EmptyCap
  // and Busy, which concern the whole batch). A page named twice is InvalidArgument at the
  // second item. n == 0 is Ok and changes nothing.
  struct ResolveItem {
    std::uint32_t page = 0;
    ByteSource src{};
    FrameDesc* ref = nullptr;  // borrowed: the caller keeps its reference (a Page frame, else InvalidArgument)
  };
  Result<void> resolve_many(const ResolveItem* items, std::size_t n, std::size_t* failed = nullptr);
  // Missing pages of the effective slots (thin caps, rule 8.1): how many. O(tree nodes of
  // the backing + overlay entries); a read like slot() (not for the fault path).
  [[nodiscard]] std::uint32_t missing_count() const;

  // Rule 3.5. k dirty pages: k page hashes + O(k log n) node hashes. MissingInOverlay or
  // OutOfFrames leave the cap unchanged (except that an unshared unhashed overlay page may
  // have received its true hash, which changes no content and no root). An empty overlay
  // makes no new backing.
  Result<void> flush();

  // Rule 3.4, O(1): OverlayNotEmpty while the overlay has entries.
  [[nodiscard]] Result<Hash32> root() const;

  // --- Wire format (section 5) ------------------------------------------------------------
  // Flushed caps only (OverlayNotEmpty). MissingPage if the backing holds a Missing slot
  // (5.2 forbids them on the wire); TooLarge if an offset would not fit in 32 bits.
  [[nodiscard]] Result<std::uint64_t> encoded_size() const;
  // Streams the encoding to `sink` in chunks (no buffer of the whole encoding).
  Result<void> encode(ByteSink sink, void* ctx) const;
  // Into a caller buffer of `cap` bytes (InvalidArgument if smaller than encoded_size()).
  Result<void> encode(std::uint8_t* out, std::size_t cap) const;
  // The same three with EncodeOptions (codec.h): `{.thin = true, .keep_first = N}` is the
  // thin encoding of rule 8.6 (Loaded pages past the kept ones travel as Missing(hash); the
  // backing's own Missing slots are allowed, UnresolvableMissing for zero(32) or the zero
  // page's root). Same bytes format and same root (3.4) as the full encoding.
  [[nodiscard]] Result<std::uint64_t> encoded_size(const EncodeOptions& opt) const;
  Result<void> encode(ByteSink sink, void* ctx, const EncodeOptions& opt) const;
  Result<void> encode(std::uint8_t* out, std::size_t cap, const EncodeOptions& opt) const;
  // Every check of rules 2.5 and 5.2; Loaded hashes verified in batches. On failure the
  // status is returned, *err (if non-null) names it with the byte offset, nothing leaks.
  // Reads each input byte once through `src` and checks and hashes only its own copy (rule
  // 5.3, codec.h); allocates as the input is read (a frame per Loaded page the input
  // holds, tree nodes), never from the size or slot-count claims. `progress` hears the
  // bytes of the input read so far and may cancel (Cancelled).
  static Result<DataCap> decode(const ByteSource& src, DecodeError* err = nullptr, BuildProgress progress = {});
  static Result<DataCap> decode(const std::uint8_t* in, std::size_t len, DecodeError* err = nullptr,
                                BuildProgress progress = {});
  // The same with DecodeOptions (codec.h): `{.thin = true}` accepts Missing slots (rule 8.6)
  // except Missing(zero(32)) and Missing(root of the all-zero page), DecodeUnresolvableMissing
  // at the hash's offset. A thin cap's backing holds those Missing slots; its root is the
  // root of the full cap it was encoded from (2.3). The defaults above are full mode.
  static Result<DataCap> decode(const ByteSource& src, const DecodeOptions& opt, DecodeError* err = nullptr,
                                BuildProgress progress = {});
  static Result<DataCap> decode(const std::uint8_t* in, std::size_t len, const DecodeOptions& opt,
                                DecodeError* err = nullptr, BuildProgress progress = {});

  // Identity of the backing (tests: sharing, "flush of an empty overlay makes no backing").
  [[nodiscard]] const void* backing_id() const { return backing_; }

 private:
  DataCap(tree::Backing* b, Overlay ov);
  // Rule 3.10: the backing of a cap that holds one; traps naming `what` on an empty cap.
  [[nodiscard]] const tree::Backing* live(const char* what) const {
    if (backing_ == nullptr) [[unlikely]]
      empty_trap(what);
    return backing_;
  }
  [[noreturn]] static void empty_trap(const char* what);
  // Rule 3.9: traps with its message if mappers are attached (move, assign, destroy).
  void check_unmapped(const char* what) const;
  // Rule 3.3: the slot that decides page `page` (< page_count()): the overlay's entry if
  // it shadows the backing, else the backing's; nullptr reads Empty.
  [[nodiscard]] const Slot* effective_slot(std::uint32_t page) const;
  // Replace the backing with `txn`'s result (new_b from backing_alloc).
  void install(tree::Backing* new_b, tree::Txn& txn);
  // Rule 3.8 across CPUs (fault.h "Across CPUs"): for the life of a RunsHold every mapper
  // attached to the cap is held paused (MapperOps::try_hold on each; enter() on another
  // CPU waits). claimed() is Busy, with every claim already released and nothing changed, if
  // one of them was executing. A checkpoint takes the hold before its first step and keeps
  // it until its last leaf change.
  class RunsHold {
   public:
    explicit RunsHold(const DataCap& cap);
    ~RunsHold();
    RunsHold(const RunsHold&) = delete;
    RunsHold& operator=(const RunsHold&) = delete;
    [[nodiscard]] Result<void> claimed() const {
      if (busy_) return Status::Busy;
      return {};
    }

   private:
    const DataCap& cap_;
    bool busy_ = false;
  };
  // Rule 3.8 steps (datacap.cpp), under a RunsHold: write-protect
  // the attached mappers' writable leaves of the overlay's pages (prepare may fail with
  // OutOfFrames, changing nothing); prepare / refresh the mappers' leaves of pages
  // [first, first + n) whose effective slot a call changes.
  Result<void> protect_runs() const;
  Result<void> reserve_runs(std::uint32_t first, std::uint32_t n) const;
  void refresh_runs(std::uint32_t first, std::uint32_t n) const;

  tree::Backing* backing_ = nullptr;
  Overlay overlay_;
  mutable MapperNode* mappers_ = nullptr;  // intrusive list through MapperNode::next / prev
  // The list's guard (a cap shared as code is mapped by runs on many CPUs): bit 31 while
  // attach_mapper / detach_mapper change it, below that the number of walkers (a checkpoint
  // for the life of its RunsHold, reserve_overlay and publish for their walk). Walkers wait
  // only for a writer, whose section is a few stores; writers wait for the walkers, so
  // they must run where shootdowns are answered (interrupts on, like Run::try_enter).
  mutable std::atomic<std::uint32_t> list_guard_{0};
  static constexpr std::uint32_t kListWriter = 1u << 31;
  void list_read_lock() const;
  void list_read_unlock() const { list_guard_.fetch_sub(1, std::memory_order_release); }
  mutable std::atomic<std::uintptr_t> turn_{0};
};

namespace codec {

// A page of a cap being decoded by decode_pages, verified: `bytes` (4096, not all zero)
// hash to `hash` (rule 1.2), which the input claimed. Valid only during the call. Return
// anything but Status::Ok to stop the decode with that status.
using VerifiedPage = Status (*)(void* ctx, std::uint32_t page, const std::uint8_t* bytes, const Hash32& hash);

// DataCap::decode without the cap, for a caller that streams the content (the host tool
// writes it to a file in bounded memory): the same checks (rules 2.5, 5.2, 5.3), in the
// same order, with the same statuses and offsets; each Loaded page, once verified, is
// handed to `fn` in page order (Empty pages are not), and at most a batch of 16 frames is
// held at a time (no tree, nothing sized from a claim). *size is set once the header
// checks pass. A rejected input may already have handed pages to `fn`: a caller must not
// act on them before the Ok.
Status decode_pages(const ByteSource& src, VerifiedPage fn, void* ctx, std::uint64_t* size, DecodeError* err = nullptr,
                    BuildProgress progress = {});

}  // namespace codec
}  // namespace capmem
