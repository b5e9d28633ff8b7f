// The core's one lock: a test-and-test-and-set spin lock that saves and disables
// interrupts for as long as it is held (issue 15, docs/smp.md "Interrupts and locks").
//
// Why interrupts off: an interrupt handler on this CPU that reached a capmem lock this CPU
// already holds would spin forever, and a CPU holding a capmem lock must answer a
// shootdown IPI promptly (rule 7.2 waits with interrupts on, never with a capmem lock held:
// see env::tlb_shootdown). The bare-metal kernel calls the core with interrupts off
// anyway; an embedder that calls it with interrupts on gets the same guarantee from here.
//
// Invariants: critical sections are short, take no other capmem lock except in the
// documented orders (frame.h, internal/slab.h), never allocate while held and never wait
// for another CPU. The guard restores the caller's interrupt state exactly (nesting safe).
#pragma once

#include <atomic>

#include "capmem/env.h"

namespace capmem {

class SpinLock {
 public:
  constexpr SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  // Interrupts off (state saved), then spin until the lock is ours.
  [[nodiscard]] env::IrqState lock() const {
    const env::IrqState s = env::irq_save();
    while (held_.exchange(true, std::memory_order_acquire)) {
      while (held_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
    }
    return s;
  }
  void unlock(env::IrqState s) const {
    held_.store(false, std::memory_order_release);
    env::irq_restore(s);
  }

 private:
  mutable std::atomic<bool> held_{false};
};

// Scope guard: lock on construction, unlock (and restore interrupts) on destruction.
class SpinGuard {
 public:
  explicit SpinGuard(const SpinLock& l) : lock_(l), state_(l.lock()) {}
  ~SpinGuard() { lock_.unlock(state_); }
  SpinGuard(const SpinGuard&) = delete;
  SpinGuard& operator=(const SpinGuard&) = delete;

 private:
  const SpinLock& lock_;
  env::IrqState state_;
};

}  // namespace capmem
