// Rule 8.4 across CPUs (issue 22 "Many CPUs"): resolving on one CPU while another flushes a
// copy that shares the backing; runs on several CPUs resolving the same pages from one host
// cache of verified pages into their own caps; per-run O(1) copies of a thin code cap, so a
// resolve for one run is not Busy because another run executes. Simulated CPUs on host
// threads; ./dev test runs this under ThreadSanitizer too.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "engines.h"
#include "hostsim/cpus.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;
using capmem::testutil::thin_of;
using capmem::testutil::val;

namespace {

constexpr std::uint32_t kData = static_cast<std::uint32_t>(fault::DATA_BASE);
constexpr std::uint32_t kPages = 48;

std::vector<std::uint8_t> content(std::uint32_t pages, std::uint32_t seed) {
  std::vector<std::uint8_t> b(std::size_t{pages} * PAGE_SIZE);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>((i * 131 + seed * 7 + (i >> 12)) | 1);
  return b;
}

Hash32 root_of(const std::vector<std::uint8_t>& bytes) {
  return val(val(DataCap::from_bytes(bytes.data(), bytes.size())).root());
}

}  // namespace

// (a) CPU 1 resolves every page of cap X; CPU 2 writes and flushes Y, a copy of X made
// before, again and again (20 rounds). They share the backing's nodes and Missing boxes until each
// makes its own; both end right.
TEST(SmpResolve, ResolveRacesAFlushOfACopySharingTheBacking) {
  const FrameStats start = hostsim::quiescent_frame_stats();
  const auto bytes = content(kPages, 1);
  hostsim::start_cpus(3);
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    DataCap full = val(DataCap::from_bytes(bytes.data(), bytes.size()));
    DataCap x = thin_of(full);
    DataCap y = val(x.copy());
    ASSERT_EQ(x.backing_id(), y.backing_id());
    auto y_bytes = bytes;
    bool x_ok = true, y_ok = true;
    std::thread resolver([&] {
      const hostsim::CpuBinding on(1);
      for (std::uint32_t p = 0; p < kPages; ++p)
        x_ok = x.resolve(p, bytes.data() + std::size_t{p} * PAGE_SIZE, PAGE_SIZE).ok() && x_ok;
    });
    std::thread flusher([&] {
      const hostsim::CpuBinding on(2);
      for (std::uint32_t p = kPages; p-- > 0;) {
        std::uint8_t page[PAGE_SIZE];
        std::memset(page, static_cast<int>(p + 1 + round), sizeof page);
        std::memcpy(y_bytes.data() + std::size_t{p} * PAGE_SIZE, page, PAGE_SIZE);
        y_ok = y.write_page(p, val(PageRef::from_content(page, PAGE_SIZE))).ok() && y_ok;
        if (p % 3 == 0) y_ok = y.flush().ok() && y_ok;
      }
    });
    resolver.join();
    flusher.join();
    ASSERT_TRUE(x_ok);
    ASSERT_TRUE(y_ok);
    EXPECT_EQ(x.missing_count(), 0u);
    EXPECT_EQ(val(x.root()), val(full.root()));
    std::vector<std::uint8_t> back(x.size());
    ASSERT_TRUE(x.read(0, back.data(), back.size()).ok());
    EXPECT_EQ(back, bytes);
    EXPECT_EQ(y.missing_count(), 0u);  // every page written
    EXPECT_EQ(val(y.root()), root_of(y_bytes));
  }
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, start.in_use) << "every frame is back";
}

