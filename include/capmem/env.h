// The seam: everything the core needs from its environment, and nothing else.
//
// Core code (kernel/core/) is freestanding and calls only these functions to reach
// the outside world. Exactly one implementation is linked into any binary:
//   - kernel/image/env_kernel.cpp  for the bare-metal kernel image (real CR3, invlpg,
//                                  serial console, boot memory map, FPU/XSAVE state);
//   - hostsim/env_hostsim.cpp      for hosted tests, benchmarks and tools (simulated
//                                  physical memory, simulated MMU/TLB, stderr).
// They are plain functions selected at link time: there is one implementation per
// binary, so there is no virtual dispatch and no #ifdef in the core.
#pragma once

#include <cstddef>
#include <cstdint>

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

// --- SIMD section ----------------------------------------------------------------
// Core code may use SSE/AVX registers only between simd_begin() and simd_end(). Bare
// metal saves nothing (the kernel owns the FPU while capmem hashes; see
// docs/architecture.md for what an embedding kernel must do); hosted it is free.
// Returns false if SIMD must not be used now (then the portable path runs).
bool simd_begin();
void simd_end();

// --- Diagnostics -----------------------------------------------------------------
void log_write(const char* s, std::size_t n);
[[noreturn]] void panic(const char* msg);

}  // namespace capmem::env
