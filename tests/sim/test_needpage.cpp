// Section 8 of docs/rules.md on the run side (rules 8.2, 8.3, 8.5): with
// RunConfig::resolve_missing an access to a Missing page answers Outcome::NeedPage, the host
// resolves the page (DataCap::resolve) and runs the same access again, or declines, through
// both hosted engines (the simulated MMU and the interpreter). Every thin cap here is made
// from a full cap by the thin wire encoding (rule 8.6: encode thin, decode thin), and every
// expected value (bytes, gas, root) comes from the same run over the full caps, whose pages
// are all present: the oracle of rule 8.3.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "demo.h"
#include "engines.h"
#include "hostsim/env_hostsim.h"
#include "sim_util.h"

using namespace capmem;
using namespace capmem::fault;
using hostsim::EngineKind;
using hostsim::GuestCpu;

namespace {

using capmem::testutil::cap_of;
using capmem::testutil::hex;
using capmem::testutil::pattern;
using capmem::testutil::val;

constexpr std::uint32_t kData = static_cast<std::uint32_t>(DATA_BASE);
constexpr std::uint32_t kCode = static_cast<std::uint32_t>(CODE_BASE);
constexpr std::uint32_t kCodePages = 8;
constexpr std::uint32_t kMemPages = 16;

// The thin cap of `full` in which the pages of `missing` travel as Missing(hash) (rule 8.6),
// decoded in thin mode: the backing holds those Missing slots.
DataCap thin_of(const DataCap& full, const std::set<std::uint32_t>& missing) {
  return testutil::thin_of(
      full, EncodeOptions{
                .keep = [](void* c,
                           std::uint32_t p) { return static_cast<const std::set<std::uint32_t>*>(c)->count(p) == 0; },
                .keep_ctx = const_cast<std::set<std::uint32_t>*>(&missing)});
}

std::uint64_t le(const std::vector<std::uint8_t>& bytes, std::uint64_t off, unsigned width) {
  std::uint64_t v = 0;
  std::memcpy(&v, bytes.data() + off, width);
  return v;
}

// A small world: 8 code pages, 16 mem pages (4..5 pinned). `thin` caps have the given pages
// Missing; `full` caps are the same bytes with every page present.
struct World {
  std::vector<std::uint8_t> code_bytes = pattern(kCodePages, 1);
  std::vector<std::uint8_t> mem_bytes = pattern(kMemPages, 2);
  PinnedRange pinned{.first_page = 4, .pages = 2};
  DataCap code, mem;
  pt::PageTable table = pt::PageTable::create().release_value();

  World(const std::set<std::uint32_t>& missing_code, const std::set<std::uint32_t>& missing_mem) {
    const DataCap c = cap_of(code_bytes), m = cap_of(mem_bytes);
    code = thin_of(c, missing_code);
    mem = thin_of(m, missing_mem);
    EXPECT_EQ(code.missing_count(), missing_code.size());
    EXPECT_EQ(mem.missing_count(), missing_mem.size());
  }
  ~World() { table.teardown(); }
  fault::Run make_run(std::uint64_t gas = 1'000'000, bool resolve = true) {
    return fault::Run(RunConfig{.table = &table,
                                .code = &code,
                                .mem = &mem,
                                .pinned = std::span(&pinned, 1),
                                .gas = gas,
                                .resolve_missing = resolve});
  }
  // The host's answer to a request: the page's true bytes, verified by resolve (rule 8.4).
  Status resolve(const PageRequest& req) {
    const bool is_code = req.region == Region::Code;
    const std::vector<std::uint8_t>& bytes = is_code ? code_bytes : mem_bytes;
    DataCap& cap = is_code ? code : mem;
    return cap.resolve(req.page, bytes.data() + std::uint64_t{req.page} * PAGE_SIZE, PAGE_SIZE).status();
  }
};

// One access through the engine; NeedPage answered by resolving (counted in *asked) and
// running the same access again.
AccessResult access(GuestCpu& cpu, fault::Run& run, World& w, bool write, std::uint32_t addr, unsigned width,
                    std::uint64_t value, std::vector<PageRequest>* asked = nullptr) {
  for (unsigned round = 0; round < 8; ++round) {
    const AccessResult r = write ? cpu.store(addr, width, value) : cpu.load(addr, width);
    if (r.outcome != Outcome::NeedPage) return r;
    const PageRequest* req = run.pending();
    EXPECT_NE(req, nullptr);
    if (req == nullptr) return r;
    if (asked != nullptr) asked->push_back(*req);
    EXPECT_EQ(w.resolve(*req), Status::Ok);
  }
  ADD_FAILURE() << "an access kept answering NeedPage";
  return {Outcome::NeedPage, VirtAddr{addr}, 0};
}

class NeedPage : public ::testing::TestWithParam<EngineKind> {};

TEST_P(NeedPage, Rule8_2_AccessToMissingPageNamesItAndTakesNothing) {
  World w({}, {2});
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t addr = kData + 2 * 4096 + 24;
  const Hash32 want = *cap_of(w.mem_bytes).effective(2).hash;
  const auto free0 = hostsim::quiescent_frame_stats().free;

  const AccessResult r = cpu.load(addr, 8);
  ASSERT_EQ(r.outcome, Outcome::NeedPage);
  EXPECT_EQ(r.addr, VirtAddr{addr});
  const PageRequest* req = run.pending();
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->region, Region::Mem);
  EXPECT_EQ(req->page, 2u);
  EXPECT_EQ(hex(req->hash), hex(want));
  EXPECT_EQ(req->addr, VirtAddr{addr});
  // Nothing allocated, mapped or charged (rule 8.2).
  EXPECT_EQ(hostsim::quiescent_frame_stats().free, free0);
  EXPECT_FALSE(w.table.translate(VirtAddr{addr}.page_base()).ok());
  EXPECT_EQ(run.gas_used(), 0u);
  EXPECT_EQ(run.counters().page_in, 0u);
  EXPECT_EQ(run.counters().guest_faults, 0u);
  EXPECT_EQ(run.counters().need_page, 1u);

