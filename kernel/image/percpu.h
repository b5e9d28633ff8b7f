// Per-CPU state of the kernel image, reached through GS (docs/smp.md "Per-CPU state").
//
// Every CPU owns one PerCpu block (g_cpus[id], a static array). While a CPU runs at ring 0
// its IA32_GS_BASE holds the address of its block, so `%gs:0` is the block itself and
// `%gs:8` the CPU's id: one load, no lock, no table lookup. While a ring-3 guest runs the
// block's address sits in IA32_KERNEL_GS_BASE instead; every entry from ring 3 and every
// return to it executes `swapgs` (isr.S, user.S). NMI, #DF and #MC (the IST vectors, which
// may arrive anywhere, even between a swapgs and the iretq after it) do not trust GS at all:
// they find their block through the pointer stored at the top of their IST stack and load
// IA32_GS_BASE from it (trap.cpp), and they never return.
//
// Invariants:
//   - g_cpus[i].id == i; ids are dense, 0 = the boot CPU, in MADT order of the others;
//   - a block's fields without std::atomic are written only by its own CPU (or by the boot
//     CPU before that CPU starts); the atomics are the cross-CPU mailboxes;
//   - `run` is non-null exactly while run_user() is on this CPU's stack (user.cpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "capmem/env.h"

namespace capmem::kernel {

struct ActiveRun;  // user.cpp: the run in progress on this CPU

// The most CPUs this image starts (stacks are static; CPUs beyond it are reported and left
// in their wait-for-SIPI state). The core's own limit is env::kMaxCpus.
inline constexpr unsigned kMaxKernelCpus = 16;
static_assert(kMaxKernelCpus <= env::kMaxCpus);

inline constexpr std::size_t kKernelStackSize = 64 * 1024;  // the CPU's own stack (APs)
inline constexpr std::size_t kRsp0StackSize = 32 * 1024;    // traps from ring 3
inline constexpr std::size_t kIstStackSize = 16 * 1024;     // NMI, #DF, #MC

// 64-bit TSS (SDM Vol. 3A 8.7 "Task Management in 64-bit Mode", Figure 8-11). Only the
// stack pointers matter: RSP0 is loaded on every trap from ring 3, IST1 on the vectors that
// must not trust the current stack.
struct [[gnu::packed]] Tss {
  std::uint32_t reserved0 = 0;
  std::uint64_t rsp[3] = {};
  std::uint64_t reserved1 = 0;
  std::uint64_t ist[7] = {};
  std::uint64_t reserved2 = 0;
  std::uint16_t reserved3 = 0;
  std::uint16_t iomap_base = 0;  // >= limit: no I/O permission bitmap, ring 3 has no port access
};
static_assert(sizeof(Tss) == 104);

// Work handed to an application processor (smp.h: run_on).
using CpuWork = void (*)(void* arg);

struct alignas(64) PerCpu {
  PerCpu* self = {};                // %gs:0 (percpu())
  std::uint32_t id = {};            // %gs:8 (env::cpu_id())
  std::uint32_t apic_id = {};       // local APIC (or x2APIC) id, from the MADT / CPUID
  ActiveRun* run = {};              // the run in progress here (user.cpp), nullptr otherwise
  int exception_depth = {};         // nested unexpected exceptions (trap.cpp)
  std::uint32_t capmem_locks = {};  // capmem locks held here (env::irq_save depth; smp::shootdown refuses > 0)
  std::uint64_t online_ticks = {};  // rdtsc when this CPU finished its start-up

  // --- Cross-CPU mailboxes ------------------------------------------------------------------
  std::atomic<bool> online{};                    // set once by the CPU itself when it is ready
  std::atomic<std::uint64_t> cr3_loaded{};       // CR3 this CPU runs on (published before loading)
  std::atomic<std::uint64_t> shootdown_inbox{};  // bit i: CPU i's request is waiting here
  std::atomic<CpuWork> work{};                   // smp::run_on: next work item (AP idle loop)
  void* work_arg = {};
  std::atomic<std::uint32_t> work_waiter{};  // CPU to wake when the work is done
  std::atomic<bool> work_done{};

  // --- Console line buffer (env_kernel.cpp): a line leaves in one piece ---------------------
  std::size_t line_len = {};
  char line[192]{};

  // --- Descriptor tables and stacks (cpu.cpp) -------------------------------------------------
  alignas(16) std::uint64_t gdt[7]{};
  Tss tss{};
};

// Defined in smp.cpp (constant-initialized: every member starts zero).
// NOLINTBEGIN(bugprone-dynamic-static-initializers): clang-tidy 14 false positive on an
// extern declaration.
extern PerCpu g_cpus[kMaxKernelCpus];
// NOLINTEND(bugprone-dynamic-static-initializers)

// This CPU's block (valid once cpu_init / the AP start-up set IA32_GS_BASE).
inline PerCpu* percpu() {
  PerCpu* p;
  asm volatile("movq %%gs:0, %0" : "=r"(p));
  return p;
}
inline std::uint32_t percpu_id() {
  std::uint32_t id;
  asm volatile("movl %%gs:8, %0" : "=r"(id));
  return id;
}

// The current run of this CPU: the one accessor the trap path and run_user use.
inline ActiveRun*& active_user_run() { return percpu()->run; }

}  // namespace capmem::kernel
