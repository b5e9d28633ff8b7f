// Replays the inputs of the page-table and fault-parity fuzz targets (tests/fuzz/fuzz_pt_ops.cpp,
// tests/fuzz/fuzz_fault_parity.cpp) in the ordinary test build: every crash the fuzzers found
// (tests/fuzz/regressions/<target>/) and every seed (tests/fuzz/corpus/<target>/). The target
// code is compiled in as is; a disagreement aborts with the target's own message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "../test_util.h"
#include "demo.h"

#define LLVMFuzzerTestOneInput LLVMFuzzerTestOneInput_pt_ops
#include "../fuzz/fuzz_pt_ops.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput LLVMFuzzerTestOneInput_fault_parity
#include "../fuzz/fuzz_fault_parity.cpp"
#undef LLVMFuzzerTestOneInput

namespace {

namespace fs = std::filesystem;

// tests/fuzz, passed by tests/sim/meson.build as CAPMEM_FUZZ_DIR.
std::vector<fs::path> inputs(const std::string& sub) {
  const char* d = std::getenv("CAPMEM_FUZZ_DIR");
  std::vector<fs::path> out;
  if (d == nullptr) return out;
  const fs::path dir = fs::path(d) / sub;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

void replay(const std::string& sub, int (*one)(const std::uint8_t*, std::size_t), std::size_t at_least) {
  const auto files = inputs(sub);
  ASSERT_GE(files.size(), at_least) << "no inputs under $CAPMEM_FUZZ_DIR/" << sub;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const auto bytes = capmem::testutil::slurp(f.string());
    EXPECT_EQ(one(bytes.data(), bytes.size()), 0);
  }
}

TEST(FuzzRegressions, PtOpsSeeds) { replay("corpus/pt_ops", fuzz_pt_ops::run_one, 1); }
TEST(FuzzRegressions, FaultParitySeeds) { replay("corpus/fault_parity", fuzz_fault_parity::run_one, 1); }
TEST(FuzzRegressions, FaultParityCrashes) { replay("regressions/fault_parity", fuzz_fault_parity::run_one, 1); }
TEST(FuzzRegressions, PtOpsCrashes) { replay("regressions/pt_ops", fuzz_pt_ops::run_one, 0); }

// Found by fuzz_fault_parity (regressions/fault_parity/run-ops-garbage-width): an op table
// that runs on into bytes that are not ops handed a width of e.g. 0x5c to the engines'
// accessors, which abort; the kernel's ring-3 program runs such an op as 8 bytes wide.
// demo::run_ops now reads the width as the ring-3 program does.
TEST(FuzzRegressions, RunOpsWidthOtherThan1248RunsAs8) {
  using namespace capmem;
  std::vector<std::uint8_t> code(PAGE_SIZE, 0), mem(PAGE_SIZE, 0);
  const auto put = [&](unsigned i, std::uint8_t kind, std::uint8_t width, std::uint32_t addr, std::uint64_t v) {
    demo::Op op{.kind = kind, .width = width, .reserved = 0, .addr = addr, .value = v};
    std::memcpy(&code[i * sizeof op], &op, sizeof op);
  };
  const auto data = static_cast<std::uint32_t>(fault::DATA_BASE);
  put(0, demo::kStore, 3, data + 16, 0x0807060504030201ull);  // 8 bytes stored
  put(1, demo::kLoad, 0, data + 16, 0);                       // 8 bytes loaded
  put(2, demo::kLoad, 0xff, data + PAGE_SIZE - 4, 0);         // 8 bytes: straddles out of mem
  for (auto kind : {hostsim::EngineKind::Mmu, hostsim::EngineKind::Interpreter}) {
    auto c = DataCap::from_bytes(code.data(), code.size());
    auto m = DataCap::from_bytes(mem.data(), mem.size());
    ASSERT_TRUE(c.ok() && m.ok());
    auto t = pt::PageTable::create();
    ASSERT_TRUE(t.ok());
    fault::Run run(
        fault::RunConfig{.table = &t.value(), .code = &c.value(), .mem = &m.value(), .pinned = {}, .gas = 1000});
    hostsim::GuestCpu cpu(kind, run);
    const demo::Progress p = demo::run_ops(cpu.engine());
    EXPECT_EQ(p.ops_done, 2u) << hostsim::engine_name(kind);
    EXPECT_EQ(p.stop, fault::Outcome::GuestFault) << hostsim::engine_name(kind);
    EXPECT_EQ(p.addr.value(), data + PAGE_SIZE) << hostsim::engine_name(kind);
    EXPECT_EQ(p.checksum, 0x0807060504030201ull) << hostsim::engine_name(kind);  // a store folds in 0
  }
}

}  // namespace
