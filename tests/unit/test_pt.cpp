// Page-table walker (include/capmem/pt.h): rules 4.1-4.2 and docs/edge-cases.md "Page tables and
// the TLB" / "Counts and lifetimes". Expected values come from the Intel SDM bit positions
// written out literally here, or from a std::map reference model.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "capmem/frame.h"
#include "capmem/pt.h"
#include "hostsim/env_hostsim.h"
#include "hostsim/mmu.h"

#include "../test_util.h"

using namespace capmem;
using pt::LeafFlags;
using pt::Level;
using pt::PageTable;

namespace {
using capmem::testutil::val;

std::uint64_t in_use() { return hostsim::quiescent_frame_stats().in_use; }

PageTable make_table() {
  auto r = PageTable::create();
  EXPECT_TRUE(r.ok());
  return r.release_value();
}

std::uint64_t* slots_of(PhysAddr table) { return static_cast<std::uint64_t*>(env::phys_to_virt(table)); }

// Raw entry of the table of `level` on the walk to va (independent of the walker: uses
// only the SDM layout: 9-bit indices from bit 39/30/21/12, address bits 51:12).
std::uint64_t raw_entry(const PageTable& t, VirtAddr va, Level level) {
  std::uint64_t table = t.root().value();
  for (unsigned l = 4;; --l) {
    const unsigned shift = 12 + 9 * (l - 1);
    const std::uint64_t e = slots_of(PhysAddr{table})[(va.value() >> shift) & 511];
    if (l == static_cast<unsigned>(level)) return e;
    if ((e & 1) == 0) return 0;
    table = e & 0x000ffffffffff000ull;
  }
}

using Snapshot = std::vector<std::array<std::uint64_t, 512>>;
// Contents of every table reachable from the root (owned or not), in walk order.
Snapshot snapshot(const PageTable& t) {
  Snapshot s;
  std::vector<std::pair<std::uint64_t, unsigned>> todo{{t.root().value(), 4}};
  while (!todo.empty()) {
    auto [pa, l] = todo.back();
    todo.pop_back();
    std::array<std::uint64_t, 512> a;
    std::memcpy(a.data(), slots_of(PhysAddr{pa}), 4096);
    s.push_back(a);
    if (l == 1) continue;
    for (auto e : a)
      if ((e & 1) && !((l == 3 || l == 2) && (e & 0x80))) todo.push_back({e & 0x000ffffffffff000ull, l - 1});
  }
  return s;
}

// A policy that hands out at most `budget` tables, for table-allocation failure tests.
struct LimitedPolicy : pt::AtomicEntryAccess {
  explicit LimitedPolicy(int b) : budget(b) {}
  int budget = 0;
  int allocated = 0;
  int freed = 0;
  [[nodiscard]] pt::EntryWord* table_at(PhysAddr pa) const {
    return static_cast<pt::EntryWord*>(env::phys_to_virt(pa));
  }
  FrameDesc* alloc_table() {
    if (budget <= 0) return nullptr;
    --budget;
    ++allocated;
    return frames().alloc(FrameKind::Table, AllocFlags::Zero);
  }
  void free_table(FrameDesc* d) {
    ++freed;
    frames().free(d);
  }
};
static_assert(pt::TablePolicy<LimitedPolicy>);
using LimitedTable = pt::BasicPageTable<LimitedPolicy>;

constexpr LeafFlags kUserRw{.writable = true, .user = true};
constexpr LeafFlags kUserRo{.user = true};

}  // namespace

// --- Typed entries: bit positions straight from SDM Vol. 3A Tables 4-15..4-20 ----------------
TEST(Rule4_2_Entries, LeafBitsMatchSdmTable4_20) {
  const PhysAddr pa{0x12345000};
  EXPECT_EQ(pt::Pte::leaf(pa, {}).raw(), 0x12345000ull | 1);
  EXPECT_EQ(pt::Pte::leaf(pa, {.writable = true}).raw(), 0x12345000ull | 1 | (1ull << 1));
  EXPECT_EQ(pt::Pte::leaf(pa, {.user = true}).raw(), 0x12345000ull | 1 | (1ull << 2));
  EXPECT_EQ(pt::Pte::leaf(pa, {.no_execute = true}).raw(), 0x12345000ull | 1 | (1ull << 63));
  EXPECT_EQ(pt::Pte::leaf(pa, {.global = true}).raw(), 0x12345000ull | 1 | (1ull << 8));
  EXPECT_EQ(pt::Pte::leaf(pa, {.write_through = true}).raw(), 0x12345000ull | 1 | (1ull << 3));
  EXPECT_EQ(pt::Pte::leaf(pa, {.cache_disable = true}).raw(), 0x12345000ull | 1 | (1ull << 4));
  EXPECT_EQ(pt::Pte::leaf(pa, {.pat = true}).raw(), 0x12345000ull | 1 | (1ull << 7));
  EXPECT_EQ(pt::Pte::leaf(pa, {.holds_ref = true}).raw(), 0x12345000ull | 1 | (1ull << 9));
  const pt::Pte d{0x8000000000000000ull | 0xfffffffff000ull | 0x7f};  // A (5) and D (6) set
  EXPECT_TRUE(d.accessed());
  EXPECT_TRUE(d.dirty());
  EXPECT_TRUE(d.no_execute());
  EXPECT_EQ(d.addr().value(), 0xfffffffff000ull);
  // Bits 52..62 are not address bits.
  EXPECT_EQ(pt::Pte{0x7ff0000000001001ull}.addr().value(), 0x1000ull);
}

TEST(Rule4_2_Entries, FlagsRoundTripThroughLeaf) {
  for (unsigned m = 0; m < 256; ++m) {
    const LeafFlags f{.writable = (m & 1) != 0,
                      .user = (m & 2) != 0,
                      .no_execute = (m & 4) != 0,
                      .global = (m & 8) != 0,
                      .write_through = (m & 16) != 0,
                      .cache_disable = (m & 32) != 0,
                      .pat = (m & 64) != 0,
                      .holds_ref = (m & 128) != 0};
    EXPECT_EQ(pt::Pte::leaf(PhysAddr{0x5000}, f).leaf_flags(), f) << m;
  }
}

