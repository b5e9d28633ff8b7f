// Rule 8.4 under a run (both hosted engines): resolve is a checkpoint (rule 3.8), Busy while
// the run executes; with the run paused, a resolved page is what the guest then reads, its
// stores land in the cap, and the root equals the root of the all-present cap. Resolving is
// off here (RunConfig default): an access to a Missing page is the guest fault of 4.3.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "engines.h"
#include "hostsim/env_hostsim.h"
#include "sim_util.h"

using namespace capmem;
using namespace capmem::fault;
using hostsim::EngineKind;
using hostsim::GuestCpu;

namespace {

using capmem::testutil::cap_of;
using capmem::testutil::pattern;
using capmem::testutil::thin_of;
using capmem::testutil::u64_at;
using capmem::testutil::val;

constexpr std::uint32_t kData = static_cast<std::uint32_t>(DATA_BASE);
constexpr std::uint32_t kPages = 16;

struct World {
  std::vector<std::uint8_t> code_bytes = pattern(8, 1);
  std::vector<std::uint8_t> mem_bytes = pattern(kPages, 2);
  DataCap code = cap_of(code_bytes);
  DataCap full = cap_of(mem_bytes);
  DataCap mem = thin_of(full);
  pt::PageTable table = pt::PageTable::create().release_value();
  RunConfig config() { return RunConfig{.table = &table, .code = &code, .mem = &mem, .pinned = {}, .gas = 1'000'000}; }
  ByteSource page(std::uint32_t p) const { return ByteSource::memory(mem_bytes.data() + p * PAGE_SIZE, PAGE_SIZE); }
};

class Resolve : public ::testing::TestWithParam<EngineKind> {};

}  // namespace

TEST_P(Resolve, Rule8_4_BusyWhileExecutingThenTheGuestReadsTheResolvedPage) {
  World w;
  fault::Run run(w.config());
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t a = kData + 5 * 4096 + 24;
  EXPECT_EQ(cpu.load(a, 8).outcome, Outcome::GuestFault);  // Missing, resolving off (4.3)
  const void* backing = w.mem.backing_id();
  const auto in_use = hostsim::quiescent_frame_stats().in_use;
  {
    const fault::Run::Executing executing(run);
    EXPECT_EQ(w.mem.resolve(5, w.page(5)).status(), Status::Busy);
    const DataCap::ResolveItem it{.page = 5, .src = w.page(5)};
    EXPECT_EQ(w.mem.resolve_many(&it, 1).status(), Status::Busy);
    EXPECT_EQ(w.mem.resolve_page(5, PageRef::ref_existing(w.full.effective(5).frame)).status(), Status::Busy);
  }
  EXPECT_EQ(w.mem.backing_id(), backing);
  EXPECT_EQ(w.mem.effective(5).kind, SlotKind::Missing);
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, in_use);

  ASSERT_TRUE(w.mem.resolve(5, w.page(5)).ok());  // paused: the checkpoint goes through
  std::uint64_t want;
  std::memcpy(&want, &w.mem_bytes[a - kData], 8);
  const auto read = cpu.load(a, 8);
  ASSERT_EQ(read.outcome, Outcome::Retry);
  EXPECT_EQ(read.value, want);
  ASSERT_EQ(cpu.store(a, 8, 0x5555).outcome, Outcome::Retry);  // copy-on-write of the resolved page
  EXPECT_EQ(u64_at(w.mem, a - kData), 0x5555u);

  // Resolve every other page (page 6 from a host cache by reference), flush: the root of the
  // all-present cap with the store.
  ASSERT_TRUE(w.mem.resolve_page(6, PageRef::ref_existing(w.full.effective(6).frame)).ok());
  for (std::uint32_t p = 0; p < kPages; ++p)
    if (p != 5 && p != 6) {
      ASSERT_TRUE(w.mem.resolve(p, w.page(p)).ok()) << p;
    }
  EXPECT_EQ(w.mem.missing_count(), 0u);
  ASSERT_TRUE(w.mem.flush().ok());
  auto expect = w.mem_bytes;
  const std::uint64_t v = 0x5555;
  std::memcpy(&expect[a - kData], &v, 8);
  EXPECT_EQ(w.mem.root().value(), cap_of(expect).root().value());
}

// A page the run had mapped read-only stays as it is when a neighbour resolves; a page
// resolved in the overlay (write_slot Missing) is read through the refreshed leaf.
TEST_P(Resolve, Rule8_4_ResolvingUnderAPausedRunKeepsItsOtherLeaves) {
  World w;
  ASSERT_TRUE(w.mem.resolve(2, w.page(2)).ok());
  fault::Run run(w.config());
  GuestCpu cpu(GetParam(), run);
  ASSERT_EQ(cpu.load(kData + 2 * 4096, 8).outcome, Outcome::Retry);
  const auto leaf2 = w.table.translate(VirtAddr{kData + 2 * 4096}).value().pa;
  ASSERT_TRUE(w.mem.resolve(3, w.page(3)).ok());
  EXPECT_EQ(w.table.translate(VirtAddr{kData + 2 * 4096}).value().pa, leaf2);
  EXPECT_EQ(cpu.load(kData + 3 * 4096, 8).value, u64_at(w.full, 3 * 4096));

  // Page 2 replaced by Missing(root of page 7) in the overlay: its leaf goes (a guest fault),
  // and comes back as page 7's bytes once resolved.
  ASSERT_TRUE(w.mem.write_slot(2, val(Slot::missing(*w.full.effective(7).hash))).ok());
  EXPECT_EQ(cpu.load(kData + 2 * 4096, 8).outcome, Outcome::GuestFault);
  EXPECT_EQ(w.mem.resolve(2, w.page(2)).status(), Status::HashMismatch);
  ASSERT_TRUE(w.mem.resolve(2, w.page(7)).ok());
  const auto r = cpu.load(kData + 2 * 4096 + 8, 8);
  ASSERT_EQ(r.outcome, Outcome::Retry);
  EXPECT_EQ(r.value, u64_at(w.full, 7 * 4096 + 8));
}

INSTANTIATE_TEST_SUITE_P(Engines, Resolve, ::testing::Values(EngineKind::Mmu, EngineKind::Interpreter),
                         [](const auto& i) { return std::string(i.param == EngineKind::Mmu ? "Mmu" : "Interp"); });
