// The seam (include/capmem/env.h) on bare metal: RAM from the PVH memory map, the direct
// map built by boot.S, invlpg, the FPU owned by the kernel, the QEMU debug console.
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "kernel.h"
#include "percpu.h"
#include "ram_ranges.h"
#include "smp.h"
#include "trap.h"

namespace capmem::kernel {
namespace {

constexpr std::uint64_t kLowMemoryEnd = 1ull << 20;  // below 1 MiB: BIOS, option ROMs, PVH hand-off

// Every usable range, as many as the frame allocator reads (FrameAllocator::kMaxEnvRanges):
// env::memory_ranges() hands all of them over, and the boot log prints exactly these.
RamRanges<FrameAllocator::kMaxEnvRanges> g_ram;
std::uint64_t g_direct_map_end = 4ull << 30;  // boot.S maps [0, 4 GiB)
// The firmware's memory map as handed over (outside every usable range: never overwritten),
// for firmware_ram().
const HvmMemmapEntry* g_memmap = nullptr;
std::uint32_t g_memmap_entries = 0;

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

// Boot modules (kernel.h): what memory_init kept, and the page store.
BootModule g_modules[kMaxBootModules];
char g_module_names[kMaxBootModules][kBootModuleNameMax];
unsigned g_module_count = 0;
store::Pack g_pack;
int g_pack_module = -1;

std::size_t bounded_strlen(const char* s, std::size_t max) {
  std::size_t n = 0;
  while (n < max && s[n] != '\0') ++n;
  return n;
}

// " module N [0x..., 0x...) \"name\"" (the name only when there is one).
void log_module(unsigned i, std::uint64_t paddr, std::uint64_t size, const char* name) {
  log::str("module ");
  log::dec(i);
  log::str(" [0x");
  log::hex(paddr);
  log::str(", 0x");
  log::hex(paddr + size);
  log::str(")");
  if (name[0] != '\0') {
    log::str(" \"");
    log::str(name);
    log::str("\"");
  }
}

[[noreturn]] void module_boot_failed(unsigned i, std::uint64_t paddr, std::uint64_t size, const char* name,
                                     const char* what) {
  log::str("capmem: boot failed: boot ");
  log_module(i, paddr, size, name);
  log::str(": ");
  log::str(what);
  log::nl();
  exit_qemu(kExitFail);
}

// Checks every module the loader passed (kernel.h "Boot modules"), keeps the first page pack
// as the page store, and leaves every module's range out of g_ram. Returns only when every
// module is acceptable. `used` holds the image and the boot structures (n_used of them) and
// room for kMaxBootModules more.
void modules_init(const HvmStartInfo* si, BootSpan* used, std::size_t n_used) {
  const bool mb2 = boot_protocol == static_cast<std::uint32_t>(BootProtocol::Multiboot2);
  if (mb2 && mb2_modules_dropped != 0) {
    log::str("capmem: boot failed: the loader passed ");
    log::dec(si->nr_modules + mb2_modules_dropped);
    log::str(" boot modules; the kernel takes at most ");
    log::dec(kMaxBootModules);
    log::nl();
    exit_qemu(kExitFail);
  }
  if (si->nr_modules == 0) return;
  if (si->nr_modules > kMaxBootModules) {
    log::str("capmem: boot failed: the loader passed ");
    log::dec(si->nr_modules);
    log::str(" boot modules; the kernel takes at most ");
    log::dec(kMaxBootModules);
    log::nl();
    exit_qemu(kExitFail);
  }
  const std::uint64_t list_end = si->modlist_paddr + std::uint64_t{si->nr_modules} * sizeof(HvmModlistEntry);
  if (si->modlist_paddr == 0 || list_end < si->modlist_paddr || list_end > g_direct_map_end) {
    log::str("capmem: boot failed: the boot module list [0x");
    log::hex(si->modlist_paddr);
    log::str(", 0x");
    log::hex(list_end);
    log::str(") is not readable\n");
    exit_qemu(kExitFail);
  }
  used[n_used++] = BootSpan{.base = si->modlist_paddr, .end = list_end, .name = "the boot module list"};
  const auto* list = static_cast<const HvmModlistEntry*>(env::phys_to_virt(PhysAddr{si->modlist_paddr}));
  // Every entry read once, names copied (printable ASCII) before any check.
  HvmModlistEntry e[kMaxBootModules];
  for (unsigned i = 0; i < si->nr_modules; ++i) {
    e[i] = list[i];
    char* name = g_module_names[i];
    name[0] = '\0';
    const std::uint64_t c = e[i].cmdline_paddr;
    if (c != 0 && c < g_direct_map_end - kBootModuleNameMax) {
      const char* src = static_cast<const char*>(env::phys_to_virt(PhysAddr{c}));
      const std::size_t n = bounded_strlen(src, kBootModuleNameMax - 1);
      for (std::size_t k = 0; k < n; ++k) name[k] = (src[k] >= 0x20 && src[k] < 0x7f) ? src[k] : '?';
      name[n] = '\0';
      // A PVH module's string is a boot structure too (Multiboot2's are copies in the image).
      if (!mb2) used[n_used++] = BootSpan{.base = c, .end = c + n + 1, .name = "a boot module's string"};
    }
  }
  for (unsigned i = 0; i < si->nr_modules; ++i) {
    const char* name = g_module_names[i];
    const ModuleCheck chk = check_module(e[i].paddr, e[i].size, used, n_used, g_direct_map_end, firmware_ram);
    if (chk.problem == ModuleProblem::ZeroSize) module_boot_failed(i, e[i].paddr, e[i].size, name, "size 0");
    if (chk.problem == ModuleProblem::OutsideRam) {
      log::str("capmem: boot failed: boot ");
      log_module(i, e[i].paddr, e[i].size, name);
      log::str(": not inside one RAM range of the firmware memory map below 0x");
      log::hex(g_direct_map_end);
      log::nl();
      exit_qemu(kExitFail);
    }
    if (chk.problem == ModuleProblem::Overlaps) {
      const BootSpan& u = used[chk.overlapped];
      log::str("capmem: boot failed: boot ");
      log_module(i, e[i].paddr, e[i].size, name);
      log::str(": overlaps ");
      log::str(u.name);
      log::str(" [0x");
      log::hex(u.base);
      log::str(", 0x");
      log::hex(u.end);
      log::str(")\n");
      exit_qemu(kExitFail);
    }
    used[n_used++] = BootSpan{.base = e[i].paddr, .end = e[i].paddr + e[i].size, .name = "an earlier boot module"};
    g_modules[i] = BootModule{.paddr = e[i].paddr, .size = e[i].size, .name = name, .pack = false};
    g_module_count = i + 1;

    DecodeError err{.status = Status::Ok, .offset = 0};
    const auto* bytes = static_cast<const std::uint8_t*>(env::phys_to_virt(PhysAddr{e[i].paddr}));
    auto pack = store::Pack::parse(bytes, e[i].size, &err);
    log::str("boot: ");
    log_module(i, e[i].paddr, e[i].size, name);
    log::str(", ");
    log::dec(e[i].size);
    log::str(" bytes: ");
    if (!pack.ok() && err.status == Status::PackBadMagic) {
      log::str("not a page pack (left reserved)\n");
      continue;
    }
    if (!pack.ok()) {
      log::str("malformed page pack\n");
      log::str("capmem: boot failed: boot ");
      log_module(i, e[i].paddr, e[i].size, name);
      log::str(": malformed page pack: ");
      log::str(status_name(err.status));
      log::str(" at offset ");
      log::dec(err.offset);
      log::str(" (rule 8.7)\n");
      exit_qemu(kExitFail);
    }
    g_modules[i].pack = true;
    log::str("page pack of ");
    log::dec(pack->count());
    log::str(pack->count() == 1 ? " page" : " pages");
    if (g_pack_module < 0) {
      g_pack = pack.value();
      g_pack_module = static_cast<int>(i);
      log::str(": the page store\n");
    } else {
      log::str(": ignored, module ");
      log::dec(static_cast<std::uint64_t>(g_pack_module));
      log::str(" is the page store (the first pack wins)\n");
    }
  }
  for (unsigned i = 0; i < g_module_count; ++i)
    g_ram.remove(g_modules[i].paddr, g_modules[i].paddr + g_modules[i].size);
}

}  // namespace

unsigned boot_module_count() { return g_module_count; }
const BootModule& boot_module(unsigned i) {
  CAPMEM_ASSERT(i < g_module_count);
  return g_modules[i];
}
const store::Pack* boot_pack() { return g_pack_module >= 0 ? &g_pack : nullptr; }
int boot_pack_module() { return g_pack_module; }

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
  g_memmap = mm;
  g_memmap_entries = si->memmap_entries;
  std::uint64_t ram_end = 0;
  for (std::uint32_t i = 0; i < si->memmap_entries; ++i) {
    if (mm[i].type != kE820Ram) continue;
    const std::uint64_t end = mm[i].addr + mm[i].size;
    if (end > ram_end) ram_end = end;
  }
  extend_direct_map(ram_end);
  std::uint64_t beyond_map = 0;  // RAM past the direct map (no 1 GiB pages): left out
  for (std::uint32_t i = 0; i < si->memmap_entries; ++i) {
    if (mm[i].type != kE820Ram) continue;
    std::uint64_t base = mm[i].addr, end = mm[i].addr + mm[i].size;
    if (base < kLowMemoryEnd) base = kLowMemoryEnd;
    if (end > g_direct_map_end) {
      beyond_map += end - (base > g_direct_map_end ? base : g_direct_map_end);
      end = g_direct_map_end;
    }
    g_ram.add(base, end);
  }
  // What the boot path uses: the image (code, data, boot page tables, stacks: all in
  // [__kernel_phys_start, __kernel_phys_end)) and the hand-off structures wherever the
  // loader put them (QEMU puts them below 1 MiB, which is already excluded).
  g_ram.remove(reinterpret_cast<std::uint64_t>(__kernel_phys_start),
               reinterpret_cast<std::uint64_t>(__kernel_phys_end));
  g_ram.remove(start_info_pa, start_info_pa + sizeof(HvmStartInfo));
  g_ram.remove(si->memmap_paddr, si->memmap_paddr + si->memmap_entries * sizeof(HvmMemmapEntry));
  if (si->cmdline_paddr != 0) g_ram.remove(si->cmdline_paddr, si->cmdline_paddr + kCmdlineMax);
  // Boot modules: checked against the image and the boot structures (byte-exact: the
  // command line by its length, not the kCmdlineMax reserved above), then left out.
  BootSpan used[5 + 2 * kMaxBootModules];
  std::size_t n_used = 0;
  used[n_used++] = BootSpan{.base = reinterpret_cast<std::uint64_t>(__kernel_phys_start),
                            .end = reinterpret_cast<std::uint64_t>(__kernel_phys_end),
                            .name = "the kernel image"};
  used[n_used++] =
      BootSpan{.base = start_info_pa, .end = start_info_pa + sizeof(HvmStartInfo), .name = "the start_info"};
  used[n_used++] = BootSpan{.base = si->memmap_paddr,
                            .end = si->memmap_paddr + si->memmap_entries * sizeof(HvmMemmapEntry),
                            .name = "the firmware memory map"};
  if (si->cmdline_paddr != 0)
    used[n_used++] = BootSpan{.base = si->cmdline_paddr,
                              .end = si->cmdline_paddr + bounded_strlen(cmdline(), kCmdlineMax) + 1,
                              .name = "the command line"};
  modules_init(si, used, n_used);

