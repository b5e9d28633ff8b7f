// x86-64 4-level page tables (Intel SDM Vol. 3A 4.5): typed entries per level, ONE walker
// with table access and table allocation injected through a policy (after Zircon
// lib/arch/paging.h and managarm's page-table cursor), and the per-run PageTable.
//
// Rules: docs/rules.md 4.1-4.2 (guest in PML4 slot 0, zero-setup demand paging, owned list),
// docs/edge-cases.md "Page tables and the TLB" and "Counts and lifetimes".
//
// Public API used by the fault path (all on `pt::PageTable`):
//   PageTable::create()                     -> Result<PageTable>      allocates the PML4
//   map_leaf(va, pa, LeafFlags)             -> Result<MapOutcome>     Mapped / Replaced
//   translate(va)                           -> Result<Translation>    pa (+ offset) and flags
//   leaf_entry(va)                          -> Result<Pte>            the present leaf's entry
//   unmap(va), protect(va, LeafFlags)       -> Result<void>           both shoot down (rule 7.2)
//   clear()                                 drop every mapping, keep the (zeroed) PML4
//   teardown()                              clear() + free the PML4 (also the destructor)
//   link_shared(va, level, table, LinkFlags) / link_from(donor, va, level, LinkFlags)
//
// Freestanding: no heap, no exceptions; tables come from the policy (by default the frame
// allocator) and are threaded on an intrusive owned list through FrameDesc::link.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem::pt {

// ---------------------------------------------------------------------------------------
// Levels and indices (Intel SDM Vol. 3A 4.5.4, Figure 4-8: 4-level paging, 4 KiB pages).
// Numbered like the walk: 4 = PML4 ... 1 = PT. Each table holds 512 8-byte entries.
enum class Level : unsigned { Pt = 1, Pd = 2, Pdpt = 3, Pml4 = 4 };

inline constexpr unsigned kEntriesPerTable = 512;
inline constexpr unsigned level_shift(Level l) { return 12 + 9 * (static_cast<unsigned>(l) - 1); }
// Bytes one entry of a table at level `l` maps (PTE 4 KiB, PDE 2 MiB, PDPTE 1 GiB, PML4E 512 GiB).
inline constexpr std::uint64_t entry_span(Level l) { return std::uint64_t{1} << level_shift(l); }
inline constexpr unsigned index_at(VirtAddr va, Level l) {
  return static_cast<unsigned>((va.value() >> level_shift(l)) & (kEntriesPerTable - 1));
}
inline constexpr Level below(Level l) { return static_cast<Level>(static_cast<unsigned>(l) - 1); }
inline constexpr Level above(Level l) { return static_cast<Level>(static_cast<unsigned>(l) + 1); }

// ---------------------------------------------------------------------------------------
// Entry bits. Intel SDM Vol. 3A 4.5, Table 4-15 (PML4E), 4-17 (PDPTE referencing a PD),
// 4-19 (PDE referencing a PT), 4-20 (PTE mapping a 4 KiB page); PS pages: 4-16, 4-18.
enum class Bit : std::uint64_t {
  Present = std::uint64_t{1} << 0,       // P
  Writable = std::uint64_t{1} << 1,      // R/W: 0 = writes not allowed (CR0.WP=1 for ring 0 too)
  User = std::uint64_t{1} << 2,          // U/S: 0 = ring 3 may not access
  WriteThrough = std::uint64_t{1} << 3,  // PWT
  CacheDisable = std::uint64_t{1} << 4,  // PCD
  Accessed = std::uint64_t{1} << 5,      // A: set by the CPU when the entry is used (SDM 4.8)
  Dirty = std::uint64_t{1} << 6,         // D: leaf only, set by the CPU on a write (SDM 4.8)
  PageSize = std::uint64_t{1} << 7,      // PS in a PDPTE/PDE: maps a 1 GiB / 2 MiB page
                                         // (reserved, must be 0, in a PML4E)
  Pat = std::uint64_t{1} << 7,           // PAT in a PTE (Table 4-20): same position as PS
  Global = std::uint64_t{1} << 8,        // G: leaf only; survives CR3 loads with CR4.PGE=1
  Sw9 = std::uint64_t{1} << 9,           // bits 11:9 are ignored by the CPU at every level:
  Sw10 = std::uint64_t{1} << 10,         //   software-available
  Sw11 = std::uint64_t{1} << 11,
  NoExecute = std::uint64_t{1} << 63,  // XD, with IA32_EFER.NXE = 1
};
inline constexpr std::uint64_t bit(Bit b) { return static_cast<std::uint64_t>(b); }

// Page-fault error code the CPU pushes with #PF (Intel SDM Vol. 3A 4.7, Figure 4-12). The
// one set of these bits: the fault handler (fault::Run::handle_page_fault), the kernel's #PF
// vector and hostsim's simulated MMU all use it.
struct ErrorCode {
  static constexpr std::uint32_t kPresent = 1u << 0;  // P: 1 = protection violation, 0 = not present
  static constexpr std::uint32_t kWrite = 1u << 1;    // W/R: the access was a write
  static constexpr std::uint32_t kUser = 1u << 2;     // U/S: the access was made at CPL 3
  static constexpr std::uint32_t kRsvd = 1u << 3;     // RSVD: reserved bit set in an entry
  static constexpr std::uint32_t kFetch = 1u << 4;    // I/D: instruction fetch (EFER.NXE = 1)
};

// capmem's use of the software-available bits:
//   HoldsRef   (bit 9, PTE):              the leaf holds one frames().ref() of the frame it
//                                         maps; unmap/replace/clear/teardown drop it.
//   SharedLink (bit 10, PML4E/PDPTE/PDE): the table this entry points to is NOT owned by
//                                         this page table (linked with link_shared); the
//                                         link holds one frames().ref() of that table frame.
inline constexpr Bit kHoldsRef = Bit::Sw9;
inline constexpr Bit kSharedLink = Bit::Sw10;