TEST(Rule4_2_Entries, PsIsBit7InPdpteAndPde) {
  EXPECT_TRUE(pt::Pde{0x81}.large());
  EXPECT_TRUE(pt::Pdpte{0x81}.large());
  EXPECT_FALSE(pt::Pde{0x01}.large());
  EXPECT_TRUE(pt::Pde{0x401}.shared_link());
}

// --- Basic mapping --------------------------------------------------------------------------
TEST(Rule4_2, MapTranslateUnmap) {
  const auto base = in_use();
  {
    PageTable t = make_table();
    EXPECT_EQ(in_use(), base + 1);  // just the PML4
    const VirtAddr va{0x10000000};
    EXPECT_EQ(t.translate(va).status(), Status::NotMapped);
    auto r = t.map_leaf(va, PhysAddr{0xabc000}, kUserRw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, pt::MapOutcome::Mapped);
    EXPECT_EQ(t.owned_tables(), 4u);  // PML4 + PDPT + PD + PT
    EXPECT_EQ(in_use(), base + 4);
    auto tr = t.translate(va + 0x123);
    ASSERT_TRUE(tr.ok());
    EXPECT_EQ(tr->pa.value(), 0xabc123u);
    EXPECT_EQ(tr->flags, kUserRw);
    EXPECT_TRUE(tr->effective.user && tr->effective.writable && tr->effective.executable);
    EXPECT_TRUE(t.unmap(va).ok());
    EXPECT_EQ(t.translate(va).status(), Status::NotMapped);
    EXPECT_EQ(t.unmap(va).status(), Status::NotMapped);
    EXPECT_EQ(t.protect(va, kUserRo).status(), Status::NotMapped);
  }
  EXPECT_EQ(in_use(), base);
}

TEST(Rule4_2, RemapPresentLeafReplacesAndInvalidates) {
  hostsim::Mmu mmu;
  mmu.make_current();
  PageTable t = make_table();
  const VirtAddr va{0x20000000};
  ASSERT_EQ(val(t.map_leaf(va, PhysAddr{0x1000}, kUserRo)), pt::MapOutcome::Mapped);
  EXPECT_EQ(mmu.counters().invalidations, 0u) << "a not-present entry is never cached: no invlpg needed";
  ASSERT_EQ(val(t.map_leaf(va, PhysAddr{0x2000}, kUserRw)), pt::MapOutcome::Replaced);
  EXPECT_EQ(mmu.counters().invalidations, 1u);
  EXPECT_EQ(t.translate(va)->pa.value(), 0x2000u);
  ASSERT_TRUE(t.protect(va, kUserRo).ok());
  EXPECT_EQ(mmu.counters().invalidations, 2u);
  EXPECT_EQ(t.translate(va)->flags, kUserRo);
  EXPECT_EQ(t.translate(va)->pa.value(), 0x2000u);
  ASSERT_TRUE(t.unmap(va).ok());
  EXPECT_EQ(mmu.counters().invalidations, 3u);
  hostsim::Mmu::clear_current();
}

TEST(Rule4_2, RefusesNonCanonicalMisalignedAndWidePa) {
  PageTable t = make_table();
  const auto base = in_use();
  EXPECT_EQ(t.map_leaf(VirtAddr{0x0000800000000000ull}, PhysAddr{0x1000}, {}).status(), Status::NotCanonical);
  EXPECT_EQ(t.map_leaf(VirtAddr{0xffff7ffffffff000ull}, PhysAddr{0x1000}, {}).status(), Status::NotCanonical);
  EXPECT_EQ(t.map_leaf(VirtAddr{0x1001}, PhysAddr{0x1000}, {}).status(), Status::Misaligned);
  EXPECT_EQ(t.map_leaf(VirtAddr{0x1000}, PhysAddr{0x1800}, {}).status(), Status::Misaligned);
  EXPECT_EQ(t.map_leaf(VirtAddr{0x1000}, PhysAddr{1ull << 52}, {}).status(), Status::InvalidArgument);
  EXPECT_EQ(t.translate(VirtAddr{0x0000800000000000ull}).status(), Status::NotCanonical);
  EXPECT_EQ(t.unmap(VirtAddr{0x1800}).status(), Status::Misaligned);
  EXPECT_EQ(in_use(), base) << "a refused call allocates nothing";
  // The highest canonical page works, and so does a physical address above 4 GiB.
  const VirtAddr top{0xfffffffffffff000ull};
  ASSERT_TRUE(t.map_leaf(top, PhysAddr{0xfffffffff000ull}, {}).ok());
  EXPECT_EQ(t.translate(top + 0xfff)->pa.value(), 0xffffffffffffull);
}

TEST(Rule4_2, HugePageInWalkIsAStatus) {
  PageTable t = make_table();
  const VirtAddr va{0x40000000};  // 1 GiB
  ASSERT_TRUE(t.map_leaf(va, PhysAddr{0x3000}, kUserRw).ok());
  // Hand-build a 2 MiB leaf in the next PDE and a 1 GiB leaf in the next PDPTE.
  std::uint64_t* pd = slots_of(val(t.subtree(va, Level::Pd)));
  std::uint64_t* pdpt = slots_of(val(t.subtree(va, Level::Pdpt)));
  pd[1] = 0x200000ull | 0x80 | 0x7;
  pdpt[2] = 0x40000000ull | 0x80 | 0x7;
  const VirtAddr in2m{va.value() + (2ull << 20) + 0x5000};
  const VirtAddr in1g{0x80000000ull + 0x5000};
  EXPECT_EQ(t.map_leaf(in2m, PhysAddr{0x4000}, kUserRw).status(), Status::HugePageInWalk);
  EXPECT_EQ(t.map_leaf(in1g, PhysAddr{0x4000}, kUserRw).status(), Status::HugePageInWalk);
  EXPECT_EQ(t.translate(in2m).status(), Status::HugePageInWalk);
  EXPECT_EQ(t.leaf_entry(in2m).status(), Status::HugePageInWalk);
  EXPECT_EQ(t.leaf_entry(in1g).status(), Status::HugePageInWalk);
  EXPECT_EQ(t.leaf_entry(VirtAddr{0x0000800000000000ull}).status(), Status::NotCanonical);
  EXPECT_EQ(t.unmap(in1g).status(), Status::HugePageInWalk);
  EXPECT_EQ(t.protect(in2m, {}).status(), Status::HugePageInWalk);
  pd[1] = 0;
  pdpt[2] = 0;
}

