// capmem-kernel-nested: an image whose only case faults at ring 0 *inside* exception
// handling, on purpose, to prove such a fault ends in a clear report and a failed boot,
// never a hang or a reset (tests/qemu/nested-fault.sh checks the output). The variant
// comes from the command line:
//   nested=hook  a ring-3 run's #PF hook (the kernel's page-fault path, ring 0, on the
//                TSS.RSP0 stack) reads an unmapped address: a #PF nested in a #PF;
//   nested=dump  a ring-0 #UD whose dump follows a frame pointer into unmapped kernel
//                space: a #PF while the exception is being reported;
//   nested=rsp0-overflow  a ring-3 run's #PF hook recurses without bound: the TSS.RSP0
//                stack overflows into its guard page (docs/boot.md "Stack guard pages").
// Never part of the normal test image: every variant fails the boot by design.
#include <cstdint>

#include "capmem/fault.h"
#include "capmem/log.h"
#include "capmem/pt.h"
#include "kernel.h"
#include "ktest.h"
#include "ktest_ring3_progs.h"
#include "user.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint64_t kGuestAddr = fault::DATA_BASE;  // nothing mapped there
constexpr std::uint64_t kUnmappedLow = 0xdead0000ull;
// Kernel half, PML4 slot 511, PDPT entry 511: boot.S maps only entry 510 (the image).
constexpr std::uint64_t kUnmappedHigh = 0xfffffffff0000000ull;

FaultVerdict faulting_hook(void*, VirtAddr, std::uint64_t, TrapFrame&) {
  log::str("nested: the #PF hook reads 0xdead0000 at ring 0\n");
  (void)*reinterpret_cast<volatile std::uint64_t*>(kUnmappedLow);
  return {.action = FaultAction::EndRun};
}

FaultVerdict overflowing_hook(void*, VirtAddr, std::uint64_t, TrapFrame&) {
  log::str("nested: the #PF hook recurses without bound at ring 0\n");
  (void)overflow_stack(0);
  return {.action = FaultAction::EndRun};
}

}  // namespace

KTEST(nested_fault) {
  const bool overflow = cmdline_is("nested", "rsp0-overflow");
  if (cmdline_is("nested", "hook") || overflow) {
    auto table = pt::PageTable::create();
    KASSERT(table.ok());
    link_kernel_half(table.value());
    KASSERT(map_ring3_program(table.value(), VirtAddr{fault::JIT_BASE}, ring3_prog_load, ring3_prog_load_end) ==
            Status::Ok);
    UserRegs regs{};
    regs.rip = fault::JIT_BASE;
    regs.rdi = kGuestAddr;
    regs.rsp = fault::JIT_BASE + 4096;
    log::str("nested: ring-3 load from 0x10000000 (not mapped)\n");
    (void)run_user(
        RunSpec{.cr3 = table->root(), .regs = regs, .page_fault_hook = overflow ? overflowing_hook : faulting_hook});
    t.fail("the run returned: the nested fault was not reported");
    table->teardown();
    return;
  }
  if (cmdline_is("nested", "dump")) {
    log::str("nested: ud2 with rbp pointing at unmapped kernel space\n");
    asm volatile("mov %0, %%rbp\n\tud2" : : "r"(kUnmappedHigh) : "memory");
    t.fail("ud2 returned");
    return;
  }
  t.fail("no nested= variant on the command line (nested=hook, nested=dump or nested=rsp0-overflow)");
}