  // The host resolves, the same access runs again and pays what it would have paid.
  ASSERT_EQ(w.resolve(*req), Status::Ok);
  const AccessResult again = cpu.load(addr, 8);
  ASSERT_EQ(again.outcome, Outcome::Retry);
  EXPECT_EQ(again.value, le(w.mem_bytes, 2 * 4096 + 24, 8));
  EXPECT_EQ(run.gas_used(), kGasCosts.page_in);
  EXPECT_EQ(run.counters().page_in, 1u);
  EXPECT_EQ(run.pending(), nullptr);  // the run's next fault ended the request
}

TEST_P(NeedPage, Rule8_1_ResolvingOffMissingIsTheGuestFaultOfToday) {
  World w({3}, {2});
  fault::Run run = w.make_run(1'000'000, false);
  GuestCpu cpu(GetParam(), run);
  EXPECT_EQ(cpu.load(kData + 2 * 4096, 8).outcome, Outcome::GuestFault);
  EXPECT_EQ(cpu.store(kData + 2 * 4096, 8, 1).outcome, Outcome::GuestFault);
  EXPECT_EQ(cpu.load(kCode + 3 * 4096, 8).outcome, Outcome::GuestFault);
  EXPECT_EQ(run.pending(), nullptr);
  EXPECT_EQ(run.counters().need_page, 0u);
  EXPECT_EQ(run.counters().guest_faults, 3u);
  EXPECT_EQ(run.gas_used(), 0u);
}

TEST_P(NeedPage, Rule8_2_DeclineIsTheGuestPageFault) {
  World w({}, {2});
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t addr = kData + 2 * 4096 + 100;
  ASSERT_EQ(cpu.store(addr, 4, 7).outcome, Outcome::NeedPage);
  const Answer a = run.decline();
  EXPECT_EQ(a.outcome, Outcome::GuestFault);
  EXPECT_EQ(a.addr, VirtAddr{addr});
  EXPECT_EQ(run.pending(), nullptr);
  EXPECT_EQ(run.counters().guest_faults, 1u);
  EXPECT_EQ(run.gas_used(), 0u);
  EXPECT_EQ(w.mem.overlay_count(), 0u);
  // The page is still Missing: the next entry asks again.
  EXPECT_EQ(cpu.store(addr, 4, 7).outcome, Outcome::NeedPage);
  ASSERT_NE(run.pending(), nullptr);
  EXPECT_EQ(run.pending()->page, 2u);
}

// One scripted access of the gas and order tests.
struct Step {
  bool write;
  std::uint32_t addr;
  unsigned width;
  std::uint64_t value;
};

struct Outcomes {
  std::vector<AccessResult> results;
  std::uint64_t gas_used;
  Counters counters;
  std::string root;
  std::vector<PageRequest> last_asked;  // the requests of the last step
};