// --- Intermediate permissions -----------------------------------------------------------------
TEST(Rule4_2, IntermediatesGetWhatLeavesNeedNeverNx) {
  constexpr std::uint64_t P = 1, W = 2, U = 4, NX = 1ull << 63, LOW = 0x1f | NX;
  PageTable t = make_table();
  const VirtAddr a{0x10000000}, b{0x10001000}, c{0x10002000}, other{0x8000000000ull};  // other: PML4 slot 1
  ASSERT_TRUE(t.map_leaf(other, PhysAddr{0x9000}, {.no_execute = true}).ok());
  ASSERT_TRUE(t.map_leaf(a, PhysAddr{0x1000}, {.no_execute = true}).ok());
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) EXPECT_EQ(raw_entry(t, a, l) & LOW, P);
  ASSERT_TRUE(t.map_leaf(b, PhysAddr{0x2000}, {.user = true, .no_execute = true}).ok());
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) EXPECT_EQ(raw_entry(t, a, l) & LOW, P | U);
  ASSERT_TRUE(t.map_leaf(c, PhysAddr{0x3000}, {.writable = true}).ok());
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) EXPECT_EQ(raw_entry(t, a, l) & LOW, P | U | W);
  // Leaves keep their own rights; the supervisor RO leaf is still supervisor RO.
  EXPECT_EQ(raw_entry(t, a, Level::Pt) & LOW, P | NX);
  auto ta = t.translate(a);
  EXPECT_FALSE(ta->effective.user);
  EXPECT_FALSE(ta->effective.writable);
  EXPECT_FALSE(ta->effective.executable);
  // Another slot is not widened by leaves elsewhere.
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) EXPECT_EQ(raw_entry(t, other, l) & LOW, P);
  // Unmapping never narrows (other leaves may rely on the rights).
  ASSERT_TRUE(t.unmap(b).ok());
  ASSERT_TRUE(t.unmap(c).ok());
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) EXPECT_EQ(raw_entry(t, a, l) & LOW, P | U | W);
  // protect() widens too.
  ASSERT_TRUE(t.protect(other, kUserRw).ok());
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) EXPECT_EQ(raw_entry(t, other, l) & LOW, P | U | W);
}

// --- Reference model --------------------------------------------------------------------------
namespace {
struct ModelLeaf {
  std::uint64_t pa;
  LeafFlags flags;
};

void run_model(std::uint64_t seed, int ops) {
  std::mt19937_64 rng(seed);
  const auto base = in_use();
  hostsim::Mmu mmu;
  mmu.make_current();
  // A small pool of real page frames for holds_ref leaves; expected refcounts tracked.
  std::vector<FrameDesc*> pool;
  for (int i = 0; i < 8; ++i) pool.push_back(frames().alloc(FrameKind::Page, AllocFlags::Zero));
  std::map<std::uint64_t, int> pool_maps;  // pa -> number of holds_ref leaves mapping it
  {
    PageTable t = make_table();
    std::map<std::uint64_t, ModelLeaf> model;
    std::set<std::uint64_t> pdpts, pds, pts;  // prefixes ever built (tables never shrink)
    std::uint64_t expect_inval = 0;
    const std::uint64_t regions[] = {
        0x0ull, 0x40000000ull, 0x7f8000000000ull, 0xffff800000000000ull, 0xfffffffe00000000ull, 0x7fff00000000ull};
    auto pick_va = [&]() {
      const std::uint64_t r = regions[rng() % std::size(regions)];
      // 3 x 512 pages around a 2 MiB boundary, plus a few 1 GiB neighbours
      std::uint64_t off = (rng() % 1536) * 4096;
      if (rng() % 8 == 0) off += (rng() % 3) << 30;
      return VirtAddr{r + off};
    };
    auto pick_flags = [&]() {
      const auto m = rng();
      return LeafFlags{.writable = (m & 1) != 0,
                       .user = (m & 2) != 0,
                       .no_execute = (m & 4) != 0,
                       .global = (m & 8) != 0,
                       .write_through = (m & 16) != 0,
                       .cache_disable = (m & 32) != 0,
                       .pat = (m & 64) != 0};
    };
    auto drop = [&](const ModelLeaf& l) {
      if (l.flags.holds_ref) --pool_maps[l.pa];
    };
    for (int op = 0; op < ops; ++op) {
      const unsigned kind = rng() % 100;
      VirtAddr va = pick_va();
      const auto it = model.find(va.value());
      if (kind < 45) {  // map
        LeafFlags f = pick_flags();
        std::uint64_t pa;
        if (rng() % 3 == 0) {
          f.holds_ref = true;
          pa = pool[rng() % pool.size()]->phys().value();
        } else {
          pa = (rng() % (1ull << 28)) << 12;  // up to 2^40: need not be RAM without holds_ref
        }
        auto r = t.map_leaf(va, PhysAddr{pa}, f);
        ASSERT_TRUE(r.ok()) << "op " << op;
        EXPECT_EQ(*r, it == model.end() ? pt::MapOutcome::Mapped : pt::MapOutcome::Replaced) << "op " << op;
        if (it != model.end()) {
          drop(it->second);
          ++expect_inval;
        }
        if (f.holds_ref) ++pool_maps[pa];
        model[va.value()] = ModelLeaf{pa, f};
        const std::uint64_t v = va.value() & 0x0000ffffffffffffull;
        pdpts.insert(v >> 39);
        pds.insert(v >> 30);
        pts.insert(v >> 21);
      } else if (kind < 60) {  // unmap
        auto r = t.unmap(va);
        if (it == model.end()) {
          EXPECT_EQ(r.status(), Status::NotMapped) << "op " << op;
        } else {
          EXPECT_TRUE(r.ok()) << "op " << op;
          drop(it->second);
          model.erase(it);
          ++expect_inval;
        }
      } else if (kind < 75) {  // protect
        LeafFlags f = pick_flags();
        f.holds_ref = it != model.end() && it->second.flags.holds_ref;
        const bool mismatch = it != model.end() && rng() % 10 == 0;
        if (mismatch) f.holds_ref = !f.holds_ref;
        auto r = t.protect(va, f);
        if (it == model.end()) {
          EXPECT_EQ(r.status(), Status::NotMapped) << "op " << op;
        } else if (mismatch) {
          EXPECT_EQ(r.status(), Status::InvalidArgument) << "op " << op;
        } else {
          EXPECT_TRUE(r.ok()) << "op " << op;
          it->second.flags = f;
          ++expect_inval;
        }
      } else if (kind < 97) {  // translate (with a random offset)
        const std::uint64_t off = rng() % 4096;
        auto r = t.translate(va + off);
        auto e = t.leaf_entry(va + off);  // the same walk, the raw leaf
        if (it == model.end()) {
          EXPECT_EQ(r.status(), Status::NotMapped) << "op " << op;
          EXPECT_EQ(e.status(), Status::NotMapped) << "op " << op;
        } else {
          ASSERT_TRUE(e.ok()) << "op " << op;
          EXPECT_EQ(e->addr().value(), it->second.pa) << "op " << op;
          EXPECT_EQ(e->leaf_flags(), it->second.flags) << "op " << op;
          ASSERT_TRUE(r.ok()) << "op " << op;
          EXPECT_EQ(r->pa.value(), it->second.pa + off) << "op " << op;
          EXPECT_EQ(r->flags, it->second.flags) << "op " << op;
          // Intermediates are never narrower than a leaf needs and never NX.
          EXPECT_EQ(r->effective.user, it->second.flags.user);
          EXPECT_EQ(r->effective.writable, it->second.flags.writable);
          EXPECT_EQ(r->effective.executable, !it->second.flags.no_execute);
        }
      } else {  // refused operations change nothing
        EXPECT_EQ(t.map_leaf(VirtAddr{0x0000800000000000ull + (rng() % 1000) * 4096}, PhysAddr{0x1000}, {}).status(),
                  Status::NotCanonical);
        EXPECT_EQ(t.map_leaf(va + 8, PhysAddr{0x1000}, {}).status(), Status::Misaligned);
      }
      ASSERT_EQ(mmu.counters().invalidations, expect_inval) << "op " << op;
    }
    // Full sweep: everything in the model translates; table count matches the prefixes.
    for (const auto& [v, l] : model) {
      auto r = t.translate(VirtAddr{v});
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->pa.value(), l.pa);
      EXPECT_EQ(r->flags, l.flags);
    }
    EXPECT_EQ(t.owned_tables(), 1 + pdpts.size() + pds.size() + pts.size());
    EXPECT_EQ(in_use(), base + pool.size() + t.owned_tables());
    for (FrameDesc* d : pool)
      EXPECT_EQ(d->refs.load(), 1u + static_cast<unsigned>(pool_maps[d->phys().value()])) << "holds_ref count";
  }
  // Teardown dropped every holds_ref reference and freed every table.
  for (FrameDesc* d : pool) {
    EXPECT_EQ(d->refs.load(), 1u);
    frames().free(d);
  }
  EXPECT_EQ(in_use(), base);
  hostsim::Mmu::clear_current();
}
}  // namespace

