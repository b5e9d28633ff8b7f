// Simulated CPUs for hosted builds (docs/rules.md section 7; docs/smp.md "hostsim").
//
// hostsim models up to env::kMaxCpus CPUs. Each simulated CPU has its own MMU, TLB and
// CR3: the hostsim::Mmu made current on it (Mmu::make_current() on a host thread bound to
// that CPU). Core code runs on host threads, each bound to one simulated CPU for as long
// as it runs core code (CpuBinding); env::cpu_id() is the calling thread's CPU. The thread
// that called hostsim::boot() is bound to CPU 0. Core code on an unbound host thread is a
// test bug and panics (two threads on one CPU would share its frame cache).
//
// env::tlb_shootdown(root, va, pages) drops the translations of the range from the TLB of
// the calling CPU and of every other simulated CPU whose CR3 is `root` (every CPU when root
// is PhysAddr{}; global entries from every CPU), under each TLB's lock (the model of an IPI
// that the target answers), and counts the calls and dropped entries.
#pragma once

#include <cstdint>

#include "capmem/env.h"

namespace capmem::hostsim {

// CPUs [0, n) may now run core code: env::cpu_count() becomes n (it never goes down).
// 1 <= n <= env::kMaxCpus.
void start_cpus(unsigned n);

// The simulated CPU the calling host thread is bound to, or -1.
int bound_cpu();

// Binds the calling host thread to simulated CPU `cpu` (< cpu_count()) until destroyed,
// then restores the thread's previous binding. A CPU is bound to at most one host thread
// at a time (binding a CPU another thread holds panics); re-binding the CPU this thread
// already holds is a no-op.
class CpuBinding {
 public:
  explicit CpuBinding(unsigned cpu);
  ~CpuBinding();
  CpuBinding(const CpuBinding&) = delete;
  CpuBinding& operator=(const CpuBinding&) = delete;

 private:
  int prev_;
  unsigned cpu_;
  bool claimed_;
};

// The calling thread's simulated interrupt flag (env::irq_save clears it, irq_restore puts
// it back) and how many capmem locks it holds: every capmem lock is held with interrupts
// off (internal/spinlock.h); env::tlb_shootdown aborts inside one (rule 7.2).
bool interrupts_enabled();
unsigned capmem_locks_held();
// env::irq_save calls by the calling thread so far: one per capmem lock taken (a test sees
// that a fast path takes none).
std::uint64_t irq_saves();

struct ShootdownCounters {
  std::uint64_t calls = 0;    // env::tlb_shootdown calls
  std::uint64_t pages = 0;    // pages they named
  std::uint64_t dropped = 0;  // TLB entries they removed, over every simulated CPU
};
ShootdownCounters shootdown_counters();

}  // namespace capmem::hostsim
