// Rule 3.8 (checkpoints while a run is paused) and rule 4.5's read-only clusters, through
// both hosted engines: the simulated MMU (a missing TLB invalidation shows up as a store
// that does not fault) and the interpreter.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "engines.h"
#include "hostsim/env_hostsim.h"
#include "sim_util.h"

using namespace capmem;
using namespace capmem::fault;
using hostsim::EngineKind;
using hostsim::GuestCpu;

namespace {

using capmem::testutil::cap_of;
using capmem::testutil::pattern;

constexpr std::uint32_t kData = static_cast<std::uint32_t>(DATA_BASE);
constexpr std::uint32_t kPages = 16;

std::vector<std::uint8_t> bytes_of(const DataCap& c) {
  std::vector<std::uint8_t> v(c.size());
  EXPECT_TRUE(c.read(0, v.data(), v.size()).ok());
  return v;
}

using capmem::testutil::u64_at;

// 8 code pages, 16 data pages, pages 4..5 pinned (as in test_fault.cpp).
struct World {
  std::vector<std::uint8_t> code_bytes = pattern(8, 1);
  std::vector<std::uint8_t> mem_bytes = pattern(kPages, 2);
  DataCap code = cap_of(code_bytes);
  DataCap mem = cap_of(mem_bytes);
  pt::PageTable table = pt::PageTable::create().release_value();
  PinnedRange pinned{.first_page = 4, .pages = 2};
  RunConfig config(std::uint64_t gas = 1'000'000) {
    return RunConfig{.table = &table, .code = &code, .mem = &mem, .pinned = std::span(&pinned, 1), .gas = gas};
  }
};

class Checkpoint : public ::testing::TestWithParam<EngineKind> {};

// The lost store of issue 14: store, flush, store (the leaf used to stay writable, so the
// second store did not fault and went into a page the cap no longer held), flush.
TEST_P(Checkpoint, Rule3_8_StoreFlushStoreFlushGivesTheSecondValue) {
  World w;
  fault::Run run(w.config());
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t a = kData + 2 * 4096 + 16;
  ASSERT_EQ(cpu.store(a, 8, 0x1111111111111111ull).outcome, Outcome::Retry);
  ASSERT_TRUE(w.mem.flush().ok());
  EXPECT_EQ(u64_at(w.mem, a - kData), 0x1111111111111111ull);
  auto t = w.table.translate(VirtAddr{a});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->flags.writable);  // write-protected before the flush settled the page

  ASSERT_EQ(cpu.store(a, 8, 0x2222222222222222ull).outcome, Outcome::Retry);
  EXPECT_EQ(cpu.load(a, 8).value, 0x2222222222222222ull);
  ASSERT_TRUE(w.mem.flush().ok());
  EXPECT_EQ(u64_at(w.mem, a - kData), 0x2222222222222222ull);
  auto expect = w.mem_bytes;
  const std::uint64_t v = 0x2222222222222222ull;
  std::memcpy(&expect[a - kData], &v, 8);
  EXPECT_EQ(w.mem.root().value(), cap_of(expect).root().value());
  // One CoW charged; the re-copy after the checkpoint is free (rule 3.8).
  EXPECT_EQ(run.counters().cow, 1u);
  EXPECT_EQ(run.counters().recopies, 1u);
  EXPECT_EQ(run.gas_used(), kGasCosts.cow);
}

TEST_P(Checkpoint, Rule3_8_CopyTakenMidRunDoesNotSeeLaterStores) {
  World w;
  fault::Run run(w.config());
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t a = kData + 7 * 4096 + 8;
  ASSERT_EQ(cpu.store(a, 8, 0xaaaaaaaaaaaaaaaaull).outcome, Outcome::Retry);
  auto c = w.mem.copy();
  ASSERT_TRUE(c.ok());
  const auto snapshot = bytes_of(c.value());
  ASSERT_EQ(cpu.store(a, 8, 0xbbbbbbbbbbbbbbbbull).outcome, Outcome::Retry);
  ASSERT_EQ(cpu.store(a + 8, 8, 0xccccccccccccccccull).outcome, Outcome::Retry);
  EXPECT_EQ(bytes_of(c.value()), snapshot);
  EXPECT_EQ(u64_at(c.value(), a - kData), 0xaaaaaaaaaaaaaaaaull);
  ASSERT_TRUE(c->flush().ok());
  EXPECT_EQ(bytes_of(c.value()), snapshot);
  EXPECT_EQ(u64_at(w.mem, a - kData), 0xbbbbbbbbbbbbbbbbull);
  EXPECT_EQ(u64_at(w.mem, a - kData + 8), 0xccccccccccccccccull);
  EXPECT_EQ(run.gas_used(), kGasCosts.cow);
}