// Physical-address field: bits 51:12 (MAXPHYADDR <= 52, SDM 4.5 tables: "M-1:12").
inline constexpr std::uint64_t kAddrMask = ((std::uint64_t{1} << 52) - 1) & ~std::uint64_t{PAGE_SIZE - 1};

// Permissions and attributes of a 4 KiB leaf (what map_leaf/protect take and translate
// returns). Designated-initializer friendly: `LeafFlags{.writable = true, .user = true}`.
struct LeafFlags {
  bool writable = false;       // R/W
  bool user = false;           // U/S
  bool no_execute = false;     // XD
  bool global = false;         // G
  bool write_through = false;  // PWT
  bool cache_disable = false;  // PCD
  bool pat = false;            // PAT (PTE bit 7)
  bool holds_ref = false;      // software bit 9: the mapping holds a frame reference
  constexpr bool operator==(const LeafFlags&) const = default;
};

// Permissions of the entry that links a shared table (applies to everything under it:
// the CPU ANDs R/W and U/S over every level, SDM 4.6.1).
struct LinkFlags {
  bool writable = false;
  bool user = true;
};

// What a non-leaf entry must allow for the leaves and links under it: P, and R/W and U/S
// when something below needs them (R/W and U/S are ANDed over the walk, SDM 4.6.1).
struct PathRights {
  bool writable = false;
  bool user = false;
  [[nodiscard]] constexpr std::uint64_t bits() const {
    return bit(Bit::Present) | (writable ? bit(Bit::Writable) : 0) | (user ? bit(Bit::User) : 0);
  }
};

// One typed entry of a table at level L (SDM 4.5, Tables 4-15 to 4-20). A plain value: the
// walker reads one from its word in memory, decides with the accessors of its level, and
// writes a new value back; the raw form is only visible through raw().
template <Level L>
class Entry {
 public:
  constexpr Entry() = default;
  constexpr explicit Entry(std::uint64_t raw) : raw_(raw) {}
  [[nodiscard]] constexpr std::uint64_t raw() const { return raw_; }

  [[nodiscard]] constexpr bool has(Bit b) const { return (raw_ & bit(b)) != 0; }
  [[nodiscard]] constexpr Entry with(Bit b) const { return Entry{raw_ | bit(b)}; }
  [[nodiscard]] constexpr Entry without(Bit b) const { return Entry{raw_ & ~bit(b)}; }

  [[nodiscard]] constexpr bool present() const { return has(Bit::Present); }
  [[nodiscard]] constexpr bool writable() const { return has(Bit::Writable); }
  [[nodiscard]] constexpr bool user() const { return has(Bit::User); }
  [[nodiscard]] constexpr bool write_through() const { return has(Bit::WriteThrough); }
  [[nodiscard]] constexpr bool cache_disable() const { return has(Bit::CacheDisable); }
  [[nodiscard]] constexpr bool accessed() const { return has(Bit::Accessed); }
  [[nodiscard]] constexpr bool no_execute() const { return has(Bit::NoExecute); }
  [[nodiscard]] constexpr PhysAddr addr() const { return PhysAddr{raw_ & kAddrMask}; }

  // PS: only a PDPTE or PDE can map a large page (PML4E bit 7 is reserved; PTE bit 7 is PAT).
  [[nodiscard]] constexpr bool large() const requires(L == Level::Pdpt || L == Level::Pd) { return has(Bit::PageSize); }
  // Leaf-only bits of a 4 KiB PTE.
  [[nodiscard]] constexpr bool dirty() const requires(L == Level::Pt) { return has(Bit::Dirty); }
  [[nodiscard]] constexpr bool global() const requires(L == Level::Pt) { return has(Bit::Global); }
  [[nodiscard]] constexpr bool pat() const requires(L == Level::Pt) { return has(Bit::Pat); }
  [[nodiscard]] constexpr bool holds_ref() const requires(L == Level::Pt) { return has(kHoldsRef); }
  // Software link marker of a non-leaf entry.
  [[nodiscard]] constexpr bool shared_link() const requires(L != Level::Pt) { return has(kSharedLink); }

  // A non-leaf entry that maps a 1 GiB / 2 MiB page instead of referencing a table: PS in a
  // PDPTE or PDE (Tables 4-16, 4-18); never in a PML4E, where bit 7 is reserved.
  [[nodiscard]] constexpr bool maps_page() const requires(L != Level::Pt) {
    if constexpr (L == Level::Pml4) {
      return false;
    } else {
      return large();
    }
  }
  // Whether this non-leaf entry is present and already allows what `r` needs below it.
  [[nodiscard]] constexpr bool grants(PathRights r) const requires(L != Level::Pt) {
    return (raw_ & r.bits()) == r.bits();
  }

  // A non-leaf entry pointing at the next-level table `table`. Never NX: leaves decide.
  [[nodiscard]] static constexpr Entry table(PhysAddr table, bool writable, bool user,
                                             bool shared) requires(L != Level::Pt) {
    std::uint64_t r = bit(Bit::Present) | (table.value() & kAddrMask);
    if (writable) r |= bit(Bit::Writable);
    if (user) r |= bit(Bit::User);
    if (shared) r |= bit(kSharedLink);
    return Entry{r};
  }
  // A present 4 KiB leaf.
  [[nodiscard]] static constexpr Entry leaf(PhysAddr pa, const LeafFlags& f) requires(L == Level::Pt) {
    std::uint64_t r = bit(Bit::Present) | (pa.value() & kAddrMask);
    if (f.writable) r |= bit(Bit::Writable);
    if (f.user) r |= bit(Bit::User);
    if (f.no_execute) r |= bit(Bit::NoExecute);
    if (f.global) r |= bit(Bit::Global);
    if (f.write_through) r |= bit(Bit::WriteThrough);
    if (f.cache_disable) r |= bit(Bit::CacheDisable);
    if (f.pat) r |= bit(Bit::Pat);
    if (f.holds_ref) r |= bit(kHoldsRef);
    return Entry{r};
  }
  [[nodiscard]] constexpr LeafFlags leaf_flags() const requires(L == Level::Pt) {
    return LeafFlags{.writable = writable(),
                     .user = user(),
                     .no_execute = no_execute(),
                     .global = global(),
                     .write_through = write_through(),
                     .cache_disable = cache_disable(),
                     .pat = pat(),
                     .holds_ref = holds_ref()};
  }

