// Frame allocator benchmarks (issue 4): one frame allocated and freed, against glibc's
// aligned_alloc(4096, 4096) + free as the peer. Reported, never asserted.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "capmem/frame.h"

using namespace capmem;

namespace {

void BM_FrameAllocFree(benchmark::State& state) {
  for (auto _ : state) {
    FrameDesc* d = frames().alloc(FrameKind::Page);
    benchmark::DoNotOptimize(d);
    frames().free(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FrameAllocFree);

void BM_GlibcAlignedAllocFree(benchmark::State& state) {
  for (auto _ : state) {
    void* p = std::aligned_alloc(4096, 4096);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GlibcAlignedAllocFree);

}  // namespace