// Runs `steps` (stopping at the first access that does not complete) over a world with
// the given Missing pages, answering every NeedPage. `between(i, w, run)` runs before step
// i with the run paused (checkpoints, early resolves).
Outcomes run_script(EngineKind kind, const std::vector<Step>& steps, std::uint64_t gas,
                    const std::set<std::uint32_t>& missing_code, const std::set<std::uint32_t>& missing_mem,
                    const std::function<void(std::size_t, World&, fault::Run&)>& between = {}) {
  Outcomes o;
  World w(missing_code, missing_mem);
  {
    fault::Run run = w.make_run(gas);
    {
      GuestCpu cpu(kind, run);
      for (std::size_t i = 0; i < steps.size(); ++i) {
        if (between) between(i, w, run);
        const Step& s = steps[i];
        o.last_asked.clear();
        const AccessResult r = access(cpu, run, w, s.write, s.addr, s.width, s.value, &o.last_asked);
        o.results.push_back(r);
        if (r.outcome != Outcome::Retry) break;
      }
    }
    o.gas_used = run.gas_used();
    o.counters = run.counters();
    w.table.teardown();
  }
  EXPECT_TRUE(w.mem.flush().ok());
  o.root = hex(val(w.mem.root()));
  return o;
}

void expect_same(const Outcomes& got, const Outcomes& want, const std::string& what) {
  ASSERT_EQ(got.results.size(), want.results.size()) << what;
  for (std::size_t i = 0; i < got.results.size(); ++i) {
    EXPECT_EQ(got.results[i].outcome, want.results[i].outcome) << what << " step " << i;
    EXPECT_EQ(got.results[i].value, want.results[i].value) << what << " step " << i;
    EXPECT_EQ(got.results[i].addr, want.results[i].addr) << what << " step " << i;
  }
  EXPECT_EQ(got.gas_used, want.gas_used) << what;
  EXPECT_EQ(got.counters.page_in, want.counters.page_in) << what;
  EXPECT_EQ(got.counters.clusters, want.counters.clusters) << what;
  EXPECT_EQ(got.counters.cow, want.counters.cow) << what;
  EXPECT_EQ(got.counters.guest_faults, want.counters.guest_faults) << what;
  EXPECT_EQ(got.root, want.root) << what;
}

// Every kind of charge, each on a page that is Missing in the thin world: a CoW-range read,
// a CoW write, a code cluster, a pinned cluster, a straddling read and store.
std::vector<Step> charge_script() {
  return {
      {false, kData + 1 * 4096 + 8, 8, 0},          // page-in (present)
      {false, kData + 2 * 4096 + 8, 8, 0},          // page-in of a Missing page
      {true, kData + 3 * 4096 + 16, 8, 0x1111},     // CoW of a Missing page
      {false, kCode + 2 * 4096 + 40, 4, 0},         // code cluster, first page Missing
      {false, kData + 5 * 4096 + 4, 2, 0},          // pinned cluster, Missing page
      {false, kData + 7 * 4096 - 4, 8, 0},          // straddles page 6 (present) into 7 (Missing)
      {true, kData + 9 * 4096 - 2, 4, 0x22334455},  // store straddling 8 into 9 (Missing)
      {false, kCode + 5 * 4096, 8, 0},              // code page Missing, cluster charged
      {true, kData + 11 * 4096, 8, 0x3333},         // CoW of a Missing page
  };
}
const std::set<std::uint32_t> kMissCode{2, 5};
const std::set<std::uint32_t> kMissMem{2, 3, 5, 7, 9, 11};

TEST_P(NeedPage, Rule8_3_OutOfGasAtTheSameAccessWithTheSameGasAsAllPresent) {
  const std::vector<Step> steps = charge_script();
  const Outcomes full = run_script(GetParam(), steps, 1'000'000, {}, {});
  ASSERT_EQ(full.results.size(), steps.size());
  unsigned stops_on_missing = 0;
  for (std::uint64_t gas = 0; gas <= full.gas_used; ++gas) {
    const Outcomes present = run_script(GetParam(), steps, gas, {}, {});
    const Outcomes thin = run_script(GetParam(), steps, gas, kMissCode, kMissMem);
    expect_same(thin, present, "gas " + std::to_string(gas));
    if (present.results.back().outcome == Outcome::OutOfGas) {
      EXPECT_EQ(thin.results.back().outcome, Outcome::OutOfGas) << "gas " << gas;  // never NeedPage
      // Gas first (8.3): the page the access could not pay for was never asked for (a
      // straddling access may have asked for its other page, which it paid).
      for (const PageRequest& q : thin.last_asked)
        EXPECT_NE(q.addr.page_base(), thin.results.back().addr.page_base()) << "gas " << gas;
      const std::uint64_t a = thin.results.back().addr.value();
      const bool in_code = a < DATA_BASE;
      const auto page = static_cast<std::uint32_t>((a - (in_code ? CODE_BASE : DATA_BASE)) / PAGE_SIZE);
      if ((in_code ? kMissCode : kMissMem).count(page) != 0) ++stops_on_missing;
    }
  }
  EXPECT_GE(stops_on_missing, 5u);  // the script really stops on Missing pages
}

