// Hashing benchmarks (issue 9): page roots (rule 1.2) and merkle nodes, with the
// dispatcher's choice and with every back end the CPU supports.
//   BM_PageRoot                4096 random pages per iteration through page_content_hashes;
//                              items = pages, ns_per_item = ns per page root.
//   BM_PageRootOneByOne        the same pages, one page_content_hash() call each.
//   BM_MerkleNodes             one level of 8192 nodes (64-byte messages) via nodes();
//                              items = nodes.
//   BM_PageRoot_Impl/<impl>, BM_MerkleNodes_Impl/<impl>: forced back end.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "capmem/hash.h"

using namespace capmem;

namespace {

constexpr std::size_t kPages = 4096;
constexpr std::size_t kNodes = 8192;

struct PageSet {
  std::uint8_t* mem = nullptr;
  std::vector<const std::uint8_t*> ptrs;
  std::vector<Hash32> out;
  PageSet() {
    mem = static_cast<std::uint8_t*>(std::aligned_alloc(4096, kPages * 4096));
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i < kPages * 4096 / 8; ++i) {
      const std::uint64_t v = rng();
      std::memcpy(mem + 8 * i, &v, 8);
    }
    for (std::size_t i = 0; i < kPages; ++i) ptrs.push_back(mem + 4096 * i);
    out.resize(kPages);
  }
  ~PageSet() { std::free(mem); }
};

PageSet& pages() {
  static PageSet p;
  return p;
}

void per_item(benchmark::State& state, std::size_t items_per_iter) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * items_per_iter));
  state.counters["ns_per_item"] =
      benchmark::Counter(static_cast<double>(items_per_iter) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void page_root(benchmark::State& state) {
  auto& p = pages();
  for (auto _ : state) {
    hash::page_content_hashes(p.ptrs.data(), p.out.data(), kPages);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  per_item(state, kPages);
}

void merkle_nodes(benchmark::State& state) {
  std::vector<Hash32> in(2 * kNodes), out(kNodes);
  std::mt19937_64 rng(7);
  for (auto& h : in)
    for (auto& b : h.b) b = static_cast<std::uint8_t>(rng());
  for (auto _ : state) {
    hash::nodes(in.data(), out.data(), kNodes);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  per_item(state, kNodes);
}

void BM_PageRoot(benchmark::State& state) {
  hash::init();
  state.SetLabel(hash::impl_name(hash::active()));
  page_root(state);
}
BENCHMARK(BM_PageRoot);

void BM_PageRootOneByOne(benchmark::State& state) {
  hash::init();
  auto& p = pages();
  for (auto _ : state) {
    for (std::size_t i = 0; i < kPages; ++i) p.out[i] = hash::page_content_hash(p.ptrs[i]);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  per_item(state, kPages);
}
BENCHMARK(BM_PageRootOneByOne);

void BM_MerkleNodes(benchmark::State& state) {
  hash::init();
  state.SetLabel(hash::impl_name(hash::active()));
  merkle_nodes(state);
}
BENCHMARK(BM_MerkleNodes);

// Per back end: registered at start-up for every Impl the CPU supports.
const bool g_registered = [] {
  for (hash::Impl impl : {hash::Impl::Portable, hash::Impl::ShaNi, hash::Impl::Avx2, hash::Impl::Avx512}) {
    if (!hash::supported(impl)) continue;
    const std::string name = hash::impl_name(impl);
    benchmark::RegisterBenchmark(("BM_PageRoot_Impl/" + name).c_str(), [impl](benchmark::State& s) {
      hash::force(impl);
      page_root(s);
      hash::init();
    });
    benchmark::RegisterBenchmark(("BM_MerkleNodes_Impl/" + name).c_str(), [impl](benchmark::State& s) {
      hash::force(impl);
      merkle_nodes(s);
      hash::init();
    });
  }
  return true;
}();

}  // namespace