namespace {

// One run over its own thin mem cap: for each page in `order`, a load faults (Missing,
// resolving off), the page is resolved by reference from the host cache, the load reads
// it, a store of `tag` goes to it; then a flush. Returns the root.
Hash32 run_and_resolve(DataCap& mem, const std::vector<PageRef>& cache, const std::vector<std::uint32_t>& order,
                       std::uint64_t tag, bool* ok) {
  DataCap code = val(DataCap::create(PAGE_SIZE));
  pt::PageTable table = val(pt::PageTable::create());
  {
    fault::Run run(fault::RunConfig{.table = &table, .code = &code, .mem = &mem, .pinned = {}, .gas = 1'000'000});
    hostsim::GuestCpu cpu(hostsim::EngineKind::Mmu, run);
    for (std::uint32_t p : order) {
      const std::uint32_t a = kData + p * PAGE_SIZE + 8 * (p % 8);
      *ok = cpu.load(a, 8).outcome == fault::Outcome::GuestFault && *ok;
      *ok = mem.resolve_page(p, cache[p]).ok() && *ok;
      std::uint64_t want;
      std::memcpy(&want, cache[p].bytes() + 8 * (p % 8), 8);
      const auto r = cpu.load(a, 8);
      *ok = r.outcome == fault::Outcome::Retry && r.value == want && *ok;
      *ok = cpu.store(a, 8, tag + p).outcome == fault::Outcome::Retry && *ok;
    }
  }
  table.teardown();
  *ok = mem.flush().ok() && *ok;
  return val(mem.root());
}

}  // namespace

// (b) Runs on different CPUs resolve the same pages, in different orders, from one host
// cache of hashed pages into their own caps: the roots are the serial ones, and every
// resolved page is the cache's frame (no copy).
TEST(SmpResolve, RunsOnTwoCpusResolveFromOneHostCacheToTheSerialRoots) {
  const FrameStats start = hostsim::quiescent_frame_stats();
  const auto bytes = content(kPages, 2);
  {
    DataCap full = val(DataCap::from_bytes(bytes.data(), bytes.size()));
    std::vector<PageRef> cache;
    for (std::uint32_t p = 0; p < kPages; ++p)
      cache.push_back(val(PageRef::from_content(bytes.data() + std::size_t{p} * PAGE_SIZE, PAGE_SIZE)));
    std::vector<std::uint32_t> up, down;
    for (std::uint32_t p = 0; p < kPages; ++p) up.push_back(p);
    for (std::uint32_t p = kPages; p-- > 0;) down.push_back(p);

    // Serial: the same two sequences one after the other on this thread.
    hostsim::start_cpus(3);
    bool ok = true;
    Hash32 serial1, serial2;
    {
      const hostsim::CpuBinding on(0);
      DataCap m1 = thin_of(full), m2 = thin_of(full);
      serial1 = run_and_resolve(m1, cache, up, 1000, &ok);
      serial2 = run_and_resolve(m2, cache, down, 2000, &ok);
    }
    ASSERT_TRUE(ok);
    ASSERT_NE(serial1, serial2);

    DataCap m1 = thin_of(full), m2 = thin_of(full);
    Hash32 got1, got2;
    bool ok1 = true, ok2 = true;
    std::thread t1([&] {
      const hostsim::CpuBinding on(1);
      got1 = run_and_resolve(m1, cache, up, 1000, &ok1);
    });
    std::thread t2([&] {
      const hostsim::CpuBinding on(2);
      got2 = run_and_resolve(m2, cache, down, 2000, &ok2);
    });
    t1.join();
    t2.join();
    EXPECT_TRUE(ok1);
    EXPECT_TRUE(ok2);
    EXPECT_EQ(got1, serial1);
    EXPECT_EQ(got2, serial2);
    // Stores made private copies; a page stored to is no longer the cache's frame, but the
    // cache's own pages are intact (they were only shared, never written).
    for (std::uint32_t p = 0; p < kPages; ++p) {
      EXPECT_EQ(std::memcmp(cache[p].bytes(), bytes.data() + std::size_t{p} * PAGE_SIZE, PAGE_SIZE), 0) << p;
      EXPECT_EQ(cache[p].hash(), hash::page_content_hash(cache[p].bytes())) << p;
    }
  }
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, start.in_use) << "every frame is back";
}