 private:
  std::uint64_t raw_ = 0;
};

using Pml4e = Entry<Level::Pml4>;
using Pdpte = Entry<Level::Pdpt>;
using Pde = Entry<Level::Pd>;
using Pte = Entry<Level::Pt>;
static_assert(sizeof(Pml4e) == 8 && sizeof(Pdpte) == 8 && sizeof(Pde) == 8 && sizeof(Pte) == 8,
              "x86-64 paging-structure entries are 8 bytes (SDM 4.5)");
static_assert(kEntriesPerTable * sizeof(Pte) == PAGE_SIZE, "a paging structure is one 4 KiB frame");
static_assert(Pml4e::table(PhysAddr{0x5000}, true, true, false).raw() == 0x5007 &&
                  Pte::leaf(PhysAddr{0x5000}, LeafFlags{.writable = true, .user = true}).raw() == 0x5007,
              "P, R/W, U/S are bits 0-2 at every level (SDM 4.5, Tables 4-15 to 4-20)");

// Calls f.template operator()<L>() with the level `l` known only at run time (the owned
// list records each table's level; link_shared takes one), so that the code behind it
// reads and builds entries of the right type.
template <typename F>
constexpr decltype(auto) with_level(Level l, F&& f) {
  switch (l) {
    case Level::Pml4: return f.template operator()<Level::Pml4>();
    case Level::Pdpt: return f.template operator()<Level::Pdpt>();
    case Level::Pd: return f.template operator()<Level::Pd>();
    case Level::Pt: break;
  }
  return f.template operator()<Level::Pt>();
}
// The same over the levels whose entries can reference a table (PML4, PDPT, PD).
template <typename F>
constexpr decltype(auto) with_table_level(Level l, F&& f) {
  switch (l) {
    case Level::Pml4: return f.template operator()<Level::Pml4>();
    case Level::Pdpt: return f.template operator()<Level::Pdpt>();
    case Level::Pd:
    case Level::Pt: break;
  }
  CAPMEM_ASSERT(l == Level::Pd);
  return f.template operator()<Level::Pd>();
}

// ---------------------------------------------------------------------------------------
// Tables in memory and access to their entries.
//
// A table is one 4 KiB frame of 512 entry words. A word is shared with the CPU: while the
// table may be used for translation (loaded in CR3 on some CPU, or linked into such a
// table; even the current CPU's speculative walks count), the CPU sets A in every entry a
// walk uses and D in a leaf it writes through (SDM 4.8), with locked read-modify-writes of
// its own. Rule 7.3: the walker changes such entries only with single atomic accesses, so
// no A/D bit the CPU sets meanwhile is lost. It reaches words only through its policy's
// entry access (AtomicEntryAccess below):
//   - every read of an entry is one load (no torn or repeated reads of a live word);
//   - an empty entry gets a plain store (the CPU never writes a not-present entry), and so
//     do the entries clear() zeroes (the table is no longer in use then: see clear());
//   - a present leaf is replaced or cleared with one exchange (map_leaf, unmap), which
//     returns exactly what it replaced;
//   - entries ARE updated bit by bit, but never by load-then-store: build_path (reached
//     from map_leaf, protect and link_shared) ORs R/W and U/S into present PML4Es, PDPTEs
//     and PDEs with one fetch_or, and protect() rewrites a present leaf with a
//     compare-exchange loop that carries over the A/D bits of the value it replaces.
// Software changes to one page table are not concurrent with each other (a run's table is
// changed on one CPU at a time, rule 7.1); the CPU's A/D updates are the only other writer.
using EntryWord = std::uint64_t;