TEST(Rule4_2_ReferenceModel, Seed1) { run_model(1, 5000); }
TEST(Rule4_2_ReferenceModel, Seed2) { run_model(0x5eed2, 5000); }
TEST(Rule4_2_ReferenceModel, Seed3) { run_model(0xdeadbeef, 8000); }

// --- Teardown ---------------------------------------------------------------------------------
TEST(EdgeCounts, TeardownLeavesFrameAllocatorAsItWas) {
  const auto before = hostsim::quiescent_frame_stats();
  {
    PageTable t = make_table();
    for (std::uint64_t i = 0; i < 2000; ++i)
      ASSERT_TRUE(t.map_leaf(VirtAddr{0x400000 + i * 0x3000}, PhysAddr{(i + 1) << 12}, kUserRw).ok());
    EXPECT_GT(in_use(), before.in_use + 4);
    t.teardown();
    EXPECT_TRUE(t.empty());
    EXPECT_EQ(t.root().value(), 0u);
    t.teardown();  // idempotent
    const auto after = hostsim::quiescent_frame_stats();
    EXPECT_EQ(after.in_use, before.in_use);
    EXPECT_EQ(after.free, before.free);
  }
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before.in_use);  // destructor after teardown: nothing more
}

TEST(EdgePageTables, ClearKeepsRootForReuse) {
  const auto base = in_use();
  PageTable t = make_table();
  const PhysAddr root = t.root();
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x1000}, kUserRw).ok());
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x7f0000000000}, PhysAddr{0x2000}, kUserRw).ok());
  t.clear();
  EXPECT_EQ(t.root(), root);
  EXPECT_EQ(t.owned_tables(), 1u);
  EXPECT_EQ(in_use(), base + 1);
  EXPECT_EQ(t.translate(VirtAddr{0x10000000}).status(), Status::NotMapped);
  for (unsigned i = 0; i < 512; ++i) ASSERT_EQ(slots_of(root)[i], 0u);
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x3000}, kUserRw).ok());
  EXPECT_EQ(t.translate(VirtAddr{0x10000000})->pa.value(), 0x3000u);
}

TEST(EdgePageTables, MoveTransfersOwnership) {
  const auto base = in_use();
  {
    PageTable a = make_table();
    ASSERT_TRUE(a.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x1000}, kUserRw).ok());
    PageTable b = std::move(a);
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is documented empty
    EXPECT_EQ(b.translate(VirtAddr{0x10000000})->pa.value(), 0x1000u);
    PageTable c = make_table();
    c = std::move(b);  // c's own PML4 is torn down first
    EXPECT_EQ(in_use(), base + 4);
  }
  EXPECT_EQ(in_use(), base);
}

