// Section 4 of docs/rules.md, in the hosted simulation: the #PF handler through the simulated
// MMU and through the interpreter engine.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/mem.h"
#include "demo.h"
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
constexpr std::uint32_t kCode = static_cast<std::uint32_t>(CODE_BASE);

// A run over a small world: 8 code pages, 16 data pages (pages 4..5 pinned).
struct World {
  std::vector<std::uint8_t> code_bytes = pattern(8, 1);
  std::vector<std::uint8_t> mem_bytes = pattern(16, 2);
  DataCap code = cap_of(code_bytes);
  DataCap mem = cap_of(mem_bytes);
  pt::PageTable table = pt::PageTable::create().release_value();
  PinnedRange pinned{.first_page = 4, .pages = 2};

  fault::Run make_run(std::uint64_t gas = 1'000'000) {
    return fault::Run(
        RunConfig{.table = &table, .code = &code, .mem = &mem, .pinned = std::span(&pinned, 1), .gas = gas});
  }
};

class FaultTest : public ::testing::TestWithParam<EngineKind> {};

TEST_P(FaultTest, Rule4_3_ReadMapsSourceReadOnlyWriteMakesPrivateCopy) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  auto r = cpu.load(kData + 8, 8);
  ASSERT_EQ(r.outcome, Outcome::Retry);
  std::uint64_t expect;
  std::memcpy(&expect, w.mem_bytes.data() + 8, 8);
  EXPECT_EQ(r.value, expect);
  EXPECT_EQ(run.counters().page_in, 1u);
  EXPECT_EQ(w.mem.overlay_count(), 0u);
  auto t = w.table.translate(VirtAddr{kData});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->flags.writable);
  const PhysAddr source = w.mem.effective(0).frame->phys();
  EXPECT_EQ(t->pa, source);  // the source frame itself, shared

  // Read first, then write the same page: the read-only mapping is replaced by a copy.
  ASSERT_EQ(cpu.store(kData + 8, 8, 0x1122334455667788ull).outcome, Outcome::Retry);
  EXPECT_EQ(run.counters().cow, 1u);
  EXPECT_EQ(w.mem.overlay_count(), 1u);
  auto t2 = w.table.translate(VirtAddr{kData});
  ASSERT_TRUE(t2.ok());
  EXPECT_TRUE(t2->flags.writable);
  EXPECT_NE(t2->pa, source);  // a private copy; the backing's frame is untouched
  EXPECT_EQ(cpu.load(kData + 8, 8).value, 0x1122334455667788ull);
  EXPECT_EQ(run.gas_used(), kGasCosts.page_in + kGasCosts.cow);
}

TEST_P(FaultTest, Rule4_3_WriteFirstToEmptyPageGetsZeroedFrame) {
  World w;
  w.mem_bytes.assign(16 * PAGE_SIZE, 0);
  w.mem = cap_of(w.mem_bytes);
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  ASSERT_EQ(cpu.store(kData + 100, 1, 0xab).outcome, Outcome::Retry);
  EXPECT_EQ(cpu.load(kData + 99, 1).value, 0u);
  EXPECT_EQ(cpu.load(kData + 100, 1).value, 0xabu);
  EXPECT_EQ(run.counters().page_in, 0u);
  EXPECT_EQ(run.counters().cow, 1u);
  EXPECT_TRUE(mem::page_is_zero(frames().zero_frame()->virt()));  // never written through
}

