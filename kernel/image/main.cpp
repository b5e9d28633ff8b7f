// kmain: the C++ side of the boot path (boot.S calls it in long mode, on the boot stack,
// with the PVH start_info physical address): the platform's start-up, then the image's entry
// (image_main: each image links its own, kernel.h), then exit with its verdict.
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "kernel.h"
#include "smp.h"

extern "C" void (*const __init_array_start[])();
extern "C" void (*const __init_array_end[])();

namespace capmem::kernel {
namespace {

BootInfo g_boot_info{};

void print_features() {
  const CpuFeatures& f = cpu_features();
  log::str("cpu: nx=");
  log::dec(f.nx);
  log::str(" 1g-pages=");
  log::dec(f.page1gb);
  log::str(" xsave=");
  log::dec(f.xsave);
  log::str(" xcr0=0x");
  log::hex(f.xcr0);
  log::str(" avx=");
  log::dec(f.avx);
  log::str(" avx512=");
  log::dec(f.avx512);
  log::nl();
  log::str("hash: supported:");
  const hash::Impl impls[] = {hash::Impl::Portable, hash::Impl::ShaNi, hash::Impl::Avx2, hash::Impl::Avx512};
  for (auto impl : impls)
    if (hash::supported(impl)) {
      log::str(" ");
      log::str(hash::impl_name(impl));
    }
  log::str("; active: ");
  log::str(hash::impl_name(hash::active()));
  log::nl();
}

}  // namespace

const BootInfo& boot_info() { return g_boot_info; }

}  // namespace capmem::kernel

extern "C" [[noreturn]] void kmain(std::uint64_t start_info_pa) {
  using namespace capmem;
  using namespace capmem::kernel;
  cpu_init();  // GDT/TSS/GS/IDT first: from here every exception prints a dump
  const bool mb2 = boot_protocol == static_cast<std::uint32_t>(BootProtocol::Multiboot2);
  log::str(mb2 ? "capmem kernel: Multiboot2 entry" : "capmem kernel: PVH entry");
  log::str(", long mode, higher half\n");
  for (auto* f = __init_array_start; f != __init_array_end; ++f) (*f)();

  if (!memory_init(start_info_pa)) {
    log::str("capmem: boot failed: no usable memory\n");
    exit_qemu(kExitFail);
  }
  // Read before the frame allocator exists (the hand-off is still intact; see BootInfo).
  g_boot_info.protocol = mb2 ? BootProtocol::Multiboot2 : BootProtocol::Pvh;
  g_boot_info.rsdp_paddr = static_cast<const HvmStartInfo*>(env::phys_to_virt(PhysAddr{start_info_pa}))->rsdp_paddr;
  log::str("boot: ");
  log::str(mb2 ? "multiboot2" : "pvh");
  log::str(", rsdp at 0x");
  log::hex(g_boot_info.rsdp_paddr);
  log::str(", cmdline \"");
  log::str(cmdline());
  log::str("\"\n");
  if (!frames().init_from_env().ok()) {
    log::str("capmem: boot failed: frame allocator rejected the memory map\n");
    exit_qemu(kExitFail);
  }
  frames().set_poison(true);  // catch writes after free, as the hosted tests do
  hash::init();
  print_features();
  // The command line is checked before anything reads it (smp::init reads smp= and acpi=).
  if (!cmdline_check()) exit_qemu(kExitFail);
  smp::init();  // after hash::init: its dispatch table is read-only from here on
  exit_qemu(image_main());
}