// write_page / write_slot / place_shared change the effective page under a paused run:
// its leaf follows (reads see the new bytes), stores after it land in the cap, nothing is
// charged again, and a page that became Missing is a guest page fault.
TEST_P(Checkpoint, Rule3_8_HostWritesMidRunAreSeenAndLaterStoresLand) {
  World w;
  fault::Run run(w.config());
  GuestCpu cpu(GetParam(), run);
  ASSERT_EQ(cpu.store(kData + 3 * 4096, 8, 1).outcome, Outcome::Retry);  // CoW page 3
  ASSERT_EQ(cpu.load(kData + 9 * 4096, 8).outcome, Outcome::Retry);      // page-in page 9
  const auto gas = run.gas_used();

  const auto host = pattern(1, 77);
  ASSERT_TRUE(w.mem.write_page(3, PageRef::from_content(host.data(), host.size()).release_value()).ok());
  std::uint64_t want;
  std::memcpy(&want, host.data(), 8);
  EXPECT_EQ(cpu.load(kData + 3 * 4096, 8).value, want);
  ASSERT_EQ(cpu.store(kData + 3 * 4096 + 8, 8, 0x3333).outcome, Outcome::Retry);

  const auto placed_bytes = pattern(2, 78);
  DataCap placed = cap_of(placed_bytes);
  ASSERT_TRUE(w.mem.place_shared(placed, 9 * PAGE_SIZE).ok());
  std::memcpy(&want, placed_bytes.data() + 16, 8);
  EXPECT_EQ(cpu.load(kData + 9 * 4096 + 16, 8).value, want);
  ASSERT_EQ(cpu.store(kData + 10 * 4096, 8, 0x4444).outcome, Outcome::Retry);  // first touch: charged

  auto miss = Slot::missing(hash::sha256("m", 1));
  ASSERT_TRUE(miss.ok());
  ASSERT_TRUE(w.mem.write_slot(9, miss.release_value()).ok());
  EXPECT_EQ(cpu.load(kData + 9 * 4096, 8).outcome, Outcome::GuestFault);
  EXPECT_EQ(run.gas_used(), gas + kGasCosts.cow);  // only page 10's CoW

  ASSERT_TRUE(w.mem.write_page(9, PageRef::from_content(host.data(), host.size()).release_value()).ok());
  ASSERT_TRUE(w.mem.flush().ok());
  auto expect = w.mem_bytes;
  std::memcpy(&expect[3 * 4096], host.data(), 4096);
  const std::uint64_t v3 = 0x3333, v10 = 0x4444;
  std::memcpy(&expect[3 * 4096 + 8], &v3, 8);
  std::memcpy(&expect[9 * 4096], host.data(), 4096);
  std::memcpy(&expect[10 * 4096], placed_bytes.data() + 4096, 4096);
  std::memcpy(&expect[10 * 4096], &v10, 8);
  EXPECT_EQ(bytes_of(w.mem), expect);
}

