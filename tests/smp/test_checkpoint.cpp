// Rule 3.8 across CPUs (fault.h "Across CPUs"; docs/smp.md "Checkpoints across CPUs").
//
// One host thread (simulated CPU 1) enters and leaves a run over and over and stores
// through the MMU engine; another (CPU 2) checkpoints the run's `mem` cap at the same time
// (copy, flush). Every copy must hold exactly the stores of some prefix of the sequence,
// at least every store finished before the checkpoint started; Busy is allowed only while
// the run executes (in windows where the storing thread promises to stay paused, every
// checkpoint succeeds); after all, the cap holds every store (nothing lost into a stale
// private copy) and the gas equals the same stores made without checkpoints.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "engines.h"
#include "hostsim/cpus.h"
#include "hostsim/env_hostsim.h"

#include "../test_util.h"

using namespace capmem;
using capmem::testutil::val;

namespace {

constexpr std::uint32_t kData = static_cast<std::uint32_t>(fault::DATA_BASE);
constexpr std::uint32_t kPages = 8;  // store i goes to page i % kPages, offset 0
constexpr std::uint64_t kStores = 3000;
constexpr std::uint64_t kPauseEvery = 100;  // a promised-paused window every 100 stores

std::uint32_t addr_of(std::uint64_t i) { return kData + static_cast<std::uint32_t>(i % kPages) * PAGE_SIZE; }

using capmem::testutil::u64_at;

// The value page k holds after stores 1..c (0 if none went there): the last i <= c with
// i % kPages == k.
std::uint64_t expected_after(std::uint64_t c, std::uint32_t k) {
  if (c < k || (k == 0 && c < kPages)) return 0;
  return c - ((c - k) % kPages);
}

// Reads the copy's pages and returns the prefix length c they show, or ~0 if they show
// no prefix (a store lost or one seen without an earlier one).
std::uint64_t prefix_of(const DataCap& c) {
  std::uint64_t v[kPages], hi = 0;
  for (std::uint32_t k = 0; k < kPages; ++k) {
    v[k] = u64_at(c, std::uint64_t{k} * PAGE_SIZE);
    if (v[k] > hi) hi = v[k];
  }
  for (std::uint32_t k = 0; k < kPages; ++k)
    if (v[k] != expected_after(hi, k)) return ~std::uint64_t{0};
  return hi;
}

struct World {
  DataCap code = val(DataCap::create(PAGE_SIZE));
  DataCap mem = val(DataCap::create(std::uint64_t{kPages} * PAGE_SIZE));
  pt::PageTable table = val(pt::PageTable::create());
  fault::RunConfig config() { return fault::RunConfig{.table = &table, .code = &code, .mem = &mem, .gas = 1'000'000}; }
};

// The storing thread's sequence: runs of stores under one outer enter() (nested with the
// engine's own per-access marks) and single stores marked by the engine alone.
bool store_all(hostsim::GuestCpu& cpu, fault::Run& run, std::atomic<std::uint64_t>* done,
               std::atomic<std::uint64_t>* paused_window, std::atomic<std::uint64_t>* window_ack) {
  for (std::uint64_t i = 1; i <= kStores; ++i) {
    bool ok = false;
    if (i % 3 == 0) {
      const fault::Run::Executing executing(run);
      ok = cpu.store(addr_of(i), 8, i).outcome == fault::Outcome::Retry;
    } else {
      ok = cpu.store(addr_of(i), 8, i).outcome == fault::Outcome::Retry;
    }
    if (!ok) return false;
    if (done != nullptr) done->store(i, std::memory_order_release);
    if (paused_window != nullptr && i % kPauseEvery == 0) {
      // Promise to stay paused until the checkpointing thread has taken one checkpoint.
      paused_window->store(i, std::memory_order_release);
      while (window_ack->load(std::memory_order_acquire) != i) std::this_thread::yield();
    }
  }
  return true;
}

}  // namespace

