// Frame allocator benchmarks (issue 4; many CPUs: issue 15): one frame allocated and freed,
// against glibc's aligned_alloc(4096, 4096) + free as the peer. Reported, never asserted.
//
//   BM_FrameAllocFree/threads:N  N host threads, each bound to its own simulated CPU
//                                (hostsim::CpuBinding), each allocating and freeing: the
//                                per-CPU cache's fast path. CPU time per pair per thread;
//                                targets (run-bench.sh): threads:2 <= 1.25x threads:1, and
//                                threads:1 <= 0.25x BM_GlibcAlignedAllocFree.
//   BM_TlbShootdown              env::tlb_shootdown of one page for every address space on
//                                two simulated CPUs that both cache it (hosted cost: locks
//                                and hash-map erases, informative; the kernel's is an IPI).
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/pt.h"
#include "hostsim/cpus.h"
#include "hostsim/mmu.h"

using namespace capmem;

namespace {

void BM_FrameAllocFree(benchmark::State& state) {
  hostsim::start_cpus(static_cast<unsigned>(state.threads()));
  const hostsim::CpuBinding on(static_cast<unsigned>(state.thread_index()));
  for (auto _ : state) {
    FrameDesc* d = frames().alloc(FrameKind::Page);
    benchmark::DoNotOptimize(d);
    frames().free(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FrameAllocFree)->Threads(1)->Threads(2);

void BM_GlibcAlignedAllocFree(benchmark::State& state) {
  for (auto _ : state) {
    void* p = std::aligned_alloc(4096, 4096);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GlibcAlignedAllocFree);

void BM_TlbShootdown(benchmark::State& state) {
  hostsim::start_cpus(2);
  auto table = pt::PageTable::create();
  FrameDesc* page = frames().alloc(FrameKind::Page);
  const VirtAddr va{0x40000000};
  if (!table.ok() || page == nullptr || !table->map_leaf(va, page->phys(), pt::LeafFlags{.user = true}).ok()) {
    state.SkipWithError("setup failed");
    if (page != nullptr) frames().free(page);
    return;
  }
  hostsim::Mmu m0, m1;
  m0.make_current();
  m0.load_cr3(table->root());
  {
    const hostsim::CpuBinding on(1);
    m1.make_current();
    m1.load_cr3(table->root());
  }
  for (auto _ : state) {
    state.PauseTiming();
    (void)m0.load(static_cast<std::uint32_t>(va.value()), 1);  // both TLBs cache the page
    {
      const hostsim::CpuBinding on(1);
      (void)m1.load(static_cast<std::uint32_t>(va.value()), 1);
    }
    state.ResumeTiming();
    env::tlb_shootdown(PhysAddr{}, va, 1);
  }
  state.SetItemsProcessed(state.iterations());
  hostsim::Mmu::clear_current();
  {
    const hostsim::CpuBinding on(1);
    hostsim::Mmu::clear_current();
  }
  table->teardown();
  frames().free(page);
}
BENCHMARK(BM_TlbShootdown);

}  // namespace
