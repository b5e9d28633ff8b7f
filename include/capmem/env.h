// The seam: everything the core needs from its environment, and nothing else.
//
// Core code (kernel/core/) is freestanding and calls only these functions to reach
// the outside world. Exactly one implementation is linked into any binary:
//   - kernel/image/env_kernel.cpp  for the bare-metal kernel image (real CR3, invlpg,
//                                  serial console, boot memory map, FPU/XSAVE state);
//   - hostsim/env_hostsim.cpp      for hosted tests, benchmarks and tools (simulated
//                                  physical memory, simulated MMU/TLB, stderr).
// They are plain functions selected at link time: there is one implementation per
// binary, so there is no virtual dispatch and no host/kernel #ifdef in the core (the one
// preprocessor switch, CAPMEM_HASH_SIMD in hash.cpp, is a kernel configuration: -Dkernel_simd).
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/config.h"
#include "capmem/types.h"

namespace capmem::env {

// --- Physical memory -------------------------------------------------------------
// A range of usable RAM handed to the frame allocator at start-up. `base` and `size`
// are page-aligned; the environment has already removed what it uses itself (the
// kernel image, boot structures, the simulated memory's own header).
struct PhysRange {
  PhysAddr base;
  std::uint64_t size;
};

// Fills `out` with up to `max` usable ranges (ascending, disjoint); returns the count.
std::size_t memory_ranges(PhysRange* out, std::size_t max);

// Direct map: every usable physical byte is reachable at a fixed virtual offset.
// Both are O(1) and total over the ranges reported by memory_ranges().
void* phys_to_virt(PhysAddr pa);
PhysAddr virt_to_phys(const void* va);

// --- TLB (Intel SDM Vol. 3A 4.10.4) ---------------------------------------------------
// Invalidate the translation for the page containing `va` in the current address space
// (`invlpg`). Page-table code calls this after changing or removing a present leaf.
void tlb_invalidate_page(VirtAddr va);

// --- Many CPUs (docs/rules.md section 7; docs/smp.md) -------------------------------------
// The most CPUs the core keeps per-CPU state for (per-CPU arrays are indexed by cpu_id()):
// -Dmax_cpus, through the generated capmem/config.h, so that a consumer and the library it
// links always agree on the size of per-CPU state.
inline constexpr unsigned kMaxCpus = CAPMEM_MAX_CPUS;
static_assert(kMaxCpus >= 1 && kMaxCpus <= 1024, "CAPMEM_MAX_CPUS out of range (-Dmax_cpus: 1-1024)");

// Index of the CPU running the caller, in [0, cpu_count()). The caller stays on that CPU
// for the whole core call: the kernel never preempts or migrates core code (it runs with
// interrupts off or on a non-preemptible path), hostsim binds each host thread that runs
// core code to one simulated CPU. Cheap (a GS-relative load on bare metal).
unsigned cpu_id();
// CPUs started so far that may run core code (1 before the others are started).
unsigned cpu_count();

// TLB shootdown (rule 7.2, Intel SDM Vol. 3A 4.10.5): returns only after every CPU that
// may hold a translation for [va, va + pages * PAGE_SIZE), the calling CPU included, has
// dropped it. `root` is the PML4 of the address space, or PhysAddr{} for "every address
// space" (a subtree shared with link_shared sits at the same virtual address in every table
// that links it). Never called with interrupts off or with a capmem lock held; the #PF
// handler never calls it (a run's own table is on one CPU, rule 7.1: local invlpg).
void tlb_shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages);

// --- Interrupts (Intel SDM Vol. 1 3.4.3.3, RFLAGS.IF) --------------------------------
// Every capmem lock (internal/spinlock.h) is held with interrupts disabled on its CPU:
// irq_save() disables them and returns the previous state, irq_restore() puts that state
// back (nesting safe). Bare metal: pushfq/cli and sti if IF was set. Hosted: a per-thread
// simulated flag (hostsim::interrupts_enabled()), so tests can see it.
using IrqState = std::uint64_t;
[[nodiscard]] IrqState irq_save();
void irq_restore(IrqState s);

// --- SIMD section ----------------------------------------------------------------
// Core code may use SSE/AVX registers only between simd_begin() and simd_end(). Bare
// metal saves nothing (the kernel owns the FPU while capmem hashes; see
// docs/boot.md, "SIMD and a host kernel embedding capmem", for what an embedding kernel
// must do); hosted it is free.
// Returns false if SIMD must not be used now (then the portable path runs).
bool simd_begin();
void simd_end();

// --- Diagnostics -----------------------------------------------------------------
void log_write(const char* s, std::size_t n);
[[noreturn]] void panic(const char* msg);

}  // namespace capmem::env