TEST(SmpCheckpoint, Rule3_8_CheckpointsFromAnotherCpuSeeAPrefixAndLoseNothing) {
  const FrameStats start = hostsim::quiescent_frame_stats();
  // Reference: the same stores without checkpoints, on this CPU.
  std::uint64_t want_gas = 0, want_cow = 0;
  {
    World w;
    fault::Run run(w.config());
    {
      hostsim::GuestCpu cpu(hostsim::EngineKind::Mmu, run);
      ASSERT_TRUE(store_all(cpu, run, nullptr, nullptr, nullptr));
    }
    want_gas = run.gas_used();
    want_cow = run.counters().cow;
    w.table.teardown();
  }
  ASSERT_EQ(want_cow, kPages);  // one CoW per page when nothing interferes

  std::optional<World> world(std::in_place);
  World& w = *world;
  hostsim::start_cpus(3);
  std::uint64_t got_gas = 0;
  bool stores_ok = false;
  unsigned busy = 0, copies = 0, flushes = 0, window_ok = 0;
  std::vector<std::string> errors;
  {
    fault::Run run(w.config());
    std::atomic<std::uint64_t> done{0}, paused_window{0}, window_ack{0};
    std::atomic<bool> finished{false};
    std::thread storer([&] {
      const hostsim::CpuBinding on(1);
      {
        hostsim::GuestCpu cpu(hostsim::EngineKind::Mmu, run);
        stores_ok = store_all(cpu, run, &done, &paused_window, &window_ack);
      }
      finished.store(true, std::memory_order_release);
    });
    std::thread checkpointer([&] {
      const hostsim::CpuBinding on(2);
      std::uint64_t acked = 0;
      for (unsigned n = 0; !finished.load(std::memory_order_acquire); ++n) {
        const std::uint64_t window = paused_window.load(std::memory_order_acquire);
        const bool promised_paused = window != acked;
        const std::uint64_t before = done.load(std::memory_order_acquire);
        if (n % 4 == 3) {
          const auto r = w.mem.flush();
          if (!r.ok()) {
            if (r.status() != Status::Busy || promised_paused) errors.push_back("flush: unexpected status");
            ++busy;
          } else {
            ++flushes;
          }
        } else {
          auto c = w.mem.copy();
          if (!c.ok()) {
            if (c.status() != Status::Busy || promised_paused) errors.push_back("copy: unexpected status");
            ++busy;
          } else {
            ++copies;
            const std::uint64_t after = done.load(std::memory_order_acquire);
            const std::uint64_t p = prefix_of(*c);
            if (p == ~std::uint64_t{0}) errors.push_back("copy holds no prefix of the stores");
            else if (p < before || p > after + 1)  // +1: a store done but not yet published in `done`
              errors.push_back("copy prefix " + std::to_string(p) + " outside [" + std::to_string(before) + ", " +
                               std::to_string(after + 1) + "]");
            else if (promised_paused && p != window)
              errors.push_back("copy in a paused window shows " + std::to_string(p) + ", not " +
                               std::to_string(window));
          }
        }
        if (promised_paused) {
          ++window_ok;
          acked = window;
          window_ack.store(window, std::memory_order_release);
        }
        std::this_thread::yield();  // let the storer run on a busy machine
      }
    });
    storer.join();
    checkpointer.join();
    got_gas = run.gas_used();
    ASSERT_TRUE(stores_ok);
    // Nothing lost: after the last store the cap (flushed) holds all of them.
    ASSERT_TRUE(w.mem.flush().ok());
  }
  for (const auto& e : errors) ADD_FAILURE() << e;
  EXPECT_EQ(prefix_of(w.mem), kStores);
  for (std::uint32_t k = 0; k < kPages; ++k)
    EXPECT_EQ(u64_at(w.mem, std::uint64_t{k} * PAGE_SIZE), expected_after(kStores, k));
  EXPECT_EQ(got_gas, want_gas) << "gas must not depend on the checkpoints (rule 3.8)";
  EXPECT_EQ(window_ok, kStores / kPauseEvery) << "every promised-paused window was checkpointed";
  EXPECT_GT(copies + flushes, 0u);
  std::printf("checkpoints: %u copies, %u flushes, %u busy\n", copies, flushes, busy);
  w.table.teardown();
  world.reset();
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, start.in_use) << "every frame is back";
}

