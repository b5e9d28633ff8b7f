// DataCap benchmarks (issue 3): overlay lookup/insert (the fault path's structure) and
// cap decode throughput including hash verification. Reported, never asserted.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "capmem/datacap.h"

using namespace capmem;

namespace {

PageRef pool_page(std::uint32_t salt) {
  std::uint8_t b[PAGE_SIZE];
  std::memset(b, 0x6b, sizeof b);
  std::memcpy(b, &salt, 4);
  return PageRef::from_content(b, PAGE_SIZE).release_value();
}

// n overlay entries at random pages of a 4 GiB cap.
void BM_OverlayLookup(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  auto cap = DataCap::create(kMaxCapSize).release_value();
  PageRef p = pool_page(1);
  std::mt19937 rng(1);
  std::vector<std::uint32_t> pages(n);
  for (auto& pg : pages) {
    pg = rng() % tree::kMaxPages;
    (void)cap.write_page(pg, p);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    SlotView v = cap.effective(pages[i]);
    benchmark::DoNotOptimize(v);
    i = i + 1 == n ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OverlayLookup)->Arg(1 << 10)->Arg(1 << 14)->Arg(1 << 17);

// reserve + publish into an overlay holding about n entries (new random pages).
void BM_OverlayInsert(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  PageRef p = pool_page(2);
  std::mt19937 rng(2);
  auto fresh = [&] {
    auto c = DataCap::create(kMaxCapSize).release_value();
    for (std::uint32_t i = 0; i < n; ++i) (void)c.write_page(rng() % tree::kMaxPages, p);
    return c;
  };
  DataCap cap = fresh();
  std::uint32_t done = 0;
  for (auto _ : state) {
    if (done == 4096) {  // keep the overlay near n entries
      state.PauseTiming();
      cap = fresh();
      done = 0;
      state.ResumeTiming();
    }
    auto r = cap.reserve_overlay(rng() % tree::kMaxPages);
    cap.publish(r.release_value(), p);
    ++done;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OverlayInsert)->Arg(1 << 10)->Arg(1 << 14)->Arg(1 << 17);

// Decode of an n-page cap of distinct non-zero pages (rules 2.5, 5.2 incl. hashes).
void BM_DecodeCap(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::vector<std::uint8_t> bytes(std::size_t{n} * PAGE_SIZE);
  std::mt19937_64 rng(3);
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(&bytes[i], &v, 8);
  }
  std::vector<std::uint8_t> wire;
  {
    auto c = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
    wire.resize(c.encoded_size().value());
    (void)c.encode(wire.data(), wire.size());
  }
  for (auto _ : state) {
    auto d = DataCap::decode(wire.data(), wire.size());
    if (!d.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * wire.size()));
}
BENCHMARK(BM_DecodeCap)->Arg(16)->Arg(1024)->Arg(8192)->Unit(benchmark::kMicrosecond);

}  // namespace
