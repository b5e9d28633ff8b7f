// The demo scenario and the fault handler's outcomes at real ring 3: every page-in and
// copy-on-write below is a hardware #PF that the IDT's vector 14 hands to
// fault::Run::handle_page_fault through the run's hook.
#include <cstdint>

#include "capmem/demo.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "capmem/slot.h"
#include "kernel.h"
#include "ktest.h"
#include "ktest_ring3_progs.h"
#include "user.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint64_t kJit = 1ull << 39;  // PML4 slot 1: kernel-owned per-run pages (rule 4.1)

FaultVerdict fault_hook(void* ctx, VirtAddr cr2, std::uint64_t error_code, TrapFrame&) {
  auto* run = static_cast<fault::Run*>(ctx);
  const fault::Answer a = run->handle_page_fault(cr2, static_cast<std::uint32_t>(error_code));
  if (a.outcome == fault::Outcome::Retry) return {.action = FaultAction::Resume};
  return {.action = FaultAction::EndRun, .code = static_cast<std::uint64_t>(a.outcome)};
}

struct Ring3Result {
  bool ran = false;
  RunResult r;
  fault::Counters counters;
  std::uint64_t gas_used = 0;
};

// One guest run of the demo program over `image`, with `gas`; the page table is torn down.
Ring3Result run_demo_ring3(ktest::Ctx& t, demo::Image& image, std::uint64_t gas, const char* prog = ring3_demo_prog,
                           const char* prog_end = ring3_demo_prog_end, std::uint64_t rdi = 0, std::uint64_t rsi = 0,
                           std::uint64_t rcx = 0, std::uint64_t rdx = 0) {
  Ring3Result out;
  auto table = pt::PageTable::create();
  if (!table.ok()) {
    t.fail("PageTable::create");
    return out;
  }
  link_kernel_half(table.value());
  // The program's page in the JIT arena (the mapping holds its only reference).
  if (map_ring3_program(table.value(), VirtAddr{kJit}, prog, prog_end) != Status::Ok) {
    t.fail("mapping the ring-3 program");
    return out;
  }
  {
    fault::Run run(fault::RunConfig{.table = &table.value(),
                                    .code = &image.code,
                                    .mem = &image.mem,
                                    .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                    .gas = gas});
    UserRegs regs{};
    regs.rip = kJit;
    regs.rdi = rdi;
    regs.rsi = rsi;
    regs.rcx = rcx;
    regs.rdx = rdx;
    regs.rsp = kJit + PAGE_SIZE;  // unused by the program; never touched
    out.r = run_user(RunSpec{.cr3 = table->root(), .regs = regs, .page_fault_hook = fault_hook, .hook_ctx = &run});
    out.counters = run.counters();
    out.gas_used = run.gas_used();
    out.ran = true;
  }
  table->teardown();
  return out;
}

KTEST(demo_ring3_same_line_as_interpreter) {
  const auto free0 = frames().stats().free;
  {
    auto image = demo::build();
    KEXPECT(image.ok());
    if (!image.ok()) return;
    auto res = run_demo_ring3(t, image.value(), demo::kDefaultGas);
    if (!res.ran) return;
    KEXPECT(res.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(res.r.regs.r9, std::uint64_t{demo::kOps - 1});
    KEXPECT(image->mem.flush().ok());
    auto root = image->mem.root();
    KEXPECT(root.ok());
    if (!root.ok()) return;
    // A readable account (the one `capmem demo` gives per engine), then the closing line.
    log::str("kernel demo: code cap at 0x400000 (op table), mem cap at 0x10000000, ");
    log::dec(demo::kMemPages);
    log::str(" pages, pinned pages ");
    log::dec(demo::kPinned.first_page);
    log::str("..");
    log::dec(demo::kPinned.first_page + demo::kPinned.pages - 1);
    log::str("\nkernel demo: ring-3 program ran ");
    log::dec(res.r.regs.r9);
    log::str(" ops; real #PFs handled: ");
    log::dec(res.counters.page_in);
    log::str(" CoW page-ins, ");
    log::dec(res.counters.clusters);
    log::str(" read-only clusters (");
    log::dec(res.counters.cluster_pages);
    log::str(" pages), ");
    log::dec(res.counters.cow);
    log::str(" copies, ");
    log::dec(res.counters.spurious);
    log::str(" spurious; resumed ");
    log::dec(res.r.faults_resumed);
    log::str(" faults\n");
    // The same line the hosted engines print (tests/qemu checks it against `capmem demo`).
    char line[160];
    demo::format_line(line, sizeof line, root.value(), res.gas_used, res.counters);
    log::str("kernel demo: ");
    log::str(line);
    log::nl();

    // And against the interpreter engine run in this same kernel.
    auto image2 = demo::build();
    KEXPECT(image2.ok());
    if (!image2.ok()) return;
    auto table = pt::PageTable::create();
    KEXPECT(table.ok());
    if (!table.ok()) return;
    fault::Run run(fault::RunConfig{.table = &table.value(),
                                    .code = &image2->code,
                                    .mem = &image2->mem,
                                    .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                    .gas = demo::kDefaultGas});
    const demo::Engine e{
        .ctx = &run,
        .load = [](void* c, std::uint32_t a,
                   unsigned w) { return fault::interp_load(*static_cast<fault::Run*>(c), a, w); },
        .store = [](void* c, std::uint32_t a, unsigned w,
                    std::uint64_t v) { return fault::interp_store(*static_cast<fault::Run*>(c), a, w, v); },
    };
    const demo::Progress p = demo::run_ops(e);
    table->teardown();
    KEXPECT(p.stop == fault::Outcome::Retry);
    KEXPECT_EQ(p.checksum, res.r.regs.r8);
    KEXPECT_EQ(run.gas_used(), res.gas_used);
    KEXPECT_EQ(run.counters().cow, res.counters.cow);
    KEXPECT(image2->mem.flush().ok());
    KEXPECT(image2->mem.root().ok() && image2->mem.root().value() == root.value());
  }
  KEXPECT_EQ(frames().stats().free, free0);  // teardown and dropping the caps return every frame
}

KTEST(demo_ring3_out_of_gas_mid_run) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  auto res = run_demo_ring3(t, image.value(), 1000);
  if (!res.ran) return;
  KEXPECT(res.r.exit == RunExit::PageFault);
  KEXPECT_EQ(res.r.code, static_cast<std::uint64_t>(fault::Outcome::OutOfGas));
  KEXPECT(res.gas_used <= 1000);
  KEXPECT(res.r.regs.r9 < demo::kOps - 1);
}

