// Simulated TLB staleness (hostsim/mmu.h): docs/edge-cases.md "Page tables and the TLB".
// A translation stays cached until invlpg of its page or a CR3 load, so a missing
// invalidation reads stale memory here exactly as it would on hardware.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "capmem/frame.h"
#include "capmem/pt.h"
#include "hostsim/mmu.h"

#include "../test_util.h"

using namespace capmem;
using hostsim::AccessKind;
using hostsim::AccessStatus;
using hostsim::Mmu;
using hostsim::Privilege;

namespace {
using capmem::testutil::val;
constexpr pt::LeafFlags kRw{.writable = true, .user = true};
constexpr pt::LeafFlags kRo{.user = true};

struct Frame {
  FrameDesc* d;
  explicit Frame(std::uint8_t fill) : d(frames().alloc(FrameKind::Page)) { std::memset(d->virt(), fill, 4096); }
  ~Frame() { frames().unref(d); }
  PhysAddr pa() const { return d->phys(); }
};

struct Tlb : ::testing::Test {
  pt::PageTable table = pt::PageTable::create().release_value();
  Mmu mmu;
  void SetUp() override { mmu.load_cr3(table.root()); }
  void TearDown() override {
    Mmu::clear_current();
    table.teardown();
  }
};
}  // namespace

TEST_F(Tlb, HitMissCounters) {
  Frame a(1);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRw).ok());
  mmu.reset_counters();
  ASSERT_EQ(mmu.load(0x10000000, 4).status, AccessStatus::Ok);
  EXPECT_EQ(mmu.counters().misses, 1u);
  EXPECT_EQ(mmu.counters().hits, 0u);
  ASSERT_EQ(mmu.load(0x10000004, 4).status, AccessStatus::Ok);
  ASSERT_EQ(mmu.load(0x10000ff8, 8).status, AccessStatus::Ok);
  EXPECT_EQ(mmu.counters().misses, 1u);
  EXPECT_EQ(mmu.counters().hits, 2u);
  mmu.invlpg(VirtAddr{0x10000000});
  EXPECT_EQ(mmu.counters().invalidations, 1u);
  ASSERT_EQ(mmu.load(0x10000000, 4).status, AccessStatus::Ok);
  EXPECT_EQ(mmu.counters().misses, 2u);
  EXPECT_EQ(mmu.tlb_entries(), 1u);
}

TEST_F(Tlb, RemapWithoutInvalidationReadsStaleFrame) {
  Frame a(0xaa), b(0xbb);
  const VirtAddr va{0x10000000};
  ASSERT_TRUE(table.map_leaf(va, a.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau);
  // No MMU is current: the core's invlpg through the seam reaches nobody, as if the code
  // had forgotten to invalidate.
  Mmu::clear_current();
  ASSERT_EQ(val(table.map_leaf(va, b.pa(), kRo)), pt::MapOutcome::Replaced);
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau) << "the simulated TLB must keep the stale translation";
  mmu.invlpg(va);
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xbbu);
}

TEST_F(Tlb, RemapWithInvalidationReadsNewFrame) {
  Frame a(0xaa), b(0xbb);
  mmu.make_current();
  const VirtAddr va{0x10000000};
  ASSERT_TRUE(table.map_leaf(va, a.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau);
  const auto inv = mmu.counters().invalidations;
  ASSERT_EQ(val(table.map_leaf(va, b.pa(), kRo)), pt::MapOutcome::Replaced);
  EXPECT_EQ(mmu.counters().invalidations, inv + 1) << "map_leaf invalidated through env::tlb_invalidate_page";
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xbbu);
  ASSERT_TRUE(table.unmap(va).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).status, AccessStatus::Fault);
}

TEST_F(Tlb, UnmapWithoutInvalidationStillReadsThenFaultsAfterInvlpg) {
  Frame a(0x11);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0x11u);
  ASSERT_TRUE(table.unmap(VirtAddr{0x10000000}).ok());  // no current MMU: invalidation lost
  EXPECT_EQ(mmu.load(0x10000000, 1).status, AccessStatus::Ok) << "stale";
  mmu.invlpg(VirtAddr{0x10000000});
  auto r = mmu.load(0x10000000, 1);
  EXPECT_EQ(r.status, AccessStatus::Fault);
  EXPECT_EQ(r.error_code, 0x4u);
}