TEST_P(Checkpoint, Rule3_8_BusyWhileExecutingChangesNothing) {
  World w;
  fault::Run run(w.config());
  GuestCpu cpu(GetParam(), run);
  ASSERT_EQ(cpu.store(kData + 1 * 4096, 8, 5).outcome, Outcome::Retry);
  EXPECT_FALSE(run.executing());  // paused between accesses
  DataCap other = cap_of(pattern(2, 9));
  const void* backing = w.mem.backing_id();
  const auto before = bytes_of(w.mem);
  const auto free0 = hostsim::quiescent_frame_stats().free;
  {
    const fault::Run::Executing executing(run);
    EXPECT_EQ(w.mem.flush().status(), Status::Busy);
    EXPECT_EQ(w.mem.copy().status(), Status::Busy);
    EXPECT_EQ(w.mem.write_page(2, PageRef::unhashed_copy(nullptr).release_value()).status(), Status::Busy);
    EXPECT_EQ(w.mem.write_slot(2, Slot{}).status(), Status::Busy);
    EXPECT_EQ(w.mem.put_page(2, PageRef::unhashed_copy(nullptr).release_value()).status(), Status::Busy);
    EXPECT_EQ(w.mem.place_shared(other, 0).status(), Status::Busy);
    EXPECT_EQ(other.place_shared(w.mem, 0).status(), Status::Busy);  // w.mem is the source
    EXPECT_STREQ(status_rule(Status::Busy), "3.8");
  }
  EXPECT_EQ(w.mem.backing_id(), backing);
  EXPECT_EQ(w.mem.overlay_count(), 1u);
  EXPECT_EQ(bytes_of(w.mem), before);
  EXPECT_EQ(hostsim::quiescent_frame_stats().free, free0);
  EXPECT_TRUE(w.table.translate(VirtAddr{kData + 4096}).value().flags.writable);
  EXPECT_TRUE(w.mem.flush().ok());  // paused again
}

// The gas of a run does not depend on whether or when the host took checkpoints: random
// access tables, each run with and without random flush / copy / write_page / place_shared
// (writing back the bytes the page already holds, so the final root is the same).
TEST_P(Checkpoint, Rule3_8_GasAndRootIndependentOfCheckpoints) {
  for (std::uint32_t seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    struct Acc {
      bool store;
      std::uint32_t addr;
      unsigned width;
      std::uint64_t v;
      unsigned checkpoint;  // 0 none, 1 flush, 2 copy, 3 write_page, 4 place_shared
      std::uint32_t page;
    };
    std::vector<Acc> ops(80);
    for (auto& o : ops) {
      const unsigned widths[] = {1, 2, 4, 8};
      o.store = rng() % 2;
      o.width = widths[rng() % 4];
      o.addr = kData + rng() % (kPages * 4096);
      o.v = rng();
      o.checkpoint = rng() % 3 == 0 ? 1 + rng() % 4 : 0;
      o.page = rng() % kPages;
    }
    Hash32 roots[2];
    std::uint64_t gas[2];
    Counters counters[2];
    for (int with = 0; with < 2; ++with) {
      World w;
      std::vector<std::pair<DataCap, std::vector<std::uint8_t>>> copies;
      {
        fault::Run run(w.config());
        GuestCpu cpu(GetParam(), run);
        for (const auto& o : ops) {
          (void)(o.store ? cpu.store(o.addr, o.width, o.v) : cpu.load(o.addr, o.width));
          if (with == 0 || o.checkpoint == 0) continue;
          if (o.checkpoint == 1) {
            ASSERT_TRUE(w.mem.flush().ok());
          } else if (o.checkpoint == 2) {
            auto c = w.mem.copy();
            ASSERT_TRUE(c.ok());
            auto b = bytes_of(c.value());
            copies.emplace_back(c.release_value(), std::move(b));
          } else if (o.page >= 4 && o.page < 6) {
            continue;  // pinned: not written by the host here
          } else {
            std::vector<std::uint8_t> page(PAGE_SIZE);
            ASSERT_TRUE(w.mem.read(std::uint64_t{o.page} * PAGE_SIZE, page.data(), page.size()).ok());
            if (o.checkpoint == 3) {
              auto p = PageRef::from_content(page.data(), page.size());
              ASSERT_TRUE(p.ok());
              ASSERT_TRUE(w.mem.write_page(o.page, p.release_value()).ok());
            } else {
              DataCap one = cap_of(page);
              ASSERT_TRUE(w.mem.place_shared(one, std::uint64_t{o.page} * PAGE_SIZE).ok());
            }
          }
        }
        gas[with] = run.gas_used();
        counters[with] = run.counters();
      }
      for (auto& [c, snapshot] : copies) {
        EXPECT_EQ(bytes_of(c), snapshot) << "seed " << seed;  // no later store leaked in
        ASSERT_TRUE(c.flush().ok());
        EXPECT_EQ(bytes_of(c), snapshot) << "seed " << seed;
      }
      w.table.teardown();
      ASSERT_TRUE(w.mem.flush().ok());
      roots[with] = w.mem.root().value();
    }
    EXPECT_EQ(gas[0], gas[1]) << "seed " << seed;
    EXPECT_EQ(roots[0], roots[1]) << "seed " << seed;
    EXPECT_EQ(counters[0].cow, counters[1].cow) << "seed " << seed;
    EXPECT_EQ(counters[0].page_in, counters[1].page_in) << "seed " << seed;
    EXPECT_EQ(counters[0].clusters, counters[1].clusters) << "seed " << seed;
    if (HasFailure()) break;
  }
}