TEST_P(NeedPage, Rule8_3_OutOfGasTakesPrecedenceOverADeclinedRequest) {
  World w({}, {2});
  fault::Run run = w.make_run(kGasCosts.page_in - 1);
  GuestCpu cpu(GetParam(), run);
  const AccessResult r = cpu.load(kData + 2 * 4096, 8);
  EXPECT_EQ(r.outcome, Outcome::OutOfGas);
  EXPECT_EQ(run.pending(), nullptr);
  EXPECT_EQ(run.counters().need_page, 0u);
  EXPECT_EQ(run.counters().guest_faults, 0u);
  // With resolving off the same access is the guest fault of 4.3, as before.
  World off({}, {2});
  fault::Run run_off = off.make_run(kGasCosts.page_in - 1, false);
  GuestCpu cpu_off(GetParam(), run_off);
  EXPECT_EQ(cpu_off.load(kData + 2 * 4096, 8).outcome, Outcome::GuestFault);
}

TEST_P(NeedPage, Rule4_5_FirstMissingPageOfAClusterChargesOnceAfterResolveTheNextFree) {
  World w({1, 3}, {5});
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  // First access of the code cluster on a Missing page: nothing charged, nothing mapped.
  ASSERT_EQ(cpu.load(kCode + 1 * 4096 + 8, 8).outcome, Outcome::NeedPage);
  EXPECT_EQ(run.counters().clusters, 0u);
  EXPECT_EQ(run.gas_used(), 0u);
  EXPECT_FALSE(w.table.translate(VirtAddr{kCode}).ok());
  ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
  const AccessResult r = cpu.load(kCode + 1 * 4096 + 8, 8);
  ASSERT_EQ(r.outcome, Outcome::Retry);
  EXPECT_EQ(r.value, le(w.code_bytes, 1 * 4096 + 8, 8));
  EXPECT_EQ(run.counters().clusters, 1u);
  EXPECT_EQ(run.counters().cluster_pages, kCodePages - 1);  // page 3 is still Missing: skipped
  EXPECT_EQ(run.gas_used(), kGasCosts.page_in);
  EXPECT_TRUE(w.table.translate(VirtAddr{kCode + 5 * 4096}).ok());
  EXPECT_FALSE(w.table.translate(VirtAddr{kCode + 3 * 4096}).ok());
  // A later Missing page of the charged cluster: NeedPage, then mapped free.
  ASSERT_EQ(cpu.load(kCode + 3 * 4096, 8).outcome, Outcome::NeedPage);
  EXPECT_EQ(run.pending()->region, Region::Code);
  EXPECT_EQ(run.pending()->page, 3u);
  ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
  const AccessResult r3 = cpu.load(kCode + 3 * 4096, 8);
  ASSERT_EQ(r3.outcome, Outcome::Retry);
  EXPECT_EQ(r3.value, le(w.code_bytes, 3 * 4096, 8));
  EXPECT_EQ(run.counters().clusters, 1u);
  EXPECT_EQ(run.gas_used(), kGasCosts.page_in);
  // The pinned range (mem pages 4..5): page 4 charges the cluster, Missing page 5 is free.
  ASSERT_EQ(cpu.load(kData + 4 * 4096, 8).outcome, Outcome::Retry);
  EXPECT_EQ(run.gas_used(), 2 * kGasCosts.page_in);
  EXPECT_FALSE(w.table.translate(VirtAddr{kData + 5 * 4096}).ok());
  ASSERT_EQ(cpu.load(kData + 5 * 4096 + 16, 8).outcome, Outcome::NeedPage);
  EXPECT_EQ(run.pending()->region, Region::Mem);
  ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
  const AccessResult r5 = cpu.load(kData + 5 * 4096 + 16, 8);
  ASSERT_EQ(r5.outcome, Outcome::Retry);
  EXPECT_EQ(r5.value, le(w.mem_bytes, 5 * 4096 + 16, 8));
  EXPECT_EQ(run.gas_used(), 2 * kGasCosts.page_in);
  EXPECT_EQ(run.counters().clusters, 2u);
  EXPECT_EQ(run.counters().need_page, 3u);
}