TEST_P(FaultTest, Rule4_3_GuestFaultsChargeNothing) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  // Null guard, gap between regions, past the mem cap, write to pinned, write to code.
  for (std::uint32_t a : {0u, 4096u, kCode - 1, kCode + 8 * 4096, kData - 1, kData + 16 * 4096}) {
    auto r = cpu.load(a, 1);
    EXPECT_EQ(r.outcome, Outcome::GuestFault) << a;
    EXPECT_EQ(r.addr.value(), a);
  }
  EXPECT_EQ(cpu.store(kData + 4 * 4096 + 5, 1, 1).outcome, Outcome::GuestFault);
  EXPECT_EQ(cpu.store(kCode + 5, 1, 1).outcome, Outcome::GuestFault);
  EXPECT_EQ(run.gas_used(), 0u);
  EXPECT_EQ(w.mem.overlay_count(), 0u);
  // The first byte after a region and its last byte.
  EXPECT_EQ(cpu.load(kData + 16 * 4096 - 1, 1).outcome, Outcome::Retry);
}

TEST_P(FaultTest, Rule2_1_MissingPageIsGuestFault) {
  World w;
  auto s = Slot::missing(hash::sha256("x", 1));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(w.mem.write_slot(3, s.release_value()).ok());
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  EXPECT_EQ(cpu.load(kData + 3 * 4096, 4).outcome, Outcome::GuestFault);
  EXPECT_EQ(cpu.store(kData + 3 * 4096, 4, 7).outcome, Outcome::GuestFault);
  EXPECT_EQ(run.gas_used(), 0u);
}

TEST_P(FaultTest, Rule4_5_ReadOnlyClusterChargedOnce) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  for (std::uint32_t p = 0; p < 8; ++p) ASSERT_EQ(cpu.load(kCode + p * 4096, 8).outcome, Outcome::Retry);
  EXPECT_EQ(run.counters().clusters, 1u);
  EXPECT_EQ(run.counters().cluster_pages, 8u);
  EXPECT_EQ(run.gas_used(), kGasCosts.page_in);
  // The pinned range is its own cluster (in the data region).
  ASSERT_EQ(cpu.load(kData + 5 * 4096, 8).outcome, Outcome::Retry);
  ASSERT_EQ(cpu.load(kData + 4 * 4096, 8).outcome, Outcome::Retry);
  EXPECT_EQ(run.counters().clusters, 2u);
  EXPECT_EQ(run.gas_used(), 2 * kGasCosts.page_in);
}

TEST_P(FaultTest, Rule4_5_GasExactlyEnoughAndOneLess) {
  for (std::uint64_t gas : {kGasCosts.cow, kGasCosts.cow - 1}) {
    World w;
    fault::Run run = w.make_run(gas);
    GuestCpu cpu(GetParam(), run);
    auto r = cpu.store(kData + 10, 1, 5);
    if (gas == kGasCosts.cow) {
      EXPECT_EQ(r.outcome, Outcome::Retry);
      EXPECT_EQ(run.gas_left(), 0u);
    } else {
      EXPECT_EQ(r.outcome, Outcome::OutOfGas);
      EXPECT_EQ(run.gas_left(), gas);
      EXPECT_EQ(w.mem.overlay_count(), 0u);
      EXPECT_EQ(w.table.owned_tables(), 1u);  // only the PML4: stopped before anything was allocated
    }
  }
}

TEST_P(FaultTest, Rule4_4_OutOfFramesAtEveryAllocationLeavesEverythingUnchanged) {
  for (std::uint64_t n = 1;; ++n) {
    World w;
    fault::Run run = w.make_run();
    GuestCpu cpu(GetParam(), run);
    const auto free0 = hostsim::quiescent_frame_stats().free;
    frames().inject_failure_at(n);
    auto r = cpu.store(kData + 2 * 4096 + 1, 2, 0xbeef);
    frames().inject_failure_at(0);
    if (r.outcome == Outcome::Retry) {
      EXPECT_GT(n, 1u);
      break;
    }
    ASSERT_EQ(r.outcome, Outcome::OutOfFrames) << n;
    EXPECT_EQ(w.mem.overlay_count(), 0u);
    EXPECT_EQ(run.gas_used(), 0u);
    EXPECT_FALSE(w.table.translate(VirtAddr{kData + 2 * 4096}).ok());
    EXPECT_EQ(hostsim::quiescent_frame_stats().free, free0) << "allocation " << n;
    // Retryable once memory is back.
    EXPECT_EQ(cpu.store(kData + 2 * 4096 + 1, 2, 0xbeef).outcome, Outcome::Retry);
    ASSERT_LT(n, 20u);
  }
}

