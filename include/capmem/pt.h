// x86-64 4-level page tables (Intel SDM Vol. 3A 4.5): typed entries per level, ONE walker
// with table access and table allocation injected through a policy (after Zircon
// lib/arch/paging.h and managarm's page-table cursor), and the per-run PageTable.
//
// Spec: datacap.md 4.1-4.2 (guest in PML4 slot 0, zero-setup demand paging, owned list),
// edge-cases.md "Page tables and the TLB" and "Counts and lifetimes".
//
// Public API used by the fault path (all on `pt::PageTable`):
//   PageTable::create()                     -> Result<PageTable>      allocates the PML4
//   map_leaf(va, pa, LeafFlags)             -> Result<MapOutcome>     Mapped / Replaced
//   translate(va)                           -> Result<Translation>    pa (+ offset) and flags
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

// One typed entry of a table at level L. A plain value: read it from a slot, change it,
// store it back. The raw form is only visible through raw().
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

// A table in memory: 512 raw slots. Entries are read and written whole (a slot is never
// updated bit by bit), so an A/D update by the CPU between read and write is the only
// race, and only protect() rewrites a live leaf (it keeps A/D as read and invalidates).
using Slot = std::uint64_t;

// ---------------------------------------------------------------------------------------
// The injected policy: how the walker reaches a table and where new tables come from.
//   table_at(pa)   -> Slot*        the 512 slots of the table frame at `pa`
//   alloc_table()  -> FrameDesc*   a zeroed frame of kind Table (refs == 1), or nullptr
//   free_table(d)                  give a table frame back
// Frame references of mapped pages and of linked shared tables always go through
// frames(): those frames belong to the whole system, not to the policy.
template <typename P>
concept TablePolicy = requires(P& p, const P& cp, PhysAddr pa, FrameDesc* d) {
  { cp.table_at(pa) } -> std::same_as<Slot*>;
  { p.alloc_table() } -> std::same_as<FrameDesc*>;
  { p.free_table(d) } -> std::same_as<void>;
};

// Default: the direct map and the frame allocator.
struct FramePolicy {
  [[nodiscard]] Slot* table_at(PhysAddr pa) const { return static_cast<Slot*>(env::phys_to_virt(pa)); }
  [[nodiscard]] FrameDesc* alloc_table() { return frames().alloc(FrameKind::Table, AllocFlags::Zero); }
  void free_table(FrameDesc* d) { frames().free(d); }
};
static_assert(TablePolicy<FramePolicy>);