// --- Table allocation failure at every depth (docs/edge-cases.md) ---------------------------
namespace {
// Map `va` into `t` with the n-th table allocation from now failing; the table must be
// exactly as before and no frame may leak.
void expect_clean_failure(PageTable& t, VirtAddr va, std::uint64_t n) {
  const Snapshot before = snapshot(t);
  const auto used = in_use();
  const auto owned = t.owned_tables();
  frames().inject_failure_at(n);
  auto r = t.map_leaf(va, PhysAddr{0x7000}, kUserRw);
  frames().inject_failure_at(0);
  EXPECT_EQ(r.status(), Status::OutOfFrames) << "failure at allocation " << n;
  EXPECT_EQ(snapshot(t), before) << "a partial path was left behind (allocation " << n << ")";
  EXPECT_EQ(in_use(), used) << "leak (allocation " << n << ")";
  EXPECT_EQ(t.owned_tables(), owned);
  EXPECT_EQ(t.translate(va).status(), Status::NotMapped);
}
}  // namespace

TEST(EdgePageTables, TableAllocFailsAtPml4ToPdpt) {
  PageTable t = make_table();
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x8000000000ull}, PhysAddr{0x1000}, kUserRo).ok());  // slot 1 exists
  // Slot 0 empty: three tables needed; the first (the PDPT) fails.
  expect_clean_failure(t, VirtAddr{0x10000000}, 1);
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x7000}, kUserRw).ok());
}

TEST(EdgePageTables, TableAllocFailsAtPdptToPd) {
  PageTable t = make_table();
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x1000}, kUserRo).ok());
  // Same PML4 slot, another 1 GiB: needs a PD and a PT; the PD fails.
  expect_clean_failure(t, VirtAddr{0x80000000}, 1);
  // From an empty slot: PDPT succeeds, PD fails.
  expect_clean_failure(t, VirtAddr{0x10000000000ull}, 2);
}

TEST(EdgePageTables, TableAllocFailsAtPdToPt) {
  PageTable t = make_table();
  ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x1000}, kUserRo).ok());
  expect_clean_failure(t, VirtAddr{0x10200000}, 1);        // same PD, next 2 MiB: only the PT
  expect_clean_failure(t, VirtAddr{0x80000000}, 2);        // PD ok, PT fails
  expect_clean_failure(t, VirtAddr{0x10000000000ull}, 3);  // PDPT, PD ok, PT fails
  // The rights of the existing path were not widened by the failed user-writable maps.
  EXPECT_EQ(raw_entry(t, VirtAddr{0x10000000}, Level::Pml4) & 0x7, 0x5u);
}

TEST(EdgePageTables, TableAllocFailureThroughInjectedPolicy) {
  const auto base = in_use();
  for (int budget = 1; budget <= 3; ++budget) {
    auto r = LimitedTable::create(LimitedPolicy{budget});
    ASSERT_TRUE(r.ok());
    LimitedTable t = r.release_value();  // the PML4 used one of the budget
    auto m = t.map_leaf(VirtAddr{0xffff800000000000ull}, PhysAddr{0x1000}, kUserRw);
    EXPECT_EQ(m.status(), Status::OutOfFrames) << budget;
    EXPECT_EQ(t.policy().allocated, budget);
    EXPECT_EQ(t.policy().freed, budget - 1) << "the tables prepared before the failure are given back";
    for (unsigned i = 0; i < 512; ++i) ASSERT_EQ(t.policy().table_at(t.root())[i], 0u);
    t.policy().budget = 3;
    ASSERT_TRUE(t.map_leaf(VirtAddr{0xffff800000000000ull}, PhysAddr{0x1000}, kUserRw).ok());
    EXPECT_EQ(t.owned_tables(), 4u);
  }
  EXPECT_EQ(in_use(), base);
  EXPECT_EQ(LimitedTable::create(LimitedPolicy{0}).status(), Status::OutOfFrames);
}

TEST(EdgePageTables, EveryAllocationFailurePointOfAScenarioIsClean) {
  // Sweep inject_failure_at over a scenario that builds paths at every depth: whichever
  // allocation fails, that map changes nothing and the scenario completes when retried.
  const VirtAddr vas[] = {VirtAddr{0x10000000}, VirtAddr{0x10200000}, VirtAddr{0x80000000},
                          VirtAddr{0xffff800000000000ull}, VirtAddr{0x10001000}};
  for (std::uint64_t n = 1; n <= 10; ++n) {
    const auto base = in_use();
    int failures = 0;
    {
      PageTable t = make_table();
      frames().inject_failure_at(n);
      for (VirtAddr va : vas) {
        const Snapshot before = snapshot(t);
        const auto used = in_use();
        auto r = t.map_leaf(va, PhysAddr{0x7000}, kUserRw);
        if (!r.ok()) {
          ++failures;
          EXPECT_EQ(r.status(), Status::OutOfFrames);
          EXPECT_EQ(snapshot(t), before) << "n=" << n;
          EXPECT_EQ(in_use(), used) << "n=" << n;
          ASSERT_TRUE(t.map_leaf(va, PhysAddr{0x7000}, kUserRw).ok());
        }
        EXPECT_EQ(t.translate(va)->pa.value(), 0x7000u);
      }
      frames().inject_failure_at(0);
      EXPECT_EQ(t.owned_tables(), 1u + 2 + 3 + 4) << "PDPTs 2, PDs 3, PTs 4";
    }
    EXPECT_EQ(failures, n <= 9 ? 1 : 0) << "the scenario makes exactly 9 table allocations; n=" << n;
    EXPECT_EQ(in_use(), base);
  }
}

// --- Leaf references (docs/edge-cases.md "A frame stays alive as long as any page table maps it") -
TEST(EdgeSharing, HoldsRefKeepsFrameAliveUntilUnmap) {
  const auto base = in_use();
  PageTable t = make_table();
  FrameDesc* page = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  const VirtAddr va{0x10000000};
  ASSERT_TRUE(t.map_leaf(va, page->phys(), {.user = true, .holds_ref = true}).ok());
  EXPECT_EQ(page->refs.load(), 2u);
  EXPECT_FALSE(frames().unref(page)) << "the cap's last reference is gone but the mapping holds one";
  EXPECT_EQ(page->kind, FrameKind::Page);
  EXPECT_TRUE(t.translate(va)->flags.holds_ref);
  EXPECT_EQ(raw_entry(t, va, Level::Pt) & (1ull << 9), 1ull << 9) << "holds_ref is PTE bit 9";
  ASSERT_TRUE(t.unmap(va).ok());
  EXPECT_EQ(page->kind, FrameKind::Free);
  t.teardown();
  EXPECT_EQ(in_use(), base);
}

