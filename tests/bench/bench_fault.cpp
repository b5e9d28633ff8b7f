// Fault-path benchmarks (issue 9): the core #PF handler (fault::Run::handle_page_fault,
// include/capmem/fault.h) called directly, as the kernel's #PF vector calls it, on the
// hostsim machine. Reported, never asserted. Target: BM_CowFault <= 2x BM_Memcpy4K.
//
//   BM_CowFault   one copy-on-write write fault on a page mapped read-only from the mem
//                 cap's backing, page-table path already built (warm path): the handler's
//                 classify + translate, overlay reserve, frame alloc, 4 KiB copy, map_leaf
//                 (PTE replace, drops the read-only mapping's frame reference), TLB
//                 invalidate (hostsim: no simulated MMU is current, so invlpg is a call that
//                 does nothing) and overlay publish.
//   BM_Memcpy4K   the reference: std::memcpy of 4 KiB between frames of the simulated
//                 direct map, with the same working set as BM_CowFault (kPages source
//                 frames, kPages destination frames).
//   BM_CopyPage4K the same copies through mem::copy_page (rep movsb), the copy the handler
//                 itself uses.
//   BM_PageIn     one read fault on a not-present page of the CoW range (path built): map
//                 the backing's frame read-only.
//   BM_NeedPageRoundTrip/<engine>  (rule 8.2) one guest load through a hosted engine
//                 (hostsim's MMU + #PF handler, or the interpreter) of a Missing page of a thin
//                 mem cap with RunConfig::resolve_missing: the access answers NeedPage, the
//                 host resolves the page by reference (DataCap::resolve_page of a hashed page
//                 it holds: no copy, no SHA-256), and the same access runs again (page-in).
//                 Reported, no target.
//
// Batching: each timed iteration faults kPages pages in turn (items = faults); the state
// is put back outside the timed region once per batch (one PauseTiming per kPages faults).
#include <benchmark/benchmark.h>

#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/mem.h"
#include "capmem/pt.h"
#include "engines.h"
#include "hostsim/cpus.h"

using namespace capmem;
using namespace capmem::fault;

namespace {

constexpr std::uint32_t kPages = 512;  // 2 MiB of guest memory: exactly one PT
constexpr std::size_t kBytes = std::size_t{kPages} * PAGE_SIZE;
constexpr std::uint32_t kRead = pt::ErrorCode::kUser;
constexpr std::uint32_t kCowWrite = pt::ErrorCode::kPresent | pt::ErrorCode::kWrite | pt::ErrorCode::kUser;

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

VirtAddr data_va(std::uint32_t page) { return VirtAddr{DATA_BASE + std::uint64_t{page} * PAGE_SIZE + 8}; }

// A run over kPages of random (so Loaded, hashed) data pages and one code page, with its
// own page table. `mem` is a copy of `base` (shares the backing); resetting it drops the
// overlay and its private copies.
struct FaultWorld {
  DataCap code = DataCap::from_bytes(random_bytes(PAGE_SIZE, 1).data(), PAGE_SIZE).release_value();
  DataCap base = DataCap::from_bytes(random_bytes(kBytes, 2).data(), kBytes).release_value();
  DataCap mem = base.copy().release_value();
  pt::PageTable table = pt::PageTable::create().release_value();
  std::optional<Run> run;

  FaultWorld() {
    run.emplace(RunConfig{.table = &table, .code = &code, .mem = &mem, .pinned = {}, .gas = ~std::uint64_t{0} >> 1});
  }
  ~FaultWorld() {
    run.reset();
    table.teardown();
  }