enum class MapOutcome : std::uint8_t {
  Mapped,    // the slot was empty
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
        root_slots_(std::exchange(o.root_slots_, nullptr)),
        owned_(std::exchange(o.owned_, nullptr)),
        owned_count_(std::exchange(o.owned_count_, 0)) {}
  BasicPageTable& operator=(BasicPageTable&& o) noexcept {
    if (this != &o) {
      teardown();
      policy_ = static_cast<P&&>(o.policy_);
      root_ = std::exchange(o.root_, nullptr);
      root_slots_ = std::exchange(o.root_slots_, nullptr);
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
    const std::uint64_t need = path_bits(flags.writable, flags.user);
    Slot* pt = fast_path(va, need);
    if (pt == nullptr) pt = TRY(build_path(va, Level::Pt, need));
    return commit_leaf(&pt[index_at(va, Level::Pt)], va, Pte::leaf(pa, flags), ref);
  }

  // va -> pa (with va's page offset) and flags. NotMapped if no present leaf;
  // HugePageInWalk for a 1 GiB/2 MiB leaf (the core never builds one); NotCanonical.
  Result<Translation> translate(VirtAddr va) const {
    if (!va.canonical()) return Status::NotCanonical;
    CAPMEM_ASSERT(root_ != nullptr);
    // Unrolled walk; rights combine as AND of R/W, U/S and OR of XD (SDM 4.6.1).
    constexpr std::uint64_t kP = bit(Bit::Present), kPS = bit(Bit::PageSize);
    std::uint64_t e = root_slots_[index_at(va, Level::Pml4)];
    if ((e & kP) == 0) return Status::NotMapped;
    std::uint64_t all = e, any = e;
    e = policy_.table_at(PhysAddr{e & kAddrMask})[index_at(va, Level::Pdpt)];
    if ((e & (kP | kPS)) != kP) return (e & kP) == 0 ? Status::NotMapped : Status::HugePageInWalk;
    all &= e;
    any |= e;
    e = policy_.table_at(PhysAddr{e & kAddrMask})[index_at(va, Level::Pd)];
    if ((e & (kP | kPS)) != kP) return (e & kP) == 0 ? Status::NotMapped : Status::HugePageInWalk;
    all &= e;
    any |= e;
    e = policy_.table_at(PhysAddr{e & kAddrMask})[index_at(va, Level::Pt)];
    if ((e & kP) == 0) return Status::NotMapped;
    all &= e;
    any |= e;
    const Pte leaf{e};
    return Translation{.pa = leaf.addr() + (va.value() & (PAGE_SIZE - 1)),
                       .flags = leaf.leaf_flags(),
                       .effective = Rights{.writable = (all & bit(Bit::Writable)) != 0,
                                           .user = (all & bit(Bit::User)) != 0,
                                           .executable = (any & bit(Bit::NoExecute)) == 0},
                       .accessed = leaf.accessed(),
                       .dirty = leaf.dirty()};
  }

  // Remove the leaf at va (page-aligned): shoots its translation down on every CPU that
  // may hold it (shoot_down), then drops its reference if it holds one. NotMapped if none.
  // Tables stay (freed at teardown). Not for the #PF path (it may wait for other CPUs).
  Result<void> unmap(VirtAddr va) {
    Slot* slot = TRY(leaf_slot(va));
    const Pte old{*slot};
    *slot = 0;
    shoot_down(va);
    drop_leaf_ref(old);
    return {};
  }

  // Change the flags of the leaf at va, keeping its frame and its A/D bits; widens the
  // intermediate entries if the new flags need U/S or R/W. holds_ref cannot change (a
  // mismatch is InvalidArgument). Shoots the old translation down (shoot_down). NotMapped
  // if none. Not for the #PF path.
  Result<void> protect(VirtAddr va, LeafFlags flags) {
    Slot* slot = TRY(leaf_slot(va));
    const Pte old{*slot};
    if (old.holds_ref() != flags.holds_ref) return Status::InvalidArgument;
    // The path exists, so build_path only widens rights (it cannot allocate or fail).
    Slot* pt = fast_path(va, path_bits(flags.writable, flags.user));
    if (pt == nullptr) pt = TRY(build_path(va, Level::Pt, path_bits(flags.writable, flags.user)));
    CAPMEM_ASSERT(&pt[index_at(va, Level::Pt)] == slot);
    const std::uint64_t ad = old.raw() & (bit(Bit::Accessed) | bit(Bit::Dirty));
    *slot = Pte::leaf(old.addr(), flags).raw() | ad;
    shoot_down(va);
    return {};
  }

  // Link the table `table` (a table of level `level`: Pdpt, Pd or Pt, built and owned by
  // someone else) into the entry of level above(level) covering `va`, building owned
  // tables above it if needed. `va` must be aligned to entry_span(above(level)) and that
  // entry must be empty (else InvalidArgument). The link holds frames().ref() of the table
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
    const std::uint64_t need = path_bits(perms.writable, perms.user);
    Slot* parent = TRY(build_path(va, above(level), need));
    Slot* slot = &parent[index_at(va, above(level))];
    if ((*slot & bit(Bit::Present)) != 0) return Status::InvalidArgument;
    frames().ref(d);
    // Entry<Pml4>::table encodes the same bits for every non-leaf level.
    *slot = Pml4e::table(table, perms.writable, perms.user, /*shared=*/true).raw();
    return {};
  }

  // The physical address of the table of level `level` on the walk to `va` (to hand to
  // link_shared of another page table). NotMapped if the walk does not reach it.
  Result<PhysAddr> subtree(VirtAddr va, Level level) const {
    if (!va.canonical()) return Status::NotCanonical;
    CAPMEM_ASSERT(root_ != nullptr);
    PhysAddr t = root_->phys();
    for (unsigned l = 4; l > static_cast<unsigned>(level); --l) {
      const std::uint64_t e = policy_.table_at(t)[index_at(va, static_cast<Level>(l))];
      if ((e & bit(Bit::Present)) == 0) return Status::NotMapped;
      if (l < 4 && (e & bit(Bit::PageSize)) != 0) return Status::HugePageInWalk;
      t = PhysAddr{e & kAddrMask};
    }
    return t;
  }

