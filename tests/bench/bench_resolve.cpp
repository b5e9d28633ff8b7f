// Resolving Missing pages (rule 8.4, issue 22 "Measured"). Reported, never asserted;
// run-bench.sh prints the ratios with the hash back end:
//   BM_Resolve        DataCap::resolve from memory: a 4 KiB copy into a fresh frame, the
//                     page hash of the copy, the install (path copy, no rehash). Target:
//                     <= 1.3 x (BM_PageRoot + BM_Memcpy4K/threads:1).
//   BM_ResolveShared  DataCap::resolve_page with a hashed page from a host cache: no copy,
//                     no SHA-256, only the install. Target: <= 0.3 x BM_PageRoot.
//   BM_ResolveMany/16 resolve_many in batches of 16 byte items (one transaction, hashes
//                     through the multi-buffer back end); per page, for information.
// The cap: 2^16 Missing pages (256 MiB of content, 1024 distinct pages placed 64 times),
// resolved in a shuffled order, a distinct page per item. Every kWindow items the resolved
// cap is dropped and a fresh O(1) copy of the thin one taken, with the timer paused, so no
// item meets a page that is already Loaded and the frames stay bounded.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"

using namespace capmem;

namespace {

constexpr std::uint32_t kDistinct = 1024;
constexpr std::uint32_t kPages = 1u << 16;
constexpr std::uint32_t kWindow = 4096;

struct ThinWorld {
  std::vector<std::uint8_t> bytes;  // kDistinct pages: page p of the cap is bytes page p % kDistinct
  DataCap thin;                     // kPages Missing slots, no frame
  std::vector<std::uint32_t> order;
  bool ok = false;
  ThinWorld() : bytes(std::size_t{kDistinct} * PAGE_SIZE) {
    std::mt19937 rng(22);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng() | 1);
    auto full = DataCap::from_bytes(bytes.data(), bytes.size());
    if (!full.ok()) return;
    const EncodeOptions opt{.thin = true};
    auto n = full->encoded_size(opt);
    if (!n.ok()) return;
    std::vector<std::uint8_t> wire(n.value());
    if (!full->encode(wire.data(), wire.size(), opt).ok()) return;
    auto part = DataCap::decode(wire.data(), wire.size(), DecodeOptions{.thin = true});
    auto big = DataCap::create(std::uint64_t{kPages} * PAGE_SIZE);
    if (!part.ok() || !big.ok()) return;
    for (std::uint32_t at = 0; at < kPages; at += kDistinct)
      if (!big->place_shared(part.value(), std::uint64_t{at} * PAGE_SIZE).ok()) return;
    thin = big.release_value();
    order.resize(kPages);
    for (std::uint32_t i = 0; i < kPages; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    ok = thin.missing_count() == kPages;
  }
  const std::uint8_t* page(std::uint32_t p) const { return bytes.data() + std::size_t{p % kDistinct} * PAGE_SIZE; }
};

ThinWorld& world() {
  static ThinWorld w;
  return w;
}

// Runs `one(cap, page)` for a distinct Missing page per item (items per iteration: `per`).
template <typename One>
void resolve_loop(benchmark::State& state, std::uint32_t per, One one) {
  hash::init();
  ThinWorld& w = world();
  if (!w.ok) {
    state.SkipWithError("could not build the thin cap (simulated RAM?)");
    return;
  }
  auto fresh = w.thin.copy();
  if (!fresh.ok()) {
    state.SkipWithError("copy failed");
    return;
  }
  DataCap cap = fresh.release_value();
  std::uint32_t next = 0, used = 0;  // kPages and kWindow are multiples of `per`
  for (auto _ : state) {
    if (used + per > kWindow) {
      state.PauseTiming();
      cap = DataCap{};
      cap = w.thin.copy().release_value();
      used = 0;
      state.ResumeTiming();
    }
    if (next + per > kPages) next = 0;
    if (!one(cap, &w.order[next], w)) {
      state.SkipWithError("resolve failed");
      return;
    }
    next += per;
    used += per;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * per);
  state.SetLabel(hash::impl_name(hash::active()));
}

void BM_Resolve(benchmark::State& state) {
  resolve_loop(state, 1, [](DataCap& cap, const std::uint32_t* p, const ThinWorld& w) {
    return cap.resolve(*p, w.page(*p), PAGE_SIZE).ok();
  });
}
BENCHMARK(BM_Resolve);

void BM_ResolveShared(benchmark::State& state) {
  // The host cache: each distinct page verified once, outside the timed region.
  std::vector<PageRef> cache;
  for (std::uint32_t i = 0; i < kDistinct; ++i) {
    auto p = PageRef::from_content(world().page(i), PAGE_SIZE);
    if (!p.ok()) {
      state.SkipWithError("out of simulated frames");
      return;
    }
    cache.push_back(p.release_value());
  }
  resolve_loop(state, 1, [&cache](DataCap& cap, const std::uint32_t* p, const ThinWorld&) {
    return cap.resolve_page(*p, cache[*p % kDistinct]).ok();
  });
}
BENCHMARK(BM_ResolveShared);

void BM_ResolveMany(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::vector<DataCap::ResolveItem> items(n);
  resolve_loop(state, n, [&items, n](DataCap& cap, const std::uint32_t* p, const ThinWorld& w) {
    for (std::uint32_t i = 0; i < n; ++i) items[i] = {.page = p[i], .src = ByteSource::memory(w.page(p[i]), PAGE_SIZE)};
    return cap.resolve_many(items.data(), n).ok();
  });
}
BENCHMARK(BM_ResolveMany)->Arg(16);

}  // namespace
