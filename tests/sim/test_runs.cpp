// Several runs over one cap (rule 3.9), the code cap inside the checkpoint rule (3.8 + 3.9),
// empty caps (rule 3.10) and regions past their limits (rule 4.1), through both hosted
// engines: the simulated MMU (a leaf left writable on a page the cap no longer holds shows up
// as a store that does not fault) and the interpreter. Every expected byte comes from a
// plain model of the stores (std::vector), every expected root from DataCap::from_bytes of
// that model.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "engines.h"
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
constexpr std::uint32_t kPages = 8;

using capmem::testutil::u64_at;

void put_u64(std::vector<std::uint8_t>& model, std::uint64_t off, std::uint64_t v) { std::memcpy(&model[off], &v, 8); }

std::uint64_t model_u64(const std::vector<std::uint8_t>& model, std::uint64_t off) {
  std::uint64_t v = 0;
  std::memcpy(&v, &model[off], 8);
  return v;
}

// One code cap, one mem cap, two page tables: runs A and B over the same caps.
struct Two {
  std::vector<std::uint8_t> code_bytes = pattern(2, 1);
  std::vector<std::uint8_t> mem_bytes = pattern(kPages, 2);
  DataCap code = cap_of(code_bytes);
  DataCap mem = cap_of(mem_bytes);
  pt::PageTable ta = pt::PageTable::create().release_value();
  pt::PageTable tb = pt::PageTable::create().release_value();
  RunConfig config(pt::PageTable* t) {
    return RunConfig{.table = t, .code = &code, .mem = &mem, .pinned = {}, .gas = 1'000'000};
  }
  ~Two() {
    ta.teardown();
    tb.teardown();
  }
};

// One simulated CPU that runs one run at a time: hostsim has one MMU per CPU, so switching
// runs is a fresh GuestCpu (a CR3 load, which drops the TLB, as the kernel does).
class OneCpu {
 public:
  explicit OneCpu(EngineKind k) : kind_(k) {}
  GuestCpu& on(fault::Run& r) {
    if (run_ != &r) {
      cpu_.reset();
      cpu_.emplace(kind_, r);
      run_ = &r;
    }
    return *cpu_;
  }

 private:
  EngineKind kind_;
  std::optional<GuestCpu> cpu_;
  fault::Run* run_ = nullptr;
};

class Runs : public ::testing::TestWithParam<EngineKind> {};

// The lost store of issue 20: A writes p (its copy is the overlay entry, its leaf writable),
// B writes p (copies A's page and publishes over it), A writes p again: before rule 3.9 A's
// store went into a frame the cap no longer held, with no fault.
TEST_P(Runs, Rule3_9_TwoRunsTakingTurnsOnOneCpuLoseNoStore) {
  Two w;
  auto model = w.mem_bytes;
  {
    fault::Run a(w.config(&w.ta));
    fault::Run b(w.config(&w.tb));
    OneCpu cpu(GetParam());
    // Three rounds of turns over pages 0 and 1 (same page and neighbouring offsets).
    std::uint64_t v = 0x100;
    for (int round = 0; round < 3; ++round) {
      for (fault::Run* r : {&a, &b}) {
        GuestCpu* c = &cpu.on(*r);
        for (std::uint32_t page : {0u, 1u}) {
          const std::uint64_t off = std::uint64_t{page} * PAGE_SIZE + 8 * (v % 16);
          ASSERT_EQ(c->store(kData + static_cast<std::uint32_t>(off), 8, v).outcome, Outcome::Retry);
          put_u64(model, off, v);
          // A run reads its own store at once, and sees every store the other made before.
          for (std::uint64_t o = 0; o < 2 * PAGE_SIZE; o += 8)
            ASSERT_EQ(c->load(kData + static_cast<std::uint32_t>(o), 8).value, model_u64(model, o)) << o;
          ++v;
        }
      }
    }
    // No leaf of either run maps a private page the cap no longer holds, writable.
    for (pt::PageTable* t : {&w.ta, &w.tb}) {
      for (std::uint32_t page : {0u, 1u}) {
        auto tr = t->translate(VirtAddr{kData + page * PAGE_SIZE});
        if (tr.ok() && tr->flags.writable) {
          EXPECT_EQ(tr->pa, w.mem.effective(page).frame->phys()) << page;
        }
      }
    }
    // Each run pays one CoW per page it writes and one page-in for page 1, which each first
    // reads (the loads after its first store) before writing it; the re-copies and
    // re-mappings the other run caused are free.
    EXPECT_EQ(a.counters().cow, 2u);
    EXPECT_EQ(b.counters().cow, 2u);
    EXPECT_EQ(a.gas_used(), 2 * kGasCosts.cow + kGasCosts.page_in);
    EXPECT_EQ(b.gas_used(), 2 * kGasCosts.cow + kGasCosts.page_in);
    EXPECT_GT(a.counters().recopies + b.counters().recopies, 0u);
  }
  ASSERT_TRUE(w.mem.flush().ok());
  std::vector<std::uint8_t> got(w.mem.size());
  ASSERT_TRUE(w.mem.read(0, got.data(), got.size()).ok());
  EXPECT_EQ(got, model);
  EXPECT_EQ(w.mem.root().value(), cap_of(model).root().value());
}