  // Share `donor`'s table of level `level` covering `va` (see link_shared).
  template <TablePolicy Q>
  Result<void> link_from(const BasicPageTable<Q>& donor, VirtAddr va, Level level, LinkFlags perms = {}) {
    const PhysAddr t = TRY(donor.subtree(va, level));
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
      const std::uint64_t e = root_slots_[i];
      if ((e & bit(Bit::Present)) == 0) continue;
      root_slots_[i] = 0;
      env::tlb_shootdown(root(), pml4_entry_base(i), entry_span(Level::Pml4) / PAGE_SIZE);
      if ((e & bit(kSharedLink)) != 0) {
        FrameDesc* d = frames().desc_of(PhysAddr{e & kAddrMask});
        CAPMEM_ASSERT(d != nullptr);
        frames().unref(d);
      }
    }
    while (owned_ != nullptr) {
      FrameDesc* d = owned_;
      owned_ = d->link;
      d->link = nullptr;
      release_entries(policy_.table_at(d->phys()), static_cast<Level>(d->flags));
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
    root_slots_ = nullptr;
  }

 private:
  BasicPageTable(FrameDesc* root, P&& policy)
      : policy_(static_cast<P&&>(policy)), root_(root), root_slots_(policy_.table_at(root->phys())) {}

  // --- TLB shootdown (spec rule 7.2; docs/smp.md "Shootdown rules") ---------------------
  // Called after an entry of this table was removed or narrowed at `va`, before the frame
  // it mapped loses a reference. A leaf under a table that is also linked into other
  // tables (link_shared holds a reference on the table frame, so its count is above 1)
  // may be cached under any root: every CPU drops it. Otherwise only CPUs with this root
  // loaded may hold it. Never called by the #PF path (map_leaf replaces with a local
  // invlpg: the faulting run's table is loaded on this CPU alone, rule 7.1).
  void shoot_down(VirtAddr va) const { env::tlb_shootdown(under_shared_link(va) ? PhysAddr{} : root(), va, 1); }
  bool under_shared_link(VirtAddr va) const {
    PhysAddr t = root();
    for (unsigned l = 4; l > 1; --l) {
      const std::uint64_t e = policy_.table_at(t)[index_at(va, static_cast<Level>(l))];
      if ((e & bit(Bit::Present)) == 0) return false;
      t = PhysAddr{e & kAddrMask};
      const FrameDesc* d = frames().desc_of(t);
      if (d != nullptr && d->refs.load(std::memory_order_relaxed) > 1) return true;
    }
    return false;
  }
  // First address of PML4 entry i (sign-extended for the upper half, SDM 4.5).
  static constexpr VirtAddr pml4_entry_base(unsigned i) {
    const std::uint64_t a = std::uint64_t{i} << level_shift(Level::Pml4);
    return VirtAddr{i >= kEntriesPerTable / 2 ? a | 0xffff000000000000ull : a};
  }

  static constexpr std::uint64_t path_bits(bool writable, bool user) {
    return bit(Bit::Present) | (writable ? bit(Bit::Writable) : 0) | (user ? bit(Bit::User) : 0);
  }

  // The PT for `va` if every entry above it is present, owned (no SharedLink), not PS and
  // already carries `need`; else nullptr.
  Slot* fast_path(VirtAddr va, std::uint64_t need) const {
    constexpr std::uint64_t kStop = bit(Bit::PageSize) | bit(kSharedLink);
    std::uint64_t e = root_slots_[index_at(va, Level::Pml4)];
    if ((e & need) != need || (e & bit(kSharedLink)) != 0) return nullptr;
    Slot* t = policy_.table_at(PhysAddr{e & kAddrMask});
    e = t[index_at(va, Level::Pdpt)];
    if ((e & need) != need || (e & kStop) != 0) return nullptr;
    t = policy_.table_at(PhysAddr{e & kAddrMask});
    e = t[index_at(va, Level::Pd)];
    if ((e & need) != need || (e & kStop) != 0) return nullptr;
    return policy_.table_at(PhysAddr{e & kAddrMask});
  }