// (c) Runs register with their code cap (rule 3.9, shared turn). Two runs over one thin
// code cap: while run 1 executes, a resolve of that cap is Busy. Give each run its own O(1)
// copy: a resolve of run 2's copy succeeds while run 1 executes on another CPU, and run 1's
// copy answers Busy until it leaves.
TEST(SmpResolve, PerRunCopiesOfAThinCodeCapResolveWhileAnotherRunExecutes) {
  const FrameStats start = hostsim::quiescent_frame_stats();
  const auto code_bytes = content(4, 3);
  {
    DataCap full = val(DataCap::from_bytes(code_bytes.data(), code_bytes.size()));
    DataCap shared_code = thin_of(full);
    DataCap code1 = val(shared_code.copy());
    DataCap code2 = val(shared_code.copy());
    EXPECT_EQ(code1.backing_id(), shared_code.backing_id());  // O(1): the backing is shared
    DataCap mem1 = val(DataCap::create(PAGE_SIZE)), mem2 = val(DataCap::create(PAGE_SIZE));
    DataCap mem3 = val(DataCap::create(PAGE_SIZE)), mem4 = val(DataCap::create(PAGE_SIZE));
    pt::PageTable t1 = val(pt::PageTable::create()), t2 = val(pt::PageTable::create());
    pt::PageTable t3 = val(pt::PageTable::create()), t4 = val(pt::PageTable::create());
    hostsim::start_cpus(3);
    const auto page = [&](std::uint32_t p) {
      return ByteSource::memory(code_bytes.data() + std::size_t{p} * PAGE_SIZE, PAGE_SIZE);
    };
    {
      fault::Run run1(fault::RunConfig{.table = &t1, .code = &code1, .mem = &mem1, .pinned = {}, .gas = 1000});
      fault::Run run2(fault::RunConfig{.table = &t2, .code = &code2, .mem = &mem2, .pinned = {}, .gas = 1000});
      fault::Run run3(fault::RunConfig{.table = &t3, .code = &shared_code, .mem = &mem3, .pinned = {}, .gas = 1000});
      fault::Run run4(fault::RunConfig{.table = &t4, .code = &shared_code, .mem = &mem4, .pinned = {}, .gas = 1000});
      std::atomic<int> phase{0};
      std::thread executor([&] {
        const hostsim::CpuBinding on(1);
        {
          const fault::Run::Executing e1(run1);
          const fault::Run::Executing e3(run3);
          phase.store(1, std::memory_order_release);
          while (phase.load(std::memory_order_acquire) != 2) std::this_thread::yield();
        }
        phase.store(3, std::memory_order_release);
      });
      const hostsim::CpuBinding on(2);
      while (phase.load(std::memory_order_acquire) != 1) std::this_thread::yield();
      EXPECT_EQ(shared_code.resolve(0, page(0)).status(), Status::Busy) << "run 3 executes over the shared cap";
      EXPECT_EQ(code1.resolve(0, page(0)).status(), Status::Busy) << "run 1 executes over its copy";
      EXPECT_TRUE(code2.resolve(0, page(0)).ok()) << "run 2's own copy is paused";
      EXPECT_TRUE(code2.resolve(1, page(1)).ok());
      phase.store(2, std::memory_order_release);
      while (phase.load(std::memory_order_acquire) != 3) std::this_thread::yield();
      executor.join();
      EXPECT_TRUE(code1.resolve(0, page(0)).ok());
      EXPECT_TRUE(shared_code.resolve(0, page(0)).ok());
      EXPECT_EQ(code1.effective(1).kind, SlotKind::Missing) << "copies resolve independently";
      EXPECT_EQ(val(code1.root()), val(full.root()));
      EXPECT_EQ(val(code2.root()), val(full.root()));
    }
    for (auto* t : {&t1, &t2, &t3, &t4}) t->teardown();
  }
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, start.in_use) << "every frame is back";
}