// A checkpoint that runs out of frames (for the paid bitmap or the flush itself) changes
// no byte, and the run's later stores still land.
TEST_P(Checkpoint, Rule3_8_OutOfFramesAtACheckpointLosesNothing) {
  for (std::uint64_t n = 1;; ++n) {
    World w;
    fault::Run run(w.config());
    GuestCpu cpu(GetParam(), run);
    ASSERT_EQ(cpu.store(kData + 6 * 4096, 8, 0x66).outcome, Outcome::Retry);
    const auto before = bytes_of(w.mem);
    frames().inject_failure_at(n);
    const auto f = w.mem.flush();
    frames().inject_failure_at(0);
    if (!f.ok()) {
      ASSERT_EQ(f.status(), Status::OutOfFrames) << n;
      EXPECT_EQ(bytes_of(w.mem), before) << n;
    }
    ASSERT_EQ(cpu.store(kData + 6 * 4096 + 8, 8, 0x77).outcome, Outcome::Retry);
    ASSERT_TRUE(w.mem.flush().ok());
    EXPECT_EQ(u64_at(w.mem, 6 * 4096), 0x66u) << n;
    EXPECT_EQ(u64_at(w.mem, 6 * 4096 + 8), 0x77u) << n;
    EXPECT_EQ(run.gas_used(), kGasCosts.cow) << n;
    if (f.ok()) break;
    ASSERT_LT(n, 20u);
  }
}