TEST_P(FaultTest, StraddlingStoreWritesNothingBeforeSecondPageResolves) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  // Second page is pinned (read-only): the whole store must fault, first page unchanged.
  const std::uint32_t a = kData + 4 * 4096 - 2;
  auto r = cpu.store(a, 4, 0xffffffff);
  EXPECT_EQ(r.outcome, Outcome::GuestFault);
  EXPECT_EQ(r.addr.value(), kData + 4 * 4096);
  std::uint16_t orig;
  std::memcpy(&orig, w.mem_bytes.data() + 4 * 4096 - 2, 2);
  EXPECT_EQ(cpu.load(a, 2).value, orig);
  // A straddling store into two CoW pages lands in both.
  ASSERT_EQ(cpu.store(kData + 4096 - 4, 8, 0x0102030405060708ull).outcome, Outcome::Retry);
  EXPECT_EQ(cpu.load(kData + 4096 - 4, 8).value, 0x0102030405060708ull);
  // The faulted store above already materialized its first page (the CPU resolves page
  // by page, writing nothing until all are present): 1 + 2 copies.
  EXPECT_EQ(run.counters().cow, 3u);
}

TEST_P(FaultTest, WrapPast4GiBIsGuestFault) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  auto r = cpu.load(0xfffffffcu, 8);
  EXPECT_EQ(r.outcome, Outcome::GuestFault);
  EXPECT_EQ(run.gas_used(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, FaultTest, ::testing::Values(EngineKind::Mmu, EngineKind::Interpreter),
                         [](const auto& i) { return std::string(i.param == EngineKind::Mmu ? "Mmu" : "Interp"); });

TEST(Rule4_3, SpuriousFaultOnlyInvalidatesAndRetries) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(EngineKind::Mmu, run);
  ASSERT_EQ(cpu.store(kData, 1, 1).outcome, Outcome::Retry);
  const auto gas = run.gas_used();
  auto a =
      run.handle_page_fault(VirtAddr{kData}, pt::ErrorCode::kUser | pt::ErrorCode::kWrite | pt::ErrorCode::kPresent);
  EXPECT_EQ(a.outcome, Outcome::Retry);
  EXPECT_EQ(run.counters().spurious, 1u);
  EXPECT_EQ(run.gas_used(), gas);
}

TEST(Rule4_2, RunStartsEmptyAndTeardownReturnsEveryFrame) {
  const auto free0 = hostsim::quiescent_frame_stats().free;
  {
    World w;
    fault::Run run = w.make_run();
    EXPECT_EQ(w.table.owned_tables(), 1u);  // just the PML4
    GuestCpu cpu(EngineKind::Mmu, run);
    for (std::uint32_t p = 0; p < 16; ++p)
      ASSERT_EQ(cpu.store(kData + p * 4096, 1, p).outcome, p == 4 || p == 5 ? Outcome::GuestFault : Outcome::Retry);
    EXPECT_EQ(w.table.owned_tables(), 4u);  // PML4 + PDPT, PD, PT
    w.table.teardown();
    ASSERT_TRUE(w.mem.flush().ok());
  }
  EXPECT_EQ(hostsim::quiescent_frame_stats().free, free0);
}

TEST(EdgeCases, DroppingTheCapMidRunDoesNotFreeMappedFrames) {
  World w;
  fault::Run run = w.make_run();
  GuestCpu cpu(EngineKind::Mmu, run);
  ASSERT_EQ(cpu.load(kData, 1).outcome, Outcome::Retry);
  FrameDesc* f = w.mem.effective(0).frame;
  const auto refs = f->refs.load();
  EXPECT_GE(refs, 2u);  // the backing and the mapping
}

