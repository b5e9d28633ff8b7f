// The boot path's promises: memory map, address space, CPU state.
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/pt.h"
#include "kernel.h"
#include "ktest.h"
#include "percpu.h"
#include "trap.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

// Whether `va` has a present translation in the current address space: a walk of the
// paging structures from CR3 (SDM Vol. 3A 4.5, 4-level paging; PS at PDPTE and PDE level).
bool mapped(std::uint64_t va) {
  std::uint64_t table = arch::read_cr3() & pt::kAddrMask;
  for (int level = 3;; --level) {
    const auto* t = static_cast<const std::uint64_t*>(env::phys_to_virt(PhysAddr{table}));
    const std::uint64_t e = t[(va >> (12 + 9 * level)) & 511];
    if ((e & pt::bit(pt::Bit::Present)) == 0) return false;
    if (level == 0 || ((level == 1 || level == 2) && (e & pt::bit(pt::Bit::PageSize)) != 0)) return true;
    table = e & pt::kAddrMask;
  }
}
}  // namespace

// The frame allocator took every usable range the seam reports (the boot log's "MiB usable"
// is their sum): its frames are theirs less its descriptor array (64 bytes a frame, in the
// first frames of the largest range), and every frame of every range has a descriptor.
KTEST(boot_frame_allocator_took_every_usable_range) {
  static env::PhysRange r[FrameAllocator::kMaxEnvRanges];
  const std::size_t n = env::memory_ranges(r, FrameAllocator::kMaxEnvRanges);
  KASSERT(n >= 1 && n <= FrameAllocator::kMaxRanges);  // more would bridge gaps (frame.h)
  std::uint64_t frames_in_ranges = 0;
  for (std::size_t i = 0; i < n; ++i) {
    frames_in_ranges += r[i].size / PAGE_SIZE;
    for (const std::uint64_t pa : {r[i].base.value(), r[i].base.value() + r[i].size - PAGE_SIZE}) {
      const FrameDesc* d = frames().desc_of(PhysAddr{pa});
      KASSERT(d != nullptr);
      KEXPECT_EQ(d->pfn, pa / PAGE_SIZE);
    }
  }
  const std::uint64_t descriptor_frames = (frames_in_ranges * sizeof(FrameDesc) + PAGE_SIZE - 1) / PAGE_SIZE;
  KEXPECT_EQ(frames().stats().total, frames_in_ranges - descriptor_frames);
}

KTEST(boot_memory_ranges_exclude_image_and_low_memory) {
  static env::PhysRange r[FrameAllocator::kMaxEnvRanges];
  const std::size_t n = env::memory_ranges(r, FrameAllocator::kMaxEnvRanges);
  KASSERT(n >= 1);
  const auto img_lo = reinterpret_cast<std::uint64_t>(__kernel_phys_start);
  const auto img_hi = reinterpret_cast<std::uint64_t>(__kernel_phys_end);
  // The boot page tables and stacks are inside the image.
  const std::uint64_t pml4 = env::virt_to_phys(boot_pml4).value();
  KEXPECT(pml4 >= img_lo && pml4 < img_hi);
  KEXPECT_EQ(pml4, boot_cr3());
  std::uint64_t prev_end = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t b = r[i].base.value(), e = b + r[i].size;
    KEXPECT(r[i].base.page_aligned() && (r[i].size & 4095) == 0 && r[i].size > 0);
    KEXPECT(b >= (1u << 20));
    KEXPECT(e <= img_lo || b >= img_hi);
    KEXPECT(b >= prev_end);  // ascending, disjoint
    prev_end = e;
  }
}

KTEST(boot_direct_map_and_image_mapping_translate) {
  // The image's higher-half address and the direct-map address of the same byte agree.
  static volatile std::uint64_t probe = 0x1122334455667788ull;
  const PhysAddr pa = env::virt_to_phys(const_cast<std::uint64_t*>(&probe));
  auto* alias = static_cast<volatile std::uint64_t*>(env::phys_to_virt(pa));
  KEXPECT(reinterpret_cast<std::uint64_t>(alias) == kDirectMapBase + pa.value());
  KEXPECT_EQ(*alias, 0x1122334455667788ull);
  *alias = 42;
  KEXPECT_EQ(probe, 42);
  KEXPECT(env::virt_to_phys(const_cast<std::uint64_t*>(alias)) == pa);
}