TEST_P(NeedPage, StraddlingAccessAsksBeforeTouchingEitherPage) {
  {
    // Into a Missing second page: the first is paged in, the access waits for the second.
    World w({}, {3});
    fault::Run run = w.make_run();
    GuestCpu cpu(GetParam(), run);
    const std::uint32_t addr = kData + 3 * 4096 - 4;
    ASSERT_EQ(cpu.load(addr, 8).outcome, Outcome::NeedPage);
    EXPECT_EQ(run.pending()->page, 3u);
    EXPECT_EQ(run.pending()->addr, VirtAddr{kData + 3 * 4096});  // CR2: the second page's first byte
    ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
    const AccessResult r = cpu.load(addr, 8);
    ASSERT_EQ(r.outcome, Outcome::Retry);
    EXPECT_EQ(r.value, le(w.mem_bytes, 3 * 4096 - 4, 8));
    EXPECT_EQ(run.gas_used(), 2 * kGasCosts.page_in);  // as with both pages present
  }
  {
    // A store straddling into a Missing page writes no byte before the page is resolved.
    World w({}, {3});
    fault::Run run = w.make_run();
    GuestCpu cpu(GetParam(), run);
    const std::uint32_t addr = kData + 3 * 4096 - 2;
    ASSERT_EQ(cpu.store(addr, 4, 0xa1b2c3d4).outcome, Outcome::NeedPage);
    std::uint8_t tail[2];
    ASSERT_TRUE(w.mem.read(3 * 4096 - 2, tail, 2).ok());
    EXPECT_EQ(tail[0], w.mem_bytes[3 * 4096 - 2]);
    EXPECT_EQ(tail[1], w.mem_bytes[3 * 4096 - 1]);
    ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
    ASSERT_EQ(cpu.store(addr, 4, 0xa1b2c3d4).outcome, Outcome::Retry);
    EXPECT_EQ(cpu.load(addr, 4).value, 0xa1b2c3d4u);
    EXPECT_EQ(run.gas_used(), 2 * kGasCosts.cow);
    EXPECT_EQ(run.counters().cow, 2u);
  }
  {
    // Missing first page: nothing of the second is touched either.
    World w({}, {2});
    fault::Run run = w.make_run();
    GuestCpu cpu(GetParam(), run);
    ASSERT_EQ(cpu.load(kData + 3 * 4096 - 4, 8).outcome, Outcome::NeedPage);
    EXPECT_EQ(run.pending()->page, 2u);
    EXPECT_EQ(run.gas_used(), 0u);
    EXPECT_FALSE(w.table.translate(VirtAddr{kData + 3 * 4096}).ok());
  }
}

TEST_P(NeedPage, WriteToMissingCowPageCopiesTheResolvedPage) {
  World w({}, {6});
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t addr = kData + 6 * 4096 + 100;
  ASSERT_EQ(cpu.store(addr, 8, 0x0102030405060708ull).outcome, Outcome::NeedPage);
  EXPECT_EQ(w.mem.overlay_count(), 0u);
  EXPECT_EQ(run.counters().cow, 0u);
  EXPECT_EQ(run.gas_used(), 0u);
  ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
  ASSERT_EQ(cpu.store(addr, 8, 0x0102030405060708ull).outcome, Outcome::Retry);
  EXPECT_EQ(run.counters().cow, 1u);
  EXPECT_EQ(run.gas_used(), kGasCosts.cow);
  EXPECT_EQ(w.mem.overlay_count(), 1u);
  // The copy holds the resolved page's bytes around the store: the root is the model's.
  std::vector<std::uint8_t> model = w.mem_bytes;
  const std::uint64_t v = 0x0102030405060708ull;
  std::memcpy(model.data() + 6 * 4096 + 100, &v, 8);
  w.table.teardown();
  ASSERT_TRUE(w.mem.flush().ok());
  EXPECT_EQ(hex(val(w.mem.root())), hex(val(cap_of(model).root())));
}