// The default entry access: single-copy atomic 8-byte accesses (__atomic builtins, one
// aligned mov / xchg on x86-64, SDM Vol. 3A 9.1.1). Acquire loads pair with the release
// store that publishes a table chain, so a walker that sees an entry sees the table.
struct AtomicEntryAccess {
  [[nodiscard]] static EntryWord load(const EntryWord* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }
  static void store(EntryWord* w, EntryWord v) { __atomic_store_n(w, v, __ATOMIC_RELEASE); }
  static EntryWord exchange(EntryWord* w, EntryWord v) { return __atomic_exchange_n(w, v, __ATOMIC_ACQ_REL); }
  // Replaces *w with `desired` if it still holds `expected`; otherwise loads the current
  // value into `expected` and returns false (lock cmpxchg).
  static bool compare_exchange(EntryWord* w, EntryWord& expected, EntryWord desired) {
    return __atomic_compare_exchange_n(w, &expected, desired, /*weak=*/false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  }
  static EntryWord fetch_or(EntryWord* w, EntryWord bits) { return __atomic_fetch_or(w, bits, __ATOMIC_ACQ_REL); }
};

// ---------------------------------------------------------------------------------------
// The injected policy: how the walker reaches a table, its entries, and where new tables
// come from.
//   table_at(pa)        -> EntryWord*   the 512 entry words of the table frame at `pa`
//   load / store / exchange /           the entry access, one atomic access each (derive
//   compare_exchange / fetch_or         from AtomicEntryAccess; a test may interpose, e.g.
//                                       to play the CPU setting A/D between two of them)
//   alloc_table()       -> FrameDesc*   a zeroed frame of kind Table (refs == 1), or nullptr
//   free_table(d)                       give a table frame back
// Frame references of mapped pages and of linked shared tables always go through
// frames(): those frames belong to the whole system, not to the policy.
template <typename P>
concept TablePolicy = requires(P& p, const P& cp, PhysAddr pa, FrameDesc* d, EntryWord* w, EntryWord v, EntryWord& e) {
  { cp.table_at(pa) } -> std::same_as<EntryWord*>;
  { cp.load(static_cast<const EntryWord*>(w)) } -> std::same_as<EntryWord>;
  { cp.store(w, v) } -> std::same_as<void>;
  { cp.exchange(w, v) } -> std::same_as<EntryWord>;
  { cp.compare_exchange(w, e, v) } -> std::same_as<bool>;
  { cp.fetch_or(w, v) } -> std::same_as<EntryWord>;
  { p.alloc_table() } -> std::same_as<FrameDesc*>;
  { p.free_table(d) } -> std::same_as<void>;
};

// Default: the direct map and the frame allocator.
struct FramePolicy : AtomicEntryAccess {
  [[nodiscard]] EntryWord* table_at(PhysAddr pa) const { return static_cast<EntryWord*>(env::phys_to_virt(pa)); }
  [[nodiscard]] FrameDesc* alloc_table() { return frames().alloc(FrameKind::Table, AllocFlags::Zero); }
  void free_table(FrameDesc* d) { frames().free(d); }
};
static_assert(TablePolicy<FramePolicy>);

enum class MapOutcome : std::uint8_t {
  Mapped,    // the entry was empty
  Replaced,  // a present leaf was replaced (its reference dropped, its TLB entry invalidated)
};

// Effective rights of a translation: the AND of R/W and U/S and the OR of XD over every
// level of the walk (SDM 4.6.1), i.e. what a ring-3/ring-0 access is actually allowed.
struct Rights {
  bool writable;
  bool user;
  bool executable;
};

struct Translation {
  PhysAddr pa;       // physical address of `va` itself (frame + page offset)
  LeafFlags flags;   // the leaf's own flags, as given to map_leaf/protect
  Rights effective;  // combined with the intermediate entries
  bool accessed;     // leaf A bit (set by the (simulated) CPU)
  bool dirty;        // leaf D bit
};

// ---------------------------------------------------------------------------------------
// A page table (one PML4 and everything it owns).
//
// The walk is driven by the level types: each step reads an Entry<L> of its own level and
// decides with that level's accessors (maps_page() exists only above the PT, holds_ref()
// only in it), and a new entry is built with the Entry<L>::table of the level it sits in.
// Walks to a level known only at run time recurse over L (after Zircon lib/arch paging).
//
// Invariants:
//   - `root_` is the PML4 frame (or null once torn down / moved from); it is not on the
//     owned list.
//   - `owned_` threads, through FrameDesc::link, every PDPT/PD/PT this table allocated and
//     nothing else; FrameDesc::flags of an owned table holds its Level. Owned tables are
//     freed only by clear()/teardown(), never by unmap (an emptied table stays linked).
//   - An entry with SharedLink points to a table this one does not own; it holds one
//     frames().ref() of that table frame, dropped by clear()/teardown(). The walker never
//     writes through a shared link (Status::SharedTable): the owner changes it.
//   - Intermediate entries built or widened by map_leaf carry P, and U/S and R/W only if
//     some leaf mapped under them needed them (OR-ed in, never cleared), never XD.
//   - A present PTE with HoldsRef holds one frames().ref() of the frame it maps.
//   - No partial path: a failed map_leaf/link_shared leaves every table as it was.
template <TablePolicy P>
class BasicPageTable {
 public:
  // Allocates a zeroed PML4. OutOfFrames if the policy has none.
  static Result<BasicPageTable> create(P policy = P{}) {
    FrameDesc* root = policy.alloc_table();
    if (root == nullptr) return Status::OutOfFrames;
    root->flags = static_cast<std::uint16_t>(Level::Pml4);
    return BasicPageTable(root, static_cast<P&&>(policy));
  }

  BasicPageTable(BasicPageTable&& o) noexcept
      : policy_(static_cast<P&&>(o.policy_)),
        root_(std::exchange(o.root_, nullptr)),
        root_words_(std::exchange(o.root_words_, nullptr)),
        owned_(std::exchange(o.owned_, nullptr)),
        owned_count_(std::exchange(o.owned_count_, 0)) {}
  BasicPageTable& operator=(BasicPageTable&& o) noexcept {
    if (this != &o) {
      teardown();
      policy_ = static_cast<P&&>(o.policy_);
      root_ = std::exchange(o.root_, nullptr);
      root_words_ = std::exchange(o.root_words_, nullptr);
      owned_ = std::exchange(o.owned_, nullptr);
      owned_count_ = std::exchange(o.owned_count_, 0);
    }
    return *this;
  }
  BasicPageTable(const BasicPageTable&) = delete;
  BasicPageTable& operator=(const BasicPageTable&) = delete;
  ~BasicPageTable() { teardown(); }

  // The CR3 value (PML4 physical address; PCD/PWT/PCID bits 0). PhysAddr{0} when empty.
  [[nodiscard]] PhysAddr root() const { return root_ ? root_->phys() : PhysAddr{}; }
  [[nodiscard]] bool empty() const { return root_ == nullptr; }
  // Number of tables this page table owns, including the PML4 (0 when empty).
  [[nodiscard]] std::size_t owned_tables() const { return root_ ? owned_count_ + 1 : 0; }
  [[nodiscard]] P& policy() { return policy_; }
  [[nodiscard]] const P& policy() const { return policy_; }

