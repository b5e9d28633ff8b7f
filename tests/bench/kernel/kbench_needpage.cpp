// The ring-3 NeedPage round trip (rule 8.2; capmem-kernel-bench, docs/performance.md
// "In-kernel fault benchmarks"): a ring-3 loop loads one word from each page of a thin cap
// whose every page is Missing (its backing decoded from the thin wire form, rule 8.6). Each
// load traps (#PF), the handler answers NeedPage and the run leaves to the host
// (RunExit::NeedPage, guest_run.h); the host resolves the page and enters again at the load,
// which traps once more (the page-in) and completes. Per page: two #PFs, one exit to the host
// and one entry, one resolve. Two ways to resolve, each its own figure:
//   bytes   DataCap::resolve(page, bytes, 4096): the bytes copied once into a fresh frame
//           and hashed there (rule 8.4), the path copy, the install;
//   shared  DataCap::resolve_page(page, PageRef): a page already hashed (a host cache that
//           verified it once) installed by reference: no copy, no SHA-256.
// The peer (a Linux UFFDIO_COPY fault round trip) is measured by run-bench.sh on the host;
// the line here names its figures need_page_round_trip_{bytes,shared}_ns. The best of
// kbench.reps repetitions over 1024 pages (the thin wire form is built in a static buffer).
#include <cstdint>
#include <span>

#include "capmem/codec.h"
#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "guest_run.h"
#include "kbench_format.h"
#include "kernel.h"
#include "ktest.h"
#include "tsc.h"
#include "user.h"

extern "C" const char kbench_progs[], kbench_progs_end[], kbench_read_pages[];

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint32_t kPages = 1024;

using kbench::ns_x10;
using kbench::print_x10;

// kPages distinct, non-zero Loaded pages, flushed (hashed): the host's copy of the bytes.
Result<DataCap> make_full() {
  auto cap = CAPMEM_TRY(DataCap::create(std::uint64_t{kPages} * PAGE_SIZE));
  for (std::uint32_t i = 0; i < kPages; ++i) {
    auto p = CAPMEM_TRY(PageRef::unhashed_copy(nullptr));
    auto* w = reinterpret_cast<std::uint64_t*>(p.mutable_bytes());
    for (std::uint64_t k = 0; k < PAGE_SIZE / 8; ++k) w[k] = (std::uint64_t{i} << 40) | (k << 1) | 1;
    if (auto r = cap.write_page(i, std::move(p)); !r.ok()) return r.status();
  }
  if (auto r = cap.flush(); !r.ok()) return r.status();
  return cap;
}

// The thin copy of `full`: every page Missing(hash), in the backing (encode thin, decode thin).
Result<DataCap> make_thin(const DataCap& full) {
  static std::uint8_t wire[kPages * 48 + 4096];  // a Missing slot: 33 bytes and its 4-byte offset
  const EncodeOptions thin{.thin = true};
  auto n = full.encoded_size(thin);
  if (!n.ok()) return n.status();
  if (n.value() > sizeof wire) return Status::InvalidArgument;
  if (auto e = full.encode(wire, sizeof wire, thin); !e.ok()) return e.status();
  return DataCap::decode(wire, n.value(), DecodeOptions{.thin = true});
}