TEST_P(NeedPage, Rule8_3_AnyResolveOrderAndCheckpointsGiveTheAllPresentResult) {
  // A longer random script over every region; the all-present run is the oracle.
  std::mt19937 rng(22);
  std::vector<Step> steps;
  for (int i = 0; i < 160; ++i) {
    const unsigned widths[4] = {1, 2, 4, 8};
    const unsigned width = widths[rng() % 4];
    const unsigned kind = rng() % 10;
    std::uint32_t off = rng() % 4096;
    if (rng() % 6 == 0) off = 4096 - 2;  // straddles
    if (kind < 2) {
      const std::uint32_t page = rng() % (kCodePages - 1);
      steps.push_back({false, kCode + page * 4096 + off, width, 0});
    } else if (kind < 3) {
      steps.push_back({false, kData + 4 * 4096 + static_cast<std::uint32_t>(rng() % (8192 - 8)), width, 0});  // pinned
    } else {
      std::uint32_t page = rng() % (kMemPages - 1);
      while (page == 3 || page == 4 || page == 5) page = rng() % (kMemPages - 1);  // no pinned store
      steps.push_back({kind >= 6, kData + page * 4096 + off, width, rng()});
    }
  }
  const Outcomes want = run_script(GetParam(), steps, 1'000'000, {}, {});
  ASSERT_EQ(want.results.size(), steps.size());
  for (unsigned trial = 0; trial < 12; ++trial) {
    std::set<std::uint32_t> miss_code, miss_mem;
    for (std::uint32_t p = 0; p < kCodePages; ++p)
      if (rng() % 2) miss_code.insert(p);
    for (std::uint32_t p = 0; p < kMemPages; ++p)
      if (rng() % 3) miss_mem.insert(p);
    // Between accesses: resolve Missing pages early in a random order, flush, copy.
    std::vector<std::pair<Region, std::uint32_t>> order;
    for (std::uint32_t p : miss_code) order.emplace_back(Region::Code, p);
    for (std::uint32_t p : miss_mem) order.emplace_back(Region::Mem, p);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<DataCap> copies;
    const unsigned seed = rng();
    unsigned checkpoints = 0;
    const auto between = [&](std::size_t, World& w, fault::Run&) {
      std::mt19937 r(seed + checkpoints++);
      const unsigned what = r() % 8;
      if (what == 0 && !order.empty()) {
        const auto [region, page] = order.back();
        order.pop_back();
        const PageRequest req{.region = region, .page = page, .hash = {}, .addr = VirtAddr{}};
        const Status st = w.resolve(req);
        EXPECT_TRUE(st == Status::Ok || st == Status::NotMissing) << status_name(st);  // asked earlier
      } else if (what == 1) {
        EXPECT_TRUE(w.mem.flush().ok());
      } else if (what == 2) {
        copies.push_back(val(w.mem.copy()));
      }
    };
    const Outcomes got = run_script(GetParam(), steps, 1'000'000, miss_code, miss_mem, between);
    expect_same(got, want, "trial " + std::to_string(trial));
    EXPECT_GT(got.counters.need_page, 0u);
  }
}

TEST_P(NeedPage, Rule8_5_ARequestNeverAnsweredHoldsNothingButThePausedRun) {
  const auto free0 = hostsim::quiescent_frame_stats().free;
  {
    World w({1}, {2, 9});
    fault::Run run = w.make_run();
    GuestCpu cpu(GetParam(), run);
    ASSERT_EQ(cpu.store(kData + 1 * 4096, 8, 5).outcome, Outcome::Retry);  // a copy, tables
    ASSERT_EQ(cpu.load(kCode, 8).outcome, Outcome::Retry);                 // a cluster
    const auto before = hostsim::quiescent_frame_stats().free;
    ASSERT_EQ(cpu.store(kData + 9 * 4096, 8, 5).outcome, Outcome::NeedPage);
    EXPECT_EQ(hostsim::quiescent_frame_stats().free, before);
    // The host never answers: the run is dropped with its request pending.
  }
  EXPECT_EQ(hostsim::quiescent_frame_stats().free, free0);
}

TEST_P(NeedPage, Rule8_4_HostileAnswerChangesNothingAndTheNextEntryAsksAgain) {
  World w({}, {2});
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  const std::uint32_t addr = kData + 2 * 4096 + 8;
  ASSERT_EQ(cpu.load(addr, 8).outcome, Outcome::NeedPage);
  const PageRequest req = *run.pending();
  const std::string root0 = hex(val(w.mem.root()));
  const auto free0 = hostsim::quiescent_frame_stats().free;
  // Another page's bytes, a flipped byte, a short page.
  std::vector<std::uint8_t> flipped(w.mem_bytes.begin() + 2 * 4096, w.mem_bytes.begin() + 3 * 4096);
  flipped[77] ^= 1;
  EXPECT_EQ(w.mem.resolve(2, w.mem_bytes.data() + 1 * 4096, PAGE_SIZE).status(), Status::HashMismatch);
  EXPECT_EQ(w.mem.resolve(2, flipped.data(), PAGE_SIZE).status(), Status::HashMismatch);
  EXPECT_EQ(w.mem.resolve(2, w.mem_bytes.data() + 2 * 4096, PAGE_SIZE - 1).status(), Status::BadLength);
  EXPECT_EQ(hex(val(w.mem.root())), root0);
  EXPECT_EQ(w.mem.missing_count(), 1u);
  EXPECT_EQ(hostsim::quiescent_frame_stats().free, free0);
  // The next entry answers NeedPage again, for the same page.
  ASSERT_EQ(cpu.load(addr, 8).outcome, Outcome::NeedPage);
  EXPECT_EQ(run.pending()->page, req.page);
  EXPECT_EQ(hex(run.pending()->hash), hex(req.hash));
  EXPECT_EQ(run.gas_used(), 0u);
  ASSERT_EQ(w.resolve(*run.pending()), Status::Ok);
  EXPECT_EQ(cpu.load(addr, 8).value, le(w.mem_bytes, 2 * 4096 + 8, 8));
}

