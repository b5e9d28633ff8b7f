// Many CPUs at once over shared caps (docs/rules.md section 7, rule 7.5; docs/smp.md).
//
// kThreads host threads, each bound to its own simulated CPU (hostsim/cpus.h), run guests
// through the MMU engine over one shared code cap and copies of one shared `mem` cap
// (copy-on-write faults into their own copies), checkpoint each paused run from another
// CPU while its table is still loaded (rule 3.8) and store again, write pages into their caps, hand a copy
// that shares their unhashed pages to the next thread and flush their own at the same time
// as the receiver flushes the copy, and drop everything. Every root, gas figure and
// counter must equal the same work done serially on one CPU, and every frame, tree node,
// backing and hash box must be back at the end. Also: the frame allocator and a slab
// hammered from every CPU at once (run under ThreadSanitizer by ./dev test).
#include <gtest/gtest.h>

#include <array>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/internal/slab.h"
#include "capmem/internal/tree.h"
#include "capmem/page.h"
#include "capmem/slot.h"
#include "demo.h"
#include "engines.h"
#include "hostsim/cpus.h"
#include "hostsim/env_hostsim.h"

#include "../test_util.h"

using namespace capmem;
using capmem::testutil::hex;
using capmem::testutil::val;

namespace {

constexpr unsigned kThreads = 4;

unsigned rounds() {
  const char* e = std::getenv("CAPMEM_SMP_ROUNDS");
  return e != nullptr ? static_cast<unsigned>(std::strtoul(e, nullptr, 10)) : 3;
}

// Runs fn(i) for i in [0, n) on n host threads bound to simulated CPUs 1..n (CPU 0 is the
// test's main thread).
template <typename F>
void on_cpus(unsigned n, F fn) {
  hostsim::start_cpus(2 * kThreads + 1);  // 1..kThreads: the threads; above: checkpoints
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < n; ++i) {
    ts.emplace_back([i, &fn] {
      const hostsim::CpuBinding on(i + 1);
      fn(i);
    });
  }
  for (auto& t : ts) t.join();
}

// One queue of caps per receiving thread.
class Mailbox {
 public:
  void send(DataCap c) {
    {
      const std::lock_guard<std::mutex> g(m_);
      q_.push_back(std::move(c));
    }
    cv_.notify_one();
  }
  DataCap receive() {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [&] { return !q_.empty(); });
    DataCap c = std::move(q_.front());
    q_.pop_front();
    return c;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<DataCap> q_;
};

struct Outcome {
  bool ok = false;
  std::string what;
  Hash32 root{};             // the thread's own cap after flush
  Hash32 received_root{};    // the cap it received (from thread t-1), after flush
  Hash32 checkpoint_root{};  // a copy taken from another CPU while the run was paused
  std::uint64_t gas = 0, cow = 0, page_in = 0, checksum = 0;
  bool operator==(const Outcome& o) const {
    return ok == o.ok && root == o.root && received_root == o.received_root && checkpoint_root == o.checkpoint_root &&
           gas == o.gas && cow == o.cow && page_in == o.page_in && checksum == o.checksum;
  }
};

