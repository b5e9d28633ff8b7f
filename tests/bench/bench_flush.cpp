// Flush cost (issue 7): k random dirty pages of an n-page cap through the persistent
// merkle backing, against recomputing the root from all n page roots. Reported, never
// asserted. Caps are sparse in frames: every slot is Loaded, sharing a pool of 64 frames,
// so a 2^20-page cap fits the simulated RAM (its tree nodes take ~46 MB).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"

using namespace capmem;

namespace {

constexpr std::uint32_t kPool = 64;

std::vector<PageRef> make_pool() {
  std::vector<PageRef> pool;
  for (std::uint32_t i = 0; i < kPool; ++i) {
    std::uint8_t b[PAGE_SIZE];
    std::memset(b, 0x3d, sizeof b);
    std::memcpy(b, &i, 4);
    pool.push_back(PageRef::from_content(b, PAGE_SIZE).release_value());
  }
  return pool;
}

DataCap full_cap(std::uint32_t n, const std::vector<PageRef>& pool) {
  auto c = DataCap::create(std::uint64_t{n} * PAGE_SIZE).release_value();
  for (std::uint32_t i = 0; i < n; ++i) (void)c.write_page(i, pool[i % kPool]);
  (void)c.flush();  // hashed pages: shared, no page hashing; the tree is built once
  return c;
}

// A timing window holds `per` flushes, one per cap: 8 at k = 1, where a PauseTiming /
// ResumeTiming pair (about 1.8 us of timed clock reads on the 2-vCPU VM, measured with an
// empty pair) would otherwise be a fifth of the flush; 1 above. Each cap holds its backing
// alone (its flush is in place) and is built the same way.
void BM_FlushDirty(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const auto k = static_cast<std::uint32_t>(state.range(1));
  const std::uint32_t per = k == 1 ? 8 : 1;
  const auto pool = make_pool();
  std::vector<DataCap> caps;
  for (std::uint32_t c = 0; c < per; ++c) caps.push_back(full_cap(n, pool));
  std::mt19937 rng(7);
  std::uint32_t tick = 0;
  std::vector<std::vector<std::uint32_t>> dirty(per);  // the slots each cap's last timed flush gave their own pages
  for (auto _ : state) {
    state.PauseTiming();
    for (std::uint32_t c = 0; c < per; ++c) {
      DataCap& cap = caps[c];
      // Those slots get their pool pages back (an untimed flush: hashed pages, no page
      // hash), so every timed flush starts from the cap as built, every slot a shared pool
      // page, and the cap's frames stay ~64 + k however many iterations run (else the slots
      // fill up with distinct pages until the simulated RAM runs out).
      for (std::uint32_t slot : dirty[c]) (void)cap.write_page(slot, pool[slot % kPool]);
      if (!dirty[c].empty() && !cap.flush().ok()) {
        state.SkipWithError("restoring flush failed");
        return;
      }
      dirty[c].clear();
      for (std::uint32_t j = 0; j < k; ++j) {
        // A fresh unhashed private copy (as the CoW fault path makes): flush hashes it.
        auto p = PageRef::unhashed_copy(pool[rng() % kPool].bytes());
        if (!p.ok()) {
          state.SkipWithError("out of simulated frames");
          return;
        }
        ++tick;
        std::memcpy(p->mutable_bytes() + 8, &tick, 4);
        const std::uint32_t slot = rng() % n;
        (void)cap.write_page(slot, p.release_value());
        dirty[c].push_back(slot);
      }
    }
    state.ResumeTiming();
    for (DataCap& cap : caps)
      if (!cap.flush().ok()) state.SkipWithError("flush failed");
  }
  state.counters["dirty_pages"] = k;
  state.counters["flushes_per_window"] = per;
  state.SetItemsProcessed(state.iterations() * k * per);
}
void flush_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {1 << 10, 1 << 14, 1 << 17, 1 << 20})
    for (std::int64_t k : {1, 64, 4096})
      if (k <= n) b->Args({n, k});
}
BENCHMARK(BM_FlushDirty)->Apply(flush_args)->Unit(benchmark::kMicrosecond);

// The same cap's root from scratch: every page root merkleized (what a flat backing pays).
void BM_FullRecompute(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const auto pool = make_pool();
  std::vector<Hash32> roots(n);
  for (std::uint32_t i = 0; i < n; ++i) roots[i] = pool[i % kPool].hash();
  for (auto _ : state) {
    const Hash32 pages = hash::merkleize(roots.data(), n, n);
    Hash32 root = hash::node(hash::uint64_root(std::uint64_t{n} * PAGE_SIZE), pages);
    benchmark::DoNotOptimize(root);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FullRecompute)->Arg(1 << 10)->Arg(1 << 14)->Arg(1 << 17)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);

}  // namespace
