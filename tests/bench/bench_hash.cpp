// Hashing benchmarks (issue 9): page roots (rule 1.2) and merkle nodes, with the
// dispatcher's choice and with every back end the CPU supports.
//   BM_PageRoot                4096 random pages per iteration through page_content_hashes;
//                              items = pages, ns_per_item = ns per page root.
//   BM_PageRootOneByOne        the same pages, one page_content_hash() call each.
//   BM_PageRootHot, BM_PageRootHot_Impl/avx512-v1: the first 64 of those pages (256 KiB,
//                              they stay in L2) hashed again and again: the kernels' compute
//                              without the page data's trip from L3/DRAM that BM_PageRoot
//                              (16 MiB) pays.
//   BM_MerkleNodes             one level of 8192 nodes (64-byte messages) via nodes();
//                              items = nodes.
//   BM_PageRoot_Impl/<impl>, BM_MerkleNodes_Impl/<impl>: forced back end;
//   BM_PageRoot_Impl/avx512-v1: the frozen AVX-512 kernel of issue 23 (hash::force_frozen),
//                              the reference BM_PageRoot is judged against (run-bench.sh).
// Page-root benchmarks also report, when the kernel grants this process the hardware
// counters (perf_event_open; not in most VMs), insn_per_16lane_compression (instructions
// retired per 16 lane-compressions: a page root is 254 compressions) and insn_per_cycle
// (the measured issue rate). Without counters they are absent and the label says so.
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
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

// One hardware counter of this thread (user space only), or none when not granted.
class Pmu {
 public:
  explicit Pmu(std::uint64_t config) {
    perf_event_attr a{};
    a.size = sizeof a;
    a.type = PERF_TYPE_HARDWARE;
    a.config = config;
    a.disabled = 1;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    fd_ = static_cast<int>(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
  }
  ~Pmu() {
    if (fd_ >= 0) close(fd_);
  }
  Pmu(const Pmu&) = delete;
  Pmu& operator=(const Pmu&) = delete;
  [[nodiscard]] bool ok() const { return fd_ >= 0; }
  void start() {
    if (fd_ >= 0) {
      ioctl(fd_, PERF_EVENT_IOC_RESET, 0);
      ioctl(fd_, PERF_EVENT_IOC_ENABLE, 0);
    }
  }
  std::uint64_t stop() {
    std::uint64_t v = 0;
    if (fd_ >= 0) {
      ioctl(fd_, PERF_EVENT_IOC_DISABLE, 0);
      if (read(fd_, &v, sizeof v) != static_cast<ssize_t>(sizeof v)) v = 0;
    }
    return v;
  }

 private:
  int fd_ = -1;
};

// Compressions per page root (rule 1.2): 127 SHA-256 of 64 bytes, two compressions each.
constexpr double kCompressionsPerPage = 254;

// Labelled with the back end it ran on (`backend`), and ", no PMU counters" where the run
// had no hardware counters; run-bench.sh names a ratio line's back end from the label.
void page_root(benchmark::State& state, const char* backend, std::size_t n = kPages) {
  auto& p = pages();
  Pmu insn(PERF_COUNT_HW_INSTRUCTIONS), cycles(PERF_COUNT_HW_CPU_CYCLES);
  insn.start();
  cycles.start();
  for (auto _ : state) {
    hash::page_content_hashes(p.ptrs.data(), p.out.data(), n);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  const std::uint64_t ni = insn.stop(), nc = cycles.stop();
  per_item(state, n);
  if (insn.ok() && cycles.ok() && ni != 0 && nc != 0) {
    const double c16 = static_cast<double>(state.iterations()) * static_cast<double>(n) * kCompressionsPerPage / 16;
    state.counters["insn_per_16lane_compression"] = static_cast<double>(ni) / c16;
    state.counters["insn_per_cycle"] = static_cast<double>(ni) / static_cast<double>(nc);
  }
  state.SetLabel(std::string(backend) + (state.counters.count("insn_per_cycle") != 0 ? "" : ", no PMU counters"));
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
  page_root(state, hash::impl_name(hash::active()));
}
BENCHMARK(BM_PageRoot);

constexpr std::size_t kHotPages = 64;

void BM_PageRootHot(benchmark::State& state) {
  hash::init();
  page_root(state, hash::impl_name(hash::active()), kHotPages);
}
BENCHMARK(BM_PageRootHot);

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
      page_root(s, hash::impl_name(impl));
      hash::init();
    });
    benchmark::RegisterBenchmark(("BM_MerkleNodes_Impl/" + name).c_str(), [impl](benchmark::State& s) {
      hash::force(impl);
      merkle_nodes(s);
      hash::init();
    });
  }
  if (hash::frozen_supported(hash::Frozen::Avx512V1)) {
    const std::string name = hash::frozen_name(hash::Frozen::Avx512V1);
    benchmark::RegisterBenchmark(("BM_PageRoot_Impl/" + name).c_str(), [](benchmark::State& s) {
      hash::force_frozen(hash::Frozen::Avx512V1);
      page_root(s, hash::frozen_name(hash::Frozen::Avx512V1));
      hash::init();
    });
    benchmark::RegisterBenchmark(("BM_PageRootHot_Impl/" + name).c_str(), [](benchmark::State& s) {
      hash::force_frozen(hash::Frozen::Avx512V1);
      page_root(s, hash::frozen_name(hash::Frozen::Avx512V1), kHotPages);
      hash::init();
    });
  }
  return true;
}();

}  // namespace