// The hold itself: while a checkpoint holds a run, enter() on another CPU waits; a run
// that is executing makes the checkpoint Busy and leaves every other run unclaimed.
TEST(SmpCheckpoint, Rule3_8_BusyReleasesTheClaimsAlreadyTaken) {
  World w;
  pt::PageTable table2 = val(pt::PageTable::create());
  fault::Run a(w.config());
  fault::RunConfig c2 = w.config();
  c2.table = &table2;
  fault::Run b(c2);
  hostsim::start_cpus(2);
  {
    const fault::Run::Executing executing(a);  // one of the two runs executes
    EXPECT_EQ(w.mem.copy().status(), Status::Busy);
    EXPECT_EQ(w.mem.flush().status(), Status::Busy);
  }
  // Both runs enter afterwards, taking turns (rule 3.9): no claim was left behind (enter()
  // would wait forever on a leaked hold; the other thread checks without blocking on it).
  std::atomic<bool> entered{false};
  std::thread t([&] {
    const hostsim::CpuBinding on(1);
    { const fault::Run::Executing ea(a); }
    const fault::Run::Executing eb(b);
    entered.store(true);
  });
  t.join();
  EXPECT_TRUE(entered.load());
  EXPECT_FALSE(a.executing());
  EXPECT_FALSE(b.executing());
  EXPECT_TRUE(w.mem.copy().ok());
  table2.teardown();
  w.table.teardown();
}

// Rule 3.9 across CPUs: two runs over one mem cap, each on its own simulated CPU and host
// thread (its table stays loaded there while the other runs), store into the same pages.
// Phase 1 hands the turn back and forth (every store of one run is followed by the other's
// entry, which must read it: the leaves it cached on its CPU were shot down); phase 2 lets
// both run freely, the turn refusing one while the other executes (Busy: it retries). Every
// store lands, each run reads its own stores, each pays one CoW per page it writes. Run
// under ThreadSanitizer by ./dev test.
TEST(SmpRuns, Rule3_9_TwoRunsOverOneCapOnTwoCpusLoseNoStore) {
  const FrameStats start = hostsim::quiescent_frame_stats();
  constexpr std::uint64_t kHandOffs = 400, kFree = 3000;
  std::optional<World> world(std::in_place);
  World& w = *world;
  pt::PageTable table2 = val(pt::PageTable::create());
  hostsim::start_cpus(3);
  std::uint64_t busy[2] = {}, cow[2] = {}, gas[2] = {}, last[2][kPages] = {};
  std::vector<std::string> errors[2];
  std::atomic<unsigned> turn{0}, ready{0};
  {
    fault::RunConfig c2 = w.config();
    c2.table = &table2;
    fault::Run runs[2] = {fault::Run(w.config()), fault::Run(c2)};
    auto body = [&](unsigned k) {
      const hostsim::CpuBinding on(k + 1);
      hostsim::GuestCpu cpu(hostsim::EngineKind::Mmu, runs[k]);
      auto store = [&](std::uint32_t a, std::uint64_t v) {
        fault::AccessResult r{};
        while ((r = cpu.store(a, 8, v)).outcome == fault::Outcome::Busy) {
          ++busy[k];
          std::this_thread::yield();
        }
        return r.outcome == fault::Outcome::Retry;
      };
      auto load = [&](std::uint32_t a) {
        fault::AccessResult r{};
        while ((r = cpu.load(a, 8)).outcome == fault::Outcome::Busy) std::this_thread::yield();
        return r.value;
      };
      // Phase 1: strict hand-offs. Run k writes offset 8 * k of page i % kPages, then the
      // other run's next entry reads it.
      for (std::uint64_t i = 1; i <= kHandOffs; ++i) {
        while (turn.load(std::memory_order_acquire) != k) std::this_thread::yield();
        const std::uint32_t a = addr_of(i) + 8 * k;
        // The other run's latest store: run 0's of this round (for run 1), run 1's of the
        // previous round (for run 0).
        const std::uint64_t j = k == 1 ? i : i - 1;
        const std::uint32_t other = addr_of(j) + 8 * (1 - k);
        if (j > 0) {
          const std::uint64_t want = (std::uint64_t{2 - k} << 32) | j;
          if (load(other) != want)
            errors[k].push_back("run " + std::to_string(k) + " missed the other's store " + std::to_string(i));
        }
        const std::uint64_t v = (std::uint64_t{k + 1} << 32) | i;
        if (!store(a, v)) errors[k].push_back("store failed");
        if (load(a) != v) errors[k].push_back("run does not read its own store");
        last[k][i % kPages] = v;
        turn.store(1 - k, std::memory_order_release);
      }
      // Phase 2: both at once.
      ready.fetch_add(1);
      while (ready.load() != 2) std::this_thread::yield();
      for (std::uint64_t i = kHandOffs + 1; i <= kHandOffs + kFree; ++i) {
        const std::uint32_t a = addr_of(i) + 8 * k;
        const std::uint64_t v = (std::uint64_t{k + 1} << 32) | i;
        if (!store(a, v)) {
          errors[k].push_back("store failed");
          return;
        }
        if (load(a) != v) errors[k].push_back("run does not read its own store");
        last[k][i % kPages] = v;
      }
    };
    std::thread t0(body, 0), t1(body, 1);
    t0.join();
    t1.join();
    for (unsigned k = 0; k < 2; ++k) {
      cow[k] = runs[k].counters().cow;
      gas[k] = runs[k].gas_used();
    }
  }
  for (const auto& e : errors)
    for (const auto& m : e) ADD_FAILURE() << m;
  ASSERT_TRUE(w.mem.flush().ok());
  for (std::uint32_t p = 0; p < kPages; ++p)
    for (unsigned k = 0; k < 2; ++k) EXPECT_EQ(u64_at(w.mem, std::uint64_t{p} * PAGE_SIZE + 8 * k), last[k][p]) << p;
  // Each run's first access to each page comes in phase 1: run 0 stores into page i before
  // it reads anything there (one CoW per page); run 1 first reads run 0's store in page i,
  // then stores (one page-in and one CoW per page). The re-copies and re-mappings the other
  // run causes, in both phases, are free.
  EXPECT_EQ(cow[0], kPages) << "one CoW per page each run writes, however the turns fell";
  EXPECT_EQ(cow[1], kPages);
  EXPECT_EQ(gas[0], kPages * fault::kGasCosts.cow);
  EXPECT_EQ(gas[1], kPages * (fault::kGasCosts.cow + fault::kGasCosts.page_in));
  std::printf("turns: %llu and %llu refusals; gas %llu and %llu\n", static_cast<unsigned long long>(busy[0]),
              static_cast<unsigned long long>(busy[1]), static_cast<unsigned long long>(gas[0]),
              static_cast<unsigned long long>(gas[1]));
  table2.teardown();
  w.table.teardown();
  world.reset();
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, start.in_use) << "every frame is back";
}

