// Page-table benchmarks (issue 4). Targets from the fault path: map_leaf with the path
// already built < 25 ns, translate < 10 ns. Reported, never asserted.
//   BM_MapLeaf             re-map one of 512 pages of an existing PT (Replaced: includes the
//                          seam's invlpg call; no simulated MMU is current, so it is a no-op).
//   BM_MapLeafHoldsRef     the same with holds_ref: ref of the new frame, unref of the old.
//   BM_MapUnmapLeaf        map into an empty slot of an existing PT + unmap it (one pair).
//   BM_MapLeafColdPath     map into an empty PML4 slot: allocates and links PDPT+PD+PT.
//                          Every 256 iterations the table is cleared with the timer paused;
//                          that clear cost is reported separately as BM_ClearColdPaths.
//   BM_ClearColdPaths      clear() of a table holding 256 cold paths (768 tables); time per path.
//   BM_Translate           translate() of 512 mapped pages in turn.
#include <benchmark/benchmark.h>

#include "capmem/frame.h"
#include "capmem/pt.h"

using namespace capmem;

namespace {

constexpr std::uint64_t kBase = 0x10000000;
constexpr pt::LeafFlags kFlags{.writable = true, .user = true, .no_execute = true};

pt::PageTable with_pt() {
  auto t = pt::PageTable::create().release_value();
  for (std::uint64_t i = 0; i < 512; ++i) (void)t.map_leaf(VirtAddr{kBase + i * 4096}, PhysAddr{(i + 1) << 12}, kFlags);
  return t;
}

void BM_MapLeaf(benchmark::State& state) {
  auto t = with_pt();
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto r = t.map_leaf(VirtAddr{kBase + (i & 511) * 4096}, PhysAddr{((i & 1023) + 1) << 12}, kFlags);
    benchmark::DoNotOptimize(r.ok());
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapLeaf);

void BM_MapLeafHoldsRef(benchmark::State& state) {
  auto t = with_pt();
  FrameDesc* p[2] = {frames().alloc(FrameKind::Page), frames().alloc(FrameKind::Page)};
  pt::LeafFlags f = kFlags;
  f.holds_ref = true;
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto r = t.map_leaf(VirtAddr{kBase + (i & 511) * 4096}, p[i & 1]->phys(), f);
    benchmark::DoNotOptimize(r.ok());
    ++i;
  }
  t.teardown();
  frames().free(p[0]);
  frames().free(p[1]);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapLeafHoldsRef);

void BM_MapUnmapLeaf(benchmark::State& state) {
  auto t = pt::PageTable::create().release_value();
  (void)t.map_leaf(VirtAddr{kBase}, PhysAddr{0x1000}, kFlags);
  (void)t.unmap(VirtAddr{kBase});
  std::uint64_t i = 0;
  for (auto _ : state) {
    const VirtAddr va{kBase + (i & 511) * 4096};
    benchmark::DoNotOptimize(t.map_leaf(va, PhysAddr{0x1000}, kFlags).ok());
    benchmark::DoNotOptimize(t.unmap(va).ok());
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapUnmapLeaf);

void BM_MapLeafColdPath(benchmark::State& state) {
  auto t = pt::PageTable::create().release_value();
  std::uint64_t slot = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.map_leaf(VirtAddr{slot << 39}, PhysAddr{0x1000}, kFlags).ok());
    if (++slot == 256) {
      state.PauseTiming();
      t.clear();
      slot = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["tables_per_map"] = 3;
}
BENCHMARK(BM_MapLeafColdPath);

void BM_ClearColdPaths(benchmark::State& state) {
  auto t = pt::PageTable::create().release_value();
  for (auto _ : state) {
    state.PauseTiming();
    for (std::uint64_t slot = 0; slot < 256; ++slot) (void)t.map_leaf(VirtAddr{slot << 39}, PhysAddr{0x1000}, kFlags);
    state.ResumeTiming();
    t.clear();
  }
  state.SetItemsProcessed(state.iterations() * 256);  // per cold path (3 tables)
}
BENCHMARK(BM_ClearColdPaths);

void BM_Translate(benchmark::State& state) {
  auto t = with_pt();
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto r = t.translate(VirtAddr{kBase + (i & 511) * 4096 + 8});
    benchmark::DoNotOptimize(r->pa);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Translate);

}  // namespace
