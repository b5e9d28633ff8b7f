// Resolving Missing pages (rule 8.4, issue 22 "Measured"). Reported, never asserted;
// run-bench.sh prints the ratios with the hash back end:
//   BM_Resolve        DataCap::resolve from memory: a 4 KiB copy into a fresh frame, the
//                     page hash of the copy, the install (path copy, no rehash). Target:
//                     <= 1.3 x (BM_PageRoot + BM_Memcpy4K/threads:1).
//   BM_ResolveShared  DataCap::resolve_page with a hashed page from a host cache: no copy,
//                     no SHA-256, only the install. Target: <= 0.3 x BM_PageRoot.
//   BM_ResolveMany/16 resolve_many in batches of 16 byte items (one transaction, hashes
//                     through the multi-buffer back end); per page, for information.
//   BM_ResolveIntoCopy, BM_ResolveSharedIntoCopy: the same into an O(1) copy of the thin
//                     cap (a run's own copy of a shared thin code cap): the backing is
//                     shared, so each resolve path-copies its tree path; for information.
//   BM_ResolveParts/k the byte path's own work without the cap, in the same order and with
//                     the same frame reuse as BM_Resolve: /0 a fresh frame from the
//                     allocator, /1 and the 4 KiB copy into it, /2 and the page hash of the
//                     copy (BM_Resolve less its checks and install); for information.
//   BM_Resolve_Impl/<back end>: BM_Resolve with the page hash forced to each back end the
//                     CPU supports, for information beside BM_PageRoot_Impl/<back end>
//                     (docs/performance.md: the 1.3x line against each back end's own batched
//                     page-root rate).
// The cap: 2^16 Missing pages (256 MiB of content: 64 blocks, each the same 1024 distinct
// pages), a thin decode of its wire, so that it holds its tree alone as after a real decode
// (or, IntoCopy, an O(1) copy of one). Blocks are resolved in a shuffled order, the pages of
// a block in a shuffled order, a distinct Missing page per item; after each block the timer
// pauses and the block is made Missing again (the frames go back to the allocator and the
// next block reuses them, as BM_CowFault's batches do; a copy is simply taken again).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/frame.h"
#include "capmem/hash.h"

using namespace capmem;

namespace {

constexpr std::uint32_t kDistinct = 1024;
constexpr std::uint32_t kPages = 1u << 16;
constexpr std::uint32_t kWindow = kDistinct;  // one block: 4 MiB of resolved frames at most

struct ThinWorld {
  std::vector<std::uint8_t> bytes;  // kDistinct pages: page p of the cap is bytes page p % kDistinct
  DataCap part;                     // the thin cap of those kDistinct pages (a block)
  DataCap thin;                     // kPages Missing slots (kBlocks blocks), no frame
  std::vector<std::uint8_t> wire;   // its thin encoding
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
    std::vector<std::uint8_t> small(n.value());
    if (!full->encode(small.data(), small.size(), opt).ok()) return;
    auto part = DataCap::decode(small.data(), small.size(), DecodeOptions{.thin = true});
    auto big = DataCap::create(std::uint64_t{kPages} * PAGE_SIZE);
    if (!part.ok() || !big.ok()) return;
    for (std::uint32_t at = 0; at < kPages; at += kDistinct)
      if (!big->place_shared(part.value(), std::uint64_t{at} * PAGE_SIZE).ok()) return;
    this->part = part.release_value();
    thin = big.release_value();
    auto m = thin.encoded_size(opt);
    if (!m.ok()) return;
    wire.resize(m.value());
    if (!thin.encode(wire.data(), wire.size(), opt).ok()) return;
    // Blocks in a shuffled order, the pages of each block in a shuffled order.
    std::vector<std::uint32_t> blocks(kPages / kDistinct), in_block(kDistinct);
    for (std::uint32_t b = 0; b < blocks.size(); ++b) blocks[b] = b;
    std::shuffle(blocks.begin(), blocks.end(), rng);
    for (std::uint32_t b : blocks) {
      for (std::uint32_t i = 0; i < kDistinct; ++i) in_block[i] = i;
      std::shuffle(in_block.begin(), in_block.end(), rng);
      for (std::uint32_t i : in_block) order.push_back(b * kDistinct + i);
    }
    ok = thin.missing_count() == kPages;
  }
  const std::uint8_t* page(std::uint32_t p) const { return bytes.data() + std::size_t{p % kDistinct} * PAGE_SIZE; }
};

// A fresh thin cap: decoded (the cap holds its tree alone) or an O(1) copy (shared backing).
Result<DataCap> fresh(const ThinWorld& w, bool copy) {
  if (copy) return w.thin.copy();
  return DataCap::decode(w.wire.data(), w.wire.size(), DecodeOptions{.thin = true});
}

