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

#include "../test_util.h"

using namespace capmem;
using capmem::testutil::val;

namespace {

constexpr std::uint32_t kData = static_cast<std::uint32_t>(fault::DATA_BASE);
constexpr std::uint32_t kPages = 8;  // store i goes to page i % kPages, offset 0
constexpr std::uint64_t kStores = 3000;
constexpr std::uint64_t kPauseEvery = 100;  // a promised-paused window every 100 stores

std::uint32_t addr_of(std::uint64_t i) { return kData + static_cast<std::uint32_t>(i % kPages) * PAGE_SIZE; }

std::uint64_t u64_at(const DataCap& c, std::uint64_t off) {
  std::uint64_t v = 0;
  EXPECT_TRUE(c.read(off, reinterpret_cast<std::uint8_t*>(&v), 8).ok());
  return v;
}

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
  const FrameStats start = frames().stats();
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
  EXPECT_EQ(frames().stats().in_use, start.in_use) << "every frame is back";
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
  // Both runs enter at once afterwards: no claim was left behind (enter() would wait
  // forever on a leaked hold; the other thread checks without blocking on it).
  std::atomic<bool> entered{false};
  std::thread t([&] {
    const hostsim::CpuBinding on(1);
    const fault::Run::Executing ea(a);
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
