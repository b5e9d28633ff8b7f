// In-kernel CoW fault throughput on 1, 2 and 4 CPUs (capmem-kernel-bench; docs/smp.md,
// docs/performance.md). Every CPU of a round copies one shared base cap of P distinct Loaded
// pages and runs a ring-3 loop storing one word into each of its P pages: P copy-on-write
// faults per CPU through fault::Run::handle_page_fault, all CPUs at once (they start
// together after a barrier). The figure is the round's faults divided by its wall time
// (first start to last end, TSC). Under TCG it only shows that the path runs on many CPUs.
// Command line: kbench.smp_pages=P (default 8192).
#include <atomic>
#include <cstdint>
#include <span>
#include <utility>

#include "apic.h"
#include "arch.h"
#include "capmem/datacap.h"
#include "capmem/env.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "guest_run.h"
#include "kernel.h"
#include "ktest.h"
#include "smp.h"
#include "user.h"

extern "C" const char kbench_progs[], kbench_progs_end[], kbench_write_pages[];

namespace {
using namespace capmem;
using namespace capmem::kernel;

struct Shared {
  const DataCap* base;
  const DataCap* code;
  std::uint32_t pages;
  unsigned cpus;
  std::atomic<unsigned> arrived;
};

struct Slot {
  Shared* s;
  bool ok;
  std::uint64_t cow;
  std::uint64_t start, end;
};

void cow_work(void* arg) {
  auto* w = static_cast<Slot*>(arg);
  Shared& s = *w->s;
  w->ok = false;
  auto copy = s.base->copy();
  auto table = guest_table(kbench_progs, kbench_progs_end);
  if (!copy.ok() || !table.ok()) {
    s.arrived.fetch_add(1);  // do not hold the others at the barrier
    return;
  }
  {
    fault::Run run(fault::RunConfig{
        .table = &table.value(), .code = s.code, .mem = &copy.value(), .pinned = {}, .gas = ~std::uint64_t{0} / 2});
    UserRegs regs{};
    regs.rip = fault::JIT_BASE + static_cast<std::uint64_t>(kbench_write_pages - kbench_progs);
    regs.rsp = fault::JIT_BASE + PAGE_SIZE;
    regs.rdi = fault::DATA_BASE;
    regs.rcx = s.pages;
    regs.rdx = 0x5a5a5a5a5a5a5a5aull;
    s.arrived.fetch_add(1, std::memory_order_acq_rel);
    while (s.arrived.load(std::memory_order_acquire) < s.cpus) arch::pause();
    w->start = arch::rdtsc();
    const RunResult r = enter_guest(run, regs);
    w->end = arch::rdtsc();
    w->cow = run.counters().cow;
    w->ok = r.exit == RunExit::ExitGate;
  }
  table->teardown();
}  // the copy and its overlay pages are dropped here

Result<DataCap> make_base(std::uint32_t n) {
  auto cap = CAPMEM_TRY(DataCap::create(std::uint64_t{n} * PAGE_SIZE));
  for (std::uint32_t i = 0; i < n; ++i) {
    auto p = CAPMEM_TRY(PageRef::unhashed_copy(nullptr));
    auto* w = reinterpret_cast<std::uint64_t*>(p.mutable_bytes());
    for (std::uint64_t k = 0; k < PAGE_SIZE / 8; ++k) w[k] = (std::uint64_t{i} << 32) | k | 1;
    CAPMEM_TRY(cap.write_page(i, std::move(p)));
  }
  CAPMEM_TRY(cap.flush());
  return cap;
}

KTEST(kbench_smp_cow_scaling) {
  const auto pages = static_cast<std::uint32_t>(cmdline_u64("kbench.smp_pages", 8192));
  KASSERT(pages != 0 && std::uint64_t{pages} * PAGE_SIZE <= 1ull << 32);
  const unsigned online = smp::online_count();
  if (frames().stats().free < 4ull * pages + 1024)
    return t.fail("not enough frames: raise -m or lower kbench.smp_pages");
  frames().set_poison(false);
  {
    auto base = make_base(pages);
    auto code = DataCap::create(PAGE_SIZE);
    KASSERT(base.ok() && code.ok());
    log::str("kbench smp: ");
    log::dec(online);
    log::str(" CPUs online, ");
    log::dec(pages);
    log::str(" CoW faults per CPU and round\n");
    std::uint64_t per_sec[3] = {};
    const unsigned counts[3] = {1, 2, 4};
    for (unsigned ci = 0; ci < 3; ++ci) {
      const unsigned c = counts[ci];
      if (c > online) {
        log::str("kbench smp: ");
        log::dec(c);
        log::str(" CPUs: not online (skipped)\n");
        continue;
      }
      Shared s{.base = &base.value(), .code = &code.value(), .pages = pages, .cpus = c, .arrived = {0}};
      Slot slots[4] = {};
      void* args[4];
      for (unsigned i = 0; i < c; ++i) {
        slots[i].s = &s;
        args[i] = &slots[i];
      }
      smp::run_on_all(c, cow_work, args);
      std::uint64_t first = ~std::uint64_t{0}, last = 0, faults = 0;
      for (unsigned i = 0; i < c; ++i) {
        KEXPECT(slots[i].ok);
        KEXPECT_EQ(slots[i].cow, pages);
        faults += slots[i].cow;
        if (slots[i].start < first) first = slots[i].start;
        if (slots[i].end > last) last = slots[i].end;
      }
      const std::uint64_t us = (last - first) / apic::tsc_per_us();
      per_sec[ci] = us == 0 ? 0 : faults * 1'000'000 / us;
      log::str("kbench smp: ");
      log::dec(c);
      log::str(" CPUs: ");
      log::dec(faults);
      log::str(" CoW faults in ");
      log::dec(us);
      log::str(" us: ");
      log::dec(per_sec[ci]);
      log::str(" faults/s\n");
    }
    log::str("kbench-smp: {\"cow_faults_per_sec_1cpu\":");
    log::dec(per_sec[0]);
    log::str(",\"cow_faults_per_sec_2cpu\":");
    log::dec(per_sec[1]);
    log::str(",\"cow_faults_per_sec_4cpu\":");
    log::dec(per_sec[2]);
    log::str(",\"pages_per_cpu\":");
    log::dec(pages);
    log::str("}\n");
  }
  frames().set_poison(true);
}

}  // namespace