std::vector<std::uint8_t> page_bytes(unsigned t, unsigned round, unsigned salt) {
  std::vector<std::uint8_t> v(PAGE_SIZE);
  std::mt19937 rng(t * 1000 + round * 10 + salt);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// One round of thread t's work. Sends a copy of its cap to `out` before flushing its own,
// then receives one from `in` and flushes it.
Outcome one_round(const demo::Image& img, unsigned t, unsigned round, Mailbox& out, Mailbox& in) {
  Outcome o;
  DataCap mem = val(img.mem.copy());
  {
    pt::PageTable table = val(pt::PageTable::create());
    fault::Run run(fault::RunConfig{.table = &table,
                                    .code = &img.code,
                                    .mem = &mem,
                                    .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                    .gas = demo::kDefaultGas});
    {
      hostsim::GuestCpu cpu(hostsim::EngineKind::Mmu, run);
      const demo::Progress p = demo::run_ops(cpu.engine());
      if (p.stop != fault::Outcome::Retry) {
        o.what = std::string("demo stopped: ") + fault::outcome_name(p.stop);
        return o;
      }
      o.checksum = p.checksum;
      // This thread's own copy-on-write stores (pages below the pinned range).
      for (unsigned k = 0; k < 48; ++k) {
        const std::uint32_t page = (t * 97 + round * 31 + k * 13) % demo::kPinned.first_page;
        const std::uint32_t addr =
            static_cast<std::uint32_t>(fault::DATA_BASE) + page * PAGE_SIZE + (k * 8) % PAGE_SIZE;
        const auto r = cpu.store(addr, 8, (std::uint64_t{t} << 48) | (std::uint64_t{round} << 32) | k);
        if (r.outcome != fault::Outcome::Retry) {
          o.what = std::string("store stopped: ") + fault::outcome_name(r.outcome);
          return o;
        }
      }
      // Rule 3.8 across CPUs: checkpoint this paused run from another CPU while this
      // CPU's MMU still has its table loaded (copy, then flush of `mem`: the writable
      // leaves are write-protected through a shootdown that reaches this CPU's TLB), then
      // store again here: the store faults and lands in the cap (the final root says so).
      std::string err;
      std::thread other([&] {
        const hostsim::CpuBinding on(kThreads + 1 + t);
        auto c = mem.copy();
        if (!c.ok() || !c->flush().ok()) {
          err = "checkpoint copy failed";
          return;
        }
        o.checkpoint_root = val(c->root());
        if (!mem.flush().ok()) err = "checkpoint flush failed";
      });
      other.join();
      if (!err.empty()) {
        o.what = err;
        return o;
      }
      for (unsigned k = 0; k < 8; ++k) {
        const std::uint32_t page = (t * 97 + round * 31 + k * 13) % demo::kPinned.first_page;
        const std::uint32_t addr =
            static_cast<std::uint32_t>(fault::DATA_BASE) + page * PAGE_SIZE + (k * 8 + 512) % PAGE_SIZE;
        const auto r = cpu.store(addr, 8, ~((std::uint64_t{t} << 48) | (std::uint64_t{round} << 32) | k));
        if (r.outcome != fault::Outcome::Retry) {
          o.what = std::string("store after the checkpoint stopped: ") + fault::outcome_name(r.outcome);
          return o;
        }
      }
    }
    o.gas = run.gas_used();
    o.cow = run.counters().cow;
    o.page_in = run.counters().page_in + run.counters().clusters;
    table.teardown();
  }
  // write_page: one hashed page and one unhashed copy (shared with the copy handed off).
  const auto a = page_bytes(t, round, 1), b = page_bytes(t, round, 2);
  if (!mem.write_page(600 + t, val(PageRef::from_content(a.data(), a.size()))).ok() ||
      !mem.write_page(700 + t, val(PageRef::unhashed_copy(b.data()))).ok()) {
    o.what = "write_page failed";
    return o;
  }
  out.send(val(mem.copy()));  // shares every unhashed overlay page with `mem`
  if (!mem.flush().ok()) {
    o.what = "flush failed";
    return o;
  }
  o.root = val(mem.root());
  DataCap got = in.receive();  // from thread t-1: flushed here while t-1 flushes its own
  if (!got.flush().ok()) {
    o.what = "flush of the received cap failed";
    return o;
  }
  o.received_root = val(got.root());
  o.ok = true;
  return o;
}

struct Counts {
  FrameStats frames;
  std::uint64_t nodes, backings, boxes;
  static Counts now() {
    return Counts{.frames = capmem::hostsim::quiescent_frame_stats(),
                  .nodes = tree::live_nodes(),
                  .backings = tree::live_backings(),
                  .boxes = Slot::missing_boxes()};
  }
};

}  // namespace

TEST(Smp, ConcurrentRunsOverSharedCapsMatchASerialReference) {
  const unsigned n_rounds = rounds();
  hostsim::start_cpus(2 * kThreads + 1);  // the serial reference checkpoints from other CPUs too
  const Counts start = Counts::now();
  {
    const demo::Image img = val(demo::build());
    // Serial reference: the same rounds on one CPU, one after the other. Each round sends
    // its copy to itself; in parallel thread t receives thread t-1's copy, whose root is
    // t-1's own root (a copy keeps its content).
    std::vector<std::vector<Outcome>> want(kThreads, std::vector<Outcome>(n_rounds));
    for (unsigned r = 0; r < n_rounds; ++r) {
      for (unsigned t = 0; t < kThreads; ++t) {
        Mailbox self;
        want[t][r] = one_round(img, t, r, self, self);
        ASSERT_TRUE(want[t][r].ok) << want[t][r].what;
        EXPECT_EQ(want[t][r].received_root, want[t][r].root);
      }
      for (unsigned t = 0; t < kThreads; ++t) want[t][r].received_root = want[(t + kThreads - 1) % kThreads][r].root;
    }
    // The same work on kThreads CPUs at once.
    std::vector<std::vector<Outcome>> got(kThreads, std::vector<Outcome>(n_rounds));
    std::array<Mailbox, kThreads> box;
    on_cpus(kThreads, [&](unsigned t) {
      for (unsigned r = 0; r < n_rounds; ++r) got[t][r] = one_round(img, t, r, box[(t + 1) % kThreads], box[t]);
    });
    for (unsigned t = 0; t < kThreads; ++t) {
      for (unsigned r = 0; r < n_rounds; ++r) {
        ASSERT_TRUE(got[t][r].ok) << "thread " << t << " round " << r << ": " << got[t][r].what;
        EXPECT_EQ(got[t][r], want[t][r]) << "thread " << t << " round " << r << ": root " << hex(got[t][r].root)
                                         << " want " << hex(want[t][r].root);
      }
    }
    // Threads differ: their roots must too (or the comparison above proves little).
    EXPECT_NE(want[0][0].root, want[1][0].root);
    EXPECT_NE(want[0][0].checkpoint_root, want[1][0].checkpoint_root);
  }
  const Counts end = Counts::now();
  EXPECT_EQ(end.frames.in_use, start.frames.in_use) << "every frame is back";
  EXPECT_EQ(end.frames.free, start.frames.free);
  EXPECT_EQ(end.nodes, start.nodes);
  EXPECT_EQ(end.backings, start.backings);
  EXPECT_EQ(end.boxes, start.boxes);
}