// Taking turns: while one run executes, entering another over the same cap is refused with
// Busy and changes nothing; once it leaves, the other enters.
TEST_P(Runs, Rule3_9_SecondRunIsRefusedWhileOneExecutes) {
  Two w;
  fault::Run a(w.config(&w.ta));
  fault::Run b(w.config(&w.tb));
  OneCpu cpu(GetParam());
  const auto free0 = frames().stats().free;
  {
    const fault::Run::Executing executing(a);
    EXPECT_EQ(b.try_enter(), Status::Busy);
    EXPECT_FALSE(b.executing());
    const AccessResult r = cpu.on(b).store(kData, 8, 7);
    EXPECT_EQ(r.outcome, Outcome::Busy);
    EXPECT_EQ(cpu.on(b).load(kData, 8).outcome, Outcome::Busy);
    EXPECT_EQ(fault::interp_load(b, kData, 8).outcome, Outcome::Busy);
    EXPECT_DEATH(b.enter(), "rule 3.9: entering a run while another run over one of its caps executes");
  }
  EXPECT_EQ(w.mem.overlay_count(), 0u);
  EXPECT_FALSE(w.tb.translate(VirtAddr{kData}).ok());
  EXPECT_EQ(frames().stats().free, free0);
  EXPECT_EQ(b.gas_used(), 0u);
  EXPECT_EQ(cpu.on(b).store(kData, 8, 7).outcome, Outcome::Retry);  // a left: b's turn
  EXPECT_EQ(u64_at(w.mem, 0), 7u);
  // A run that shares only the code cap is not excluded: code is only read (rule 3.9 turns
  // are exclusive for the mem cap, shared for the code cap).
  DataCap other_mem = cap_of(pattern(1, 5));
  pt::PageTable tc = pt::PageTable::create().release_value();
  {
    fault::Run c(RunConfig{.table = &tc, .code = &w.code, .mem = &other_mem, .pinned = {}, .gas = 1000});
    const fault::Run::Executing executing(a);
    EXPECT_EQ(c.try_enter(), Status::Ok);
    c.leave();
  }
  tc.teardown();
}

