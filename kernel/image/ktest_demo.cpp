// The demo scenario and the fault handler's outcomes at real ring 3: every page-in and
// copy-on-write below is a hardware #PF that the IDT's vector 14 hands to
// fault::Run::handle_page_fault through the run's hook.
#include <cstdint>

#include "capmem/demo.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "kernel.h"
#include "ktest.h"
#include "user.h"

extern "C" const char ring3_demo_prog[], ring3_demo_prog_end[];

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
Ring3Result run_demo_ring3(ktest::Ctx& t, demo::Image& image, std::uint64_t gas,
                           const char* prog = ring3_demo_prog, const char* prog_end = ring3_demo_prog_end) {
  Ring3Result out;
  auto table = pt::PageTable::create();
  if (!table.ok()) {
    t.fail("PageTable::create");
    return out;
  }
  link_kernel_half(table.value());
  // The program's page in the JIT arena: user, read-only, executable; the mapping holds the
  // only reference (teardown frees it).
  auto code = PageRef::unhashed_copy(nullptr);
  if (!code.ok()) {
    t.fail("no frame for the ring-3 program");
    return out;
  }
  char* dst = reinterpret_cast<char*>(code->mutable_bytes());
  for (const char* p = prog; p != prog_end; ++p) *dst++ = *p;
  if (!table->map_leaf(VirtAddr{kJit}, code->phys(), {.user = true, .holds_ref = true}).ok()) {
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
    // The same line the hosted engines print (tests/qemu checks it against `capmem demo`).
    char line[160];
    std::uint64_t page_in = res.counters.page_in + res.counters.clusters;
    char hex[65];
    log::fmt_hex32(hex, root->b.data());
    log::str("kernel demo: root=");
    log::str(hex);
    log::str(" gas=");
    log::dec(res.gas_used);
    log::str(" cow=");
    log::dec(res.counters.cow);
    log::str(" page_in=");
    log::dec(page_in);
    log::nl();
    (void)line;

    // And against the interpreter engine run in this same kernel.
    auto image2 = demo::build();
    KEXPECT(image2.ok());
    if (!image2.ok()) return;
    auto table = pt::PageTable::create();
    KEXPECT(table.ok());
    if (!table.ok()) return;
    fault::Run run(fault::RunConfig{.table = &table.value(), .code = &image2->code, .mem = &image2->mem,
                                    .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                    .gas = demo::kDefaultGas});
    const demo::Engine e{
        .ctx = &run,
        .load = [](void* c, std::uint32_t a, unsigned w) { return fault::interp_load(*static_cast<fault::Run*>(c), a, w); },
        .store = [](void* c, std::uint32_t a, unsigned w, std::uint64_t v) {
          return fault::interp_store(*static_cast<fault::Run*>(c), a, w, v);
        },
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
