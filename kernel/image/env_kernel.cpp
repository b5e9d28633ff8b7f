// The seam (include/capmem/env.h) on bare metal: RAM from the PVH memory map, the direct
// map built by boot.S, invlpg, the FPU owned by the kernel, the QEMU debug console.
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"
#include "kernel.h"
#include "percpu.h"
#include "smp.h"

namespace capmem::kernel {
void backtrace_from(std::uint64_t rbp);

namespace {

constexpr std::size_t kMaxRanges = 32;
constexpr std::uint64_t kLowMemoryEnd = 1ull << 20;  // below 1 MiB: BIOS, option ROMs, PVH hand-off

env::PhysRange g_ranges[kMaxRanges];
std::size_t g_nranges = 0;
std::uint64_t g_direct_map_end = 4ull << 30;  // boot.S maps [0, 4 GiB)
// The firmware's RAM entries (E820 type 1) as handed over, for firmware_ram().
struct RamEntry {
  std::uint64_t base, end;
};
RamEntry g_fw_ram[kMaxRanges];
std::size_t g_fw_ram_count = 0;

std::uint64_t align_up(std::uint64_t v) { return (v + PAGE_SIZE - 1) & ~std::uint64_t{PAGE_SIZE - 1}; }
std::uint64_t align_down(std::uint64_t v) { return v & ~std::uint64_t{PAGE_SIZE - 1}; }

// Insert [base, end) (page-aligned inward) keeping g_ranges sorted; overlapping input from
// a sloppy firmware map is merged.
void add_range(std::uint64_t base, std::uint64_t end) {
  base = align_up(base);
  end = align_down(end);
  if (end <= base) return;
  if (g_nranges == kMaxRanges) {
    log::str("capmem: memory map has too many ranges, ignoring some\n");
    return;
  }
  std::size_t i = g_nranges;
  while (i > 0 && g_ranges[i - 1].base.value() > base) {
    g_ranges[i] = g_ranges[i - 1];
    --i;
  }
  g_ranges[i] = env::PhysRange{.base = PhysAddr{base}, .size = end - base};
  ++g_nranges;
  // Merge overlaps/adjacency.
  std::size_t out = 0;
  for (std::size_t k = 1; k < g_nranges; ++k) {
    const std::uint64_t cur_end = g_ranges[out].base.value() + g_ranges[out].size;
    const std::uint64_t kb = g_ranges[k].base.value(), ke = kb + g_ranges[k].size;
    if (kb <= cur_end) {
      if (ke > cur_end) g_ranges[out].size = ke - g_ranges[out].base.value();
    } else {
      g_ranges[++out] = g_ranges[k];
    }
  }
  g_nranges = g_nranges ? out + 1 : 0;
}

// Remove [base, end) from every range (splitting one if needed).
void remove_range(std::uint64_t base, std::uint64_t end) {
  base = align_down(base);
  end = align_up(end);
  env::PhysRange keep[kMaxRanges];
  std::size_t n = 0;
  for (std::size_t i = 0; i < g_nranges; ++i) {
    const std::uint64_t rb = g_ranges[i].base.value(), re = rb + g_ranges[i].size;
    if (re <= base || rb >= end) {
      if (n < kMaxRanges) keep[n++] = g_ranges[i];
      continue;
    }
    if (rb < base && n < kMaxRanges) keep[n++] = env::PhysRange{.base = PhysAddr{rb}, .size = base - rb};
    if (re > end && n < kMaxRanges) keep[n++] = env::PhysRange{.base = PhysAddr{end}, .size = re - end};
  }
  for (std::size_t i = 0; i < n; ++i) g_ranges[i] = keep[i];
  g_nranges = n;
}

// RAM above 4 GiB: boot.S mapped [0, 4 GiB) with 2 MiB pages; with 1 GiB pages
// (CPUID.80000001H:EDX.Page1GB[26], SDM Vol. 3A 4.5 Table 4-16) the rest of the direct map
// is one PDPTE per GiB. Without them RAM above 4 GiB is left out.
void extend_direct_map(std::uint64_t ram_end) {
  if (ram_end <= g_direct_map_end) return;
  if (!cpu_features().page1gb) return;
  const std::uint64_t gib = 1ull << 30;
  std::uint64_t end = (ram_end + gib - 1) & ~(gib - 1);
  if (end > kDirectMapSpan) end = kDirectMapSpan;
  for (std::uint64_t pa = g_direct_map_end; pa < end; pa += gib) boot_pdpt_dm[pa / gib] = pa | 0x83;  // P | R/W | PS
  g_direct_map_end = end;
  arch::write_cr3(arch::read_cr3());  // only not-present entries changed; reload for clarity
}

}  // namespace

bool memory_init(std::uint64_t start_info_pa) {
  // The hand-off is read through the direct map (the identity mapping is gone).
  const auto* si = static_cast<const HvmStartInfo*>(env::phys_to_virt(PhysAddr{start_info_pa}));
  if (si->magic != kHvmStartMagic) {
    log::str("capmem: no PVH start_info at 0x");
    log::hex(start_info_pa);
    log::nl();
    return false;
  }
  if (si->version < 1 || si->memmap_paddr == 0 || si->memmap_entries == 0) {
    log::str("capmem: PVH start_info has no memory map (version ");
    log::dec(si->version);
    log::str(")\n");
    return false;
  }
  if (si->cmdline_paddr != 0) cmdline_capture(static_cast<const char*>(env::phys_to_virt(PhysAddr{si->cmdline_paddr})));
  const auto* mm = static_cast<const HvmMemmapEntry*>(env::phys_to_virt(PhysAddr{si->memmap_paddr}));
  std::uint64_t ram_end = 0;
  for (std::uint32_t i = 0; i < si->memmap_entries; ++i) {
    if (mm[i].type != kE820Ram) continue;
    if (g_fw_ram_count < kMaxRanges) g_fw_ram[g_fw_ram_count++] = RamEntry{mm[i].addr, mm[i].addr + mm[i].size};
    const std::uint64_t end = mm[i].addr + mm[i].size;
    if (end > ram_end) ram_end = end;
  }
  extend_direct_map(ram_end);
  for (std::uint32_t i = 0; i < si->memmap_entries; ++i) {
    if (mm[i].type != kE820Ram) continue;
    std::uint64_t base = mm[i].addr, end = mm[i].addr + mm[i].size;
    if (base < kLowMemoryEnd) base = kLowMemoryEnd;
    if (end > g_direct_map_end) end = g_direct_map_end;
    add_range(base, end);
  }
  // What the boot path uses: the image (code, data, boot page tables, stacks: all in
  // [__kernel_phys_start, __kernel_phys_end)) and the hand-off structures wherever the
  // loader put them (QEMU puts them below 1 MiB, which is already excluded).
  remove_range(reinterpret_cast<std::uint64_t>(__kernel_phys_start),
               reinterpret_cast<std::uint64_t>(__kernel_phys_end));
  remove_range(start_info_pa, start_info_pa + sizeof(HvmStartInfo));
  remove_range(si->memmap_paddr, si->memmap_paddr + si->memmap_entries * sizeof(HvmMemmapEntry));
  if (si->cmdline_paddr != 0) remove_range(si->cmdline_paddr, si->cmdline_paddr + kCmdlineMax);
  return g_nranges > 0;
}

std::uint64_t direct_map_end() { return g_direct_map_end; }

bool firmware_ram(std::uint64_t base, std::uint64_t end) {
  for (std::size_t i = 0; i < g_fw_ram_count; ++i)
    if (g_fw_ram[i].base <= base && end <= g_fw_ram[i].end) return true;
  return false;
}

namespace {
// One console lock: a line (per-CPU buffer in PerCpu::line) is written in one piece, so
// lines of different CPUs never interleave mid-line. Taken with interrupts off (ring 0 runs
// so, smp.h); interrupt handlers never log. The CPU that reports a panic writes without it:
// the others are stopped by then, possibly inside this lock.
std::atomic<bool> g_console_lock{false};

void flush_line(PerCpu* c) {
  if (c->line_len == 0) return;
  const bool owner = smp::panic_owner_here();
  const bool on = arch::irq_save();
  if (!owner)
    while (g_console_lock.exchange(true, std::memory_order_acquire))
      while (g_console_lock.load(std::memory_order_relaxed)) arch::pause();
  console_write(c->line, c->line_len);
  if (!owner) g_console_lock.store(false, std::memory_order_release);
  arch::irq_restore(on);
  c->line_len = 0;
}
}  // namespace

void console_flush() { flush_line(percpu()); }

std::uint64_t boot_cr3() { return reinterpret_cast<std::uint64_t>(boot_pml4) - kKernelVma; }

}  // namespace capmem::kernel

