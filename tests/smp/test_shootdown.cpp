// TLB shootdown across simulated CPUs (docs/rules.md rule 7.2; hostsim/cpus.h, docs/smp.md).
//
// Each simulated CPU has its own TLB (the hostsim::Mmu current on it). These tests run on
// one host thread and move between simulated CPUs with CpuBinding, so every interleaving
// is fixed: CPU 1 caches a translation, CPU 0 removes or narrows it, CPU 1 looks again.
// The detector (stale_read) is shown to catch the bug first: with only a local invlpg, the
// way every invalidation worked before SMP, CPU 1 keeps reading the old frame.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/page.h"
#include "capmem/pt.h"
#include "hostsim/cpus.h"
#include "hostsim/mmu.h"

#include "../test_util.h"

using namespace capmem;
using capmem::testutil::val;
using hostsim::AccessStatus;
using hostsim::CpuBinding;
using hostsim::Mmu;

namespace {

constexpr pt::LeafFlags kRo{.user = true, .holds_ref = true};
constexpr VirtAddr kVa{0x40000000};  // 1 GiB: a PT of its own, 2 MiB aligned for link_shared

FrameDesc* filled_frame(std::uint8_t fill) {
  FrameDesc* d = frames().alloc(FrameKind::Page);
  if (d != nullptr) std::memset(d->virt(), fill, PAGE_SIZE);
  return d;
}

// What CPU `cpu` reads at kVa through its own TLB (-1: a page fault).
int read_on(unsigned cpu, Mmu& mmu) {
  const CpuBinding on(cpu);
  const auto r = mmu.load(static_cast<std::uint32_t>(kVa.value()), 1);
  return r.status == AccessStatus::Ok ? static_cast<int>(r.value) : -1;
}

// True if `mmu` (on another CPU) still reaches a translation its page table no longer has.
bool stale_read(unsigned cpu, Mmu& mmu, const pt::PageTable& table) {
  const bool mapped = table.translate(kVa).ok();
  return !mapped && (mmu.tlb_cached(kVa) || read_on(cpu, mmu) >= 0);
}

// A donor table with one read-only page at kVa, its PT linked (link_shared) into a run's
// table; CPU 1 has the run's table loaded and has read through it.
struct SharedSubtree : ::testing::Test {
  pt::PageTable donor = val(pt::PageTable::create());
  pt::PageTable run = val(pt::PageTable::create());
  Mmu cpu1;
  FrameDesc* page = nullptr;

  void SetUp() override {
    hostsim::start_cpus(2);
    page = filled_frame(0x5a);
    ASSERT_NE(page, nullptr);
    ASSERT_TRUE(donor.map_leaf(kVa, page->phys(), kRo).ok());
    frames().unref(page);  // the mapping holds the only reference now
    ASSERT_TRUE(run.link_from(donor, kVa, pt::Level::Pt).ok());
    {
      const CpuBinding on(1);
      cpu1.make_current();
      cpu1.load_cr3(run.root());
    }
    ASSERT_EQ(read_on(1, cpu1), 0x5a);
    ASSERT_TRUE(cpu1.tlb_cached(kVa));
  }
  void TearDown() override {
    {
      const CpuBinding on(1);
      Mmu::clear_current();
    }
    run.teardown();
    donor.teardown();
  }
};

}  // namespace

// The positive control: the pre-SMP behaviour (entry cleared, invlpg on this CPU only,
// frame freed and reused) leaves CPU 1 reading the reused frame. stale_read sees it.
TEST_F(SharedSubtree, LocalInvlpgOnlyLeavesAStaleTranslationOnAnotherCpu) {
  const PhysAddr pt_pa = val(donor.subtree(kVa, pt::Level::Pt));
  auto* slots = static_cast<pt::EntryWord*>(env::phys_to_virt(pt_pa));
  slots[pt::index_at(kVa, pt::Level::Pt)] = 0;
  env::tlb_invalidate_page(kVa);  // CPU 0's TLB only
  frames().unref(page);           // the mapping's reference: the frame is free
  FrameDesc* reused = filled_frame(0x77);
  ASSERT_EQ(reused, page) << "the freed frame is handed out next (CPU 0's cache is LIFO)";
  EXPECT_TRUE(stale_read(1, cpu1, donor));
  EXPECT_EQ(read_on(1, cpu1), 0x77) << "CPU 1 reads the bytes of whatever the frame holds next";
  frames().free(reused);
}