// Rule 4.5: two pinned ranges inside one 2 MiB cluster. The first fault in the cluster maps
// every page of both ranges (the second range's first fault used to map only its own
// page), charged once.
TEST_P(Checkpoint, Rule4_5_TwoPinnedRangesInOneClusterMapWholeOnFirstFault) {
  World w;
  const PinnedRange ranges[] = {{.first_page = 1, .pages = 2}, {.first_page = 8, .pages = 3}};
  auto s = Slot::missing(hash::sha256("x", 1));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(w.mem.write_slot(9, s.release_value()).ok());  // Missing: stays unmapped
  fault::Run run(RunConfig{.table = &w.table, .code = &w.code, .mem = &w.mem, .pinned = ranges, .gas = 1000});
  GuestCpu cpu(GetParam(), run);
  ASSERT_EQ(cpu.load(kData + 1 * 4096, 8).outcome, Outcome::Retry);
  EXPECT_EQ(run.counters().clusters, 1u);
  EXPECT_EQ(run.counters().cluster_pages, 4u);  // pages 1, 2, 8, 10 (9 is Missing)
  for (std::uint32_t p : {1u, 2u, 8u, 10u}) {
    auto t = w.table.translate(VirtAddr{kData + p * 4096});
    ASSERT_TRUE(t.ok()) << p;
    EXPECT_FALSE(t->flags.writable) << p;
    EXPECT_EQ(t->pa, w.mem.effective(p).frame->phys()) << p;
  }
  for (std::uint32_t p : {0u, 3u, 7u, 9u, 11u}) EXPECT_FALSE(w.table.translate(VirtAddr{kData + p * 4096}).ok()) << p;
  for (std::uint32_t p : {10u, 8u, 2u}) ASSERT_EQ(cpu.load(kData + p * 4096, 8).outcome, Outcome::Retry);
  EXPECT_EQ(cpu.load(kData + 9 * 4096, 8).outcome, Outcome::GuestFault);
  EXPECT_EQ(run.counters().clusters, 1u);
  EXPECT_EQ(run.gas_used(), kGasCosts.page_in);
  EXPECT_EQ(run.counters().spurious, 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, Checkpoint, ::testing::Values(EngineKind::Mmu, EngineKind::Interpreter),
                         [](const auto& i) { return std::string(i.param == EngineKind::Mmu ? "Mmu" : "Interp"); });

// The MMU engine marks the run executing for the whole access, faults included: a
// checkpoint attempted from inside a fault (as another CPU's host code would) is Busy.
TEST(Rule3_8, MmuEngineIsExecutingDuringAFault) {
  World w;
  fault::Run run(w.config());
  GuestCpu cpu(EngineKind::Mmu, run);
  struct Ctx {
    fault::Run* run;
    DataCap* mem;
    Status flush = Status::Ok;
    bool executing = false;
  } ctx{.run = &run, .mem = &w.mem};
  cpu.mmu().set_fault_entry(
      [](void* c, VirtAddr cr2, std::uint32_t err) {
        auto* x = static_cast<Ctx*>(c);
        x->executing = x->run->executing();
        x->flush = x->mem->flush().status();
        return x->run->handle_page_fault(cr2, err).outcome == Outcome::Retry;
      },
      &ctx);
  ASSERT_EQ(cpu.store(kData, 8, 1).outcome, Outcome::Retry);
  EXPECT_TRUE(ctx.executing);
  EXPECT_EQ(ctx.flush, Status::Busy);
  EXPECT_FALSE(run.executing());
}

// Executing marks nest (an engine's own mark inside a caller's guard); leave() without
// enter() is a bug.
TEST(Rule3_8, ExecutingMarksNest) {
  World w;
  fault::Run run(w.config());
  {
    const fault::Run::Executing outer(run);
    // The interpreter marks the run itself for its access, inside the caller's guard.
    EXPECT_EQ(fault::interp_store(run, kData, 8, 1).outcome, Outcome::Retry);
    EXPECT_TRUE(run.executing());
    EXPECT_EQ(w.mem.flush().status(), Status::Busy);
  }
  EXPECT_FALSE(run.executing());
  EXPECT_TRUE(w.mem.flush().ok());
  EXPECT_DEATH(run.leave(), "assertion failed");
}

// Two runs over one cap: both register, both are write-protected by one flush.
TEST(Rule3_8, TwoRunsOverOneCapBothCheckpointed) {
  World w;
  pt::PageTable table2 = pt::PageTable::create().release_value();
  fault::Run a(w.config());
  RunConfig cfg2 = w.config();
  cfg2.table = &table2;
  {
    fault::Run b(cfg2);
    {
      GuestCpu ca(EngineKind::Interpreter, a);
      ASSERT_EQ(ca.store(kData, 8, 1).outcome, Outcome::Retry);
    }
    {
      GuestCpu cb(EngineKind::Interpreter, b);
      ASSERT_EQ(cb.store(kData + 4096, 8, 2).outcome, Outcome::Retry);
    }
    ASSERT_TRUE(w.mem.flush().ok());
    EXPECT_FALSE(w.table.translate(VirtAddr{kData}).value().flags.writable);
    EXPECT_FALSE(table2.translate(VirtAddr{kData + 4096}).value().flags.writable);
    table2.teardown();
  }
  EXPECT_TRUE(w.mem.mapped_by_run());  // a is still attached
}

// A run's RunConfig points at its mem cap: destroying, moving or assigning to that cap under
// the run traps with the rule 3.9 message (the code cap: tests/sim/test_runs.cpp).
TEST(Rule3_8Death, DestroyingOrMovingACapARunMapsTraps) {
  EXPECT_DEATH(
      {
        auto* w = new World;
        auto* run = new fault::Run(w->config());
        (void)run;
        w->mem = cap_of(w->mem_bytes);  // move-assigning over a mapped cap
      },
      "assigning to a DataCap that a run maps(.|\n)*rule 3.9");
  EXPECT_DEATH(
      {
        auto* w = new World;
        auto* run = new fault::Run(w->config());
        (void)run;
        DataCap moved(std::move(w->mem));  // moving a mapped cap away
      },
      "moving from a DataCap that a run maps(.|\n)*rule 3.9");
  EXPECT_DEATH(
      {
        auto* mem = new DataCap(cap_of(pattern(1, 3)));
        auto* code = new DataCap(cap_of(pattern(1, 4)));
        auto* table = new pt::PageTable(pt::PageTable::create().release_value());
        auto* run = new fault::Run(RunConfig{.table = table, .code = code, .mem = mem, .pinned = {}, .gas = 1});
        (void)run;
        delete mem;  // destroying a mapped cap
      },
      "destroying a DataCap that a run maps(.|\n)*rule 3.9");
}

}  // namespace
