// Local APIC, 8259 masking and the TSC delay (see apic.h).
#include "apic.h"

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"
#include "capmem/pt.h"
#include "kernel.h"
#include "trap.h"

extern "C" std::uint64_t boot_pd[4 * 512];  // boot.S: the 2 MiB pages of [0, 4 GiB)

namespace capmem::kernel::apic {
namespace {

// Register offsets (SDM Vol. 3A 11.4.1, Table 11-1); x2APIC MSR = 0x800 + offset / 16
// (11.12.1.2, Table 11-6).
constexpr std::uint32_t kRegId = 0x20, kRegTpr = 0x80, kRegEoi = 0xb0, kRegSvr = 0xf0;
constexpr std::uint32_t kRegIcrLo = 0x300, kRegIcrHi = 0x310;
constexpr std::uint32_t kRegLvtTimer = 0x320, kRegLvtLint0 = 0x350, kRegLvtError = 0x370;
constexpr std::uint32_t kLvtMasked = 1u << 16;
constexpr std::uint32_t kSvrEnable = 1u << 8;
constexpr std::uint64_t kBaseEnable = 1u << 11, kBaseExtd = 1u << 10;  // IA32_APIC_BASE EN, EXTD
// ICR (11.6.1): delivery mode bits 10:8, level bit 14, shorthand bits 19:18, status bit 12.
constexpr std::uint32_t kIcrFixed = 0u << 8, kIcrNmi = 4u << 8, kIcrInit = 5u << 8, kIcrStartup = 6u << 8;
constexpr std::uint32_t kIcrAssert = 1u << 14, kIcrAllButSelf = 3u << 18, kIcrPending = 1u << 12;

bool g_x2 = false;
volatile std::uint32_t* g_mmio = nullptr;
std::uint64_t g_tsc_per_us = 1000;  // replaced by the calibration

std::uint32_t rd(std::uint32_t reg) {
  if (g_x2) return static_cast<std::uint32_t>(arch::rdmsr(0x800 + reg / 16));
  return g_mmio[reg / 4];
}
void wr(std::uint32_t reg, std::uint32_t v) {
  if (g_x2) arch::wrmsr(0x800 + reg / 16, v);
  else g_mmio[reg / 4] = v;
}

void send_icr(std::uint32_t dest, std::uint32_t low) {
  const bool on = arch::irq_save();
  if (g_x2) {
    // One 64-bit MSR write, destination in bits 63:32 (11.12.9); no delivery status.
    arch::wrmsr(0x830, (std::uint64_t{dest} << 32) | low);
  } else {
    while ((rd(kRegIcrLo) & kIcrPending) != 0) arch::pause();
    wr(kRegIcrHi, dest << 24);
    wr(kRegIcrLo, low);  // this write sends
    while ((rd(kRegIcrLo) & kIcrPending) != 0) arch::pause();
  }
  arch::irq_restore(on);
}

// Both 8259s remapped to kVectorPicBase..+15 (so a stray IRQ can never look like an
// exception) and fully masked: the kernel uses the local APIC only.
void mask_8259() {
  using arch::outb;
  outb(0x20, 0x11);  // ICW1: init, ICW4 follows
  outb(0xa0, 0x11);
  outb(0x21, kVectorPicBase);  // ICW2: vector base
  outb(0xa1, kVectorPicBase + 8);
  outb(0x21, 4);  // ICW3: slave on IRQ2
  outb(0xa1, 2);
  outb(0x21, 1);  // ICW4: 8086 mode
  outb(0xa1, 1);
  outb(0x21, 0xff);  // OCW1: mask everything
  outb(0xa1, 0xff);
}

void enable_local() {
  wr(kRegTpr, 0);
  wr(kRegLvtTimer, kLvtMasked);
  wr(kRegLvtLint0, kLvtMasked);
  wr(kRegLvtError, kLvtMasked);
  wr(kRegSvr, kSvrEnable | kVectorSpurious);
}

// PIT channel 2 in mode 0 (one-shot) counting 11932 ticks of 1.193182 MHz = 10 ms; the TSC
// difference over it gives the TSC rate. Port 0x61 bit 0 gates channel 2, bit 5 reads OUT2.
void calibrate_tsc() {
  using arch::inb;
  using arch::outb;
  constexpr std::uint32_t kTicks = 11932;
  outb(0x61, static_cast<std::uint8_t>((inb(0x61) & ~0x02) | 0x01));
  outb(0x43, 0xb0);  // channel 2, lobyte/hibyte, mode 0, binary
  outb(0x42, kTicks & 0xff);
  const std::uint64_t t0 = arch::rdtsc();
  outb(0x42, kTicks >> 8);  // counting starts
  std::uint64_t spins = 0;
  while ((inb(0x61) & 0x20) == 0 && ++spins < 100'000'000) arch::pause();
  const std::uint64_t dt = arch::rdtsc() - t0;
  if (dt >= 10'000) g_tsc_per_us = dt / 10'000;
}

}  // namespace

bool init_bsp() {
  mask_8259();
  const arch::Cpuid l1 = arch::cpuid(1);
  if (((l1.d >> 9) & 1) == 0) {
    log::str("apic: CPUID reports no local APIC\n");
    return false;
  }
  g_x2 = ((l1.c >> 21) & 1) != 0;
  const std::uint64_t base = arch::rdmsr(arch::MSR_APIC_BASE);
  if (g_x2) {
    arch::wrmsr(arch::MSR_APIC_BASE, base | kBaseEnable | kBaseExtd);
  } else {
    const std::uint64_t pa = base & 0xffffff000ull;
    if (pa + 0x1000 > (4ull << 30)) {
      log::str("apic: xAPIC page above 4 GiB\n");
      return false;
    }
    // MMIO must not be cached: PCD|PWT on the direct map's 2 MiB page holding it (SDM Vol. 3A
    // 11.4.1: "strong uncacheable"; 4.9.1 PAT index 3 = UC with PAT at its reset value).
    boot_pd[pa >> 21] |= pt::bit(pt::Bit::CacheDisable) | pt::bit(pt::Bit::WriteThrough);
    arch::invlpg(kDirectMapBase + (pa & ~((2ull << 20) - 1)));
    arch::wrmsr(arch::MSR_APIC_BASE, base | kBaseEnable);
    g_mmio = static_cast<volatile std::uint32_t*>(env::phys_to_virt(PhysAddr{pa}));
  }
  enable_local();
  calibrate_tsc();
  return true;
}

void init_ap() {
  const std::uint64_t base = arch::rdmsr(arch::MSR_APIC_BASE);
  arch::wrmsr(arch::MSR_APIC_BASE, base | kBaseEnable | (g_x2 ? kBaseExtd : 0));
  enable_local();
}

bool x2apic() { return g_x2; }

std::uint32_t id() { return g_x2 ? rd(kRegId) : rd(kRegId) >> 24; }

void eoi() { wr(kRegEoi, 0); }

void send_ipi(std::uint32_t apic_id, std::uint8_t vector) { send_icr(apic_id, kIcrFixed | kIcrAssert | vector); }

void send_nmi_all_but_self() { send_icr(0, kIcrNmi | kIcrAssert | kIcrAllButSelf); }

void send_init(std::uint32_t apic_id) { send_icr(apic_id, kIcrInit | kIcrAssert); }

void send_startup(std::uint32_t apic_id, std::uint8_t page) { send_icr(apic_id, kIcrStartup | kIcrAssert | page); }

void delay_us(std::uint64_t us) {
  const std::uint64_t end = arch::rdtsc() + us * g_tsc_per_us;
  while (arch::rdtsc() < end) arch::pause();
}

std::uint64_t tsc_per_us() { return g_tsc_per_us; }

}  // namespace capmem::kernel::apic