  // pt_map_leaf (rule 4.2): map one 4 KiB page `va` -> `pa`.
  //  - NotCanonical / Misaligned (va or pa not 4 KiB aligned) / InvalidArgument (pa beyond
  //    52 bits; holds_ref on a pa the frame allocator does not manage);
  //  - HugePageInWalk if the walk meets a 1 GiB/2 MiB leaf; SharedTable if it meets a
  //    linked (not owned) table;
  //  - OutOfFrames if a missing PDPT/PD/PT cannot be allocated: all missing tables are
  //    allocated first and linked only when all exist, so nothing changes on failure;
  //  - otherwise Mapped, or Replaced when a present leaf was there (its reference is dropped
  //    after its TLB entry is invalidated through env::tlb_invalidate_page).
  // With flags.holds_ref the mapping takes frames().ref() of pa's descriptor (a no-op for
  // the zero frame). When the path exists with enough rights, this is a 4-load fast path.
  Result<MapOutcome> map_leaf(VirtAddr va, PhysAddr pa, LeafFlags flags) {
    if (!va.canonical()) return Status::NotCanonical;
    if (!va.page_aligned() || !pa.page_aligned()) return Status::Misaligned;
    if ((pa.value() & ~kAddrMask) != 0) return Status::InvalidArgument;
    CAPMEM_ASSERT(root_ != nullptr);
    FrameDesc* ref = nullptr;
    if (flags.holds_ref) {
      ref = frames().desc_of(pa);
      if (ref == nullptr) return Status::InvalidArgument;
    }
    const PathRights need{.writable = flags.writable, .user = flags.user};
    EntryWord* pt = fast_path(va, need);
    if (pt == nullptr) pt = CAPMEM_TRY(build_path(va, Level::Pt, need));
    return commit_leaf(word_at<Level::Pt>(pt, va), va, Pte::leaf(pa, flags), ref);
  }

  // va -> pa (with va's page offset) and flags. NotMapped if no present leaf;
  // HugePageInWalk for a 1 GiB/2 MiB leaf (the core never builds one); NotCanonical.
  Result<Translation> translate(VirtAddr va) const {
    const Walk w = CAPMEM_TRY(walk_to_leaf(va));
    // Rights combine as the AND of R/W and U/S and the OR of XD over the walk (SDM 4.6.1).
    return Translation{
        .pa = w.e1.addr() + (va.value() & (PAGE_SIZE - 1)),
        .flags = w.e1.leaf_flags(),
        .effective =
            Rights{.writable = w.e4.writable() && w.e3.writable() && w.e2.writable() && w.e1.writable(),
                   .user = w.e4.user() && w.e3.user() && w.e2.user() && w.e1.user(),
                   .executable = !(w.e4.no_execute() || w.e3.no_execute() || w.e2.no_execute() || w.e1.no_execute())},
        .accessed = w.e1.accessed(),
        .dirty = w.e1.dirty()};
  }

  // The present leaf entry that maps va, for a caller that needs only its bits (the #PF
  // path's spurious-fault test): the same walk and statuses as translate(), without
  // decoding the flags or combining the rights.
  Result<Pte> leaf_entry(VirtAddr va) const {
    const Walk w = CAPMEM_TRY(walk_to_leaf(va));
    return w.e1;
  }

  // Remove the leaf at va (page-aligned): shoots its translation down on every CPU that
  // may hold it (shoot_down), then drops its reference if it holds one. NotMapped if none.
  // Tables stay (freed at teardown). Not for the #PF path (it may wait for other CPUs).
  Result<void> unmap(VirtAddr va) {
    const LeafRef leaf = CAPMEM_TRY(present_leaf(va));
    const Pte old{policy_.exchange(leaf.word, 0)};
    shoot_down(va);
    drop_leaf_ref(old);
    return {};
  }

  // Change the flags of the leaf at va, keeping its frame and its A/D bits (also those the
  // CPU sets while protect runs: rule 7.3); widens the intermediate entries if the new
  // flags need U/S or R/W. holds_ref cannot change (a mismatch is InvalidArgument).
  // Shoots the old translation down (shoot_down). NotMapped if none. Not for the #PF path,
  // except with Shootdown::ByCaller: the entry changes and nothing is invalidated, so a
  // CPU may keep the old translation until the caller shoots the page down. The frame
  // keeps its reference, so nothing is freed under it (rule 7.2); for a table no CPU runs
  // guest code on until that shootdown (fault.cpp: another run's leaf, rule 3.9).
  enum class Shootdown : bool { Now, ByCaller };
  Result<void> protect(VirtAddr va, LeafFlags flags, Shootdown when = Shootdown::Now) {
    const LeafRef leaf = CAPMEM_TRY(present_leaf(va));
    if (leaf.entry.holds_ref() != flags.holds_ref) return Status::InvalidArgument;
    // The path exists, so build_path only widens rights (it cannot allocate or fail).
    const PathRights need{.writable = flags.writable, .user = flags.user};
    EntryWord* pt = fast_path(va, need);
    if (pt == nullptr) pt = CAPMEM_TRY(build_path(va, Level::Pt, need));
    CAPMEM_ASSERT(word_at<Level::Pt>(pt, va) == leaf.word);
    // One compare-exchange against the value last seen; when the CPU set A or D since, it
    // fails, reloads, and the next attempt carries those bits over (rule 7.3).
    constexpr std::uint64_t kAd = bit(Bit::Accessed) | bit(Bit::Dirty);
    EntryWord seen = leaf.entry.raw();
    for (;;) {
      const EntryWord next = Pte::leaf(Pte{seen}.addr(), flags).raw() | (seen & kAd);
      if (policy_.compare_exchange(leaf.word, seen, next)) break;
    }
    if (when == Shootdown::Now) shoot_down(va);
    return {};
  }