// The demo, both engines, against an independent model: original bytes + the op table's
// stores applied in order, hashed from scratch.
TEST(Demo, BothEnginesAgreeAndRootMatchesModel) {
  auto a = hostsim::run_demo(EngineKind::Mmu, demo::kDefaultGas);
  auto b = hostsim::run_demo(EngineKind::Interpreter, demo::kDefaultGas);
  ASSERT_TRUE(a.ok) << a.error;
  ASSERT_TRUE(b.ok) << b.error;
  EXPECT_EQ(a.line, b.line);
  EXPECT_EQ(a.progress.checksum, b.progress.checksum);
  EXPECT_EQ(a.progress.stop, Outcome::Retry);
  EXPECT_EQ(a.progress.ops_done, demo::kOps - 1);

  auto img = demo::build();
  ASSERT_TRUE(img.ok());
  std::vector<std::uint8_t> mem(img->mem.size()), code(img->code.size());
  ASSERT_TRUE(img->mem.read(0, mem.data(), mem.size()).ok());
  ASSERT_TRUE(img->code.read(0, code.data(), code.size()).ok());
  for (std::uint32_t i = 0; i < demo::kOps; ++i) {
    demo::Op op;
    std::memcpy(&op, code.data() + i * sizeof op, sizeof op);
    if (op.kind != demo::kStore) continue;
    for (unsigned k = 0; k < op.width; ++k) mem[op.addr - kData + k] = static_cast<std::uint8_t>(op.value >> (8 * k));
  }
  auto model = DataCap::from_bytes(mem.data(), mem.size());
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->root().value(), a.root);
}

TEST(Demo, OutOfGasStopsAtTheSameOpInBothEngines) {
  for (std::uint64_t gas : {0ull, 19ull, 20ull, 1000ull, 4321ull}) {
    auto a = hostsim::run_demo(EngineKind::Mmu, gas);
    auto b = hostsim::run_demo(EngineKind::Interpreter, gas);
    ASSERT_TRUE(a.ok && b.ok);
    EXPECT_EQ(a.progress.stop, Outcome::OutOfGas) << gas;
    EXPECT_EQ(a.progress.ops_done, b.progress.ops_done);
    EXPECT_EQ(a.progress.addr, b.progress.addr);
    EXPECT_EQ(a.line, b.line);
    EXPECT_LE(a.gas_used, gas);
  }
}

// Random operation tables: both engines must charge identically and leave the same root.
TEST(Parity, RandomOperationTables) {
  for (std::uint32_t seed = 0; seed < 2000; ++seed) {
    std::mt19937 rng(seed);
    struct Acc {
      bool store;
      std::uint32_t addr;
      unsigned width;
      std::uint64_t v;
    };
    std::vector<Acc> ops(100);
    for (auto& o : ops) {
      const unsigned widths[] = {1, 2, 4, 8};
      o.store = rng() % 2;
      o.width = widths[rng() % 4];
      const std::uint32_t r = rng() % 10;
      o.addr = r == 0 ? kCode + rng() % (9 * 4096) : kData + rng() % (17 * 4096);
      o.v = rng();
    }
    Hash32 roots[2];
    std::uint64_t gas[2];
    for (int e = 0; e < 2; ++e) {
      World w;
      fault::Run run = w.make_run(1'000'000);
      {
        GuestCpu cpu(e == 0 ? EngineKind::Mmu : EngineKind::Interpreter, run);
        for (const auto& o : ops) (void)(o.store ? cpu.store(o.addr, o.width, o.v) : cpu.load(o.addr, o.width));
      }
      gas[e] = run.gas_used();
      w.table.teardown();
      ASSERT_TRUE(w.mem.flush().ok());
      roots[e] = w.mem.root().value();
    }
    EXPECT_EQ(gas[0], gas[1]) << "seed " << seed;
    EXPECT_EQ(roots[0], roots[1]) << "seed " << seed;
  }
}

}  // namespace
