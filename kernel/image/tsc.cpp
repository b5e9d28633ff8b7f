// TSC calibration: see tsc.h.
#include "tsc.h"

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"

namespace capmem::kernel::tsc {
namespace {

// Hypervisor vendor signature (CPUID 0x40000000 EBX:ECX:EDX), "" on bare metal.
void hypervisor_signature(char out[13]) {
  out[0] = '\0';
  if (((arch::cpuid(1).c >> 31) & 1) == 0) return;  // CPUID.1:ECX.hypervisor[31]
  const arch::Cpuid h = arch::cpuid(0x40000000);
  const std::uint32_t w[3] = {h.b, h.c, h.d};
  for (int i = 0; i < 12; ++i) out[i] = static_cast<char>(w[i / 4] >> (8 * (i % 4)));
  out[12] = '\0';
  for (int i = 0; i < 12; ++i)
    if (out[i] < 0x20 || out[i] > 0x7e) out[i] = '\0';
}

bool same(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

// KVM pvclock (Documentation/virt/kvm/x86/msr.rst, MSR_KVM_SYSTEM_TIME_NEW): KVM fills this
// with its own TSC -> ns scale: ns = ((tsc << shift) * mul) >> 32 (shift < 0: >>). That
// scale is the host's calibration of the guest TSC (tsc_khz), i.e. exact to its kHz.
struct alignas(64) PvclockTime {
  std::uint32_t version;
  std::uint32_t pad0;
  std::uint64_t tsc_timestamp;
  std::uint64_t system_time;
  std::uint32_t tsc_to_system_mul;
  std::int8_t tsc_shift;
  std::uint8_t flags;
  std::uint8_t pad[2];
};
PvclockTime g_pvclock;
constexpr std::uint32_t kMsrKvmSystemTimeNew = 0x4b564d01;
constexpr std::uint32_t kKvmFeatureClocksource2 = 1u << 3;

std::uint64_t pvclock_tsc_khz() {
  char sig[13];
  hypervisor_signature(sig);
  if (!same(sig, "KVMKVMKVM")) return 0;
  if (arch::cpuid(0x40000000).a < 0x40000001) return 0;
  if ((arch::cpuid(0x40000001).a & kKvmFeatureClocksource2) == 0) return 0;
  volatile PvclockTime* pv = &g_pvclock;
  pv->version = 0;
  arch::wrmsr(kMsrKvmSystemTimeNew, env::virt_to_phys(&g_pvclock).value() | 1);
  std::uint32_t mul = 0;
  std::int8_t shift = 0;
  for (int tries = 0; tries < 1000000; ++tries) {
    const std::uint32_t v = pv->version;
    asm volatile("" ::: "memory");
    mul = pv->tsc_to_system_mul;
    shift = pv->tsc_shift;
    asm volatile("" ::: "memory");
    if ((v & 1) == 0 && v != 0 && v == pv->version) break;
    mul = 0;
  }
  arch::wrmsr(kMsrKvmSystemTimeNew, 0);  // stop KVM from writing into the image
  if (mul == 0) return 0;
  // ns per tick = mul * 2^shift / 2^32  =>  kHz = 10^6 * 2^32 / (mul * 2^shift).
  std::uint64_t khz = (std::uint64_t{1000000} << 32) / mul;
  if (shift > 0) khz >>= shift;
  if (shift < 0) khz <<= -shift;
  return khz;
}

// CPUID 0x15 (TSC / core crystal ratio and crystal Hz; Intel SDM Vol. 2A CPUID): exact when
// the crystal frequency is enumerated. 0 when not (AMD, most hypervisors).
std::uint64_t cpuid15_tsc_khz() {
  if (arch::cpuid(0).a < 0x15) return 0;
  const arch::Cpuid c = arch::cpuid(0x15);
  if (c.a == 0 || c.b == 0 || c.c == 0) return 0;
  return std::uint64_t{c.c} / 1000 * c.b / c.a;
}
// CPUID 0x16 EAX: processor base frequency in MHz (nominal, not the TSC; for the record).
std::uint32_t cpuid16_base_mhz() {
  if (arch::cpuid(0).a < 0x16) return 0;
  return arch::cpuid(0x16).a & 0xffff;
}

// PIT channel 2 (8254, 1193182 Hz), gated through port 0x61, mode 0 with a 50 ms count: the
// TSC ticks between loading the count and OUT2 going high (port 0x61 bit 5). The error is
// the latency of one port access at each end (a VM exit under KVM: ~1-2 us of 50 ms, i.e.
// tens of ppm); `spread_ppm` is the max-min of the runs.
constexpr std::uint32_t kPitHz = 1193182;
constexpr std::uint32_t kPitMs = 50;
std::uint64_t pit_tsc_khz(unsigned runs, std::uint64_t* spread_ppm) {
  constexpr std::uint32_t latch = kPitHz * kPitMs / 1000;  // 59659 < 65536
  std::uint64_t lo = ~std::uint64_t{0}, hi = 0, sum = 0;
  unsigned ok = 0;
  for (unsigned r = 0; r < runs; ++r) {
    arch::outb(0x61, static_cast<std::uint8_t>((arch::inb(0x61) & ~0x02) | 0x01));  // gate on, speaker off
    arch::outb(0x43, 0xb0);  // channel 2, lobyte/hibyte, mode 0, binary
    arch::outb(0x42, latch & 0xff);
    arch::outb(0x42, static_cast<std::uint8_t>(latch >> 8));
    const std::uint64_t t0 = read();
    std::uint64_t spins = 0;
    while ((arch::inb(0x61) & 0x20) == 0 && ++spins < (1ull << 32)) {
    }
    const std::uint64_t d = read() - t0;
    if (spins == 0 || spins >= (1ull << 32)) continue;  // no PIT behind port 0x61
    if (d < lo) lo = d;
    if (d > hi) hi = d;
    sum += d;
    ++ok;
  }
  if (ok == 0) return 0;
  *spread_ppm = (hi - lo) * 1000000 / lo;
  return sum / ok / kPitMs;  // ticks per ms = kHz
}

void log_source(const char* name, std::uint64_t khz) {
  log::str(name);
  if (khz != 0) {
    log_mhz(khz);
    log::str(" MHz");
  } else {
    log::str("n/a");
  }
}

}  // namespace

void log_mhz(std::uint64_t khz) {
  log::dec(khz / 1000);
  log::str(".");
  log::dec(khz % 1000 / 100);
}

Calibration calibrate() {
  Calibration c;
  hypervisor_signature(c.hypervisor);
  c.invariant = arch::cpuid(0x80000000).a >= 0x80000007 && ((arch::cpuid(0x80000007).d >> 8) & 1);
  c.pit_khz = pit_tsc_khz(5, &c.pit_spread_ppm);
  c.pvclock_khz = pvclock_tsc_khz();
  c.cpuid15_khz = cpuid15_tsc_khz();
  c.cpuid16_base_mhz = cpuid16_base_mhz();
  if (c.pvclock_khz != 0) {
    c.khz = c.pvclock_khz;
    c.source = "kvm-pvclock";
  } else if (c.cpuid15_khz != 0) {
    c.khz = c.cpuid15_khz;
    c.source = "cpuid-0x15";
  } else if (c.pit_khz != 0) {
    c.khz = c.pit_khz;
    c.source = "pit";
  }
  return c;
}

void log_calibration(const Calibration& c, const char* prefix) {
  log::str(prefix);
  log::str("hypervisor: ");
  log::str(c.hypervisor[0] != '\0' ? c.hypervisor : "(none)");
  log::str("; invariant TSC (CPUID 0x80000007 EDX[8]): ");
  log::dec(c.invariant ? 1 : 0);
  log::nl();
  log::str(prefix);
  log::str("TSC by PIT channel 2 (5 x 50 ms): ");
  if (c.pit_khz != 0) {
    log_mhz(c.pit_khz);
    log::str(" MHz, spread ");
    log::dec(c.pit_spread_ppm);
    log::str(" ppm");
  } else {
    log::str("unavailable");
  }
  log_source("; KVM pvclock: ", c.pvclock_khz);
  log_source("; CPUID 0x15: ", c.cpuid15_khz);
  log::str("; CPUID 0x16 base: ");
  if (c.cpuid16_base_mhz != 0) {
    log::dec(c.cpuid16_base_mhz);
    log::str(" MHz");
  } else {
    log::str("n/a");
  }
  log::nl();
}

}  // namespace capmem::kernel::tsc
