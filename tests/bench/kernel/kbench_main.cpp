// capmem-kernel-bench's entry (kernel.h image_main): the in-kernel fault benchmarks
// (kbench.cpp, kbench_smp.cpp), run as the runner's cases so a failed measurement fails the
// boot. docs/performance.md "In-kernel fault benchmarks".
#include <cstdint>
#include <span>

#include "kernel.h"
#include "ktest.h"

namespace capmem::kernel {
namespace {

constexpr CmdlineKey kKeys[] = {
    ktest::kOutputKey,
    {.key = "kbench.pages",
     .kind = CmdlineKind::U64,
     .help = "pages of the single-CPU fault-path benchmark (default 16384)"},
    {.key = "kbench.reps", .kind = CmdlineKind::U64, .help = "repetitions of each measurement (default 3)"},
    {.key = "kbench.smp_pages",
     .kind = CmdlineKind::U64,
     .help = "pages each CPU writes in the CoW scaling benchmark (default 8192)"},
};

}  // namespace

std::span<const CmdlineKey> image_cmdline_keys() { return kKeys; }

std::uint32_t image_main() {
  return ktest::run_all(nullptr, ktest::output_from_cmdline()) == 0 ? kExitPass : kExitFail;
}

}  // namespace capmem::kernel
