// kmain: the C++ side of the boot path (boot.S calls it in long mode, on the boot stack,
// with the PVH start_info physical address), then the in-kernel tests, then exit.
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "kernel.h"
#include "ktest.h"
#include "smp.h"

extern "C" void (*const __init_array_start[])();
extern "C" void (*const __init_array_end[])();

namespace capmem::kernel {
namespace {

BootInfo g_boot_info{};

bool starts_with(const char* s, const char* prefix) {
  while (*prefix != '\0')
    if (*s++ != *prefix++) return false;
  return true;
}

// `-append crash=<kind>`: deliberately fault at ring 0 to prove the exception path prints
// and fails the boot (tests/qemu exception-dump). Addresses are chosen to be recognizable.
void maybe_crash(const char* cmd) {
  for (const char* p = cmd; *p != '\0'; ++p) {
    if (!starts_with(p, "crash=")) continue;
    p += 6;
    log::str("capmem: crashing on purpose (");
    log::str(cmd);
    log::str(")\n");
    if (starts_with(p, "pf")) {
      // Slot 0 is empty in the boot address space: a not-present read at ring 0.
      (void)*reinterpret_cast<volatile std::uint64_t*>(0xdead0000ull);
    } else if (starts_with(p, "ud")) {
      asm volatile("ud2");
    } else if (starts_with(p, "panic")) {
      env::panic("requested on the command line");
    } else if (starts_with(p, "stack-overflow")) {
      // Overflows the boot CPU's stack into its guard page (tests/qemu stack-overflow).
      (void)overflow_stack(0);
    } else if (starts_with(p, "ap-panic") || starts_with(p, "ap-pf") || starts_with(p, "ap-stack-overflow")) {
      // A panic, a ring-0 #PF or a kernel stack overflow on the last application processor
      // while this CPU waits for it: every CPU must stop and exactly one report must appear
      // (tests/qemu smp-panic, stack-overflow).
      const unsigned last = smp::online_count() - 1;
      if (last == 0) {
        log::str("capmem: crash=ap-* needs more than one CPU\n");
        exit_qemu(kExitFail);
      }
      if (starts_with(p, "ap-panic"))
        smp::run_on(
            last, [](void*) { env::panic("requested on the command line, raised on an application processor"); },
            nullptr);
      else if (starts_with(p, "ap-pf"))
        smp::run_on(
            last, [](void*) { (void)*reinterpret_cast<volatile std::uint64_t*>(0xdead0000ull); }, nullptr);
      else
        smp::run_on(
            last, [](void*) { (void)overflow_stack(0); }, nullptr);
      smp::wait_done(last);
    } else if (starts_with(p, "triple")) {
      // An empty IDT: #UD cannot be delivered -> #GP -> #DF -> shutdown (SDM Vol. 3A 6.15
      // "Interrupt 8"). Proves the runner counts a reset as a failure, not a pass.
      const struct [[gnu::packed]] {
        std::uint16_t limit;
        std::uint64_t base;
      } empty{0, 0};
      asm volatile("lidt %0; ud2" : : "m"(empty));
    }
    log::str("capmem: unknown crash kind\n");
    exit_qemu(kExitFail);
  }
}

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

// The value of `key=` in the command line (tokens separated by spaces), copied into buf;
// "" if absent.
const char* cmdline_value(const char* cmd, const char* key, char* buf, std::size_t cap) {
  buf[0] = '\0';
  for (const char* p = cmd; *p != '\0';) {
    while (*p == ' ') ++p;
    if (starts_with(p, key)) {
      p += __builtin_strlen(key);
      std::size_t i = 0;
      while (*p != '\0' && *p != ' ' && i + 1 < cap) buf[i++] = *p++;
      buf[i] = '\0';
    }
    while (*p != '\0' && *p != ' ') ++p;
  }
  return buf;
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
  smp::init();  // after hash::init: its dispatch table is read-only from here on
  maybe_crash(cmdline());

  // `ktest=PREFIX[,PREFIX...]`: run only the cases whose names start with one of them.
  char filter[128];
  const unsigned failed = ktest::run_all(cmdline_value(cmdline(), "ktest=", filter, sizeof filter));
  exit_qemu(failed == 0 ? kExitPass : kExitFail);
}