  // Link the table `table` (a table of level `level`: Pdpt, Pd or Pt, built and owned by
  // someone else) into the entry of level above(level) covering `va`, building owned
  // tables above it if needed. `va` must be aligned to entry_span(above(level)) and that
  // entry must be empty (else InvalidArgument). Prepare-then-commit like map_leaf: every
  // refusal (a taken entry too) and OutOfFrames leave the table exactly as it was, with no
  // right OR-ed into the path above. The link holds frames().ref() of the table
  // frame; this page table never frees it or anything below it. The owner must outlive
  // every link: freeing a still-linked table traps in the frame allocator.
  Result<void> link_shared(VirtAddr va, Level level, PhysAddr table, LinkFlags perms = {}) {
    if (level == Level::Pml4) return Status::InvalidArgument;
    if (!va.canonical()) return Status::NotCanonical;
    if ((va.value() & (entry_span(above(level)) - 1)) != 0 || !table.page_aligned()) return Status::Misaligned;
    FrameDesc* d = frames().desc_of(table);
    if (d == nullptr || d->kind != FrameKind::Table || d->flags != static_cast<std::uint16_t>(level))
      return Status::InvalidArgument;
    CAPMEM_ASSERT(root_ != nullptr);
    PathPlan plan{.va = va, .stop = above(level), .need = {.writable = perms.writable, .user = perms.user}};
    CAPMEM_TRY(prepare_from<Level::Pml4>(root_words_, plan));
    // The entry to link is in a fresh, empty table, or in an existing one: check it now,
    // before anything is written (nothing was allocated when the whole path exists).
    if (plan.nfresh == 0 && with_table_level(plan.stop, [&]<Level L>() { return read<L>(plan.table, va).present(); }))
      return Status::InvalidArgument;
    EntryWord* parent = commit_path(plan);
    frames().ref(d);
    with_table_level(plan.stop, [&]<Level L>() {
      policy_.store(word_at<L>(parent, va), Entry<L>::table(table, perms.writable, perms.user, /*shared=*/true).raw());
    });
    return {};
  }

  // The physical address of the table of level `level` on the walk to `va` (to hand to
  // link_shared of another page table). NotMapped if the walk does not reach it.
  Result<PhysAddr> subtree(VirtAddr va, Level level) const {
    if (!va.canonical()) return Status::NotCanonical;
    CAPMEM_ASSERT(root_ != nullptr);
    return table_on_walk<Level::Pml4>(root_->phys(), va, level);
  }

  // Share `donor`'s table of level `level` covering `va` (see link_shared).
  template <TablePolicy Q>
  Result<void> link_from(const BasicPageTable<Q>& donor, VirtAddr va, Level level, LinkFlags perms = {}) {
    const PhysAddr t = CAPMEM_TRY(donor.subtree(va, level));
    return link_shared(va, level, t, perms);
  }

  // Drop every mapping: unref HoldsRef leaves of owned PTs and shared links, free every
  // owned table, zero the PML4 (same root: a page table reused for the next run).
  // Rule 7.2: each present PML4 entry is zeroed and its 512 GiB range shot down on every
  // CPU with this root loaded (env::tlb_shootdown) before any frame reference is dropped
  // or table freed, so no CPU (one the run has left included) keeps a translation into a
  // frame that is reused. Not for the #PF path.
  void clear() {
    if (root_ == nullptr) return;
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const Pml4e e{policy_.exchange(&root_words_[i], 0)};
      if (!e.present()) continue;
      env::tlb_shootdown(root(), pml4_entry_base(i), entry_span(Level::Pml4) / PAGE_SIZE);
      if (e.shared_link()) {
        FrameDesc* d = frames().desc_of(e.addr());
        CAPMEM_ASSERT(d != nullptr);
        frames().unref(d);
      }
    }
    while (owned_ != nullptr) {
      FrameDesc* d = owned_;
      owned_ = d->link;
      d->link = nullptr;
      EntryWord* words = policy_.table_at(d->phys());
      with_level(static_cast<Level>(d->flags), [&]<Level L>() { release_entries<L>(words); });
      policy_.free_table(d);
    }
    owned_count_ = 0;
  }

  // clear() and free the PML4; the object becomes empty (root() == 0). Idempotent.
  void teardown() {
    if (root_ == nullptr) return;
    clear();
    policy_.free_table(root_);
    root_ = nullptr;
    root_words_ = nullptr;
  }

 private:
  BasicPageTable(FrameDesc* root, P&& policy)
      : policy_(static_cast<P&&>(policy)), root_(root), root_words_(policy_.table_at(root->phys())) {}

  // The word of the entry covering va in a table of level L.
  template <Level L>
  static EntryWord* word_at(EntryWord* table, VirtAddr va) {
    return &table[index_at(va, L)];
  }
  // That entry, read with one load.
  template <Level L>
  Entry<L> read(EntryWord* table, VirtAddr va) const {
    return Entry<L>{policy_.load(word_at<L>(table, va))};
  }
  // The words of the table a non-leaf entry references.
  template <Level L>
  EntryWord* next_table(Entry<L> e) const requires(L != Level::Pt) {
    return policy_.table_at(e.addr());
  }

  // The four entries of the unrolled walk to va's leaf (SDM 4.5.4: PML4E -> PDPTE -> PDE
  // -> PTE), each read with one load: translate() combines them, leaf_entry() keeps the
  // leaf. NotMapped if one is not present; HugePageInWalk for a 1 GiB/2 MiB leaf (the core
  // never builds one); NotCanonical.
  struct Walk {
    Pml4e e4;
    Pdpte e3;
    Pde e2;
    Pte e1;
  };
  Result<Walk> walk_to_leaf(VirtAddr va) const {
    if (!va.canonical()) return Status::NotCanonical;
    CAPMEM_ASSERT(root_ != nullptr);
    const Pml4e e4 = read<Level::Pml4>(root_words_, va);
    if (!e4.present()) return Status::NotMapped;
    const Pdpte e3 = read<Level::Pdpt>(next_table(e4), va);
    if (!e3.present()) return Status::NotMapped;
    if (e3.maps_page()) return Status::HugePageInWalk;
    const Pde e2 = read<Level::Pd>(next_table(e3), va);
    if (!e2.present()) return Status::NotMapped;
    if (e2.maps_page()) return Status::HugePageInWalk;
    const Pte e1 = read<Level::Pt>(next_table(e2), va);
    if (!e1.present()) return Status::NotMapped;
    return Walk{.e4 = e4, .e3 = e3, .e2 = e2, .e1 = e1};
  }

