// The test image's entry (capmem-kernel; kernel.h image_main): its command-line keys, the
// deliberate crashes that prove the exception path, then the in-kernel cases (ktest.h).
#include <cstdint>
#include <span>

#include "capmem/env.h"
#include "capmem/log.h"
#include "kernel.h"
#include "ktest.h"
#include "smp.h"

namespace capmem::kernel {
namespace {

constexpr CmdlineKey kKeys[] = {
    {.key = "ktest",
     .kind = CmdlineKind::Text,
     .choices = "PREFIX[,PREFIX...]",
     .help = "only the cases whose names start with a prefix; each prefix must select one"},
    ktest::kOutputKey,
    {.key = "ktest.pack",
     .kind = CmdlineKind::U64,
     .help = "the loader passed a page pack of this many pages: boot_modules_as_the_loader_passed requires it"},
    {.key = "crash",
     .kind = CmdlineKind::Choice,
     .choices = "pf|ud|panic|stack-overflow|triple|ap-panic|ap-pf|ap-stack-overflow",
     .help = "fault at ring 0 on purpose (the exception-path tests)"},
};

// `crash=<kind>`: deliberately fault at ring 0 to prove the exception path prints and fails
// the boot (tests/qemu exception-dump, smp-panic, stack-overflow, triple-fault). Addresses are
// chosen to be recognizable. Returns only when the line has no crash= key.
void maybe_crash() {
  const char* kind = cmdline_value("crash");
  if (kind == nullptr) return;
  log::str("capmem: crashing on purpose (crash=");
  log::str(kind);
  log::str(")\n");
  if (cmdline_is("crash", "pf")) {
    // Slot 0 is empty in the boot address space: a not-present read at ring 0.
    (void)*reinterpret_cast<volatile std::uint64_t*>(0xdead0000ull);
  } else if (cmdline_is("crash", "ud")) {
    asm volatile("ud2");
  } else if (cmdline_is("crash", "panic")) {
    env::panic("requested on the command line");
  } else if (cmdline_is("crash", "stack-overflow")) {
    // Overflows the boot CPU's stack into its guard page (tests/qemu stack-overflow).
    (void)overflow_stack(0);
  } else if (cmdline_is("crash", "ap-panic") || cmdline_is("crash", "ap-pf") ||
             cmdline_is("crash", "ap-stack-overflow")) {
    // A panic, a ring-0 #PF or a kernel stack overflow on the last application processor
    // while this CPU waits for it: every CPU must stop and exactly one report must appear
    // (tests/qemu smp-panic, stack-overflow).
    const unsigned last = smp::online_count() - 1;
    if (last == 0) {
      log::str("capmem: crash=ap-* needs more than one CPU\n");
      exit_qemu(kExitFail);
    }
    if (cmdline_is("crash", "ap-panic"))
      smp::run_on(
          last, [](void*) { env::panic("requested on the command line, raised on an application processor"); },
          nullptr);
    else if (cmdline_is("crash", "ap-pf"))
      smp::run_on(
          last, [](void*) { (void)*reinterpret_cast<volatile std::uint64_t*>(0xdead0000ull); }, nullptr);
    else
      smp::run_on(
          last, [](void*) { (void)overflow_stack(0); }, nullptr);
    smp::wait_done(last);
  } else if (cmdline_is("crash", "triple")) {
    // An empty IDT: #UD cannot be delivered -> #GP -> #DF -> shutdown (SDM Vol. 3A 6.15
    // "Interrupt 8"). Proves the runner counts a reset as a failure, not a pass.
    const struct [[gnu::packed]] {
      std::uint16_t limit;
      std::uint64_t base;
    } empty{0, 0};
    asm volatile("lidt %0; ud2" : : "m"(empty));
  }
  log::str("capmem: crash=");
  log::str(kind);
  log::str(" returned\n");
  exit_qemu(kExitFail);
}

}  // namespace

std::span<const CmdlineKey> image_cmdline_keys() { return kKeys; }

std::uint32_t image_main() {
  maybe_crash();
  return ktest::run_all(cmdline_value("ktest"), ktest::output_from_cmdline()) == 0 ? kExitPass : kExitFail;
}

}  // namespace capmem::kernel