TEST_P(NeedPage, ResolveWhileTheRunExecutesIsBusy) {
  World w({}, {2});
  fault::Run run = w.make_run();
  GuestCpu cpu(GetParam(), run);
  ASSERT_EQ(cpu.load(kData + 2 * 4096, 8).outcome, Outcome::NeedPage);
  {
    const fault::Run::Executing executing(run);
    EXPECT_EQ(w.resolve(*run.pending()), Status::Busy);  // rule 8.4: a checkpoint-class call
  }
  EXPECT_EQ(w.resolve(*run.pending()), Status::Ok);
}

// --- The demo, thin (rule 8.3: root, gas and counters of the all-present demo) -----------

// Independently of the run: the distinct Missing pages the demo's op table touches, read
// from the full image (the op fields in code, then each op's 1 or 2 pages).
std::uint64_t expected_need_page(const demo::ThinOptions& opt) {
  demo::Image full = val(demo::build());
  std::set<std::pair<int, std::uint32_t>> touched;
  const auto touch = [&](std::uint64_t a) {
    const bool code = a < DATA_BASE;
    const auto page = static_cast<std::uint32_t>((a - (code ? CODE_BASE : DATA_BASE)) / PAGE_SIZE);
    if (!(code ? opt.code : opt.mem) || page < opt.keep_first) return;
    const DataCap& cap = code ? full.code : full.mem;
    if (cap.effective(page).kind == SlotKind::Loaded) touched.insert({code ? 0 : 1, page});
  };
  for (std::uint32_t i = 0;; ++i) {
    demo::Op op;
    EXPECT_TRUE(full.code.read(std::uint64_t{i} * sizeof op, reinterpret_cast<std::uint8_t*>(&op), sizeof op).ok());
    touch(CODE_BASE + std::uint64_t{i} * sizeof op);
    if (op.kind == demo::kEnd) break;
    const unsigned width = op.width == 1 || op.width == 2 || op.width == 4 ? op.width : 8;
    touch(op.addr);
    touch(std::uint64_t{op.addr} + width - 1);
  }
  return touched.size();
}

TEST_P(NeedPage, DemoThinEqualsDemoPresent) {
  const hostsim::DemoReport present = hostsim::run_demo(GetParam(), demo::kDefaultGas);
  ASSERT_TRUE(present.ok) << present.error;
  ASSERT_EQ(present.progress.stop, Outcome::Retry);  // the op table ran to its end
  for (const demo::ThinOptions opt : {demo::ThinOptions{}, demo::ThinOptions{.mem = true, .code = true},
                                      demo::ThinOptions{.mem = true, .code = true, .keep_first = 100}}) {
    const std::string what = std::string(opt.code ? "code+mem" : "mem") + " keep " + std::to_string(opt.keep_first);
    const hostsim::DemoReport thin =
        hostsim::run_demo(GetParam(), demo::kDefaultGas, hostsim::DemoOptions{.thin = true, .thin_opt = opt});
    ASSERT_TRUE(thin.ok) << thin.error;
    EXPECT_EQ(thin.resolve_error, Status::Ok) << what;
    EXPECT_EQ(thin.progress.stop, present.progress.stop) << what;
    EXPECT_EQ(thin.progress.ops_done, present.progress.ops_done) << what;
    EXPECT_EQ(thin.progress.checksum, present.progress.checksum) << what;
    EXPECT_EQ(hex(thin.root), hex(present.root)) << what;
    EXPECT_EQ(thin.gas_used, present.gas_used) << what;
    EXPECT_EQ(thin.counters.page_in, present.counters.page_in) << what;
    EXPECT_EQ(thin.counters.clusters, present.counters.clusters) << what;
    EXPECT_EQ(thin.counters.cow, present.counters.cow) << what;
    EXPECT_EQ(thin.counters.recopies, present.counters.recopies) << what;
    EXPECT_EQ(thin.counters.repages, present.counters.repages) << what;
    EXPECT_EQ(thin.counters.guest_faults, present.counters.guest_faults) << what;
    const std::uint64_t n = expected_need_page(opt);
    EXPECT_GT(n, 0u) << what;
    EXPECT_EQ(thin.counters.need_page, n) << what;
    EXPECT_EQ(thin.line, present.line + " need_page=" + std::to_string(n)) << what;
  }
}

