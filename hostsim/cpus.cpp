// Simulated CPUs: host-thread binding, cpu_id/cpu_count and the TLB shootdown of the seam
// (include/capmem/env.h) for hosted builds. See hostsim/cpus.h.
#include "hostsim/cpus.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "hostsim/mmu.h"

namespace capmem::hostsim {
namespace {
// The calling thread's simulated CPU (-1: unbound). initial-exec: a %fs-relative load.
__attribute__((tls_model("initial-exec"))) thread_local int t_cpu = -1;
std::atomic<unsigned> g_cpu_count{1};
// The calling thread's simulated RFLAGS.IF and the capmem locks it holds (env::irq_save
// depth): threads start with interrupts on, as a CPU runs guests and waits for
// shootdowns.
thread_local bool t_if = true;
thread_local unsigned t_locks = 0;
thread_local std::uint64_t t_irq_saves = 0;
std::atomic<bool> g_claimed[env::kMaxCpus];
// Shootdown counters, one cache line per simulated CPU, written only by the thread bound
// to it (plain load + store, no locked add): a CoW fault on every CPU at once counts its
// shootdown without bouncing a shared line between them (docs/smp.md). Read by summing.
struct alignas(64) ShootdownCount {
  std::atomic<std::uint64_t> calls{0}, pages{0}, dropped{0};
  void add(std::atomic<std::uint64_t>& c, std::uint64_t v) {
    c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }
};
ShootdownCount g_counts[env::kMaxCpus];

[[noreturn]] void die(const char* msg, unsigned cpu) {
  std::fprintf(stderr, "hostsim cpus: %s (cpu %u)\n", msg, cpu);
  std::abort();
}
}  // namespace

// Called by boot(): the booting thread is CPU 0.
void bind_boot_thread() {
  if (t_cpu == 0) return;
  if (g_claimed[0].exchange(true)) die("hostsim::boot on a second host thread while CPU 0 is bound", 0);
  t_cpu = 0;
}

void start_cpus(unsigned n) {
  if (n == 0 || n > env::kMaxCpus) die("start_cpus: count out of range", n);
  unsigned cur = g_cpu_count.load();
  while (cur < n && !g_cpu_count.compare_exchange_weak(cur, n)) {
  }
}

int bound_cpu() { return t_cpu; }

bool interrupts_enabled() { return t_if; }
unsigned capmem_locks_held() { return t_locks; }
std::uint64_t irq_saves() { return t_irq_saves; }

CpuBinding::CpuBinding(unsigned cpu) : prev_(t_cpu), cpu_(cpu), claimed_(false) {
  if (cpu >= g_cpu_count.load()) die("CpuBinding: CPU not started (hostsim::start_cpus)", cpu);
  if (t_cpu == static_cast<int>(cpu)) return;
  if (g_claimed[cpu].exchange(true)) die("CpuBinding: CPU already bound to another host thread", cpu);
  claimed_ = true;
  t_cpu = static_cast<int>(cpu);
}

CpuBinding::~CpuBinding() {
  if (!claimed_) return;
  t_cpu = prev_;
  g_claimed[cpu_].store(false);
}

ShootdownCounters shootdown_counters() {
  ShootdownCounters sum{};
  for (const ShootdownCount& c : g_counts) {
    sum.calls += c.calls.load(std::memory_order_relaxed);
    sum.pages += c.pages.load(std::memory_order_relaxed);
    sum.dropped += c.dropped.load(std::memory_order_relaxed);
  }
  return sum;
}

}  // namespace capmem::hostsim

namespace capmem::env {
namespace {
[[noreturn]] void die_unbalanced() {
  std::fprintf(stderr, "hostsim: env::irq_restore without a matching irq_save\n");
  std::abort();
}
}  // namespace

unsigned cpu_id() {
  const int c = hostsim::t_cpu;
  if (c < 0) {
    std::fprintf(stderr, "hostsim: core code on a host thread bound to no simulated CPU (hostsim::CpuBinding)\n");
    std::abort();
  }
  return static_cast<unsigned>(c);
}

unsigned cpu_count() { return hostsim::g_cpu_count.load(std::memory_order_relaxed); }

IrqState irq_save() {
  const IrqState s = hostsim::t_if ? 1 : 0;
  hostsim::t_if = false;
  ++hostsim::t_locks;
  ++hostsim::t_irq_saves;
  return s;
}
void irq_restore(IrqState s) {
  if (hostsim::t_locks == 0) die_unbalanced();
  --hostsim::t_locks;
  hostsim::t_if = s != 0;
}

void tlb_shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages) {
  // Rule 7.2, as the kernel's smp::shootdown checks it: never inside a capmem lock.
  if (hostsim::t_locks != 0) {
    std::fprintf(stderr, "hostsim: TLB shootdown with a capmem lock held (rule 7.2)\n");
    std::abort();
  }
  hostsim::ShootdownCount& c = hostsim::g_counts[cpu_id()];
  c.add(c.calls, 1);
  c.add(c.pages, pages);
  c.add(c.dropped, hostsim::shootdown_all_cpus(root, va, pages));
}

}  // namespace capmem::env