// Frames allocated on one CPU and freed on another, from every CPU at once: the caches
// stay within their bound and the counts are exact afterwards (rule 7.4).
TEST(Smp, FrameAllocatorFromEveryCpu) {
  const FrameStats start = hostsim::quiescent_frame_stats();
  std::array<std::mutex, kThreads> lock;
  std::array<std::vector<FrameDesc*>, kThreads> inbox;
  on_cpus(kThreads, [&](unsigned t) {
    std::mt19937 rng(t);
    std::vector<FrameDesc*> mine;
    for (unsigned i = 0; i < 20000; ++i) {
      const unsigned op = rng() % 8;
      if (op < 4 || mine.empty()) {
        FrameDesc* d = frames().alloc(FrameKind::Page);
        ASSERT_NE(d, nullptr);
        static_cast<std::uint8_t*>(d->virt())[t] = static_cast<std::uint8_t>(t);
        mine.push_back(d);
      } else if (op < 6) {
        frames().free(mine.back());
        mine.pop_back();
      } else if (op == 6) {
        const std::lock_guard<std::mutex> g(lock[(t + 1) % kThreads]);
        inbox[(t + 1) % kThreads].push_back(mine.back());  // freed by the next CPU
        mine.pop_back();
      } else {
        std::vector<FrameDesc*> take;
        {
          const std::lock_guard<std::mutex> g(lock[t]);
          take.swap(inbox[t]);
        }
        for (FrameDesc* d : take) frames().free(d);
      }
    }
    for (FrameDesc* d : mine) frames().free(d);
  });
  for (auto& v : inbox)
    for (FrameDesc* d : v) frames().free(d);
  const FrameStats end = hostsim::quiescent_frame_stats();
  EXPECT_EQ(end.free, start.free);
  EXPECT_EQ(end.in_use, start.in_use);
  EXPECT_LE(end.cached, std::uint64_t{FrameAllocator::kCacheHigh} * env::cpu_count());  // per started CPU
}

// One slab from every CPU at once (Slab::free used to read in_use before taking the lock:
// ThreadSanitizer reported it against Slab::alloc; now refills and drains of per-CPU caches
// meet under the lock). Objects keep their contents; every CPU's cache stays within its
// bound (rule 7.4), and the slab holds no frame once the caches are drained.
TEST(Smp, SlabFromEveryCpu) {
  static constinit Slab slab{48};
  const FrameStats start = hostsim::quiescent_frame_stats();
  on_cpus(kThreads, [&](unsigned t) {
    std::vector<std::uint64_t*> objs;
    for (unsigned round = 0; round < 200; ++round) {
      for (unsigned i = 0; i < 50; ++i) {
        auto* p = static_cast<std::uint64_t*>(slab.alloc());
        ASSERT_NE(p, nullptr);
        p[1] = (std::uint64_t{t} << 32) | i;
        objs.push_back(p);
      }
      for (unsigned i = 0; i < objs.size(); ++i) {
        ASSERT_EQ(objs[i][1], (std::uint64_t{t} << 32) | i);
        slab.free(objs[i]);
      }
      objs.clear();
      (void)slab.stats();  // read while the other CPUs allocate
      EXPECT_LE(slab.cached_on(env::cpu_id()), Slab::kCacheHigh);
    }
  });
  // Exact once every CPU is done: nothing allocated, each CPU's cache within its bound, and
  // the frames held are those of the cached objects, all given back by draining.
  const SlabStats s = slab.stats();
  EXPECT_EQ(s.objects, 0u);
  std::uint64_t cached = 0;
  for (unsigned cpu = 0; cpu < env::cpu_count(); ++cpu) {
    EXPECT_LE(slab.cached_on(cpu), Slab::kCacheHigh) << "cpu " << cpu;
    cached += slab.cached_on(cpu);
  }
  EXPECT_EQ(s.cached, cached);
  EXPECT_LE(s.frames, cached);
  for (unsigned cpu = 0; cpu < env::cpu_count(); ++cpu) slab.drain(cpu);
  EXPECT_EQ(slab.stats().cached, 0u);
  EXPECT_EQ(slab.stats().frames, 0u);
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, start.in_use);
}