  // Unmap every data page (tables stay: the path is warm).
  void unmap_all() {
    for (std::uint32_t p = 0; p < kPages; ++p) (void)table.unmap(data_va(p).page_base());
  }
  // Every data page mapped read-only from the backing (through the handler's read path),
  // with an empty overlay. A cap that a run maps cannot be replaced (rule 3.8: the run is
  // registered with it), so the run is re-created around the reset, in place.
  bool map_read_only() {
    unmap_all();
    run.reset();
    mem = base.copy().release_value();
    run.emplace(RunConfig{.table = &table, .code = &code, .mem = &mem, .pinned = {}, .gas = ~std::uint64_t{0} >> 1});
    for (std::uint32_t p = 0; p < kPages; ++p)
      if (run->handle_page_fault(data_va(p), kRead).outcome != Outcome::Retry) return false;
    return true;
  }
};

void BM_CowFault(benchmark::State& state) {
  // Threads(2): each thread on its own simulated CPU with its own run, table and cap copy
  // (rule 7.1); CPU time per fault per thread, target threads:2 <= 1.25x threads:1.
  hostsim::start_cpus(static_cast<unsigned>(state.threads()));
  const hostsim::CpuBinding on(static_cast<unsigned>(state.thread_index()));
  FaultWorld w;
  if (!w.map_read_only()) {
    state.SkipWithError("setup: read fault failed");
    return;
  }
  Run& run = *w.run;
  for (auto _ : state) {
    for (std::uint32_t p = 0; p < kPages; ++p) {
      const Answer a = run.handle_page_fault(data_va(p), kCowWrite);
      benchmark::DoNotOptimize(a);
    }
    state.PauseTiming();
    const bool ok = w.mem.overlay_count() == kPages && w.map_read_only();
    state.ResumeTiming();
    if (!ok) {
      state.SkipWithError("CoW fault did not publish every page");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPages);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kPages * PAGE_SIZE);
}
BENCHMARK(BM_CowFault)->Threads(1)->Threads(2);

// kPages source frames (random bytes) and kPages destination frames, like the handler's
// source pages and private copies.
struct CopyFrames {
  FrameDesc* src[kPages];
  FrameDesc* dst[kPages];
  CopyFrames() {
    const auto bytes = random_bytes(kBytes, 3);
    for (std::uint32_t i = 0; i < kPages; ++i) {
      src[i] = frames().alloc(FrameKind::Page);
      dst[i] = frames().alloc(FrameKind::Page);
      if (src[i] != nullptr) std::memcpy(src[i]->virt(), bytes.data() + std::size_t{i} * PAGE_SIZE, PAGE_SIZE);
    }
  }
  ~CopyFrames() {  // out of frames leaves nullptrs (see ok()): only what was allocated is freed
    for (std::uint32_t i = 0; i < kPages; ++i) {
      if (src[i] != nullptr) frames().free(src[i]);
      if (dst[i] != nullptr) frames().free(dst[i]);
    }
  }
  [[nodiscard]] bool ok() const {
    for (std::uint32_t i = 0; i < kPages; ++i)
      if (src[i] == nullptr || dst[i] == nullptr) return false;
    return true;
  }
};

void BM_Memcpy4K(benchmark::State& state) {
  // Threads(2): the machine's own scaling of 4 KiB copies on two cores (memory bandwidth),
  // the floor under BM_CowFault/threads:2.
  hostsim::start_cpus(static_cast<unsigned>(state.threads()));
  const hostsim::CpuBinding on(static_cast<unsigned>(state.thread_index()));
  CopyFrames f;
  if (!f.ok()) {
    state.SkipWithError("out of simulated frames");
    return;
  }
  for (auto _ : state) {
    for (std::uint32_t p = 0; p < kPages; ++p) {
      std::memcpy(f.dst[p]->virt(), f.src[p]->virt(), PAGE_SIZE);
      benchmark::ClobberMemory();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPages);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kPages * PAGE_SIZE);
}
BENCHMARK(BM_Memcpy4K)->Threads(1)->Threads(2);

void BM_CopyPage4K(benchmark::State& state) {
  CopyFrames f;
  if (!f.ok()) {
    state.SkipWithError("out of simulated frames");
    return;
  }
  for (auto _ : state) {
    for (std::uint32_t p = 0; p < kPages; ++p) mem::copy_page(f.dst[p]->virt(), f.src[p]->virt());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPages);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kPages * PAGE_SIZE);
}
BENCHMARK(BM_CopyPage4K);

