// In-kernel fault benchmarks (capmem-kernel-bench; docs/performance.md "In-kernel fault
// benchmarks"). Real ring-3 loops take real #PFs that the IDT's vector 14 hands to
// fault::Run::handle_page_fault (guest_run.h); everything is timed with the TSC, calibrated
// at start (tsc.h).
//
// The image is the kernel image with this file as its only in-kernel case: the ktest
// runner prints `1 passed, 0 failed`, so qemu-run.sh's verdict covers the bench too (every
// phase checks its fault counters). Command line (`-append`): kbench.pages=N (default
// 16384, rounded down to a multiple of 512, at most 64512), kbench.reps=R (default 3).
//
// Per repetition, over N pages of a cap whose backing holds N distinct Loaded pages:
//   read   one load per page of the CoW range: N page-in faults (read-only mapping of the
//          backing's frame; this handler has no fault-around in CoW ranges);
//   cow    one store per page, every page already mapped read-only: N CoW write faults
//          (trap, handler copies 4 KiB, maps it writable, publishes it, iretq, the store
//          is retried);
//   again  the same stores once more: no fault (the loop and TLB-miss cost alone);
//   2mib   one load per page of the code range (read-only, materialized by 2 MiB cluster):
//          one fault per 512 pages, timed per cluster (fault + 512 loads);
//   flush  DataCap::flush() of the N written pages (page hashes + tree update), per page.
// The JSON line carries the best repetition of each figure.
#include <cstdint>
#include <utility>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "guest_run.h"
#include "kbench_format.h"
#include "kernel.h"
#include "ktest.h"
#include "tsc.h"
#include "user.h"

extern "C" const char kbench_progs[], kbench_progs_end[], kbench_read_pages[], kbench_write_pages[];

