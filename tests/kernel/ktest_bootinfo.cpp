// What the loader handed over besides memory (kernel.h BootInfo), for both boot protocols:
// the RSDP is where boot_info() says, intact, and outside every range the frame allocator
// may hand out.
#include <cstdint>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/pack.h"
#include "kernel.h"
#include "ktest.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

// ACPI 6.5 5.2.5.3: the bytes of the first 20 (every revision) and, from revision 2 on, of
// all `length` bytes, sum to 0 mod 256.
std::uint8_t byte_sum(const std::uint8_t* p, std::size_t n) {
  std::uint8_t s = 0;
  for (std::size_t i = 0; i < n; ++i) s = static_cast<std::uint8_t>(s + p[i]);
  return s;
}
}  // namespace

KTEST(boot_rsdp_is_intact_and_reserved) {
  const std::uint64_t pa = boot_info().rsdp_paddr;
  // Both QEMU's PVH loader and GRUB (from SeaBIOS's or Bochs's BIOS tables) give one; a
  // machine without ACPI would fail here, which is what this case is for.
  KASSERT(pa != 0);
  const auto* r = static_cast<const std::uint8_t*>(env::phys_to_virt(PhysAddr{pa}));
  const char sig[] = "RSD PTR ";
  for (int i = 0; i < 8; ++i) KEXPECT_EQ(r[i], static_cast<std::uint8_t>(sig[i]));
  KEXPECT_EQ(byte_sum(r, 20), 0);
  const std::uint8_t revision = r[15];
  if (revision >= 2) {
    std::uint32_t length = 0;
    for (int i = 0; i < 4; ++i) length |= std::uint32_t{r[20 + i]} << (8 * i);
    KEXPECT_EQ(length, 36);
    KEXPECT_EQ(byte_sum(r, 36), 0);
  }
  // Never RAM the frame allocator can hand out.
  static env::PhysRange ranges[FrameAllocator::kMaxEnvRanges];
  const std::size_t n = env::memory_ranges(ranges, FrameAllocator::kMaxEnvRanges);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t b = ranges[i].base.value(), e = b + ranges[i].size;
    KEXPECT(pa + 36 <= b || pa >= e);
  }
  if (boot_info().protocol == BootProtocol::Multiboot2) {
    // boot.S copied GRUB's RSDP tag into the image.
    KEXPECT(pa >= reinterpret_cast<std::uint64_t>(__kernel_phys_start) &&
            pa + 36 <= reinterpret_cast<std::uint64_t>(__kernel_phys_end));
  }
}

// Boot modules (kernel.h "Boot modules", docs/boot.md): what the loader passed arrived whole
// and is kept out of the frame allocator. `ktest.pack=N` says the lane passed a page pack of
// N pages (QEMU `-initrd PACK`, GRUB `module2 PACK`; tests/qemu/boot-modules.sh, the Bochs
// full lane): the case then requires that page store. Without it the case checks whatever
// modules there are (`./dev run -initrd FILE` works as a user would try it).
KTEST(boot_modules_as_the_loader_passed) {
  const bool expect_pack = cmdline_value("ktest.pack") != nullptr;
  if (expect_pack) {
    KASSERT(boot_pack() != nullptr);
    // QEMU's PVH ROM passes `-initrd` as the one module.
    if (boot_info().protocol == BootProtocol::Pvh) KEXPECT_EQ(boot_module_count(), 1u);
    KEXPECT_EQ(boot_pack()->count(), cmdline_u64("ktest.pack", 0));
  }
  if (boot_pack() == nullptr) {
    KEXPECT_EQ(boot_pack_module(), -1);
    for (unsigned k = 0; k < boot_module_count(); ++k) KEXPECT(!boot_module(k).pack);
  } else {
    KASSERT(boot_pack_module() >= 0 && static_cast<unsigned>(boot_pack_module()) < boot_module_count());
    const BootModule& m = boot_module(static_cast<unsigned>(boot_pack_module()));
    KEXPECT(m.pack);
    for (int k = 0; k < boot_pack_module(); ++k) KEXPECT(!boot_module(static_cast<unsigned>(k)).pack);  // the first
    KEXPECT_EQ(boot_pack()->size(), m.size);
    KEXPECT_EQ(boot_pack()->size(), store::pack_size(boot_pack()->count()));
  }
  // Every module's bytes are never RAM the frame allocator may hand out.
  static env::PhysRange ranges[FrameAllocator::kMaxEnvRanges];
  const std::size_t n = env::memory_ranges(ranges, FrameAllocator::kMaxEnvRanges);
  for (unsigned k = 0; k < boot_module_count(); ++k) {
    const BootModule& b = boot_module(k);
    KEXPECT(b.size != 0);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t rb = ranges[i].base.value(), re = rb + ranges[i].size;
      KEXPECT(b.paddr + b.size <= rb || b.paddr >= re);
    }
  }
  // Every page of the store arrived intact: its bytes hash (rule 1.2, here in the kernel) to
  // the root the host wrote beside it, and find() locates it by that root.
  if (const store::Pack* pack = boot_pack()) {
    for (std::uint32_t i = 0; i < pack->count(); ++i) {
      auto page = pack->page(i);
      auto root = pack->root_at(i);
      KASSERT(page.ok() && root.ok());
      KEXPECT(hash::page_content_hash(pack->page_bytes(page.value())) == root.value());
      auto found = pack->find(root.value());
      KEXPECT(found.ok() && found->index == i);
    }
  }
}