KTEST(demo_ring3_out_of_frames_leaves_overlay_untouched) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  // Let the run start, then make the allocator fail: the first CoW that needs a frame
  // ends the run with OutOfFrames, and the overlay holds only the earlier copies.
  frames().inject_failure_at(40);
  auto res = run_demo_ring3(t, image.value(), demo::kDefaultGas);
  frames().inject_failure_at(0);
  if (!res.ran) return;
  KEXPECT(res.r.exit == RunExit::PageFault);
  KEXPECT_EQ(res.r.code, static_cast<std::uint64_t>(fault::Outcome::OutOfFrames));
  KEXPECT_EQ(std::uint64_t{image->mem.overlay_count()}, res.counters.cow);
}
}  // namespace

namespace {
// One ring-3 access through the core handler; returns the run's result.
Ring3Result one_access(ktest::Ctx& t, demo::Image& image, bool store, std::uint64_t addr) {
  return store ? run_demo_ring3(t, image, demo::kDefaultGas, ring3_prog_store, ring3_prog_store_end, addr, 0x55)
               : run_demo_ring3(t, image, demo::kDefaultGas, ring3_prog_load, ring3_prog_load_end, addr, 0);
}

void expect_guest_fault(ktest::Ctx& t, const Ring3Result& res, std::uint64_t addr) {
  KEXPECT(res.ran);
  KEXPECT(res.r.exit == RunExit::PageFault);
  KEXPECT_EQ(res.r.code, static_cast<std::uint64_t>(fault::Outcome::GuestFault));
  KEXPECT_EQ(res.r.cr2, addr);
  KEXPECT_EQ(res.gas_used, std::uint64_t{0});
}

KTEST(fault_ring3_write_to_pinned_range_is_guest_fault) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  const std::uint64_t addr = fault::DATA_BASE + std::uint64_t{demo::kPinned.first_page} * PAGE_SIZE + 24;
  expect_guest_fault(t, one_access(t, image.value(), true, addr), addr);
  KEXPECT_EQ(std::uint64_t{image->mem.overlay_count()}, std::uint64_t{0});
}

KTEST(fault_ring3_null_guard_is_guest_fault) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  expect_guest_fault(t, one_access(t, image.value(), false, 0), 0);
  expect_guest_fault(t, one_access(t, image.value(), true, 0x1234), 0x1234);
}

KTEST(fault_ring3_missing_page_is_guest_fault) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  auto missing = Slot::missing(hash::sha256("missing", 7));
  KEXPECT(missing.ok());
  if (!missing.ok()) return;
  KEXPECT(image->mem.write_slot(9, missing.release_value()).ok());
  const std::uint64_t addr = fault::DATA_BASE + 9 * PAGE_SIZE + 8;
  expect_guest_fault(t, one_access(t, image.value(), false, addr), addr);
}
}  // namespace

namespace {
KTEST(fault_ring3_run_writes_thousands_of_pages) {
  const auto free0 = frames().stats().free;
  {
    auto image = demo::build();
    KEXPECT(image.ok());
    if (!image.ok()) return;
    constexpr std::uint32_t kPages = 3000, kFirst = 1024;  // past the pinned range
    auto big = DataCap::create(std::uint64_t{kFirst + kPages} * PAGE_SIZE);
    KEXPECT(big.ok());
    if (!big.ok()) return;
    image->mem = big.release_value();
    auto res = run_demo_ring3(t, image.value(), demo::kDefaultGas, ring3_prog_fill, ring3_prog_fill_end,
                              fault::DATA_BASE + std::uint64_t{kFirst} * PAGE_SIZE, 0, kPages, 0x0123456789abcdefull);
    KEXPECT(res.ran);
    KEXPECT(res.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(res.counters.cow, std::uint64_t{kPages});
    KEXPECT_EQ(res.gas_used, std::uint64_t{kPages} * fault::kGasCosts.cow);
    KEXPECT_EQ(std::uint64_t{image->mem.overlay_count()}, std::uint64_t{kPages});
    KEXPECT(image->mem.flush().ok());
    std::uint8_t b[8] = {};
    KEXPECT(image->mem.read(std::uint64_t{kFirst + kPages - 1} * PAGE_SIZE, b, 8).ok());
    KEXPECT_EQ(b[0], std::uint64_t{0xef});
  }
  KEXPECT_EQ(frames().stats().free, free0);
}
}  // namespace