// Turns with checkpoints between them: a flush and a copy between the runs' entries lose
// no store, leak none into the copy, and charge nothing again.
TEST_P(Runs, Rule3_9_TurnsWithACheckpointBetween) {
  Two w;
  auto model = w.mem_bytes;
  std::vector<std::pair<DataCap, std::vector<std::uint8_t>>> copies;
  {
    fault::Run a(w.config(&w.ta));
    fault::Run b(w.config(&w.tb));
    OneCpu cpu(GetParam());
    std::uint64_t v = 1;
    for (int step = 0; step < 12; ++step) {
      GuestCpu& c = cpu.on(step % 2 == 0 ? a : b);
      const std::uint64_t off = std::uint64_t{static_cast<std::uint32_t>(step) % 3} * PAGE_SIZE + 16;
      ASSERT_EQ(c.store(kData + static_cast<std::uint32_t>(off), 8, v).outcome, Outcome::Retry);
      put_u64(model, off, v);
      ASSERT_EQ(c.load(kData + static_cast<std::uint32_t>(off), 8).value, v);
      ++v;
      if (step % 3 == 0) {
        ASSERT_TRUE(w.mem.flush().ok());
      } else if (step % 3 == 1) {
        auto cp = w.mem.copy();
        ASSERT_TRUE(cp.ok());
        copies.emplace_back(cp.release_value(), model);
      }
    }
    // Pages 0..2 each written by both runs: each pays one CoW per page, whatever the turns
    // and checkpoints.
    EXPECT_EQ(a.counters().cow, 3u);
    EXPECT_EQ(b.counters().cow, 3u);
    EXPECT_EQ(a.gas_used(), 3 * kGasCosts.cow);
    EXPECT_EQ(b.gas_used(), 3 * kGasCosts.cow);
  }
  for (auto& [c, snapshot] : copies) {
    ASSERT_TRUE(c.flush().ok());
    std::vector<std::uint8_t> got(c.size());
    ASSERT_TRUE(c.read(0, got.data(), got.size()).ok());
    EXPECT_EQ(got, snapshot);  // no later store leaked into a copy
  }
  ASSERT_TRUE(w.mem.flush().ok());
  EXPECT_EQ(w.mem.root().value(), cap_of(model).root().value());
}

// The code cap is inside rule 3.8: a code checkpoint while the run executes is Busy; after
// one while it is paused the guest reads the new code (the cluster stays charged once).
TEST_P(Runs, Rule3_9_CodeCapCheckpoints) {
  Two w;
  {
    fault::Run r(w.config(&w.ta));
    GuestCpu c(GetParam(), r);
    ASSERT_EQ(c.load(kCode, 8).outcome, Outcome::Retry);
    ASSERT_EQ(c.load(kCode + PAGE_SIZE, 8).value, model_u64(w.code_bytes, PAGE_SIZE));
    const auto gas = r.gas_used();
    DataCap one = cap_of(pattern(1, 8));
    {
      const fault::Run::Executing executing(r);
      EXPECT_EQ(w.code.write_page(0, PageRef::unhashed_copy(nullptr).release_value()).status(), Status::Busy);
      EXPECT_EQ(w.code.write_slot(0, Slot{}).status(), Status::Busy);
      EXPECT_EQ(w.code.put_page(0, PageRef::unhashed_copy(nullptr).release_value()).status(), Status::Busy);
      EXPECT_EQ(w.code.place_shared(one, 0).status(), Status::Busy);
      EXPECT_EQ(w.code.flush().status(), Status::Busy);
      EXPECT_EQ(w.code.copy().status(), Status::Busy);
      EXPECT_EQ(w.mem.place_shared(w.code, 0).status(), Status::Busy);  // code is the source
    }
    EXPECT_EQ(w.code.overlay_count(), 0u);
    EXPECT_EQ(c.load(kCode, 8).value, model_u64(w.code_bytes, 0));

    const auto nb = pattern(1, 9);
    ASSERT_TRUE(w.code.write_page(0, PageRef::from_content(nb.data(), nb.size()).release_value()).ok());
    EXPECT_EQ(c.load(kCode, 8).value, model_u64(nb, 0));
    ASSERT_TRUE(w.code.flush().ok());
    EXPECT_EQ(c.load(kCode + 8, 8).value, model_u64(nb, 8));
    const auto placed = pattern(1, 10);
    DataCap pc = cap_of(placed);
    ASSERT_TRUE(w.code.place_shared(pc, PAGE_SIZE).ok());
    EXPECT_EQ(c.load(kCode + PAGE_SIZE, 8).value, model_u64(placed, 0));
    const auto put = pattern(1, 11);
    ASSERT_TRUE(w.code.put_page(1, PageRef::from_content(put.data(), put.size()).release_value()).ok());
    EXPECT_EQ(c.load(kCode + PAGE_SIZE + 16, 8).value, model_u64(put, 16));
    EXPECT_EQ(r.gas_used(), gas);  // the cluster was charged once
    EXPECT_EQ(r.counters().clusters, 1u);
  }
}

