// CPU set-up at boot: our own GDT and TSS, the IDT, and the FPU/SSE/AVX state the hashing
// code's SIMD paths need.
#include <cstddef>
#include <cstdint>

#include "arch.h"
#include "capmem/log.h"
#include "capmem/pt.h"
#include "kernel.h"
#include "percpu.h"
#include "trap.h"

extern "C" const std::uint64_t isr_table[capmem::kernel::kIsrTableSize];
// NOLINTBEGIN(bugprone-dynamic-static-initializers): clang-tidy 14 false positive on extern
// declarations; boot.S defines these in .bss.
extern "C" std::uint64_t boot_pdpt_k[512];   // PML4[511]: the kernel-VMA half
extern "C" std::uint64_t boot_pd[4 * 512];   // the direct map's 2 MiB pages of [0, 4 GiB)
extern "C" std::uint8_t boot_stack_guard[];  // the page below the boot stack
extern "C" std::uint8_t boot_stack_top[];
// NOLINTEND(bugprone-dynamic-static-initializers)

namespace capmem::kernel {
namespace {

// --- GDT (SDM Vol. 3A 3.4.5 "Segment Descriptors", 5.2.1 "Code-Segment Descriptor in
// 64-bit Mode"): in 64-bit mode base/limit are ignored for CS/DS/ES/SS; what matters is
// P, DPL, S, the type and, for code, L=1/D=0. The order kernel CS, kernel DS, user DS,
// user CS is the one SYSCALL/SYSRET would need, should the kernel ever use them.
//   0x00 null | 0x08 kernel code | 0x10 kernel data | 0x18 user data | 0x20 user code
//   0x28 TSS (16-byte system descriptor, SDM Vol. 3A 8.2.3 "TSS Descriptor in 64-bit mode")
// The accessed bit (type bit 0, SDM Vol. 3A 3.4.5.1) is preset so the CPU never writes it.
constexpr std::uint64_t kGdtKernelCode = 0x00af9b000000ffffull;  // P, DPL0, code exec/read, L
constexpr std::uint64_t kGdtKernelData = 0x00cf93000000ffffull;  // P, DPL0, data read/write
constexpr std::uint64_t kGdtUserData = 0x00cff3000000ffffull;    // P, DPL3, data read/write
constexpr std::uint64_t kGdtUserCode = 0x00affb000000ffffull;    // P, DPL3, code exec/read, L

struct [[gnu::packed]] DescriptorPointer {
  std::uint16_t limit;
  std::uint64_t base;
};

// IDT gate (SDM Vol. 3A 6.14.1 "64-Bit Mode IDT", Figure 6-8).
struct IdtGate {
  std::uint16_t offset_lo;
  std::uint16_t selector;
  std::uint8_t ist;        // bits 2:0
  std::uint8_t type_attr;  // P | DPL << 5 | type (0xE = 64-bit interrupt gate: IF cleared)
  std::uint16_t offset_mid;
  std::uint32_t offset_hi;
  std::uint32_t reserved;
};
static_assert(sizeof(IdtGate) == 16);

// Stacks, one set per CPU. Traps from ring 3 land on the RSP0 stack; #DF, NMI and #MC
// always switch to IST1, so a kernel stack overflow still prints a dump instead of
// triple-faulting. The top 16 bytes of each IST1 stack hold the owning CPU's PerCpu pointer
// (trap.cpp reads it there: those vectors never trust GS). The boot CPU runs on boot.S's
// stack; the others on their `kernel` stack (cpu 0's stays unused).
//
// Each stack sits directly above a 4 KiB guard page (stacks grow down) that is not present
// in the kernel-VMA mapping (install_stack_guards below), so an overflow faults on the guard
// instead of overwriting the stack below it; trap.cpp names the stack (docs/boot.md "Stack
// guard pages").
struct alignas(PAGE_SIZE) CpuStacks {
  std::uint8_t kernel_guard[PAGE_SIZE];
  std::uint8_t kernel[kKernelStackSize];
  std::uint8_t rsp0_guard[PAGE_SIZE];
  std::uint8_t rsp0[kRsp0StackSize];
  std::uint8_t ist1_guard[PAGE_SIZE];
  std::uint8_t ist1[kIstStackSize];
};
static_assert(kKernelStackSize % PAGE_SIZE == 0 && kRsp0StackSize % PAGE_SIZE == 0 && kIstStackSize % PAGE_SIZE == 0,
              "every guard page must be a whole page of its own");
CpuStacks g_stacks[kMaxKernelCpus];

alignas(16) IdtGate g_idt[256];
CpuFeatures g_features;

IdtGate gate(std::uint64_t handler, unsigned dpl, unsigned ist) {
  return IdtGate{.offset_lo = static_cast<std::uint16_t>(handler),
                 .selector = kKernelCs,
                 .ist = static_cast<std::uint8_t>(ist),
                 .type_attr = static_cast<std::uint8_t>(0x80 | (dpl << 5) | 0xe),
                 .offset_mid = static_cast<std::uint16_t>(handler >> 16),
                 .offset_hi = static_cast<std::uint32_t>(handler >> 32),
                 .reserved = 0};
}

// This CPU's GDT and TSS (each CPU has its own: a busy TSS descriptor cannot be shared,
// SDM Vol. 3A 8.2.2), then IA32_GS_BASE = its PerCpu block (after the segment reloads:
// loading a null selector into GS may clear the base, SDM Vol. 3A 3.4.4.1).
void gdt_tss_init(PerCpu& c) {
  const unsigned id = c.id;
  c.tss = Tss{};
  c.tss.rsp[0] = reinterpret_cast<std::uint64_t>(g_stacks[id].rsp0 + kRsp0StackSize);
  std::uint8_t* ist_top = g_stacks[id].ist1 + kIstStackSize;
  *reinterpret_cast<PerCpu**>(ist_top - 8) = &c;
  c.tss.ist[0] = reinterpret_cast<std::uint64_t>(ist_top - 16);
  c.tss.iomap_base = sizeof(Tss);

  const auto tss = reinterpret_cast<std::uint64_t>(&c.tss);
  const std::uint64_t limit = sizeof(Tss) - 1;
  std::uint64_t* gdt = c.gdt;
  gdt[0] = 0;
  gdt[1] = kGdtKernelCode;
  gdt[2] = kGdtKernelData;
  gdt[3] = kGdtUserData;
  gdt[4] = kGdtUserCode;
  // Type 0x9 = available 64-bit TSS, P=1, DPL 0.
  gdt[5] = (limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) |
           (((tss >> 24) & 0xff) << 56);
  gdt[6] = tss >> 32;

  const DescriptorPointer gdtr{.limit = sizeof c.gdt - 1, .base = reinterpret_cast<std::uint64_t>(gdt)};
  asm volatile("lgdt %0" : : "m"(gdtr));
  // Reload CS with a far return, then the data segments, then the task register.
  asm volatile(
      "pushq %[cs]\n\t"
      "leaq 1f(%%rip), %%rax\n\t"
      "pushq %%rax\n\t"
      "lretq\n"
      "1:\n\t"
      "movl %[ds], %%eax\n\t"
      "movl %%eax, %%ds\n\t"
      "movl %%eax, %%es\n\t"
      "movl %%eax, %%ss\n\t"
      "xorl %%eax, %%eax\n\t"
      "movl %%eax, %%fs\n\t"
      "movl %%eax, %%gs\n\t"
      :
      : [cs] "i"(kKernelCs), [ds] "i"(kKernelDs)
      : "rax", "memory");
  asm volatile("ltr %w0" : : "r"(kTss));
  c.self = &c;
  arch::wrmsr(arch::MSR_GS_BASE, reinterpret_cast<std::uint64_t>(&c));
  arch::wrmsr(arch::MSR_KERNEL_GS_BASE, 0);  // ring 3's GS base while a guest runs (swapgs)
}

void idt_load() {
  const DescriptorPointer idtr{.limit = sizeof g_idt - 1, .base = reinterpret_cast<std::uint64_t>(g_idt)};
  asm volatile("lidt %0" : : "m"(idtr));
}

void idt_init() {
  for (unsigned v = 0; v < 32; ++v) {
    const unsigned ist = (v == 2 || v == 8 || v == 18) ? 1 : 0;  // NMI, #DF, #MC
    g_idt[v] = gate(isr_table[v], 0, ist);
  }
  // The exit gate: DPL 3 so `int 0x81` is allowed at CPL 3 (SDM Vol. 3A 6.12.1.1); every
  // other gate is DPL 0, so a ring-3 `int n` on it raises #GP instead.
  g_idt[kVectorExitGate] = gate(isr_table[32], 3, 0);
  // Interrupts (smp.cpp): the masked 8259's vectors, the IPIs and the APIC's spurious vector.
  for (unsigned i = 0; i < kIrqVectorCount; ++i) g_idt[kIrqVectors[i]] = gate(isr_table[33 + i], 0, 0);
  idt_load();
}

// FPU, SSE and AVX state (SDM Vol. 3A 13.1.3 "Initialization of the SSE Extensions";
// Vol. 1 13.3 "Enabling the XSAVE Feature Set and XSAVE-Enabled Features"):
//   CR0.MP=1, CR0.EM=0 (no x87 emulation: SSE instructions would #UD), CR0.TS=0 (no lazy
//   #NM trap), CR0.NE=1 (native x87 errors), CR0.CD=CR0.NW=0 (caching on, write-back: the
//   reset value has both set, SDM Vol. 3A 10.1.1 Table 10-1, and not every BIOS clears them
//   on the boot CPU: Bochs 2.7's does not; 11.5.3 Table 11-5 "Cache Operating Modes");
//   CR4.OSFXSR=1 (SSE instructions and FXSAVE), CR4.OSXMMEXCPT=1 (SIMD FP exceptions as #XM);
//   if CPUID.1:ECX.XSAVE[26]: CR4.OSXSAVE=1 and XCR0 = x87|SSE, plus AVX (bit 2) when
//   CPUID.1:ECX.AVX[28], plus opmask|ZMM_Hi256|Hi16_ZMM (bits 7:5) when CPUID.7.0:EBX
//   .AVX512F[16] and CPUID.(0DH,0):EAX reports all three (XCR0 rules: bits 7:5 are set
//   together and only with bit 2; Vol. 1 13.3). The SHA extensions need nothing beyond SSE.
CpuFeatures fpu_init() {
  CpuFeatures f{};
  using namespace arch;
  const Cpuid l1 = cpuid(1);
  const std::uint32_t max_leaf = cpuid(0).a;
  const Cpuid l7 = max_leaf >= 7 ? cpuid(7, 0) : Cpuid{};
  const Cpuid e1 = cpuid(0x80000001);

  write_cr0((read_cr0() | CR0_MP | CR0_NE) & ~(CR0_EM | CR0_TS | CR0_CD | CR0_NW));
  std::uint64_t cr4 = read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT;
  f.xsave = ((l1.c >> 26) & 1) != 0;
  if (f.xsave) cr4 |= CR4_OSXSAVE;
  write_cr4(cr4);

  if (f.xsave) {
    const Cpuid d = cpuid(0xd, 0);
    const std::uint64_t supported = (std::uint64_t{d.d} << 32) | d.a;
    std::uint64_t xcr0 = 0x3;  // x87 | SSE
    if (((l1.c >> 28) & 1) && (supported & 0x4)) xcr0 |= 0x4;
    if ((xcr0 & 0x4) && ((l7.b >> 16) & 1) && (supported & 0xe0) == 0xe0) xcr0 |= 0xe0;
    xsetbv(0, xcr0);
    f.xcr0 = xgetbv(0);
  }
  f.avx = (f.xcr0 & 0x6) == 0x6;
  f.avx512 = (f.xcr0 & 0xe6) == 0xe6;
  f.nx = ((e1.d >> 20) & 1) != 0 && (rdmsr(MSR_EFER) & EFER_NXE) != 0;
  f.page1gb = ((e1.d >> 26) & 1) != 0;

  asm volatile("fninit");
  const std::uint32_t mxcsr = 0x1f80;  // all SIMD FP exceptions masked, round to nearest
  asm volatile("ldmxcsr %0" : : "m"(mxcsr));
  return f;
}

// --- Stack guard pages (SDM Vol. 3A 4.5 "4-Level Paging", 4.10.4 "Invalidation of TLBs and
// Paging-Structure Caches") ----------------------------------------------------------------
// boot.S maps the kernel-VMA half through the direct map's first page directory (boot_pd,
// 2 MiB pages). A guard page needs a 4 KiB mapping, so the kernel half gets a page directory
// of its own (g_kernel_pd, a copy of boot_pd's first 512 entries) in which each 2 MiB entry
// holding a guard page is replaced by a page table mapping the same 2 MiB with the same
// attributes; the guard pages' entries there are then not present. The direct map keeps
// boot_pd, so each guard page's direct-map alias (kDirectMapBase + its physical address)
// stays mapped: harmless, since no stack is ever addressed through the direct map.
//
// Page tables needed: g_stacks is at most 2 MiB, so its guards lie in at most two 2 MiB
// regions; boot_stack_guard in at most one more.
constexpr unsigned kGuardPageTables = 3;
static_assert(sizeof g_stacks <= (std::size_t{2} << 20), "g_stacks' guards need more than two page tables");
alignas(PAGE_SIZE) std::uint64_t g_kernel_pd[512];
alignas(PAGE_SIZE) std::uint64_t g_guard_pts[kGuardPageTables][512];
unsigned g_guard_pts_used = 0;

// Paging-structure entry bits: pt.h's typed bits (SDM Vol. 3A 4.5, Tables 4-17 to 4-20),
// plus the one pt.h does not need, the PAT bit of a 2 MiB PDE (Table 4-18).
constexpr std::uint64_t kPteP = pt::bit(pt::Bit::Present);
constexpr std::uint64_t kPteW = pt::bit(pt::Bit::Writable);
constexpr std::uint64_t kPdePs = pt::bit(pt::Bit::PageSize);  // PDE: maps a 2 MiB page
constexpr std::uint64_t kPdePat = 1ull << 12;                 // 2 MiB PDE: PAT
constexpr std::uint64_t kPtePat = pt::bit(pt::Bit::Pat);      // 4 KiB PTE: PAT (PS's position)
// The leaf attributes at the same position in a 2 MiB PDE and a 4 KiB PTE.
constexpr std::uint64_t kLeafAttrs = kPteP | kPteW | pt::bit(pt::Bit::User) | pt::bit(pt::Bit::WriteThrough) |
                                     pt::bit(pt::Bit::CacheDisable) | pt::bit(pt::Bit::Accessed) |
                                     pt::bit(pt::Bit::Dirty) | pt::bit(pt::Bit::Global) | pt::bit(pt::Bit::NoExecute);
static_assert(kLeafAttrs == (0x17full | (1ull << 63)));
constexpr std::uint64_t kPdeFrame2M = pt::kAddrMask & ~(pt::entry_span(pt::Level::Pd) - 1);  // bits 51:21
constexpr std::uint64_t kEntryAddr = pt::kAddrMask;                                          // bits 51:12

std::uint64_t image_pa(const void* p) { return reinterpret_cast<std::uint64_t>(p) - kKernelVma; }
unsigned kernel_pd_index(std::uint64_t va) { return static_cast<unsigned>((va - kKernelVma) >> 21); }

// g_kernel_pd's 4 KiB entry for `va` (its 2 MiB region is split).
std::uint64_t& kernel_pte(std::uint64_t va) {
  const std::uint64_t pde = g_kernel_pd[kernel_pd_index(va)];
  CAPMEM_ASSERT((pde & kPdePs) == 0);
  auto* pt = reinterpret_cast<std::uint64_t*>((pde & kEntryAddr) + kKernelVma);  // our tables are in the image
  return pt[(va >> 12) & 511];
}

// Replaces the 2 MiB entry g_kernel_pd[i] by a page table of 512 entries mapping the same
// frames with the same attributes (only PAT moves: bit 12 -> bit 7).
void split_2m(unsigned i) {
  const std::uint64_t pde = g_kernel_pd[i];
  if ((pde & kPdePs) == 0) return;  // split already
  CAPMEM_ASSERT(g_guard_pts_used < kGuardPageTables);
  std::uint64_t* pt = g_guard_pts[g_guard_pts_used++];
  const std::uint64_t attrs = (pde & kLeafAttrs) | ((pde & kPdePat) != 0 ? kPtePat : 0);
  for (unsigned j = 0; j < 512; ++j) pt[j] = ((pde & kPdeFrame2M) + j * PAGE_SIZE) | attrs;
  g_kernel_pd[i] = image_pa(pt) | kPteP | kPteW;  // non-leaf: the leaf entries decide
}

// On the boot CPU before any other CPU starts (so no other TLB holds the old mappings; every
// AP's first table, smp.cpp g_ap_pml4, and every run's PML4 link the same boot_pdpt_k).
void install_stack_guards() {
  for (unsigned i = 0; i < 512; ++i) g_kernel_pd[i] = boot_pd[i];
  const unsigned n = stack_guard_count();
  for (unsigned g = 0; g < n; ++g) split_2m(kernel_pd_index(stack_guard(g).guard));
  // Step 1: the kernel half moves to g_kernel_pd. Every address keeps its frame and
  // attributes, only the page size of the split regions changes, so whichever translation a
  // TLB still holds meanwhile is right (SDM Vol. 3A 4.10.2.3); the CR3 load then drops them
  // all (nothing is global, 4.10.4.1). We run on the boot stack, inside a split region.
  boot_pdpt_k[kKernelPdptSlot] = image_pa(g_kernel_pd) | kPteP | kPteW;
  arch::write_cr3(arch::read_cr3());
  // Step 2: the guard pages become not present; invlpg drops any translation of them
  // cached since the CR3 load (4.10.4.1).
  for (unsigned g = 0; g < n; ++g) {
    const std::uint64_t va = stack_guard(g).guard;
    kernel_pte(va) &= ~kPteP;
    arch::invlpg(va);
  }
}

}  // namespace

unsigned stack_guard_count() { return 1 + 3 * kMaxKernelCpus; }

StackGuard stack_guard(unsigned i) {
  CAPMEM_ASSERT(i < stack_guard_count());
  const auto va = [](const void* p) { return reinterpret_cast<std::uint64_t>(p); };
  if (i == 0) return {.guard = va(boot_stack_guard), .stack_hi = va(boot_stack_top), .cpu = 0, .name = "boot stack"};
  const unsigned cpu = (i - 1) / 3;
  CpuStacks& s = g_stacks[cpu];
  switch ((i - 1) % 3) {
    case 0:
      return {
          .guard = va(s.kernel_guard), .stack_hi = va(s.kernel + sizeof s.kernel), .cpu = cpu, .name = "kernel stack"};
    case 1:
      return {.guard = va(s.rsp0_guard), .stack_hi = va(s.rsp0 + sizeof s.rsp0), .cpu = cpu, .name = "rsp0 stack"};
    default:
      return {.guard = va(s.ist1_guard), .stack_hi = va(s.ist1 + sizeof s.ist1), .cpu = cpu, .name = "ist1 stack"};
  }
}

StackGuard find_stack_guard(std::uint64_t va) {
  const unsigned n = stack_guard_count();
  for (unsigned g = 0; g < n; ++g) {
    const StackGuard s = stack_guard(g);
    if (va >= s.guard && va - s.guard < PAGE_SIZE) return s;
  }
  return {};
}

// Every level keeps 64 bytes live across the call, so the compiler can turn it neither into
// a tail call nor into a loop.
[[gnu::noinline]] std::uint64_t overflow_stack(std::uint64_t depth) {
  volatile std::uint64_t frame[8];
  for (auto& w : frame) w = depth;
  if (depth == ~std::uint64_t{0}) return 0;  // never reached
  return overflow_stack(depth + 1) + frame[depth & 7];
}

void cpu_init() {
  PerCpu& c = g_cpus[0];
  c.id = 0;
  gdt_tss_init(c);  // GS first: the console's line buffer is per CPU
  idt_init();
  install_stack_guards();
  g_features = fpu_init();
}

bool cpu_init_ap(PerCpu& c) {
  gdt_tss_init(c);
  idt_load();
  // The same CR0/CR4/XCR0 as the boot CPU (hash::init chose the back end from the boot
  // CPU's XCR0: an AVX-512 hash here with a narrower XCR0 would be #UD).
  const CpuFeatures f = fpu_init();
  return f.xcr0 == g_features.xcr0 && f.nx == g_features.nx;
}

const CpuFeatures& cpu_features() { return g_features; }

std::uint64_t kernel_stack_top(unsigned id) {
  return reinterpret_cast<std::uint64_t>(g_stacks[id].kernel + kKernelStackSize);
}

}  // namespace capmem::kernel