KTEST(boot_address_space_kernel_half_only) {
  const std::uint64_t cr3 = arch::read_cr3() & ~std::uint64_t{0xfff};
  KEXPECT_EQ(cr3, boot_cr3());
  const auto* pml4 = static_cast<const std::uint64_t*>(env::phys_to_virt(PhysAddr{cr3}));
  KEXPECT_EQ(pml4[0], 0);  // identity mapping dropped: slot 0 is the guest's (rule 4.1)
  KEXPECT_EQ(pml4[1], 0);
  KEXPECT((pml4[256] & 1) && !(pml4[256] & 4));  // present, supervisor-only
  KEXPECT((pml4[511] & 1) && !(pml4[511] & 4));
}

KTEST(boot_cpu_state) {
  const std::uint64_t cr0 = arch::read_cr0(), cr4 = arch::read_cr4();
  KEXPECT(cr0 & arch::CR0_MP);
  KEXPECT(!(cr0 & arch::CR0_EM));
  KEXPECT(!(cr0 & arch::CR0_TS));
  KEXPECT(cr0 & arch::CR0_WP);
  KEXPECT(cr4 & arch::CR4_OSFXSR);
  KEXPECT(cr4 & arch::CR4_OSXMMEXCPT);
  if (cpu_features().xsave) {
    KEXPECT(cr4 & arch::CR4_OSXSAVE);
    KEXPECT((arch::xgetbv(0) & 3) == 3);
  }
  std::uint16_t tr = 0, cs = 0;
  asm volatile("str %0" : "=r"(tr));
  asm volatile("mov %%cs, %0" : "=r"(cs));
  KEXPECT_EQ(tr, kTss);
  KEXPECT_EQ(cs, kKernelCs);
  struct [[gnu::packed]] {
    std::uint16_t limit;
    std::uint64_t base;
  } idtr{};
  asm volatile("sidt %0" : "=m"(idtr));
  KASSERT(idtr.limit == 256 * 16 - 1);
  const auto* idt = reinterpret_cast<const std::uint8_t*>(idtr.base);
  KEXPECT_EQ(idt[14 * 16 + 5], 0x8e);               // #PF: present, DPL 0, interrupt gate
  KEXPECT_EQ(idt[kVectorExitGate * 16 + 5], 0xee);  // exit gate: present, DPL 3
  KEXPECT_EQ(idt[8 * 16 + 4] & 7, 1);               // #DF on IST1
}

KTEST(boot_stack_guard_pages_not_present) {
  // The boot stack and every CPU's kernel, RSP0 and IST1 stacks: the page right below each
  // is not present through the kernel-VMA addresses the stacks are used by, the stack's
  // lowest and highest bytes and the page below the guard are, and so is the guard's
  // direct-map alias (it stays mapped on purpose, cpu.cpp).
  KASSERT_EQ(stack_guard_count(), 1 + 3 * kMaxKernelCpus);
  std::uint64_t rsp = 0;
  asm volatile("mov %%rsp, %0" : "=r"(rsp));
  bool on_a_guarded_stack = false;
  for (unsigned i = 0; i < stack_guard_count(); ++i) {
    const StackGuard g = stack_guard(i);
    KASSERT(g.name != nullptr && g.guard >= kKernelVma && (g.guard & (PAGE_SIZE - 1)) == 0);
    KEXPECT(!mapped(g.guard) && !mapped(g.guard + PAGE_SIZE - 1));
    KEXPECT(mapped(g.guard - 1) && mapped(g.guard + PAGE_SIZE) && mapped(g.stack_hi - 1));
    KEXPECT(mapped(kDirectMapBase + (g.guard - kKernelVma)));
    const StackGuard hit = find_stack_guard(g.guard + PAGE_SIZE - 8);
    KEXPECT(hit.guard == g.guard && hit.cpu == g.cpu);
    KEXPECT(find_stack_guard(g.guard + PAGE_SIZE).name == nullptr);  // the stack itself is no guard
    if (rsp > g.guard + PAGE_SIZE && rsp <= g.stack_hi) on_a_guarded_stack = true;
  }
  KEXPECT(on_a_guarded_stack);  // this case runs on one of them (the boot stack, cpu 0)
}