  // --- TLB shootdown (docs/rules.md rule 7.2; docs/smp.md "Shootdown rules") ------------
  // Called after an entry of this table was removed or narrowed at `va`, before the frame
  // it mapped loses a reference. A leaf under a table that is also linked into other
  // tables (link_shared holds a reference on the table frame, so its count is above 1)
  // may be cached under any root: every CPU drops it. Otherwise only CPUs with this root
  // loaded may hold it. Never called by the #PF path (map_leaf replaces with a local
  // invlpg: the faulting run's table is loaded on this CPU alone, rule 7.1).
  void shoot_down(VirtAddr va) const { env::tlb_shootdown(under_shared_link(va) ? PhysAddr{} : root(), va, 1); }
  bool under_shared_link(VirtAddr va) const {
    const Pml4e e4 = read<Level::Pml4>(root_words_, va);
    if (!e4.present()) return false;
    if (table_shared(e4.addr())) return true;
    const Pdpte e3 = read<Level::Pdpt>(next_table(e4), va);
    if (!e3.present() || e3.maps_page()) return false;
    if (table_shared(e3.addr())) return true;
    const Pde e2 = read<Level::Pd>(next_table(e3), va);
    if (!e2.present() || e2.maps_page()) return false;
    return table_shared(e2.addr());
  }
  // A table frame referenced by more than its one owning entry: linked elsewhere too.
  static bool table_shared(PhysAddr t) {
    const FrameDesc* d = frames().desc_of(t);
    return d != nullptr && d->refs.load(std::memory_order_relaxed) > 1;
  }
  // First address of PML4 entry i (sign-extended for the upper half, SDM 4.5).
  static constexpr VirtAddr pml4_entry_base(unsigned i) {
    const std::uint64_t a = std::uint64_t{i} << level_shift(Level::Pml4);
    return VirtAddr{i >= kEntriesPerTable / 2 ? a | 0xffff000000000000ull : a};
  }

  // The PT for `va` if every entry above it is present, owned (no SharedLink), not PS and
  // already grants `need`; else nullptr.
  EntryWord* fast_path(VirtAddr va, PathRights need) const {
    const Pml4e e4 = read<Level::Pml4>(root_words_, va);
    if (!owned_and_grants(e4, need)) return nullptr;
    const Pdpte e3 = read<Level::Pdpt>(next_table(e4), va);
    if (!owned_and_grants(e3, need)) return nullptr;
    const Pde e2 = read<Level::Pd>(next_table(e3), va);
    if (!owned_and_grants(e2, need)) return nullptr;
    return next_table(e2);
  }
  template <Level L>
  static constexpr bool owned_and_grants(Entry<L> e, PathRights need) {
    return e.grants(need) && !e.shared_link() && !e.maps_page();
  }

  // A path to the table of level `stop` covering `va`, prepared by prepare_path: every
  // check made and every missing table allocated, nothing written yet.
  struct PathPlan {
    VirtAddr va;
    Level stop;
    PathRights need;
    EntryWord* present[5] = {};   // [l]: the present entry of level l on the path (l > stop)
    EntryWord* absent = nullptr;  // the first absent entry on the path, of level absent_level
    Level absent_level = Level::Pt;
    FrameDesc* fresh[3] = {};  // the tables below it: levels below(absent_level) .. stop
    unsigned nfresh = 0;
    EntryWord* table = nullptr;  // the table of level `stop` when it exists already
  };

  // Walk to the table of level `stop` covering va, creating missing tables (owned) and
  // OR-ing `need` (U/S, R/W) into existing entries on the way. Prepare-then-commit: the
  // walk and every allocation happen before any entry is written.
  Result<EntryWord*> build_path(VirtAddr va, Level stop, PathRights need) {
    PathPlan plan{.va = va, .stop = stop, .need = need};
    CAPMEM_TRY(prepare_from<Level::Pml4>(root_words_, plan));
    return commit_path(plan);
  }

  // Prepare, from the table of level L on the path: checks, then allocations.
  template <Level L>
  Result<void> prepare_from(EntryWord* table, PathPlan& plan) {
    if (L == plan.stop) {
      plan.table = table;
      return {};
    }
    if constexpr (L == Level::Pt) {
      return Status::InvalidArgument;  // unreachable: a path stops at the PT at the lowest
    } else {
      EntryWord* w = word_at<L>(table, plan.va);
      const Entry<L> e{policy_.load(w)};
      if (!e.present()) {
        plan.absent = w;
        plan.absent_level = L;
        return alloc_fresh(plan);
      }
      if (e.maps_page()) return Status::HugePageInWalk;
      if (e.shared_link()) return Status::SharedTable;
      plan.present[static_cast<unsigned>(L)] = w;
      return prepare_from<below(L)>(next_table(e), plan);
    }
  }

  // The tables of levels below(absent_level) .. stop, all or none.
  Result<void> alloc_fresh(PathPlan& plan) {
    const unsigned n = static_cast<unsigned>(plan.absent_level) - static_cast<unsigned>(plan.stop);
    for (unsigned i = 0; i < n; ++i) {
      FrameDesc* d = policy_.alloc_table();
      if (d == nullptr) {
        while (i-- > 0) policy_.free_table(plan.fresh[i]);
        return Status::OutOfFrames;
      }
      d->flags = static_cast<std::uint16_t>(static_cast<unsigned>(plan.absent_level) - 1 - i);
      plan.fresh[i] = d;
    }
    plan.nfresh = n;
    return {};
  }