// One pass: the ring-3 loop over a fresh thin cap, every NeedPage answered at once. Returns
// the TSC cycles of the whole pass (0 on failure).
std::uint64_t round_trips(ktest::Ctx& t, const DataCap& full, bool shared, std::uint64_t* resolve_cycles) {
  auto thin = make_thin(full);
  auto code = full.copy();
  if (!thin.ok() || !code.ok()) {
    log::str("kbench: building the thin cap: ");
    log::str(status_name(thin.ok() ? code.status() : thin.status()));
    log::nl();
    t.fail("building the thin cap (encode thin, decode thin)");
    return 0;
  }
  KEXPECT_EQ(thin->missing_count(), kPages);
  auto table = guest_table(kbench_progs, kbench_progs_end);
  if (!table.ok()) {
    t.fail("setting up the guest page table (kernel half, ring-3 program)");
    return 0;
  }
  std::uint64_t cycles = 0, need = 0, resumed = 0, in_resolve = 0;
  {
    fault::Run run(fault::RunConfig{.table = &table.value(),
                                    .code = &code.value(),
                                    .mem = &thin.value(),
                                    .pinned = {},
                                    .gas = 1ull << 62,
                                    .resolve_missing = true});
    UserRegs regs{};
    regs.rip = fault::JIT_BASE + static_cast<std::uint64_t>(kbench_read_pages - kbench_progs);
    regs.rsp = fault::JIT_BASE + PAGE_SIZE;  // unused
    regs.rdi = fault::DATA_BASE;
    regs.rcx = kPages;
    const std::uint64_t t0 = tsc::read();
    RunResult r = enter_guest(run, regs);
    while (r.exit == RunExit::NeedPage) {
      ++need;
      resumed += r.faults_resumed;
      const fault::PageRequest req = *run.pending();
      const std::uint64_t r0 = tsc::read();
      const SlotView v = full.effective(req.page);
      const auto ok = shared ? thin->resolve_page(req.page, PageRef::ref_existing(v.frame))
                             : thin->resolve(req.page, static_cast<const std::uint8_t*>(v.frame->virt()), PAGE_SIZE);
      in_resolve += tsc::read() - r0;
      if (!ok.ok()) break;
      r = enter_guest(run, r.regs);
    }
    cycles = tsc::read() - t0;
    resumed += r.faults_resumed;
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(need, kPages);
    KEXPECT_EQ(resumed, kPages);  // the re-executed load's page-in
    KEXPECT_EQ(run.counters().page_in, kPages);
  }
  table->teardown();
  KEXPECT_EQ(thin->missing_count(), 0u);
  KEXPECT(thin->root().ok() && full.root().ok() && thin->root().value() == full.root().value());
  *resolve_cycles = in_resolve;
  return t.failed() ? 0 : cycles;
}

KTEST(kbench_need_page_round_trip) {
  const tsc::Calibration clock = tsc::calibrate();
  KASSERT(clock.khz != 0);
  std::uint64_t reps = cmdline_u64("kbench.reps", 3);
  if (reps == 0) reps = 1;
  frames().set_poison(false);  // as kbench_fault_path: not part of the path measured
  {
    auto full = make_full();
    KASSERT(full.ok());
    std::uint64_t best[2] = {~0ull, ~0ull}, best_resolve[2] = {~0ull, ~0ull};
    for (std::uint64_t r = 0; r < reps && !t.failed(); ++r)
      for (int shared = 0; shared < 2; ++shared) {
        std::uint64_t rc = 0;
        const std::uint64_t c = round_trips(t, full.value(), shared != 0, &rc);
        if (c == 0) break;
        if (c < best[shared]) best[shared] = c, best_resolve[shared] = rc;
      }
    if (!t.failed()) {
      // Tenths of a ns per page: round trip and resolve alone, bytes (0) and shared (1).
      const std::uint64_t trip[2] = {ns_x10(best[0], kPages, clock.khz), ns_x10(best[1], kPages, clock.khz)};
      const std::uint64_t res[2] = {ns_x10(best_resolve[0], kPages, clock.khz),
                                    ns_x10(best_resolve[1], kPages, clock.khz)};
      log::str("kbench: NeedPage round trip at ring 3 (");
      log::dec(kPages);
      log::str(" pages, best of ");
      log::dec(reps);
      log::str("; hash back end ");
      log::str(hash::impl_name(hash::active()));
      log::str("): bytes ");
      print_x10(trip[0]);
      log::str(" ns/page (resolve ");
      print_x10(res[0]);
      log::str("), shared ");
      print_x10(trip[1]);
      log::str(" ns/page (resolve_page ");
      print_x10(res[1]);
      log::str(")\n");
      log::str("kbench-needpage: {\"need_page_round_trip_bytes_ns\":");
      print_x10(trip[0]);
      log::str(",\"need_page_round_trip_shared_ns\":");
      print_x10(trip[1]);
      log::str(",\"need_page_resolve_bytes_ns\":");
      print_x10(res[0]);
      log::str(",\"need_page_resolve_shared_ns\":");
      print_x10(res[1]);
      log::str(",\"need_page_hash\":\"");
      log::str(hash::impl_name(hash::active()));
      log::str("\",\"need_page_pages\":");
      log::dec(kPages);
      log::str("}\n");
    }
  }
  frames().set_poison(true);
}

}  // namespace