  // Walk to the table of level `stop` covering va, creating missing tables (owned) and
  // OR-ing `need` (U/S, R/W) into existing entries on the way. Prepare-then-commit: the
  // walk and every allocation happen before any entry is written.
  Result<Slot*> build_path(VirtAddr va, Level stop, std::uint64_t need) {
    Slot* slots[5] = {};  // slots[l]: the entry of level l on the path (existing tables)
    Slot* t = root_slots_;
    unsigned missing_from = 0;  // level whose entry is absent (0 = none)
    for (unsigned l = 4; l > static_cast<unsigned>(stop); --l) {
      Slot* s = &t[index_at(va, static_cast<Level>(l))];
      const std::uint64_t e = *s;
      if ((e & bit(Bit::Present)) == 0) {
        slots[l] = s;
        missing_from = l;
        break;
      }
      if (l < 4 && (e & bit(Bit::PageSize)) != 0) return Status::HugePageInWalk;
      if ((e & bit(kSharedLink)) != 0) return Status::SharedTable;
      slots[l] = s;
      t = policy_.table_at(PhysAddr{e & kAddrMask});
    }
    // Prepare: tables for levels missing_from-1 .. stop.
    FrameDesc* fresh[3] = {};
    const unsigned nfresh = missing_from ? missing_from - static_cast<unsigned>(stop) : 0;
    for (unsigned i = 0; i < nfresh; ++i) {
      fresh[i] = policy_.alloc_table();
      if (fresh[i] == nullptr) {
        while (i-- > 0) policy_.free_table(fresh[i]);
        return Status::OutOfFrames;
      }
      fresh[i]->flags = static_cast<std::uint16_t>(missing_from - 1 - i);
    }
    // Commit, bottom-up: link the fresh tables to each other, widen the existing entries,
    // and publish the new chain last with a single store.
    const bool w = (need & bit(Bit::Writable)) != 0;
    const bool u = (need & bit(Bit::User)) != 0;
    for (unsigned i = nfresh; i-- > 1;) {
      Slot* parent = policy_.table_at(fresh[i - 1]->phys());
      parent[index_at(va, static_cast<Level>(missing_from - i))] = Pml4e::table(fresh[i]->phys(), w, u, false).raw();
    }
    for (unsigned i = 0; i < nfresh; ++i) {
      fresh[i]->link = owned_;
      owned_ = fresh[i];
      ++owned_count_;
    }
    for (unsigned l = 4; l > static_cast<unsigned>(stop); --l) {
      if (slots[l] == nullptr) break;
      if (static_cast<unsigned>(l) == missing_from) {
        *slots[l] = Pml4e::table(fresh[0]->phys(), w, u, false).raw();
        break;
      }
      if ((*slots[l] & need) != need) *slots[l] |= need;
    }
    if (nfresh > 0) return policy_.table_at(fresh[nfresh - 1]->phys());
    return t;
  }

  // The PTE slot of a page-aligned, canonical va with a present leaf, through owned
  // tables only.
  Result<Slot*> leaf_slot(VirtAddr va) {
    if (!va.canonical()) return Status::NotCanonical;
    if (!va.page_aligned()) return Status::Misaligned;
    CAPMEM_ASSERT(root_ != nullptr);
    Slot* t = root_slots_;
    for (unsigned l = 4; l > 1; --l) {
      const std::uint64_t e = t[index_at(va, static_cast<Level>(l))];
      if ((e & bit(Bit::Present)) == 0) return Status::NotMapped;
      if (l < 4 && (e & bit(Bit::PageSize)) != 0) return Status::HugePageInWalk;
      if ((e & bit(kSharedLink)) != 0) return Status::SharedTable;
      t = policy_.table_at(PhysAddr{e & kAddrMask});
    }
    Slot* s = &t[index_at(va, Level::Pt)];
    if ((*s & bit(Bit::Present)) == 0) return Status::NotMapped;
    return s;
  }

  MapOutcome commit_leaf(Slot* slot, VirtAddr va, Pte leaf, FrameDesc* ref) {
    if (ref != nullptr) frames().ref(ref);  // before the old one is dropped: may be the same frame
    const Pte old{*slot};
    *slot = leaf.raw();
    if (!old.present()) return MapOutcome::Mapped;  // not-present entries are never cached (SDM 4.10.2.3)
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

  // Release what the entries of one owned table hold: HoldsRef leaves (PT) or shared links.
  static void release_entries(Slot* t, Level level) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const std::uint64_t e = t[i];
      if ((e & bit(Bit::Present)) == 0) continue;
      const bool holds = level == Level::Pt ? (e & bit(kHoldsRef)) != 0
                                            : ((e & bit(kSharedLink)) != 0 && (e & bit(Bit::PageSize)) == 0);
      if (!holds) continue;
      FrameDesc* d = frames().desc_of(PhysAddr{e & kAddrMask});
      CAPMEM_ASSERT(d != nullptr);
      frames().unref(d);
    }
  }

  P policy_;
  FrameDesc* root_ = nullptr;   // the PML4 frame
  Slot* root_slots_ = nullptr;  // its slots through the policy
  FrameDesc* owned_ = nullptr;  // owned PDPT/PD/PT frames (intrusive, FrameDesc::link)
  std::size_t owned_count_ = 0;
};

// The page table of the kernel and of every run.
using PageTable = BasicPageTable<FramePolicy>;
extern template class BasicPageTable<FramePolicy>;

}  // namespace capmem::pt
