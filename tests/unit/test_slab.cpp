// Slab with per-CPU caches (rule 7.4; internal/slab.h, docs/smp.md "Slabs"): the fast path
// takes no lock, a CPU's cache stays within its bound, the counts are exact between
// operations, and draining gives every frame back. Concurrent use: tests/smp/test_stress.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/internal/slab.h"
#include "hostsim/cpus.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

namespace {

constinit Slab g_small{48};  // 84 objects per frame
constinit Slab g_big{1280};  // 3 objects per frame (a tree node's size)

// Frames a slab needs for `objects` objects packed from fresh frames.
std::uint64_t frames_for(const Slab& s, std::uint64_t objects) { return (objects + s.per_frame() - 1) / s.per_frame(); }

TEST(Slab, AllocFreeAfterWarmUpTakesNoLock) {
  void* warm = g_small.alloc();  // fills this CPU's cache (one locked step)
  ASSERT_NE(warm, nullptr);
  g_small.free(warm);
  const std::uint64_t locks = hostsim::irq_saves();
  for (int i = 0; i < 1000; ++i) {
    void* p = g_small.alloc();
    ASSERT_NE(p, nullptr);
    g_small.free(p);
  }
  EXPECT_EQ(hostsim::irq_saves(), locks) << "alloc/free on a warm cache must not lock";
  g_small.drain(env::cpu_id());
}

TEST(Slab, CountsAreExactAndTheCacheStaysBounded) {
  const unsigned cpu = env::cpu_id();
  const std::uint64_t in_use0 = hostsim::quiescent_frame_stats().in_use;
  ASSERT_EQ(g_big.stats().frames, 0u);
  std::vector<void*> live;
  std::set<void*> distinct;
  for (unsigned i = 0; i < 100; ++i) {
    void* p = g_big.alloc();
    ASSERT_NE(p, nullptr);
    for (std::size_t b = 0; b < g_big.size(); ++b) ASSERT_EQ(static_cast<std::uint8_t*>(p)[b], 0) << "zero-filled";
    static_cast<std::uint8_t*>(p)[g_big.size() - 1] = 0xee;
    live.push_back(p);
    distinct.insert(p);
    const SlabStats s = g_big.stats();
    EXPECT_EQ(s.objects, i + 1u);
    EXPECT_EQ(s.cached, g_big.cached_on(cpu));
    EXPECT_LE(s.cached, Slab::kCacheHigh);
    // Every held frame holds a live or cached object; objects are packed from the front.
    EXPECT_EQ(s.frames, frames_for(g_big, s.objects + s.cached));
  }
  EXPECT_EQ(distinct.size(), live.size());
  for (std::size_t i = 0; i < live.size(); ++i) {
    g_big.free(live[i]);
    const SlabStats s = g_big.stats();
    EXPECT_EQ(s.objects, live.size() - i - 1);
    EXPECT_EQ(s.cached, g_big.cached_on(cpu));
    EXPECT_LE(g_big.cached_on(cpu), Slab::kCacheHigh) << "after free " << i;
  }
  // Freed objects beyond the bound went back to their frames and emptied frames to frames().
  const SlabStats s = g_big.stats();
  EXPECT_GE(s.cached, 1u);
  EXPECT_LE(s.frames, s.cached);
  EXPECT_EQ(frames().stats().in_use, in_use0 + s.frames) << "only frames pinned by cached objects";
  g_big.drain(cpu);
  EXPECT_EQ(g_big.cached_on(cpu), 0u);
  EXPECT_EQ(g_big.stats().frames, 0u);
  EXPECT_EQ(g_big.stats().cached, 0u);
  EXPECT_EQ(frames().stats().in_use, in_use0) << "drain gives every frame back";
}

// An object freed on one CPU lands in that CPU's cache; draining that CPU gives it back.
TEST(Slab, FreeOnAnotherCpuLandsInItsCache) {
  const unsigned self = env::cpu_id();
  hostsim::start_cpus(2);
  const unsigned other = self == 0 ? 1 : 0;
  void* p = g_small.alloc();
  ASSERT_NE(p, nullptr);
  const std::uint32_t mine = g_small.cached_on(self);
  {
    const hostsim::CpuBinding on(other);
    g_small.free(p);
  }
  EXPECT_EQ(g_small.cached_on(other), 1u);
  EXPECT_EQ(g_small.cached_on(self), mine);
  EXPECT_EQ(g_small.stats().objects, 0u);
  EXPECT_EQ(g_small.stats().cached, mine + 1u);
  drain_slab_caches(other);
  EXPECT_EQ(g_small.cached_on(other), 0u);
  drain_slab_caches(self);
  EXPECT_EQ(g_small.stats().frames, 0u);
}

TEST(Slab, OutOfFramesIsNullAndLeavesNothing) {
  const std::uint64_t in_use0 = hostsim::quiescent_frame_stats().in_use;
  frames().set_exhausted(true);
  EXPECT_EQ(g_big.alloc(), nullptr);
  frames().set_exhausted(false);
  const SlabStats s = g_big.stats();
  EXPECT_EQ(s.objects, 0u);
  EXPECT_EQ(s.cached, 0u);
  EXPECT_EQ(s.frames, 0u);
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, in_use0);
}

TEST(SlabDeathTest, FreeingAPointerFromAnotherSlabTraps) {
  void* p = g_small.alloc();
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(g_big.free(p), "not from this slab");
  g_small.free(p);
  g_small.drain(env::cpu_id());
}

TEST(SlabDeathTest, FreeingTwiceTraps) {
  EXPECT_DEATH(
      {
        void* p = g_small.alloc();
        g_small.free(p);
        g_small.free(p);
      },
      "freed twice");
}

}  // namespace