// code == mem: the run is on the cap's list twice and works: its stores through the data
// region show in its code region at once, and in another run's code region by its next entry.
TEST_P(Runs, Rule3_9_CodeAndMemOneCap) {
  Two w;
  auto model = w.mem_bytes;
  DataCap& both = w.mem;
  {
    fault::Run a(RunConfig{.table = &w.ta, .code = &both, .mem = &both, .pinned = {}, .gas = 100000});
    fault::Run b(RunConfig{.table = &w.tb, .code = &both, .mem = &w.code, .pinned = {}, .gas = 100000});
    OneCpu cpu(GetParam());
    ASSERT_EQ(cpu.on(a).load(kCode + 8, 8).value, model_u64(model, 8));
    ASSERT_EQ(cpu.on(b).load(kCode + 8, 8).value, model_u64(model, 8));
    ASSERT_EQ(cpu.on(a).store(kData + 8, 8, 0x5151).outcome, Outcome::Retry);
    put_u64(model, 8, 0x5151);
    EXPECT_EQ(cpu.on(a).load(kCode + 8, 8).value, 0x5151u);  // its own store, at once
    EXPECT_EQ(cpu.on(a).load(kData + 8, 8).value, 0x5151u);
    EXPECT_EQ(cpu.on(b).load(kCode + 8, 8).value, 0x5151u);  // the other run's, by its next entry
    ASSERT_TRUE(both.flush().ok());
    ASSERT_EQ(cpu.on(a).store(kData + 16, 8, 0x6262).outcome, Outcome::Retry);
    put_u64(model, 16, 0x6262);
    EXPECT_EQ(cpu.on(a).load(kCode + 16, 8).value, 0x6262u);
    EXPECT_EQ(cpu.on(b).load(kCode + 16, 8).value, 0x6262u);
    {
      const fault::Run::Executing executing(a);  // a writes `both`: b, reading it, waits its turn
      EXPECT_EQ(cpu.on(b).load(kCode, 8).outcome, Outcome::Busy);
    }
    EXPECT_EQ(a.gas_used(), kGasCosts.page_in + kGasCosts.cow);  // one cluster, one CoW (page 0)
  }
  ASSERT_TRUE(both.flush().ok());
  EXPECT_EQ(both.root().value(), cap_of(model).root().value());
}

