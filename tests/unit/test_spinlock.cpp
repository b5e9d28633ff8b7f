// The core's lock (include/capmem/internal/spinlock.h) and the interrupt seam
// (env::irq_save/irq_restore): every capmem lock is held with interrupts off and restores
// the caller's state exactly; a TLB shootdown inside a capmem lock is refused (rule 7.2).
// hostsim models RFLAGS.IF per host thread (hostsim::interrupts_enabled()).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/internal/slab.h"
#include "capmem/internal/spinlock.h"
#include "hostsim/cpus.h"

using namespace capmem;

TEST(SpinLock, HeldWithInterruptsOffAndRestoresThem) {
  ASSERT_TRUE(hostsim::interrupts_enabled());
  ASSERT_EQ(hostsim::capmem_locks_held(), 0u);
  const SpinLock l;
  {
    const SpinGuard g(l);
    EXPECT_FALSE(hostsim::interrupts_enabled());
    EXPECT_EQ(hostsim::capmem_locks_held(), 1u);
  }
  EXPECT_TRUE(hostsim::interrupts_enabled());
  EXPECT_EQ(hostsim::capmem_locks_held(), 0u);
}

TEST(SpinLock, NestedLocksRestoreTheOuterState) {
  const SpinLock a;
  const SpinLock b;
  const env::IrqState sa = a.lock();
  const env::IrqState sb = b.lock();
  EXPECT_EQ(hostsim::capmem_locks_held(), 2u);
  b.unlock(sb);
  EXPECT_FALSE(hostsim::interrupts_enabled()) << "the outer lock is still held: interrupts stay off";
  a.unlock(sa);
  EXPECT_TRUE(hostsim::interrupts_enabled());
  // Taken with interrupts already off (an embedder's interrupt handler): left off after.
  const env::IrqState off = env::irq_save();
  { const SpinGuard g(a); }
  EXPECT_FALSE(hostsim::interrupts_enabled());
  env::irq_restore(off);
  EXPECT_TRUE(hostsim::interrupts_enabled());
}

TEST(SpinLock, ExcludesOtherCpus) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 20000;
  hostsim::start_cpus(kThreads + 1);  // CPU 0 is the test thread's
  const SpinLock l;
  std::uint64_t counter = 0;  // plain: only the lock orders the increments (TSan checks it)
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      const hostsim::CpuBinding on(static_cast<unsigned>(t) + 1);
      for (int i = 0; i < kRounds; ++i) {
        const SpinGuard g(l);
        ++counter;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, std::uint64_t{kThreads} * kRounds);
}

// The allocators' locks are released on every path, including out of frames.
TEST(SpinLock, AllocatorsLeaveNoLockHeld) {
  FrameDesc* d = frames().alloc(FrameKind::Page);
  ASSERT_NE(d, nullptr);
  (void)frames().stats();
  frames().free(d);
  frames().drain_local();
  frames().set_exhausted(true);
  EXPECT_EQ(frames().alloc(FrameKind::Page), nullptr);
  frames().set_exhausted(false);
  static constinit Slab slab(64);  // slabs have static storage duration (internal/slab.h)
  void* p = slab.alloc();
  ASSERT_NE(p, nullptr);
  (void)slab.stats();
  slab.free(p);
  slab.drain(env::cpu_id());
  frames().set_exhausted(true);
  EXPECT_EQ(slab.alloc(), nullptr);  // the refill's frame allocation fails
  frames().set_exhausted(false);
  EXPECT_EQ(hostsim::capmem_locks_held(), 0u);
  EXPECT_TRUE(hostsim::interrupts_enabled());
}

// Rule 7.2: no CPU waits for shootdown confirmations while holding a capmem lock.
TEST(SpinLockDeathTest, ShootdownInsideALockIsRefused) {
  EXPECT_DEATH(
      {
        const SpinLock l;
        const SpinGuard g(l);
        env::tlb_shootdown(PhysAddr{}, VirtAddr{0x400000}, 1);
      },
      "capmem lock held");
}