namespace {
using namespace capmem;
using namespace capmem::kernel;

// ---- Formatting (kbench_format.h) -------------------------------------------------------
using kbench::ns_x10;
using kbench::print_x10;

// ---- Frames -----------------------------------------------------------------------------
// Write once to every free frame (and give them all back): under KVM the first guest touch
// of a page costs an EPT violation on the host, which is no part of capmem's fault path.
// The allocated frames are threaded through their own first word (no heap).
std::uint64_t touch_free_frames() {
  FrameDesc* head = nullptr;
  std::uint64_t n = 0;
  while (FrameDesc* d = frames().alloc(FrameKind::Table)) {
    *static_cast<FrameDesc**>(d->virt()) = head;
    head = d;
    ++n;
  }
  while (head != nullptr) {
    FrameDesc* next = *static_cast<FrameDesc**>(head->virt());
    frames().free(head);
    head = next;
  }
  return n;
}

// ---- One repetition ------------------------------------------------------------------------
enum Phase : unsigned { kRead, kCow, kAgain, kCluster, kTeardown, kFlush, kPhases };
const char* const kPhaseName[kPhases] = {"read fault",    "cow write fault", "rewrite, no fault",
                                         "2 MiB cluster", "teardown",        "flush"};

struct Rep {
  std::uint64_t cycles[kPhases] = {};
  std::uint64_t handler[kPhases] = {};  // cycles inside handle_page_fault (timed reps only)
};

constexpr std::uint64_t kStoreValue = 0x5a5a5a5a00000000ull;

// One ring-3 pass of `prog` over `pages` pages from `base` on `run` (guest_run.h); returns
// TSC cycles, 0 on failure. `handler`: the cycles spent in the fault handler when `timed`.
std::uint64_t pass(ktest::Ctx& t, fault::Run& run, bool timed, const char* prog, std::uint64_t base,
                   std::uint64_t pages, std::uint64_t expect_faults, std::uint64_t* handler) {
  UserRegs regs{};
  regs.rip = fault::JIT_BASE + static_cast<std::uint64_t>(prog - kbench_progs);
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;  // unused
  regs.rdi = base;
  regs.rcx = pages;
  regs.rdx = kStoreValue | base;
  std::uint64_t handler_cycles = 0;
  const std::uint64_t t0 = tsc::read();
  const RunResult r = enter_guest(run, regs, timed ? &handler_cycles : nullptr);
  const std::uint64_t cycles = tsc::read() - t0;
  *handler = handler_cycles;
  if (r.exit != RunExit::ExitGate) {
    log::str("kbench: the ring-3 pass ended early: exit ");
    log::dec(static_cast<unsigned>(r.exit));
    log::str(" code ");
    log::dec(r.code);
    log::str(" cr2 0x");
    log::hex(r.cr2);
    log::nl();
    t.fail("ring-3 pass did not reach the exit gate");
    return 0;
  }
  if (r.faults_resumed != expect_faults) {
    t.fail_eq("faults resumed == expected", r.faults_resumed, expect_faults, __FILE__, __LINE__);
    return 0;
  }
  return cycles;
}

bool run_rep(ktest::Ctx& t, const DataCap& base, std::uint32_t n, bool timed, Rep& out) {
  auto mem = base.copy();
  auto code = base.copy();
  if (!mem.ok() || !code.ok()) {
    t.fail("DataCap::copy");
    return false;
  }
  // The four steps of guest_run.h, the run entered once per pass.
  auto table = guest_table(kbench_progs, kbench_progs_end);
  if (!table.ok()) {
    t.fail("setting up the guest page table (kernel half, ring-3 program)");
    return false;
  }
  bool ok = true;
  {
    fault::Run run(fault::RunConfig{
        .table = &table.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1ull << 62});
    const std::uint64_t clusters = n / fault::PAGES_PER_CLUSTER;
    out.cycles[kRead] = pass(t, run, timed, kbench_read_pages, fault::DATA_BASE, n, n, &out.handler[kRead]);
    out.cycles[kCow] = pass(t, run, timed, kbench_write_pages, fault::DATA_BASE, n, n, &out.handler[kCow]);
    out.cycles[kAgain] = pass(t, run, timed, kbench_write_pages, fault::DATA_BASE, n, 0, &out.handler[kAgain]);
    out.cycles[kCluster] =
        pass(t, run, timed, kbench_read_pages, fault::CODE_BASE, n, clusters, &out.handler[kCluster]);
    const fault::Counters& c = run.counters();
    KEXPECT_EQ(c.page_in, n);
    KEXPECT_EQ(c.cow, n);
    KEXPECT_EQ(c.clusters, clusters);
    KEXPECT_EQ(c.spurious, 0);
    KEXPECT_EQ(mem->overlay_count(), n);
    ok = !t.failed();
  }
  std::uint64_t t0 = tsc::read();
  table->teardown();
  out.cycles[kTeardown] = tsc::read() - t0;
  t0 = tsc::read();
  const bool flushed = mem->flush().ok();
  out.cycles[kFlush] = tsc::read() - t0;
  KEXPECT(flushed);
  KEXPECT_EQ(mem->overlay_count(), 0);
  // The last page now holds the store's value in its first word, the rest of the source.
  std::uint8_t b[16] = {};
  KEXPECT(mem->read(std::uint64_t{n - 1} * PAGE_SIZE, b, 16).ok());
  std::uint64_t w0 = 0, w1 = 0;
  for (int i = 7; i >= 0; --i) w0 = (w0 << 8) | b[i], w1 = (w1 << 8) | b[8 + i];
  KEXPECT_EQ(w0, kStoreValue | fault::DATA_BASE);
  KEXPECT_EQ(w1, (std::uint64_t{n - 1} << 32) | 1);
  return ok && !t.failed();
}

// Base cap: n distinct, non-zero Loaded pages (word k of page i = (i << 32) | k), flushed.
Result<DataCap> make_base(std::uint32_t n) {
  auto cap = CAPMEM_TRY(DataCap::create(std::uint64_t{n} * PAGE_SIZE));
  for (std::uint32_t i = 0; i < n; ++i) {
    auto p = CAPMEM_TRY(PageRef::unhashed_copy(nullptr));
    auto* w = reinterpret_cast<std::uint64_t*>(p.mutable_bytes());
    for (std::uint64_t k = 0; k < PAGE_SIZE / 8; ++k) w[k] = (std::uint64_t{i} << 32) | k;
    CAPMEM_TRY(cap.write_page(i, std::move(p)));
  }
  CAPMEM_TRY(cap.flush());
  return cap;
}

void print_rep(const char* label, const Rep& r, std::uint32_t n, std::uint64_t khz, bool timed) {
  const std::uint64_t clusters = n / fault::PAGES_PER_CLUSTER;
  const std::uint64_t items[kPhases] = {n, n, n, clusters, n, n};
  log::str("kbench: ");
  log::str(label);
  log::str(":");
  for (unsigned p = 0; p < kPhases; ++p) {
    log::str(p == 0 ? " " : ", ");
    log::str(kPhaseName[p]);
    log::str(" ");
    print_x10(ns_x10(r.cycles[p], items[p], khz));
    log::str(p == kCluster ? " ns/cluster" : " ns/page");
    if (timed && (p == kRead || p == kCow || p == kCluster)) {
      log::str(" (handler ");
      print_x10(ns_x10(r.handler[p], items[p], khz));
      log::str(")");
    }
  }
  log::nl();
}

KTEST(kbench_fault_path) {
  const tsc::Calibration clock = tsc::calibrate();
  tsc::log_calibration(clock, "kbench: ");
  KASSERT(clock.khz != 0);
  std::uint64_t pages = cmdline_u64("kbench.pages", 16384);
  pages -= pages % fault::PAGES_PER_CLUSTER;
  const std::uint64_t max_pages = (fault::DATA_BASE - fault::CODE_BASE) / PAGE_SIZE;  // code range fits
  if (pages == 0) pages = fault::PAGES_PER_CLUSTER;
  if (pages > max_pages) pages = max_pages;
  const auto n = static_cast<std::uint32_t>(pages);
  std::uint64_t reps = cmdline_u64("kbench.reps", 3);
  if (reps == 0) reps = 1;

  // Poisoning (on for the tests) fills every freed frame and checks it on reuse: not part
  // of the fault path being measured.
  frames().set_poison(false);
  const std::uint64_t touched = touch_free_frames();
  const FrameStats fs = frames().stats();
  log::str("kbench: TSC ");
  tsc::log_mhz(clock.khz);
  log::str(" MHz from ");
  log::str(clock.source);
  log::str("; hash back end ");
  log::str(hash::impl_name(hash::active()));
  log::str("; ");
  log::dec(n);
  log::str(" pages x ");
  log::dec(reps);
  log::str(" repetitions (+1 with the handler timed); ");
  log::dec(fs.free);
  log::str(" free frames (");
  log::dec(touched);
  log::str(" pre-touched)\n");
  // base + copies + tables + tree and overlay nodes, with room to spare.
  if (fs.free < 3ull * n) {
    frames().set_poison(true);
    return t.fail("not enough frames for this many pages: give QEMU more memory (-m)");
  }

  {
    std::uint64_t t0 = tsc::read();
    auto base = make_base(n);
    const std::uint64_t setup = tsc::read() - t0;
    KEXPECT(base.ok());
    if (!base.ok()) {
      frames().set_poison(true);
      return;
    }
    log::str("kbench: base cap of ");
    log::dec(n);
    log::str(" distinct pages built and flushed in ");
    print_x10(ns_x10(setup, 1000000, clock.khz));
    log::str(" ms\n");

    Rep best;
    for (unsigned p = 0; p < kPhases; ++p) best.cycles[p] = ~std::uint64_t{0};
    for (std::uint64_t r = 0; r <= reps; ++r) {
      const bool timed = r == reps;  // the last one times the handler inside the hook
      Rep rep;
      if (!run_rep(t, base.value(), n, timed, rep)) break;
      char label[] = "rep ?";
      label[4] = static_cast<char>('1' + r % 9);
      print_rep(timed ? "handler timed" : label, rep, n, clock.khz, timed);
      if (timed) continue;
      for (unsigned p = 0; p < kPhases; ++p)
        if (rep.cycles[p] < best.cycles[p]) best.cycles[p] = rep.cycles[p];
    }
    if (!t.failed()) {
      print_rep("best", best, n, clock.khz, false);
      log::str("kbench: {\"cow_write_fault_ns\":");
      print_x10(ns_x10(best.cycles[kCow], n, clock.khz));
      log::str(",\"read_fault_ns\":");
      print_x10(ns_x10(best.cycles[kRead], n, clock.khz));
      log::str(",\"read_fault_2mib_ns\":");
      print_x10(ns_x10(best.cycles[kCluster], n / fault::PAGES_PER_CLUSTER, clock.khz));
      log::str(",\"flush_ns_per_page\":");
      print_x10(ns_x10(best.cycles[kFlush], n, clock.khz));
      log::str(",\"tsc_mhz\":");
      tsc::log_mhz(clock.khz);
      log::str(",\"pages\":");
      log::dec(n);
      log::str("}\n");
    }
  }
  frames().set_poison(true);
}

}  // namespace