namespace capmem::env {

using namespace capmem::kernel;

std::size_t memory_ranges(PhysRange* out, std::size_t max) {
  std::size_t n = 0;
  for (; n < g_nranges && n < max; ++n) out[n] = g_ranges[n];
  return n;
}

void* phys_to_virt(PhysAddr pa) {
  CAPMEM_ASSERT(pa.value() < g_direct_map_end);
  return reinterpret_cast<void*>(kDirectMapBase + pa.value());
}

PhysAddr virt_to_phys(const void* va) {
  const auto v = reinterpret_cast<std::uint64_t>(va);
  if (v >= kKernelVma) return PhysAddr{v - kKernelVma};  // the image's higher-half mapping
  CAPMEM_ASSERT(v >= kDirectMapBase && v - kDirectMapBase < g_direct_map_end);
  return PhysAddr{v - kDirectMapBase};
}

void tlb_invalidate_page(VirtAddr va) { arch::invlpg(va.value()); }

// Every capmem lock: interrupts off, and counted so that smp::shootdown can refuse to wait
// inside one (rule 7.2). The count is per CPU and changes with interrupts off.
IrqState irq_save() {
  const IrqState s = arch::irq_save() ? 1 : 0;
  ++percpu()->capmem_locks;
  return s;
}
void irq_restore(IrqState s) {
  --percpu()->capmem_locks;
  arch::irq_restore(s != 0);
}

unsigned cpu_id() { return percpu_id(); }

unsigned cpu_count() { return smp::online_count(); }

// Rule 7.2: IPI every other CPU that may hold the translation, each invlpg's the range (or
// reloads CR3 for a large one), wait for every acknowledgement with interrupts enabled.
void tlb_shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages) { smp::shootdown(root, va, pages); }