// Rule 3.9 + 7.2 on one host thread moving between simulated CPUs: run B stores on CPU 1 and
// leaves its table loaded there (its TLB caches B's private copy, writable); run A, on CPU
// 2, writes the same page and publishes over B's copy; B's next entry, on CPU 0, re-points
// its leaf and must shoot the old translation down on CPU 1 too. Back on CPU 1 (no CR3
// reload), B reads A's store and its own next store faults and lands in the cap.
TEST(SmpRuns, Rule3_9_ARunSeesNoStaleTranslationOnACpuItLeft) {
  World w;
  pt::PageTable table2 = val(pt::PageTable::create());
  hostsim::start_cpus(3);
  {
    fault::Run a(w.config());
    fault::RunConfig c2 = w.config();
    c2.table = &table2;
    fault::Run b(c2);
    std::optional<hostsim::GuestCpu> b_on1;
    {
      const hostsim::CpuBinding on(1);
      b_on1.emplace(hostsim::EngineKind::Mmu, b);
      ASSERT_EQ(b_on1->store(kData, 8, 0xb1).outcome, fault::Outcome::Retry);
      ASSERT_EQ(b_on1->load(kData + 8, 8).value, 0u);  // cached on CPU 1
    }
    {
      const hostsim::CpuBinding on(2);
      hostsim::GuestCpu ca(hostsim::EngineKind::Mmu, a);
      ASSERT_EQ(ca.load(kData, 8).value, 0xb1u);
      ASSERT_EQ(ca.store(kData + 8, 8, 0xa1).outcome, fault::Outcome::Retry);
    }
    {
      hostsim::GuestCpu cb0(hostsim::EngineKind::Mmu, b);  // this thread: CPU 0
      EXPECT_EQ(cb0.load(kData + 8, 8).value, 0xa1u);
    }
    {
      const hostsim::CpuBinding on(1);
      EXPECT_EQ(b_on1->load(kData + 8, 8).value, 0xa1u) << "CPU 1 kept B's old translation";
      ASSERT_EQ(b_on1->store(kData + 16, 8, 0xb2).outcome, fault::Outcome::Retry);
      b_on1.reset();
    }
    EXPECT_EQ(b.gas_used(), fault::kGasCosts.cow);  // the re-copy A caused is free
  }
  ASSERT_TRUE(w.mem.flush().ok());
  EXPECT_EQ(u64_at(w.mem, 0), 0xb1u);
  EXPECT_EQ(u64_at(w.mem, 8), 0xa1u);
  EXPECT_EQ(u64_at(w.mem, 16), 0xb2u);
  table2.teardown();
  w.table.teardown();
}