void BM_PageIn(benchmark::State& state) {
  FaultWorld w;
  if (!w.map_read_only()) {  // builds the path; the pages are unmapped again below
    state.SkipWithError("setup: read fault failed");
    return;
  }
  w.unmap_all();
  Run& run = *w.run;
  for (auto _ : state) {
    for (std::uint32_t p = 0; p < kPages; ++p) {
      const Answer a = run.handle_page_fault(data_va(p), kRead);
      benchmark::DoNotOptimize(a);
    }
    state.PauseTiming();
    const bool ok = run.table().translate(data_va(kPages - 1)).ok();
    w.unmap_all();
    state.ResumeTiming();
    if (!ok) {
      state.SkipWithError("read fault did not map the page");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPages);
}
BENCHMARK(BM_PageIn);

// A thin copy of a full cap of kPages Loaded pages (every slot Missing(hash)), the host's
// hashed pages of the full cap, and a run + engine over the thin cap, re-made per batch.
struct ThinWorld {
  DataCap code = DataCap::from_bytes(random_bytes(PAGE_SIZE, 1).data(), PAGE_SIZE).release_value();
  DataCap full = DataCap::from_bytes(random_bytes(kBytes, 2).data(), kBytes).release_value();
  DataCap thin_base;
  DataCap mem;
  pt::PageTable table = pt::PageTable::create().release_value();
  std::optional<Run> run;
  std::optional<hostsim::GuestCpu> cpu;
  hostsim::EngineKind kind;

  explicit ThinWorld(hostsim::EngineKind k) : kind(k) {
    std::vector<std::uint8_t> enc(full.encoded_size(EncodeOptions{.thin = true}).value());
    (void)full.encode(enc.data(), enc.size(), EncodeOptions{.thin = true});
    thin_base = DataCap::decode(enc.data(), enc.size(), DecodeOptions{.thin = true}).release_value();
    reset();
  }
  ~ThinWorld() {
    cpu.reset();
    run.reset();
    table.teardown();
  }
  void reset() {
    cpu.reset();
    run.reset();
    for (std::uint32_t p = 0; p < kPages; ++p) (void)table.unmap(data_va(p).page_base());
    mem = thin_base.copy().release_value();
    run.emplace(RunConfig{.table = &table,
                          .code = &code,
                          .mem = &mem,
                          .pinned = {},
                          .gas = ~std::uint64_t{0} >> 1,
                          .resolve_missing = true});
    cpu.emplace(kind, *run);
  }
};

void BM_NeedPageRoundTrip(benchmark::State& state, hostsim::EngineKind kind) {
  ThinWorld w(kind);
  if (w.mem.missing_count() != kPages) {
    state.SkipWithError("setup: the thin cap is not all Missing");
    return;
  }
  for (auto _ : state) {
    bool ok = true;
    for (std::uint32_t p = 0; p < kPages && ok; ++p) {
      const auto addr = static_cast<std::uint32_t>(data_va(p).value());
      const AccessResult need = w.cpu->load(addr, 8);
      const PageRef page = PageRef::ref_existing(w.full.effective(p).frame);
      ok = need.outcome == Outcome::NeedPage && w.mem.resolve_page(p, page).ok();
      const AccessResult again = w.cpu->load(addr, 8);
      ok = ok && again.outcome == Outcome::Retry;
      benchmark::DoNotOptimize(again.value);
    }
    state.PauseTiming();
    if (ok) w.reset();
    state.ResumeTiming();
    if (!ok) {
      state.SkipWithError("the round trip did not answer NeedPage, resolve, then Retry");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPages);
}
BENCHMARK_CAPTURE(BM_NeedPageRoundTrip, mmu, hostsim::EngineKind::Mmu);
BENCHMARK_CAPTURE(BM_NeedPageRoundTrip, interpreter, hostsim::EngineKind::Interpreter);

}  // namespace
