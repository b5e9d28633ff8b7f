// capmem-kernel-nested's entry (kernel.h image_main): its one case, ktest_nested.cpp's
// nested_fault, whose variant comes from `nested=` (every variant fails the boot by design).
#include <cstdint>
#include <span>

#include "kernel.h"
#include "ktest.h"

namespace capmem::kernel {
namespace {

constexpr CmdlineKey kKeys[] = {
    ktest::kOutputKey,
    {.key = "nested",
     .kind = CmdlineKind::Choice,
     .choices = "hook|dump|rsp0-overflow",
     .help = "where the ring-0 fault nests (tests/kernel/ktest_nested.cpp)"},
};

}  // namespace

std::span<const CmdlineKey> image_cmdline_keys() { return kKeys; }

std::uint32_t image_main() {
  return ktest::run_all(nullptr, ktest::output_from_cmdline()) == 0 ? kExitPass : kExitFail;
}

}  // namespace capmem::kernel