TEST(EdgeSharing, SameFrameInSeveralTablesOneTornDown) {
  const auto base = in_use();
  FrameDesc* page = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  PageTable a = make_table(), b = make_table();
  ASSERT_TRUE(a.map_leaf(VirtAddr{0x10000000}, page->phys(), {.user = true, .holds_ref = true}).ok());
  ASSERT_TRUE(b.map_leaf(VirtAddr{0x20000000}, page->phys(), {.user = true, .holds_ref = true}).ok());
  EXPECT_EQ(page->refs.load(), 3u);
  frames().unref(page);  // the owner lets go while both runs are live
  a.teardown();
  EXPECT_EQ(page->kind, FrameKind::Page);
  EXPECT_EQ(page->refs.load(), 1u);
  b.teardown();
  EXPECT_EQ(page->kind, FrameKind::Free);
  EXPECT_EQ(in_use(), base);
}

TEST(EdgeSharing, ReplaceDropsOldReferenceSameFrameKeepsIt) {
  FrameDesc* p1 = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  FrameDesc* p2 = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  PageTable t = make_table();
  const VirtAddr va{0x10000000};
  const LeafFlags f{.user = true, .holds_ref = true};
  ASSERT_TRUE(t.map_leaf(va, p1->phys(), f).ok());
  ASSERT_EQ(val(t.map_leaf(va, p1->phys(), {.writable = true, .user = true, .holds_ref = true})),
            pt::MapOutcome::Replaced);
  EXPECT_EQ(p1->refs.load(), 2u) << "re-mapping the same frame keeps exactly one mapping reference";
  ASSERT_EQ(val(t.map_leaf(va, p2->phys(), f)), pt::MapOutcome::Replaced);
  EXPECT_EQ(p1->refs.load(), 1u);
  EXPECT_EQ(p2->refs.load(), 2u);
  ASSERT_EQ(val(t.map_leaf(va, p1->phys(), {.user = true})), pt::MapOutcome::Replaced);  // no holds_ref
  EXPECT_EQ(p1->refs.load(), 1u);
  EXPECT_EQ(p2->refs.load(), 1u);
  t.teardown();
  EXPECT_EQ(p1->refs.load(), 1u) << "a leaf without holds_ref is never touched by teardown";
  frames().free(p1);
  frames().free(p2);
}

TEST(EdgeSharing, ZeroFrameHoldsRefIsANoOp) {
  PageTable t = make_table();
  FrameDesc* z = frames().zero_frame();
  const auto refs = z->refs.load();
  for (std::uint64_t i = 0; i < 4; ++i)
    ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000 + i * 4096}, z->phys(), {.user = true, .holds_ref = true}).ok());
  EXPECT_EQ(z->refs.load(), refs);
  t.teardown();
  EXPECT_EQ(z->refs.load(), refs);
  EXPECT_EQ(z->kind, FrameKind::Zero);
}

TEST(EdgeSharing, HoldsRefOnUnmanagedPhysicalAddressRefused) {
  PageTable t = make_table();
  const auto base = in_use();
  EXPECT_EQ(t.map_leaf(VirtAddr{0x10000000}, PhysAddr{1ull << 40}, {.holds_ref = true}).status(),
            Status::InvalidArgument);
  EXPECT_EQ(in_use(), base);
}

// --- Shared subtrees (docs/edge-cases.md: survive the teardown of every table that links them) ----
TEST(EdgePageTables, SharedPdptSurvivesTeardownOfEveryLinkingTable) {
  const auto base = in_use();
  FrameDesc* page = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  {
    PageTable kernel_half = make_table();
    const VirtAddr kva{0xffff800000000000ull};  // PML4 slot 256
    for (std::uint64_t i = 0; i < 3; ++i)
      ASSERT_TRUE(kernel_half.map_leaf(kva + i * 0x200000, page->phys(), {.writable = true, .holds_ref = true}).ok());
    const Snapshot kernel_before = snapshot(kernel_half);
    const auto refs_before = page->refs.load();
    {
      PageTable r1 = make_table(), r2 = make_table();
      ASSERT_TRUE(r1.link_from(kernel_half, kva, Level::Pdpt, {.writable = true, .user = false}).ok());
      ASSERT_TRUE(r2.link_from(kernel_half, kva, Level::Pdpt, {.writable = true, .user = false}).ok());
      EXPECT_EQ(r1.owned_tables(), 1u) << "the link owns nothing";
      EXPECT_EQ(r1.translate(kva + 0x200123)->pa.value(), page->phys().value() + 0x123);
      EXPECT_EQ(r2.translate(kva + 0x400000)->pa, page->phys());
      EXPECT_EQ(r1.subtree(kva, Level::Pdpt).value(), kernel_half.subtree(kva, Level::Pdpt).value());
      // The linking table never writes into the shared subtree.
      EXPECT_EQ(r1.map_leaf(kva + 0x1000, page->phys(), {}).status(), Status::SharedTable);
      EXPECT_EQ(r1.unmap(kva).status(), Status::SharedTable);
      EXPECT_EQ(r1.protect(kva, {.writable = true, .holds_ref = true}).status(), Status::SharedTable);
      // Its own guest half is independent.
      ASSERT_TRUE(r1.map_leaf(VirtAddr{0x10000000}, page->phys(), {.user = true, .holds_ref = true}).ok());
      r1.teardown();
      EXPECT_EQ(kernel_half.translate(kva)->pa, page->phys());
      EXPECT_EQ(r2.translate(kva)->pa, page->phys());
    }
    EXPECT_EQ(snapshot(kernel_half), kernel_before) << "the shared subtree was changed by the linkers' teardown";
    EXPECT_EQ(page->refs.load(), refs_before);
    EXPECT_EQ(in_use(), base + 1 + kernel_half.owned_tables());
  }
  EXPECT_EQ(page->refs.load(), 1u);
  frames().free(page);
  EXPECT_EQ(in_use(), base);
}

