// A small environment for capmem (the seam, capmem/env.h), as docs/embedding.md describes it:
// one CPU, RAM is a static page-aligned buffer, the direct map is the identity (a physical
// address is the buffer byte's own address), no TLB to invalidate (capmem's page tables are
// never loaded into CR3 here), no interrupts to mask, SIMD free to use. Freestanding: E1 (a
// hosted program), E2 (a kernel link) and E3 (a static process without libc) all compile it.
// Each provides embed_write() and embed_exit() (its console and its way to stop).
//
// -DEMBED_OMIT_SHOOTDOWN leaves env::tlb_shootdown out: E2's link must then fail naming it.
#include <cstddef>
#include <cstdint>

#include "capmem/env.h"

extern "C" void embed_write(const char* s, std::size_t n);
extern "C" [[noreturn]] void embed_exit(int code);

namespace {
#ifndef EMBED_RAM_BYTES
#define EMBED_RAM_BYTES (8u << 20)
#endif
alignas(4096) std::uint8_t g_ram[EMBED_RAM_BYTES];
}  // namespace

namespace capmem::env {

std::size_t memory_ranges(PhysRange* out, std::size_t max) {
  if (max == 0) return 0;
  out[0] = PhysRange{.base = PhysAddr{reinterpret_cast<std::uintptr_t>(g_ram)}, .size = sizeof g_ram};
  return 1;
}

void* phys_to_virt(PhysAddr pa) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(pa.value())); }
PhysAddr virt_to_phys(const void* va) { return PhysAddr{reinterpret_cast<std::uintptr_t>(va)}; }

void tlb_invalidate_page(VirtAddr /*va*/) {}
#ifndef EMBED_OMIT_SHOOTDOWN
void tlb_shootdown(PhysAddr /*root*/, VirtAddr /*va*/, std::uint64_t /*pages*/) {}
#endif

unsigned cpu_id() { return 0; }
unsigned cpu_count() { return 1; }

IrqState irq_save() { return 0; }
void irq_restore(IrqState /*s*/) {}

bool simd_begin() { return true; }
void simd_end() {}

void log_write(const char* s, std::size_t n) { embed_write(s, n); }

[[noreturn]] void panic(const char* msg) {
  std::size_t n = 0;
  while (msg[n] != '\0') ++n;
  embed_write("capmem panic: ", 14);
  embed_write(msg, n);
  embed_write("\n", 1);
  embed_exit(3);
}

}  // namespace capmem::env