// Runs `one(cap, page)` for a distinct Missing page per item (items per iteration: `per`).
// `impl`: the hash back end to force for this benchmark (null: the default one).
template <typename One>
void resolve_loop(benchmark::State& state, const ThinWorld& w, bool copy, std::uint32_t per, One one,
                  const hash::Impl* impl = nullptr) {
  hash::init();
  if (impl != nullptr) hash::force(*impl);
  if (!w.ok) {
    state.SkipWithError("could not build the thin cap (simulated RAM?)");
    return;
  }
  auto first = fresh(w, copy);
  if (!first.ok()) {
    state.SkipWithError((std::string("thin cap: ") + status_name(first.status())).c_str());
    return;
  }
  DataCap cap = first.release_value();
  std::uint32_t next = 0, used = 0;  // kPages and kWindow are multiples of `per`
  for (auto _ : state) {
    if (used + per > kWindow) {
      // The block just resolved becomes Missing again: a copy starts over from the shared
      // thin cap; a decoded cap gets the block's Missing slots back (place_shared), so its
      // frames return to the allocator and the next block reuses them, the way
      // BM_CowFault's batches do.
      state.PauseTiming();
      const std::uint32_t block = w.order[next - per] / kDistinct;
      bool ok = false;
      if (copy) {
        cap = DataCap{};
        auto c = fresh(w, copy);
        ok = c.ok();
        if (ok) cap = c.release_value();
      } else {
        ok = cap.place_shared(w.part, std::uint64_t{block} * kDistinct * PAGE_SIZE).ok();
      }
      if (!ok) {
        state.SkipWithError("re-thinning failed");
        return;
      }
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

void resolve_bytes(benchmark::State& state, bool copy, const hash::Impl* impl = nullptr) {
  const ThinWorld w;
  resolve_loop(
      state, w, copy, 1,
      [](DataCap& cap, const std::uint32_t* p, const ThinWorld& tw) {
        return cap.resolve(*p, tw.page(*p), PAGE_SIZE).ok();
      },
      impl);
}

void resolve_shared(benchmark::State& state, bool copy) {
  const ThinWorld w;
  // The host cache: each distinct page verified once, outside the timed region.
  std::vector<PageRef> cache;
  for (std::uint32_t i = 0; i < kDistinct; ++i) {
    auto p = PageRef::from_content(w.page(i), PAGE_SIZE);
    if (!p.ok()) {
      state.SkipWithError("out of simulated frames");
      return;
    }
    cache.push_back(p.release_value());
  }
  resolve_loop(state, w, copy, 1, [&cache](DataCap& cap, const std::uint32_t* p, const ThinWorld&) {
    return cap.resolve_page(*p, cache[*p % kDistinct]).ok();
  });
}

void BM_Resolve(benchmark::State& state) { resolve_bytes(state, false); }
BENCHMARK(BM_Resolve);
void BM_ResolveShared(benchmark::State& state) { resolve_shared(state, false); }
BENCHMARK(BM_ResolveShared);
void BM_ResolveIntoCopy(benchmark::State& state) { resolve_bytes(state, true); }
BENCHMARK(BM_ResolveIntoCopy);
void BM_ResolveSharedIntoCopy(benchmark::State& state) { resolve_shared(state, true); }
BENCHMARK(BM_ResolveSharedIntoCopy);

void BM_ResolveMany(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const ThinWorld w;
  std::vector<DataCap::ResolveItem> items(n);
  resolve_loop(state, w, false, n, [&items, n](DataCap& cap, const std::uint32_t* p, const ThinWorld& tw) {
    for (std::uint32_t i = 0; i < n; ++i)
      items[i] = {.page = p[i], .src = ByteSource::memory(tw.page(p[i]), PAGE_SIZE)};
    return cap.resolve_many(items.data(), n).ok();
  });
}
BENCHMARK(BM_ResolveMany)->Arg(16);

// BM_ResolveParts/k (see the top of this file): k = 0 frame, 1 frame + copy, 2 frame + copy +
// hash. Each block's frames stay allocated until the block ends, then go back with the timer
// paused, as a resolved block's frames do in BM_Resolve.
void BM_ResolveParts(benchmark::State& state) {
  const auto parts = state.range(0);
  const ThinWorld w;
  hash::init();
  if (!w.ok) {
    state.SkipWithError("could not build the thin cap (simulated RAM?)");
    return;
  }
  std::vector<FrameDesc*> block;
  block.reserve(kWindow);
  auto release = [&block] {
    for (FrameDesc* d : block) (void)frames().unref(d);
    block.clear();
  };
  std::uint32_t next = 0;
  std::uint8_t sink = 0;
  for (auto _ : state) {
    if (block.size() == kWindow) {
      state.PauseTiming();
      release();
      state.ResumeTiming();
    }
    FrameDesc* d = frames().alloc(FrameKind::Page);
    if (d == nullptr) {
      state.SkipWithError("out of simulated frames");
      break;
    }
    block.push_back(d);
    auto* dst = static_cast<std::uint8_t*>(d->virt());
    const std::uint32_t p = w.order[next];
    next = next + 1 == kPages ? 0 : next + 1;
    if (parts >= 1) std::memcpy(dst, w.page(p), PAGE_SIZE);
    if (parts >= 2) sink ^= hash::page_content_hash(dst).b[0];
    benchmark::DoNotOptimize(sink);
    benchmark::ClobberMemory();
  }
  release();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetLabel(hash::impl_name(hash::active()));
}
BENCHMARK(BM_ResolveParts)->DenseRange(0, 2);

// Per back end, registered at start-up for every Impl the CPU supports (as BM_PageRoot_Impl).
const bool g_registered = [] {
  for (hash::Impl impl : {hash::Impl::Portable, hash::Impl::ShaNi, hash::Impl::Avx2, hash::Impl::Avx512}) {
    if (!hash::supported(impl)) continue;
    benchmark::RegisterBenchmark((std::string("BM_Resolve_Impl/") + hash::impl_name(impl)).c_str(),
                                 [impl](benchmark::State& s) {
                                   resolve_bytes(s, false, &impl);
                                   hash::init();  // the default back end for the benchmarks after it
                                 });
  }
  return true;
}();

}  // namespace