// The kernel owns the FPU while capmem hashes: nothing else runs on this CPU and no guest
// state lives in the vector registers between runs, so there is nothing to save (cost 0).
// A host kernel embedding capmem must save/restore the interrupted context's FPU state
// here (Linux: kernel_fpu_begin/kernel_fpu_end); see docs/boot.md.
bool simd_begin() { return true; }
void simd_end() {}

void log_write(const char* s, std::size_t n) {
  PerCpu* c = percpu();
  for (std::size_t i = 0; i < n; ++i) {
    c->line[c->line_len++] = s[i];
    if (s[i] == '\n' || c->line_len == sizeof c->line) flush_line(c);
  }
}

// One report, whichever CPU panics first: the others are stopped by NMI (smp.cpp) and a CPU
// that panics meanwhile halts without printing.
[[noreturn]] void panic(const char* msg) {
  (void)smp::begin_panic();  // returns only on the reporting CPU
  PerCpu* c = percpu();
  if (c->exception_depth++ > 0) {
    log::str("\ncapmem: nested panic: ");
    log::str(msg);
    log::nl();
    console_flush();
    exit_qemu(kExitFail);
  }
  const unsigned others = smp::online_count() - 1;
  const unsigned stopped = smp::stop_others();
  log::str("\ncapmem panic: ");
  log::str(msg);
  log::nl();
  log::str("capmem panic: on cpu ");
  log::dec(c->id);
  if (others != 0) {
    log::str("; stopped ");
    log::dec(stopped);
    log::str(" of ");
    log::dec(others);
    log::str(" other CPUs");
  }
  log::nl();
  backtrace_from(reinterpret_cast<std::uint64_t>(__builtin_frame_address(0)));
  log::str("capmem: boot failed: panic\n");
  console_flush();
  exit_qemu(kExitFail);
}

}  // namespace capmem::env
