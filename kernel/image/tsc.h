// The time-stamp counter: reading it and calibrating its frequency (kernel image only;
// the in-kernel benchmarks time everything with it, kbench.cpp).
#pragma once

#include <cstdint>

namespace capmem::kernel::tsc {

// RDTSC between two LFENCEs (SDM Vol. 2B RDTSC): earlier instructions have completed and
// later ones have not started. For timing a span of code.
inline std::uint64_t read() {
  std::uint32_t lo, hi;
  asm volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi) : : "memory");
  return (std::uint64_t{hi} << 32) | lo;
}
// RDTSC unordered: no serialization in the measured path (used inside the #PF handler).
inline std::uint64_t read_fast() {
  std::uint32_t lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (std::uint64_t{hi} << 32) | lo;
}

// What calibrate() found, each source on its own (0: unavailable), and the frequency chosen.
struct Calibration {
  std::uint64_t khz = 0;        // the TSC frequency chosen; 0 when no source worked
  const char* source = "none";  // "kvm-pvclock", "cpuid-0x15", "pit" or "none"
  char hypervisor[13] = {};     // CPUID 0x40000000 vendor signature, "" on bare metal
  bool invariant = false;       // CPUID 0x80000007 EDX[8]
  std::uint64_t pit_khz = 0;    // PIT channel 2, 5 x 50 ms
  std::uint64_t pit_spread_ppm = 0;
  std::uint64_t pvclock_khz = 0;       // KVM's own TSC scale (exact to its kHz)
  std::uint64_t cpuid15_khz = 0;       // TSC / crystal ratio (exact when enumerated)
  std::uint32_t cpuid16_base_mhz = 0;  // nominal base frequency, not the TSC (for the record)
};

// Measures the TSC frequency. Preference: the hypervisor's own scale (KVM pvclock, exact),
// the enumerated crystal (CPUID 0x15, exact), the PIT (tens of ppm under KVM). Takes about
// 250 ms (the PIT runs). Interrupts stay off; MSR_KVM_SYSTEM_TIME_NEW is left disabled.
Calibration calibrate();

// Prints what calibrate() found: two lines, each starting with `prefix`.
void log_calibration(const Calibration& c, const char* prefix);

// Prints a frequency given in kHz as MHz with one decimal ("3054.4").
void log_mhz(std::uint64_t khz);

}  // namespace capmem::kernel::tsc