// Out of frames while preparing the other run for a publish (rule 4.4's prepare step):
// nothing changes, and the retry lands.
TEST_P(Runs, Rule3_9_OutOfFramesPreparingTheOtherRunChangesNothing) {
  for (std::uint64_t n = 1;; ++n) {
    Two w;
    fault::Run a(w.config(&w.ta));
    fault::Run b(w.config(&w.tb));
    OneCpu cpu(GetParam());
    ASSERT_EQ(cpu.on(a).store(kData, 8, 1).outcome, Outcome::Retry);
    const auto gas = b.gas_used();
    frames().inject_failure_at(n);
    const auto r = cpu.on(b).store(kData + 8, 8, 2);
    frames().inject_failure_at(0);
    if (r.outcome != Outcome::Retry) {
      ASSERT_EQ(r.outcome, Outcome::OutOfFrames) << n;
      EXPECT_EQ(b.gas_used(), gas) << n;
      EXPECT_EQ(u64_at(w.mem, 8), model_u64(w.mem_bytes, 8)) << n;
      ASSERT_EQ(cpu.on(b).store(kData + 8, 8, 2).outcome, Outcome::Retry) << n;
    }
    ASSERT_EQ(cpu.on(a).store(kData + 16, 8, 3).outcome, Outcome::Retry) << n;
    EXPECT_EQ(u64_at(w.mem, 0), 1u) << n;
    EXPECT_EQ(u64_at(w.mem, 8), 2u) << n;
    EXPECT_EQ(u64_at(w.mem, 16), 3u) << n;
    EXPECT_EQ(a.counters().cow + b.counters().cow, 2u) << n;
    if (r.outcome == Outcome::Retry) break;
    ASSERT_LT(n, 20u);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, Runs, ::testing::Values(EngineKind::Mmu, EngineKind::Interpreter),
                         [](const auto& i) { return std::string(i.param == EngineKind::Mmu ? "Mmu" : "Interp"); });

// Moving, assigning to or destroying a mapped code cap traps with the rule 3.9 message.
TEST(Rule3_9Death, MappedCodeCapCannotBeMovedAssignedOrDestroyed) {
  auto make = [] {
    auto* w = new Two;
    new fault::Run(w->config(&w->ta));
    return w;
  };
  EXPECT_DEATH({ DataCap moved(std::move(make()->code)); }, "moving from a DataCap that a run maps(.|\n)*rule 3.9");
  EXPECT_DEATH({ make()->code = cap_of(pattern(1, 3)); }, "assigning to a DataCap that a run maps(.|\n)*rule 3.9");
  EXPECT_DEATH(
      {
        auto* w = make();
        w->code.~DataCap();
      },
      "destroying a DataCap that a run maps(.|\n)*rule 3.9");
}

// --- Rule 3.10: empty caps ---------------------------------------------------------------

void expect_every_status_call_is_empty_cap(DataCap& e) {
  DataCap full = cap_of(pattern(1, 4));
  std::uint8_t buf[64] = {};
  EXPECT_EQ(e.copy().status(), Status::EmptyCap);
  EXPECT_EQ(e.slot(0).status(), Status::EmptyCap);
  EXPECT_EQ(e.page_at(0).status(), Status::EmptyCap);
  EXPECT_EQ(e.read(0, buf, 0).status(), Status::EmptyCap);
  EXPECT_EQ(e.write_page(0, PageRef::unhashed_copy(nullptr).release_value()).status(), Status::EmptyCap);
  EXPECT_EQ(e.write_slot(0, Slot{}).status(), Status::EmptyCap);
  EXPECT_EQ(e.reserve_overlay(0).status(), Status::EmptyCap);
  EXPECT_EQ(e.put_page(0, PageRef::unhashed_copy(nullptr).release_value()).status(), Status::EmptyCap);
  EXPECT_EQ(e.place_shared(full, 0).status(), Status::EmptyCap);
  EXPECT_EQ(full.place_shared(e, 0).status(), Status::EmptyCap);
  EXPECT_EQ(e.flush().status(), Status::EmptyCap);
  EXPECT_EQ(e.root().status(), Status::EmptyCap);
  EXPECT_EQ(e.encoded_size().status(), Status::EmptyCap);
  EXPECT_EQ(e.encode(buf, sizeof buf).status(), Status::EmptyCap);
  EXPECT_EQ(e.encode([](void*, const std::uint8_t*, std::size_t) { return Status::Ok; }, nullptr).status(),
            Status::EmptyCap);
  EXPECT_FALSE(e.holds());
  EXPECT_FALSE(e.mapped_by_run());
}

TEST(Rule3_10, EveryStatusCallOnAnEmptyCapNamesTheRule) {
  DataCap def;
  expect_every_status_call_is_empty_cap(def);
  DataCap src = cap_of(pattern(2, 6));
  DataCap dst(std::move(src));
  expect_every_status_call_is_empty_cap(src);  // NOLINT(bugprone-use-after-move): rule 3.10
  DataCap assigned = cap_of(pattern(1, 7));
  DataCap sink;
  sink = std::move(assigned);
  expect_every_status_call_is_empty_cap(assigned);  // NOLINT(bugprone-use-after-move)
  EXPECT_STREQ(status_rule(Status::EmptyCap), "3.10");
  EXPECT_NE(std::strstr(status_name(Status::EmptyCap), "holds nothing"), nullptr);
  // Destroying and assigning stay legal: an empty cap takes a new value and works.
  src = cap_of(pattern(1, 8));
  EXPECT_TRUE(src.holds());
  EXPECT_TRUE(src.flush().ok());
  EXPECT_EQ(src.root().value(), cap_of(pattern(1, 8)).root().value());
  def = DataCap{};  // empty into empty
}

TEST(Rule3_10Death, PlainAccessorsOfAnEmptyCapTrap) {
  DataCap e;
  const char* msg = "on an empty cap(.|\n)*rule 3.10";
  EXPECT_DEATH((void)e.size(), std::string("size\\(\\) ") + msg);
  EXPECT_DEATH((void)e.page_count(), std::string("page_count\\(\\) ") + msg);
  EXPECT_DEATH((void)e.extent(), std::string("extent\\(\\) ") + msg);
  EXPECT_DEATH((void)e.effective(0), msg);
  EXPECT_DEATH((void)e.overlay_count(), std::string("overlay_count\\(\\) ") + msg);
}

TEST(Rule3_10, CreateZeroIsRefused) {
  EXPECT_EQ(DataCap::create(0).status(), Status::InvalidArgument);
  EXPECT_TRUE(DataCap::create(PAGE_SIZE).ok());
}

TEST(Rule3_10, RunOverAnEmptyCapIsRefused) {
  DataCap empty;
  DataCap full = cap_of(pattern(1, 4));
  pt::PageTable t = pt::PageTable::create().release_value();
  EXPECT_EQ((RunConfig{.table = &t, .code = &empty, .mem = &full, .pinned = {}, .gas = 1}.check().status()),
            Status::EmptyCap);
  EXPECT_EQ((RunConfig{.table = &t, .code = &full, .mem = &empty, .pinned = {}, .gas = 1}.check().status()),
            Status::EmptyCap);
  EXPECT_TRUE((RunConfig{.table = &t, .code = &full, .mem = &full, .pinned = {}, .gas = 1}.check().ok()));
  EXPECT_DEATH(fault::Run(RunConfig{.table = &t, .code = &empty, .mem = &full, .pinned = {}, .gas = 1}),
               "rule 3.10: fault::Run over an empty cap");
  EXPECT_DEATH(fault::Run(RunConfig{.table = &t, .code = &full, .mem = &empty, .pinned = {}, .gas = 1}),
               "rule 3.10: fault::Run over an empty cap");
  EXPECT_FALSE(full.mapped_by_run());
  t.teardown();
}

// --- Rule 4.1: regions past their limits ------------------------------------------------

TEST(Rule4_1, RegionsPastTheirLimitsAreRefusedNotClipped) {
  const std::uint64_t mib = 1ull << 20;
  DataCap code_max = DataCap::create(DATA_BASE - CODE_BASE).release_value();               // 252 MiB
  DataCap code_over = DataCap::create(DATA_BASE - CODE_BASE + PAGE_SIZE).release_value();  // one page more
  DataCap mem_max = DataCap::create(GUEST_LIMIT - DATA_BASE).release_value();              // 3840 MiB
  DataCap mem_over = DataCap::create(GUEST_LIMIT - DATA_BASE + PAGE_SIZE).release_value();
  EXPECT_EQ(code_max.size(), 252 * mib);
  EXPECT_EQ(mem_max.size(), 3840 * mib);
  pt::PageTable t = pt::PageTable::create().release_value();
  auto cfg = [&](const DataCap* c, DataCap* m) {
    return RunConfig{.table = &t, .code = c, .mem = m, .pinned = {}, .gas = 1000};
  };
  EXPECT_TRUE(cfg(&code_max, &mem_max).check().ok());
  EXPECT_EQ(cfg(&code_over, &mem_max).check().status(), Status::RegionTooLarge);
  EXPECT_EQ(cfg(&code_max, &mem_over).check().status(), Status::RegionTooLarge);
  EXPECT_STREQ(status_rule(Status::RegionTooLarge), "4.1");
  EXPECT_DEATH(fault::Run(cfg(&code_over, &mem_max)), "rule 4.1: fault::Run's code region.*reach DATA_BASE");
  EXPECT_DEATH(fault::Run(cfg(&code_max, &mem_over)), "rule 4.1: fault::Run's data region.*pass 4 GiB");
  {
    // At the limits the last page of each region works, charged as usual.
    fault::Run r(cfg(&code_max, &mem_max));
    GuestCpu c(EngineKind::Interpreter, r);
    EXPECT_EQ(c.load(static_cast<std::uint32_t>(DATA_BASE - 8), 8).outcome, Outcome::Retry);
    EXPECT_EQ(c.store(static_cast<std::uint32_t>(GUEST_LIMIT - 8), 8, 9).outcome, Outcome::Retry);
    EXPECT_EQ(r.gas_used(), kGasCosts.page_in + kGasCosts.cow);
  }
  t.teardown();
  EXPECT_TRUE(mem_max.flush().ok());
}

}  // namespace