TEST_F(Tlb, PageTableReusedAfterClearNeedsCr3Reload) {
  Frame a(0xaa), b(0xbb);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau);
  // Run 1 ends; the same table (same root) is reused for run 2.
  table.clear();
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, b.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau) << "without a CR3 load run 1's translation survives";
  mmu.load_cr3(table.root());  // same value: still flushes non-global entries
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xbbu);
}

TEST_F(Tlb, PageTableRecreatedAfterTeardownNeedsCr3Reload) {
  Frame a(0xaa), b(0xbb);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau);
  table.teardown();
  table = pt::PageTable::create().release_value();
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, b.pa(), kRo).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau) << "stale until CR3 is loaded";
  mmu.load_cr3(table.root());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xbbu);
}

TEST_F(Tlb, GlobalEntrySurvivesCr3LoadButNotInvlpg) {
  Frame a(0xaa), b(0xbb);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), {.user = true, .global = true}).ok());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, b.pa(), {.user = true, .global = true}).ok());  // lost invlpg
  mmu.load_cr3(table.root());
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xaau) << "CR4.PGE = 1: a CR3 load keeps global entries";
  mmu.invlpg(VirtAddr{0x10000000});
  EXPECT_EQ(mmu.load(0x10000000, 1).value, 0xbbu);
}

TEST_F(Tlb, StaleNarrowEntryFaultsAndThePageFaultDropsIt) {
  // SDM 4.10.4.1/4.10.4.3: after a permission upgrade without invlpg the CPU may fault on
  // the cached read-only entry; the #PF invalidates it, so the retried access succeeds.
  Frame a(0);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRo).ok());
  ASSERT_EQ(mmu.load(0x10000000, 4).status, AccessStatus::Ok);
  ASSERT_TRUE(table.protect(VirtAddr{0x10000000}, kRw).ok());  // invalidation lost (no current MMU)
  int handler_calls = 0;
  mmu.set_fault_entry(
      [](void* c, VirtAddr, std::uint32_t err) {
        ++*static_cast<int*>(c);
        EXPECT_EQ(err, 0x7u);
        return true;  // "spurious": the table already allows it
      },
      &handler_calls);
  ASSERT_EQ(mmu.store(0x10000000, 4, 7).status, AccessStatus::Ok);
  EXPECT_EQ(handler_calls, 1);
  EXPECT_EQ(mmu.counters().fault_invalidations, 1u);
  EXPECT_EQ(mmu.load(0x10000000, 4).value, 7u);
}

TEST_F(Tlb, FirstWriteThroughCleanEntrySetsDirty) {
  Frame a(0);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRw).ok());
  ASSERT_EQ(mmu.load(0x10000000, 4).status, AccessStatus::Ok);
  EXPECT_TRUE(table.translate(VirtAddr{0x10000000})->accessed);
  EXPECT_FALSE(table.translate(VirtAddr{0x10000000})->dirty);
  ASSERT_EQ(mmu.store(0x10000000, 4, 1).status, AccessStatus::Ok);
  EXPECT_TRUE(table.translate(VirtAddr{0x10000000})->dirty);
  EXPECT_EQ(mmu.counters().dirty_assists, 1u);
  ASSERT_EQ(mmu.store(0x10000004, 4, 1).status, AccessStatus::Ok);
  EXPECT_EQ(mmu.counters().dirty_assists, 1u) << "the entry is dirty now";
}

TEST_F(Tlb, ProtectKeepsAccessedAndDirty) {
  Frame a(0);
  mmu.make_current();
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x10000000}, a.pa(), kRw).ok());
  ASSERT_EQ(mmu.store(0x10000000, 1, 1).status, AccessStatus::Ok);
  ASSERT_TRUE(table.protect(VirtAddr{0x10000000}, kRo).ok());
  EXPECT_TRUE(table.translate(VirtAddr{0x10000000})->dirty);
  EXPECT_EQ(mmu.store(0x10000000, 1, 2).status, AccessStatus::Fault) << "protect invalidated the writable entry";
}
