// main() for capmem-bench: boots the simulated machine (hostsim, CAPMEM_SIM_MB MiB of
// simulated RAM, default 512) and selects the hash back end, then runs every benchmark
// registered by the bench_<area>.cpp files linked in (tests/bench/meson.build).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "capmem/frame.h"
#include "capmem/hash.h"
#include "hostsim/env_hostsim.h"

int main(int argc, char** argv) {
  std::uint64_t mb = 512;
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
