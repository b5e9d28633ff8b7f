// x86-64 instructions the kernel image needs, as inline functions (ring 0 only).
// Freestanding; used only by kernel/image (the core reaches hardware through env.h).
#pragma once

#include <cstdint>

namespace capmem::kernel::arch {

// Port I/O (Intel SDM Vol. 1 18.2 "I/O port addressing").
inline void outb(std::uint16_t port, std::uint8_t v) { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
inline void outl(std::uint16_t port, std::uint32_t v) { asm volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
inline std::uint8_t inb(std::uint16_t port) {
  std::uint8_t v;
  asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

// Control registers (SDM Vol. 3A 2.5).
// One accessor per line (clang-format would spread each over five).
// clang-format off
inline std::uint64_t read_cr0() { std::uint64_t v; asm volatile("mov %%cr0, %0" : "=r"(v)); return v; }
inline std::uint64_t read_cr2() { std::uint64_t v; asm volatile("mov %%cr2, %0" : "=r"(v)); return v; }
inline std::uint64_t read_cr3() { std::uint64_t v; asm volatile("mov %%cr3, %0" : "=r"(v)); return v; }
inline std::uint64_t read_cr4() { std::uint64_t v; asm volatile("mov %%cr4, %0" : "=r"(v)); return v; }
// clang-format on
inline void write_cr0(std::uint64_t v) { asm volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
inline void write_cr3(std::uint64_t v) { asm volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
inline void write_cr4(std::uint64_t v) { asm volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }

inline constexpr std::uint64_t CR0_MP = 1u << 1;   // monitor coprocessor
inline constexpr std::uint64_t CR0_EM = 1u << 2;   // x87 emulation (must be 0 for SSE)
inline constexpr std::uint64_t CR0_TS = 1u << 3;   // task switched (lazy FPU trap)
inline constexpr std::uint64_t CR0_NE = 1u << 5;   // native x87 error reporting
inline constexpr std::uint64_t CR0_WP = 1u << 16;  // ring 0 honours R/W=0
inline constexpr std::uint64_t CR0_NW = 1u << 29;  // not write-through (with CD: no coherency)
inline constexpr std::uint64_t CR0_CD = 1u << 30;  // cache disable
inline constexpr std::uint64_t CR4_OSFXSR = 1u << 9;
inline constexpr std::uint64_t CR4_OSXMMEXCPT = 1u << 10;
inline constexpr std::uint64_t CR4_OSXSAVE = 1u << 18;

// MSRs (SDM Vol. 4).
inline std::uint64_t rdmsr(std::uint32_t msr) {
  std::uint32_t lo, hi;
  asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return (std::uint64_t{hi} << 32) | lo;
}
inline void wrmsr(std::uint32_t msr, std::uint64_t v) {
  asm volatile("wrmsr"
               :
               : "c"(msr), "a"(static_cast<std::uint32_t>(v)), "d"(static_cast<std::uint32_t>(v >> 32))
               : "memory");
}
inline constexpr std::uint32_t MSR_APIC_BASE = 0x1b;  // IA32_APIC_BASE (SDM Vol. 3A 11.4.4)
inline constexpr std::uint32_t MSR_EFER = 0xc0000080;
inline constexpr std::uint32_t MSR_GS_BASE = 0xc0000101;         // IA32_GS_BASE
inline constexpr std::uint32_t MSR_KERNEL_GS_BASE = 0xc0000102;  // IA32_KERNEL_GS_BASE (swapgs)
inline constexpr std::uint64_t EFER_NXE = 1u << 11;

// XCR0 (SDM Vol. 1 13.3; Vol. 3A 2.6).
inline std::uint64_t xgetbv(std::uint32_t xcr) {
  std::uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(xcr));
  return (std::uint64_t{hi} << 32) | lo;
}
inline void xsetbv(std::uint32_t xcr, std::uint64_t v) {
  asm volatile("xsetbv" : : "c"(xcr), "a"(static_cast<std::uint32_t>(v)), "d"(static_cast<std::uint32_t>(v >> 32)));
}

struct Cpuid {
  std::uint32_t a, b, c, d;
};
inline Cpuid cpuid(std::uint32_t leaf, std::uint32_t sub = 0) {
  Cpuid r;
  asm volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(sub));
  return r;
}

// Time stamp counter (SDM Vol. 3B 18.17).
inline std::uint64_t rdtsc() {
  std::uint32_t lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (std::uint64_t{hi} << 32) | lo;
}

// RFLAGS.IF (SDM Vol. 1 3.4.3.3) and the interrupt flag instructions.
inline constexpr std::uint64_t RFLAGS_IF = 1u << 9;
inline std::uint64_t read_rflags() {
  std::uint64_t f;
  asm volatile("pushfq; popq %0" : "=r"(f));
  return f;
}
inline void cli() { asm volatile("cli" : : : "memory"); }
inline void sti() { asm volatile("sti" : : : "memory"); }
inline void pause() { __builtin_ia32_pause(); }
// Interrupts off, returning whether they were on (for irq_restore).
inline bool irq_save() {
  const bool on = (read_rflags() & RFLAGS_IF) != 0;
  cli();
  return on;
}
inline void irq_restore(bool on) {
  if (on) sti();
}

// TLB: invalidate one page (SDM Vol. 3A 4.10.4.1).
inline void invlpg(std::uint64_t va) { asm volatile("invlpg (%0)" : : "r"(va) : "memory"); }

[[noreturn]] inline void halt_forever() {
  for (;;) asm volatile("cli; hlt");
}

}  // namespace capmem::kernel::arch