  // Commit a prepared path: own the fresh tables, widen the present entries top-down, and
  // publish the fresh chain (linked bottom-up first) last with a single store. Returns the
  // table of level `stop`.
  EntryWord* commit_path(const PathPlan& plan) {
    for (unsigned i = 0; i < plan.nfresh; ++i) {
      plan.fresh[i]->link = owned_;
      owned_ = plan.fresh[i];
      ++owned_count_;
    }
    commit_from<Level::Pml4>(plan);
    return plan.nfresh > 0 ? policy_.table_at(plan.fresh[plan.nfresh - 1]->phys()) : plan.table;
  }

  template <Level L>
  void commit_from(const PathPlan& plan) {
    if constexpr (L != Level::Pt) {
      if (L == plan.stop) return;
      if (plan.nfresh > 0 && L == plan.absent_level) {
        policy_.store(plan.absent, chain<L>(plan, 0).raw());
        return;
      }
      widen<L>(plan.present[static_cast<unsigned>(L)], plan.need);
      commit_from<below(L)>(plan);
    }
  }

  // The entry of level L that references fresh[i] (a table of level below(L)), after the
  // rest of the chain below has been linked into fresh[i].
  template <Level L>
  Entry<L> chain(const PathPlan& plan, unsigned i) requires(L != Level::Pt) {
    if constexpr (below(L) != Level::Pt) {
      if (i + 1 < plan.nfresh)
        policy_.store(word_at<below(L)>(policy_.table_at(plan.fresh[i]->phys()), plan.va),
                      chain<below(L)>(plan, i + 1).raw());
    }
    return Entry<L>::table(plan.fresh[i]->phys(), plan.need.writable, plan.need.user, /*shared=*/false);
  }

  // OR what `need` asks into the present non-leaf entry at `w`: one fetch_or, so an A bit
  // the CPU sets meanwhile is kept (rule 7.3).
  template <Level L>
  void widen(EntryWord* w, PathRights need) requires(L != Level::Pt) {
    if (!Entry<L>{policy_.load(w)}.grants(need)) policy_.fetch_or(w, need.bits());
  }

  // The table of level `stop` on the walk to va, from the table of level L at `table`.
  template <Level L>
  Result<PhysAddr> table_on_walk(PhysAddr table, VirtAddr va, Level stop) const {
    if (L == stop) return table;
    if constexpr (L == Level::Pt) {
      return Status::InvalidArgument;
    } else {
      const Entry<L> e = read<L>(policy_.table_at(table), va);
      if (!e.present()) return Status::NotMapped;
      if (e.maps_page()) return Status::HugePageInWalk;
      return table_on_walk<below(L)>(e.addr(), va, stop);
    }
  }

  // A present leaf: its word and the entry it held when read.
  struct LeafRef {
    EntryWord* word;
    Pte entry;
  };
  // The present PTE of a page-aligned, canonical va, through owned tables only.
  Result<LeafRef> present_leaf(VirtAddr va) {
    if (!va.canonical()) return Status::NotCanonical;
    if (!va.page_aligned()) return Status::Misaligned;
    CAPMEM_ASSERT(root_ != nullptr);
    return owned_leaf<Level::Pml4>(root_words_, va);
  }
  template <Level L>
  Result<LeafRef> owned_leaf(EntryWord* table, VirtAddr va) const {
    EntryWord* w = word_at<L>(table, va);
    const Entry<L> e{policy_.load(w)};
    if (!e.present()) return Status::NotMapped;
    if constexpr (L == Level::Pt) {
      return LeafRef{.word = w, .entry = e};
    } else {
      if (e.maps_page()) return Status::HugePageInWalk;
      if (e.shared_link()) return Status::SharedTable;
      return owned_leaf<below(L)>(next_table(e), va);
    }
  }

  MapOutcome commit_leaf(EntryWord* w, VirtAddr va, Pte leaf, FrameDesc* ref) {
    if (ref != nullptr) frames().ref(ref);  // before the old one is dropped: may be the same frame
    // The CPU never writes a not-present entry (SDM 4.8 sets A/D only in entries it uses),
    // so an empty one takes a plain store; a present one is swapped in one access.
    if (!Pte{policy_.load(w)}.present()) {
      policy_.store(w, leaf.raw());
      return MapOutcome::Mapped;  // not-present entries are never cached (SDM 4.10.2.3)
    }
    const Pte old{policy_.exchange(w, leaf.raw())};
    env::tlb_invalidate_page(va);
    drop_leaf_ref(old);
    return MapOutcome::Replaced;
  }

  static void drop_leaf_ref(Pte old) {
    if (!old.present() || !old.holds_ref()) return;
    FrameDesc* d = frames().desc_of(old.addr());
    CAPMEM_ASSERT(d != nullptr);
    frames().unref(d);
  }

  // Release what the entries of one owned table of level L hold: HoldsRef leaves (PT) or
  // shared links (above it).
  template <Level L>
  void release_entries(EntryWord* table) const {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const Entry<L> e{policy_.load(&table[i])};
      if (!e.present()) continue;
      bool holds = false;
      if constexpr (L == Level::Pt) {
        holds = e.holds_ref();
      } else {
        holds = e.shared_link() && !e.maps_page();
      }
      if (!holds) continue;
      FrameDesc* d = frames().desc_of(e.addr());
      CAPMEM_ASSERT(d != nullptr);
      frames().unref(d);
    }
  }

  P policy_;
  FrameDesc* root_ = nullptr;        // the PML4 frame
  EntryWord* root_words_ = nullptr;  // its entry words through the policy
  FrameDesc* owned_ = nullptr;       // owned PDPT/PD/PT frames (intrusive, FrameDesc::link)
  std::size_t owned_count_ = 0;
};

// The page table of the kernel and of every run.
using PageTable = BasicPageTable<FramePolicy>;
extern template class BasicPageTable<FramePolicy>;

}  // namespace capmem::pt