TEST_P(NeedPage, DemoThinOutOfGasEqualsDemoPresent) {
  for (const std::uint64_t gas : {std::uint64_t{0}, std::uint64_t{19}, std::uint64_t{1000}, std::uint64_t{7777}}) {
    const hostsim::DemoReport present = hostsim::run_demo(GetParam(), gas);
    const hostsim::DemoReport thin =
        hostsim::run_demo(GetParam(), gas, hostsim::DemoOptions{.thin = true, .thin_opt = {.mem = true, .code = true}});
    ASSERT_TRUE(present.ok && thin.ok);
    EXPECT_EQ(present.progress.stop, Outcome::OutOfGas) << gas;
    EXPECT_EQ(thin.progress.stop, Outcome::OutOfGas) << gas;
    EXPECT_EQ(thin.progress.addr, present.progress.addr) << gas;
    EXPECT_EQ(thin.progress.ops_done, present.progress.ops_done) << gas;
    EXPECT_EQ(thin.gas_used, present.gas_used) << gas;
    EXPECT_EQ(hex(thin.root), hex(present.root)) << gas;
  }
}

// The store the kernel takes as a boot module: a pack of the demo's pages (rule 8.7).
TEST_P(NeedPage, DemoThinFromAPackEqualsDemoPresent) {
  std::vector<std::uint8_t> bytes;
  const ByteSink sink = [](void* ctx, const std::uint8_t* data, std::size_t len) {
    auto* v = static_cast<std::vector<std::uint8_t>*>(ctx);
    v->insert(v->end(), data, data + len);
    return Status::Ok;
  };
  ASSERT_TRUE(hostsim::write_demo_pack(sink, &bytes).ok());
  const store::Pack pack = val(store::Pack::parse(bytes.data(), bytes.size()));
  const demo::ThinOptions opt{.mem = true, .code = true};
  const hostsim::DemoReport present = hostsim::run_demo(GetParam(), demo::kDefaultGas);
  const hostsim::DemoReport thin = hostsim::run_demo(
      GetParam(), demo::kDefaultGas, hostsim::DemoOptions{.thin = true, .thin_opt = opt, .pack = &pack});
  ASSERT_TRUE(present.ok && thin.ok) << thin.error;
  EXPECT_EQ(thin.resolve_error, Status::Ok);
  EXPECT_EQ(thin.line, present.line + " need_page=" + std::to_string(expected_need_page(opt)));

  // A pack whose op-table page was changed: resolve refuses it (HashMismatch), the host
  // declines, and the run ends with the guest page fault at the first op (nothing charged).
  const demo::Image full = val(demo::build());
  const store::PackPage at = val(pack.find(*full.code.effective(0).hash));
  bytes[at.offset + 5] ^= 0x40;
  const store::Pack bad = val(store::Pack::parse(bytes.data(), bytes.size()));
  const hostsim::DemoReport refused = hostsim::run_demo(
      GetParam(), demo::kDefaultGas, hostsim::DemoOptions{.thin = true, .thin_opt = opt, .pack = &bad});
  ASSERT_TRUE(refused.ok) << refused.error;
  EXPECT_EQ(refused.resolve_error, Status::HashMismatch);
  EXPECT_EQ(refused.progress.stop, Outcome::GuestFault);
  EXPECT_EQ(refused.progress.addr, VirtAddr{kCode});
  EXPECT_EQ(refused.progress.ops_done, 0u);
  EXPECT_EQ(refused.gas_used, 0u);
  EXPECT_EQ(refused.counters.guest_faults, 1u);
}

TEST_P(NeedPage, DemoHostThatCannotAnswerDeclines) {
  demo::Image image = val(demo::build());
  ASSERT_TRUE(demo::make_thin(image, {}).ok());
  auto table = val(pt::PageTable::create());
  fault::Run run(RunConfig{.table = &table,
                           .code = &image.code,
                           .mem = &image.mem,
                           .pinned = std::span<const PinnedRange>(&demo::kPinned, 1),
                           .gas = demo::kDefaultGas,
                           .resolve_missing = true});
  demo::Progress p{};
  Status error = Status::Ok;
  {
    GuestCpu cpu(GetParam(), run);
    const demo::PageStore empty{.ctx = nullptr,
                                .find = [](void*, const Hash32&, ByteSource*) { return Status::NotInStore; }};
    demo::ThinHost host{.inner = cpu.engine(), .run = &run, .image = &image, .store = empty};
    p = demo::run_ops(host.engine());
    error = host.error;
    EXPECT_EQ(host.resolved, 0u);
  }
  EXPECT_EQ(p.stop, Outcome::GuestFault);
  EXPECT_EQ(error, Status::NotInStore);
  EXPECT_EQ(run.counters().guest_faults, 1u);
  EXPECT_EQ(run.counters().need_page, 1u);
  table.teardown();
}

INSTANTIATE_TEST_SUITE_P(Engines, NeedPage, ::testing::Values(EngineKind::Mmu, EngineKind::Interpreter),
                         [](const auto& i) { return std::string(i.param == EngineKind::Mmu ? "Mmu" : "Interp"); });

}  // namespace