TEST(EdgePageTables, SharedPtUnderOwnedPd) {
  const auto base = in_use();
  {
    PageTable image = make_table();  // an image's code, built once
    const VirtAddr code{0x400000};   // CODE_BASE, 2 MiB aligned
    for (std::uint64_t i = 0; i < 16; ++i)
      ASSERT_TRUE(image.map_leaf(code + i * 4096, PhysAddr{0x100000 + i * 4096}, kUserRo).ok());
    PageTable run1 = make_table(), run2 = make_table();
    for (PageTable* r : {&run1, &run2}) {
      ASSERT_TRUE(r->link_from(image, code, Level::Pt, {.writable = false, .user = true}).ok());
      EXPECT_EQ(r->owned_tables(), 3u) << "PML4 + owned PDPT + owned PD; the PT is shared";
      EXPECT_EQ(r->translate(code + 5 * 4096 + 7)->pa.value(), 0x100000u + 5 * 4096 + 7);
      EXPECT_EQ(r->map_leaf(code + 100 * 4096, PhysAddr{0x1000}, kUserRo).status(), Status::SharedTable);
      // The neighbouring 2 MiB (owned PT under the same owned PD) is writable data.
      ASSERT_TRUE(r->map_leaf(code + 0x200000, PhysAddr{0x1000}, kUserRw).ok());
      // The shared PT link itself is read-only.
      EXPECT_FALSE(r->translate(code)->effective.writable);
    }
    run1.teardown();
    EXPECT_EQ(run2.translate(code)->pa.value(), 0x100000u);
    EXPECT_EQ(image.translate(code + 15 * 4096)->pa.value(), 0x100000u + 15 * 4096);
    // Refusals.
    const PhysAddr pt_pa = val(image.subtree(code, Level::Pt));
    EXPECT_EQ(run2.link_shared(code, Level::Pt, pt_pa).status(), Status::InvalidArgument) << "slot taken";
    EXPECT_EQ(run2.link_shared(code + 4096, Level::Pt, pt_pa).status(), Status::Misaligned);
    EXPECT_EQ(run2.link_shared(VirtAddr{0x40000000}, Level::Pd, pt_pa).status(), Status::InvalidArgument)
        << "a PT linked where a PD belongs";
    EXPECT_EQ(run2.link_shared(VirtAddr{0x40000000}, Level::Pd, PhysAddr{0x1000}).status(), Status::InvalidArgument);
  }
  EXPECT_EQ(in_use(), base);
}

TEST(EdgePageTables, RefusedLinkSharedLeavesTheTableAsItWas) {
  // A link into an entry that is taken is refused before anything is written: the rights
  // the refused link asked for are not OR-ed into the path above it (issue 14).
  const auto base = in_use();
  {
    PageTable image = make_table();
    const VirtAddr code{0x400000};
    ASSERT_TRUE(image.map_leaf(code, PhysAddr{0x100000}, kUserRo).ok());
    const PhysAddr pt_pa = val(image.subtree(code, Level::Pt));
    FrameDesc* pt_desc = frames().desc_of(pt_pa);
    PageTable run = make_table();
    ASSERT_TRUE(run.link_shared(code, Level::Pt, pt_pa, {.writable = false, .user = true}).ok());
    const VirtAddr data{0x10000000};  // an owned PT under another PDE
    ASSERT_TRUE(run.map_leaf(data, PhysAddr{0x1000}, kUserRo).ok());
    const Snapshot before = snapshot(run);
    const auto refs = pt_desc->refs.load();
    const auto used = in_use();
    // The PDE covering `code` holds the shared link; the one covering `data` an owned PT.
    for (const VirtAddr va : {code, data}) {
      EXPECT_EQ(run.link_shared(va, Level::Pt, pt_pa, {.writable = true, .user = true}).status(),
                Status::InvalidArgument);
      EXPECT_EQ(snapshot(run), before) << "a refused link_shared changed the table (va " << va.value() << ")";
    }
    EXPECT_EQ(pt_desc->refs.load(), refs);
    EXPECT_EQ(in_use(), used);
    EXPECT_FALSE(run.translate(code)->effective.writable);
    EXPECT_FALSE(run.translate(data)->effective.writable);
    // A link where the path is missing still builds it, and a free entry still takes one.
    ASSERT_TRUE(run.link_shared(VirtAddr{0x8000000000ull}, Level::Pt, pt_pa, {.writable = false, .user = true}).ok());
    EXPECT_EQ(run.translate(VirtAddr{0x8000000000ull})->pa.value(), 0x100000u);
  }
  EXPECT_EQ(in_use(), base);
}

TEST(EdgePageTablesDeathTest, FreeingASharedSubtreeStillLinkedTraps) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        PageTable owner = make_table();
        (void)owner.map_leaf(VirtAddr{0x10000000}, PhysAddr{0x1000}, kUserRo);
        PageTable linker = make_table();
        (void)linker.link_from(owner, VirtAddr{0}, Level::Pdpt);
        owner.teardown();
      },
      "still referenced");
}