TEST_F(SharedSubtree, UnmapShootsDownEveryCpu) {
  const auto before = hostsim::shootdown_counters();
  ASSERT_TRUE(donor.unmap(kVa).ok());
  const auto after = hostsim::shootdown_counters();
  EXPECT_EQ(after.calls, before.calls + 1);
  EXPECT_EQ(after.dropped, before.dropped + 1);  // CPU 1's entry (CPU 0 had none)
  EXPECT_FALSE(stale_read(1, cpu1, donor));
  EXPECT_EQ(read_on(1, cpu1), -1);
  FrameDesc* reused = filled_frame(0x77);  // whatever the frame holds next is out of reach
  EXPECT_EQ(read_on(1, cpu1), -1);
  frames().free(reused);
}

TEST_F(SharedSubtree, ProtectNarrowsOnEveryCpu) {
  // Widen the leaf (a shootdown too), let CPU 1 cache it, then take user access away.
  ASSERT_TRUE(donor.protect(kVa, pt::LeafFlags{.writable = true, .user = true, .holds_ref = true}).ok());
  // The link is read-only (LinkFlags default): CPU 1 holds the read translation, cached
  // again after the widening. Narrowing must drop it wherever it is cached.
  ASSERT_EQ(read_on(1, cpu1), 0x5a);
  ASSERT_TRUE(donor.protect(kVa, pt::LeafFlags{.user = false, .holds_ref = true}).ok());
  EXPECT_FALSE(cpu1.tlb_cached(kVa));
  EXPECT_EQ(read_on(1, cpu1), -1) << "a user read of a supervisor page faults once the TLB entry is gone";
}

// clear()/teardown() of a table still loaded on another CPU (a CPU the run has left):
// its entries go before the frames do; a CPU with another CR3 loaded keeps its own.
TEST(Shootdown, ClearDropsEntriesOnCpusWithTheRootLoaded) {
  hostsim::start_cpus(3);
  pt::PageTable a = val(pt::PageTable::create());
  pt::PageTable b = val(pt::PageTable::create());
  FrameDesc* pa = filled_frame(0x11);
  FrameDesc* pb = filled_frame(0x22);
  ASSERT_NE(pa, nullptr);
  ASSERT_NE(pb, nullptr);
  ASSERT_TRUE(a.map_leaf(kVa, pa->phys(), kRo).ok());
  ASSERT_TRUE(b.map_leaf(kVa, pb->phys(), kRo).ok());
  frames().unref(pa);
  frames().unref(pb);
  Mmu m1, m2;
  {
    const CpuBinding on(1);
    m1.make_current();
    m1.load_cr3(a.root());
  }
  {
    const CpuBinding on(2);
    m2.make_current();
    m2.load_cr3(b.root());
  }
  ASSERT_EQ(read_on(1, m1), 0x11);
  ASSERT_EQ(read_on(2, m2), 0x22);
  a.clear();
  EXPECT_FALSE(m1.tlb_cached(kVa)) << "CPU 1 had a's root loaded";
  EXPECT_TRUE(m2.tlb_cached(kVa)) << "CPU 2 runs b: a's shootdown is not for it";
  EXPECT_EQ(read_on(1, m1), -1);
  EXPECT_EQ(read_on(2, m2), 0x22);
  for (unsigned cpu : {1u, 2u}) {
    const CpuBinding on(cpu);
    Mmu::clear_current();
  }
  b.teardown();
  a.teardown();
}

