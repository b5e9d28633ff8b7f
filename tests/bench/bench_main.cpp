// main() for capmem-bench: boots the simulated machine (hostsim, CAPMEM_SIM_MB MiB of
// simulated RAM, default 2048) and selects the hash back end, then runs every benchmark
// registered by the bench_<area>.cpp files linked in (tests/bench/meson.build).
// Why 2048: every page a BM_FlushDirty iteration flushes stays in its cap as a frame of its
// own until the benchmark ends, so the frames it holds grow with the iterations the harness
// chooses (about 0.5 s of flushes per run): ~85 000 iterations of /1 or ~100 000 pages of
// /64 at today's flush speed, 330-400 MB beside the 46 MB tree, which 512 MiB no longer held.
// The RAM is mapped MAP_NORESERVE and touched only as frames are used.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "capmem/frame.h"
#include "capmem/hash.h"
#include "hostsim/env_hostsim.h"

int main(int argc, char** argv) {
  std::uint64_t mb = 2048;
  if (const char* e = std::getenv("CAPMEM_SIM_MB")) mb = std::strtoull(e, nullptr, 10);
  capmem::hostsim::boot(mb << 20);
  benchmark::AddCustomContext("capmem_hash_impl", capmem::hash::impl_name(capmem::hash::active()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  const auto s = capmem::hostsim::quiescent_frame_stats();
  if (s.in_use != 1)
    std::fprintf(stderr, "capmem-bench: %llu frames still in use after the benchmarks\n",
                 static_cast<unsigned long long>(s.in_use - 1));
  return 0;
}