  // What the frame allocator gets, exactly (FrameAllocator::init_from_env takes every range
  // env::memory_ranges() reports), and whatever RAM is left out, by name.
  if (boot_protocol == static_cast<std::uint32_t>(BootProtocol::Multiboot2) && mb2_memmap_dropped != 0) {
    log::str("capmem: the Multiboot2 memory map has ");
    log::dec(mb2_memmap_dropped);
    log::str(" entries past the ones boot.S keeps: any RAM they list is left out\n");
  }
  if (beyond_map != 0) {
    log::str("capmem: ");
    log::dec(beyond_map >> 20);
    log::str(" MiB of RAM above 0x");
    log::hex(g_direct_map_end);
    log::str(" left out (the direct map needs 1 GiB pages past 4 GiB)\n");
  }
  if (g_ram.dropped != 0) {
    log::str("capmem: the memory map has more than ");
    log::dec(FrameAllocator::kMaxEnvRanges);
    log::str(" separate RAM ranges: the ");
    log::dec(g_ram.dropped);
    log::str(" smallest left out, ");
    log::dec(g_ram.dropped_bytes >> 10);
    log::str(" KiB in all (the largest [0x");
    log::hex(g_ram.dropped_largest_base);
    log::str(", 0x");
    log::hex(g_ram.dropped_largest_base + g_ram.dropped_largest_size);
    log::str("))\n");
  }
  for (std::size_t i = 0; i < g_ram.n; ++i) {
    log::str("mem: [0x");
    log::hex(g_ram.r[i].base.value());
    log::str(", 0x");
    log::hex(g_ram.r[i].base.value() + g_ram.r[i].size);
    log::str(")\n");
  }
  log::str("mem: ");
  log::dec(g_ram.bytes() >> 20);
  log::str(" MiB usable in ");
  log::dec(g_ram.n);
  log::str(g_ram.n == 1 ? " range" : " ranges");
  log::str(" for the frame allocator, image [0x");
  log::hex(reinterpret_cast<std::uint64_t>(__kernel_phys_start));
  log::str(", 0x");
  log::hex(reinterpret_cast<std::uint64_t>(__kernel_phys_end));
  log::str(")\n");
  return g_ram.n > 0;
}

std::uint64_t direct_map_end() { return g_direct_map_end; }

bool firmware_ram(std::uint64_t base, std::uint64_t end) {
  for (std::uint32_t i = 0; i < g_memmap_entries; ++i)
    if (g_memmap[i].type == kE820Ram && g_memmap[i].addr <= base && end <= g_memmap[i].addr + g_memmap[i].size)
      return true;
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
  for (; n < g_ram.n && n < max; ++n) out[n] = g_ram.r[n];
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