// --- Rule 7.3: an accessed/dirty bit the CPU sets while the walker changes the entry is kept --
namespace {
constexpr std::uint64_t kA = 1ull << 5, kD = 1ull << 6;  // SDM Vol. 3A 4.8, Table 4-20

// Where and when the "CPU" sets bits: right after the walker's `at_load`-th load of `word`,
// between that load and whatever the walker writes next.
struct CpuRace {
  const pt::EntryWord* word = nullptr;
  unsigned at_load = 0;
  std::uint64_t bits = 0;
  unsigned loads = 0;
  bool fired = false;
};

// The default policy with its entry access interposed: plays the CPU, which sets A in the
// entries a walk uses and D in a leaf written through with locked read-modify-writes of its
// own (SDM 4.8), at a chosen point of the walker's sequence of loads. Deterministic: no race.
struct CpuRacePolicy : pt::FramePolicy {
  CpuRace* race = nullptr;
  [[nodiscard]] pt::EntryWord load(const pt::EntryWord* w) const {
    const pt::EntryWord v = pt::AtomicEntryAccess::load(w);
    if (race != nullptr && w == race->word && ++race->loads == race->at_load) {
      __atomic_fetch_or(const_cast<pt::EntryWord*>(w), race->bits, __ATOMIC_SEQ_CST);
      race->fired = true;
    }
    return v;
  }
};
static_assert(pt::TablePolicy<CpuRacePolicy>);
using RaceTable = pt::BasicPageTable<CpuRacePolicy>;

RaceTable make_race_table() {
  auto r = RaceTable::create();
  EXPECT_TRUE(r.ok());
  return r.release_value();
}

// The word of the entry of `level` on the walk to va (found with the SDM layout only).
pt::EntryWord* entry_word(const RaceTable& t, VirtAddr va, Level level) {
  std::uint64_t table = t.root().value();
  for (unsigned l = 4; l > static_cast<unsigned>(level); --l)
    table = slots_of(PhysAddr{table})[(va.value() >> (12 + 9 * (l - 1))) & 511] & 0x000ffffffffff000ull;
  return &slots_of(PhysAddr{table})[(va.value() >> (12 + 9 * (static_cast<unsigned>(level) - 1))) & 511];
}
}  // namespace

TEST(Rule7_3, ProtectKeepsAccessedAndDirtySetAfterItReadTheLeaf) {
  const VirtAddr va{0x10000000};
  const LeafFlags targets[] = {kUserRw, kUserRo, {.user = true, .no_execute = true}, {}};
  for (const LeafFlags& to : targets) {
    unsigned fired = 0;
    for (unsigned at = 1; at <= 4; ++at) {
      RaceTable t = make_race_table();
      ASSERT_TRUE(t.map_leaf(va, PhysAddr{0x5000}, kUserRo).ok());
      CpuRace race{.word = entry_word(t, va, Level::Pt), .at_load = at, .bits = kA | kD};
      t.policy().race = &race;
      ASSERT_TRUE(t.protect(va, to).ok());
      t.policy().race = nullptr;
      if (!race.fired) break;  // protect loaded the leaf fewer than `at` times
      ++fired;
      const std::uint64_t e = *race.word;
      EXPECT_EQ(e & (kA | kD), kA | kD) << "A/D set by the CPU after load " << at << " of the leaf were lost";
      EXPECT_EQ(e & 0x000ffffffffff000ull, 0x5000u) << "the frame is kept";
      EXPECT_EQ(t.translate(va)->flags, to) << "the new flags are in place";
    }
    EXPECT_GE(fired, 1u) << "protect reads the leaf at least once";
  }
}

TEST(Rule7_3, WideningAPathKeepsAccessedSetAfterItReadTheEntry) {
  // A user read-only leaf builds a path with P|U; a writable leaf next to it needs R/W
  // OR-ed into the PML4E, PDPTE and PDE: whichever load of that entry the CPU's A update
  // follows, it is still there afterwards, and so is the new R/W.
  const VirtAddr a{0x10000000}, b{0x10001000};
  for (Level l : {Level::Pml4, Level::Pdpt, Level::Pd}) {
    unsigned fired = 0;
    for (unsigned at = 1; at <= 8; ++at) {
      RaceTable t = make_race_table();
      ASSERT_TRUE(t.map_leaf(a, PhysAddr{0x5000}, kUserRo).ok());
      CpuRace race{.word = entry_word(t, a, l), .at_load = at, .bits = kA};
      ASSERT_EQ(*race.word & (kA | 2), 0u);
      t.policy().race = &race;
      ASSERT_TRUE(t.map_leaf(b, PhysAddr{0x6000}, kUserRw).ok());
      t.policy().race = nullptr;
      if (!race.fired) break;
      ++fired;
      EXPECT_EQ(*race.word & kA, kA) << "level " << static_cast<unsigned>(l) << ": A set after load " << at
                                     << " of the entry was lost";
      EXPECT_EQ(*race.word & 2, 2u) << "R/W was widened";
      EXPECT_TRUE(t.translate(b)->effective.writable);
    }
    EXPECT_GE(fired, 2u) << "the fast path and the slow path each read the entry";
  }
}

TEST(Rule7_3, AccessedAndDirtySetByAnotherThreadSurviveProtect) {
  // The same with a real second thread playing the CPU (races on purpose; the deterministic
  // tests above pin each interleaving): every leaf gets A and D from the "CPU" once, while
  // this thread keeps protecting every leaf; none may end without them.
  constexpr unsigned kLeaves = 64;
  const VirtAddr base{0x10000000};
  for (unsigned round = 0; round < 20; ++round) {
    PageTable t = make_table();
    std::vector<pt::EntryWord*> words;
    for (unsigned i = 0; i < kLeaves; ++i) {
      const VirtAddr va = base + i * PAGE_SIZE;
      ASSERT_TRUE(t.map_leaf(va, PhysAddr{0x5000 + i * PAGE_SIZE}, kUserRo).ok());
      words.push_back(&slots_of(val(t.subtree(va, Level::Pt)))[pt::index_at(va, Level::Pt)]);
    }
    std::atomic<bool> done{false};
    std::thread cpu([&] {
      for (unsigned i = 0; i < kLeaves; ++i) {
        __atomic_fetch_or(words[i], kA, __ATOMIC_SEQ_CST);
        __atomic_fetch_or(words[i], kD, __ATOMIC_SEQ_CST);
      }
      done.store(true);
    });
    unsigned n = 0;
    while (!done.load() || n < kLeaves) {
      const VirtAddr va = base + (n % kLeaves) * PAGE_SIZE;
      ASSERT_TRUE(t.protect(va, (n / kLeaves) % 2 == 0 ? kUserRw : kUserRo).ok());
      ++n;
    }
    cpu.join();
    for (unsigned i = 0; i < kLeaves; ++i) {
      const auto tr = t.translate(base + i * PAGE_SIZE);
      ASSERT_TRUE(tr.ok());
      EXPECT_TRUE(tr->accessed && tr->dirty) << "round " << round << " leaf " << i;
    }
  }
}