// The same run's table on no other CPU: a shootdown that finds no cached entry drops none
// (and costs one pass over the simulated CPUs).
TEST(Shootdown, NothingCachedNothingDropped) {
  pt::PageTable t = val(pt::PageTable::create());
  FrameDesc* p = filled_frame(1);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(t.map_leaf(kVa, p->phys(), kRo).ok());
  frames().unref(p);
  const auto before = hostsim::shootdown_counters();
  ASSERT_TRUE(t.unmap(kVa).ok());
  const auto after = hostsim::shootdown_counters();
  EXPECT_EQ(after.calls, before.calls + 1);
  EXPECT_EQ(after.pages, before.pages + 1);
  EXPECT_EQ(after.dropped, before.dropped);
}

// A checkpoint that re-points a paused run's leaf (write_page on its mem cap: rule 3.8,
// Run::refresh_page) while the run's table is still loaded on another CPU (a CPU the run
// has left; a kernel with PCIDs keeps it there): the old translation goes on every CPU
// before the old frame can be reused, as unmap's does. Here the old frame is the run's own
// CoW copy, which the replaced overlay entry and the leaf held: the refresh frees it.
TEST(Shootdown, CheckpointRefreshOfALeafShootsDownEveryCpu) {
  hostsim::start_cpus(2);
  std::uint8_t bytes[PAGE_SIZE];
  std::memset(bytes, 0x11, sizeof bytes);
  DataCap code = val(DataCap::create(PAGE_SIZE));
  DataCap mem = val(DataCap::from_bytes(bytes, sizeof bytes));
  pt::PageTable table = val(pt::PageTable::create());
  const VirtAddr va{fault::DATA_BASE};
  Mmu cpu1;
  {
    std::optional<fault::Run> run;
    run.emplace(fault::RunConfig{.table = &table, .code = &code, .mem = &mem, .gas = 1'000'000});
    constexpr std::uint32_t kUser = pt::ErrorCode::kUser;
    ASSERT_EQ(run->handle_page_fault(va, kUser).outcome, fault::Outcome::Retry);
    ASSERT_EQ(run->handle_page_fault(va, kUser | pt::ErrorCode::kPresent | pt::ErrorCode::kWrite).outcome,
              fault::Outcome::Retry);  // the run's CoW copy, mapped writable
    // The copy holds 0x5a where CPU 1 will look.
    const auto leaf = val(table.translate(va));
    std::memset(env::phys_to_virt(leaf.pa), 0x5a, PAGE_SIZE);
    {
      const CpuBinding on(1);
      cpu1.make_current();
      cpu1.load_cr3(table.root());
    }
    const auto seen = [&] {
      const CpuBinding on(1);
      const auto r = cpu1.load(static_cast<std::uint32_t>(va.value()), 1);
      return r.status == AccessStatus::Ok ? static_cast<int>(r.value) : -1;
    };
    ASSERT_EQ(seen(), 0x5a);
    ASSERT_TRUE(cpu1.tlb_cached(va));
    // The checkpoint (the run is paused): page 0 becomes 0x33 bytes.
    std::memset(bytes, 0x33, sizeof bytes);
    ASSERT_TRUE(mem.write_page(0, val(PageRef::from_content(bytes, sizeof bytes))).ok());
    // The old copy is free: whatever it holds next must be out of CPU 1's reach.
    FrameDesc* reused = filled_frame(0x77);
    ASSERT_NE(reused, nullptr);
    EXPECT_NE(seen(), 0x77) << "CPU 1 still reaches the run's old copy through its TLB";
    EXPECT_EQ(seen(), 0x33);
    frames().free(reused);
    {
      const CpuBinding on(1);
      Mmu::clear_current();
    }
    run.reset();
  }
  table.teardown();
}
