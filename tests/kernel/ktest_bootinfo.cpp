// What the loader handed over besides memory (kernel.h BootInfo), for both boot protocols:
// the RSDP is where boot_info() says, intact, and outside every range the frame allocator
// may hand out.
#include <cstdint>

#include "capmem/env.h"
#include "capmem/frame.h"
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
