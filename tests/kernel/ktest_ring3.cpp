// Ring 3 for real: per-run page tables (pt::PageTable with the kernel half linked), iretq
// into tiny guest programs (ktest_ring3_progs.S), the int 0x81 exit gate, and the #PF hook
// with the CPU's own CR2 and error codes.
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/pt.h"
#include "kernel.h"
#include "ktest.h"
#include "ktest_ring3_progs.h"
#include "user.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint64_t kCode = 4ull << 20;    // rule 4.1 CODE_BASE
constexpr std::uint64_t kData = 256ull << 20;  // rule 4.1 DATA_BASE

// x86 #PF error code bits (SDM Vol. 3A 4.7, Figure 4-12), spelled out independently of
// the code under test.
constexpr std::uint64_t kErrP = 1, kErrW = 2, kErrU = 4, kErrI = 16;

// A per-run table with the kernel half and one read-only user page holding [start, end) at
// kCode. The mapping holds the only reference to the code frame: teardown frees it.
bool make_guest(ktest::Ctx& t, pt::PageTable& out, const char* start, const char* end) {
  auto r = pt::PageTable::create();
  if (!r.ok()) {
    t.fail("PageTable::create failed");
    return false;
  }
  out = r.release_value();
  const auto* pml4 = static_cast<const std::uint64_t*>(env::phys_to_virt(out.root()));
  if (pml4[0] != 0) t.fail("a fresh per-run PML4 must have slot 0 empty (rule 4.2)");
  link_kernel_half(out);
  FrameDesc* code = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  if (code == nullptr) {
    t.fail("no frame for the guest code");
    return false;
  }
  auto* dst = static_cast<char*>(code->virt());
  for (const char* p = start; p != end; ++p) *dst++ = *p;
  const bool mapped = out.map_leaf(VirtAddr{kCode}, code->phys(), {.user = true, .holds_ref = true}).ok();
  frames().unref(code);  // the mapping keeps it alive (or, if mapping failed, this frees it)
  if (!mapped) t.fail("map_leaf of the guest code failed");
  return mapped;
}

// Records what the CPU reported and either ends the run with `end_code` or maps a fresh
// zeroed user page at the faulting address and resumes.
struct HookState {
  pt::PageTable* table;
  bool map_on_demand;
  std::uint64_t end_code;
  unsigned calls = 0;
  std::uint64_t cr2 = 0;
  std::uint64_t error_code = 0;
  std::uint64_t rip = 0;
};

FaultVerdict test_hook(void* ctx, VirtAddr cr2, std::uint64_t error_code, TrapFrame& regs) {
  auto& s = *static_cast<HookState*>(ctx);
  ++s.calls;
  s.cr2 = cr2.value();
  s.error_code = error_code;
  s.rip = regs.rip;
  if (!s.map_on_demand || (error_code & kErrP) != 0) return {.action = FaultAction::EndRun, .code = s.end_code};
  FrameDesc* f = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  if (f == nullptr) return {.action = FaultAction::EndRun, .code = 1};
  const bool ok = s.table
                      ->map_leaf(cr2.page_base(), f->phys(),
                                 {.writable = true, .user = true, .no_execute = true, .holds_ref = true})
                      .ok();
  frames().unref(f);
  if (!ok) return {.action = FaultAction::EndRun, .code = 2};
  return {.action = FaultAction::Resume};
}

std::uint64_t read_guest_u64(const pt::PageTable& table, std::uint64_t va) {
  auto tr = table.translate(VirtAddr{va});
  if (!tr.ok()) return ~std::uint64_t{0};
  return *static_cast<const std::uint64_t*>(env::phys_to_virt(tr->pa));
}

}  // namespace

KTEST(ring3_exit_gate_returns_guest_registers) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_exit, ring3_prog_exit_end));
  const std::uint64_t cr3_before = arch::read_cr3();
  const RunResult r = run_user(
      {.cr3 = table.root(), .regs = {.rsi = 0xabcdef, .rdi = 0x1111, .r12 = 0x1212, .rip = kCode, .rsp = kData}});
  KEXPECT_EQ(arch::read_cr3(), cr3_before);
  KASSERT(r.exit == RunExit::ExitGate);
  KEXPECT_EQ(r.vector, 0x81);
  KEXPECT_EQ(r.regs.rax, 3 * 0x1111 + 7);
  KEXPECT_EQ(r.regs.rbx, 0xabcdef);
  KEXPECT_EQ(r.regs.rcx, kUserCs);  // the guest read CS: RPL 3
  KEXPECT_EQ(r.regs.r15, 0xc0ffee);
  KEXPECT_EQ(r.regs.r12, 0x1212);  // untouched registers come back as given
  KEXPECT_EQ(r.regs.rsp, kData);
  KEXPECT_EQ(r.regs.rip, kCode + static_cast<std::uint64_t>(ring3_prog_exit_ud2 - ring3_prog_exit));
  KEXPECT_EQ(r.regs.rflags & 0x200, 0x200);  // IF on at ring 3: shootdown IPIs reach guests (docs/smp.md)
  table.teardown();
}

KTEST(ring3_read_of_unmapped_page_reaches_hook) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_load, ring3_prog_load_end));
  HookState hs{.table = &table, .map_on_demand = false, .end_code = 77};
  const std::uint64_t addr = kData + 0x123;
  const RunResult r = run_user({.cr3 = table.root(),
                                .regs = {.rdi = addr, .rip = kCode, .rsp = kData},
                                .page_fault_hook = test_hook,
                                .hook_ctx = &hs});
  KASSERT(r.exit == RunExit::PageFault);
  KEXPECT_EQ(hs.calls, 1);
  KEXPECT_EQ(hs.cr2, addr);
  KEXPECT_EQ(hs.error_code, kErrU);  // not present, read, user
  KEXPECT_EQ(hs.rip, kCode);
  KEXPECT_EQ(r.cr2, addr);
  KEXPECT_EQ(r.error_code, kErrU);
  KEXPECT_EQ(r.code, 77);
  KEXPECT_EQ(r.regs.rip, kCode);  // the faulting instruction, not after it
  KEXPECT_EQ(r.faults_resumed, 0);
  table.teardown();
}

KTEST(ring3_write_fault_resumes_after_hook_maps_page) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_store, ring3_prog_store_end));
  HookState hs{.table = &table, .map_on_demand = true, .end_code = 99};
  const std::uint64_t addr = kData + 0x10, value = 0x5566778899aabbccull;
  const RunResult r = run_user({.cr3 = table.root(),
                                .regs = {.rsi = value, .rdi = addr, .rip = kCode, .rsp = kData},
                                .page_fault_hook = test_hook,
                                .hook_ctx = &hs});
  KASSERT(r.exit == RunExit::ExitGate);
  KEXPECT_EQ(hs.calls, 1);
  KEXPECT_EQ(hs.cr2, addr);
  KEXPECT_EQ(hs.error_code, kErrU | kErrW);  // not present, write, user
  KEXPECT_EQ(r.faults_resumed, 1);
  KEXPECT_EQ(r.regs.rax, value);  // the retried store landed and read back at ring 3
  KEXPECT_EQ(read_guest_u64(table, addr), value);
  table.teardown();
}

KTEST(ring3_write_to_read_only_page_is_protection_fault) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_store, ring3_prog_store_end));
  const RunResult r = run_user({.cr3 = table.root(), .regs = {.rsi = 1, .rdi = kCode + 8, .rip = kCode, .rsp = kData}});
  KASSERT(r.exit == RunExit::PageFault);
  KEXPECT_EQ(r.cr2, kCode + 8);
  KEXPECT_EQ(r.error_code, kErrP | kErrW | kErrU);
  KEXPECT_EQ(r.code, 0);  // no hook
  table.teardown();
}

KTEST(ring3_cannot_touch_the_kernel_half) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_load, ring3_prog_load_end));
  const std::uint64_t targets[] = {kKernelVma + (2ull << 20), kDirectMapBase + (1ull << 20)};
  for (std::uint64_t a : targets) {
    const RunResult r = run_user({.cr3 = table.root(), .regs = {.rdi = a, .rip = kCode, .rsp = kData}});
    KEXPECT(r.exit == RunExit::PageFault);
    KEXPECT_EQ(r.cr2, a);
    KEXPECT_EQ(r.error_code, kErrP | kErrU);  // present but supervisor-only
  }
  table.teardown();
}

KTEST(ring3_fetch_from_unmapped_page) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_jump, ring3_prog_jump_end));
  const RunResult r = run_user({.cr3 = table.root(), .regs = {.rdi = kData, .rip = kCode, .rsp = kData}});
  KASSERT(r.exit == RunExit::PageFault);
  KEXPECT_EQ(r.cr2, kData);
  KEXPECT_EQ(r.regs.rip, kData);
  // I/D is reported for fetches when EFER.NXE = 1 (SDM Vol. 3A 4.7); SMEP is off here.
  KEXPECT_EQ(r.error_code, kErrU | (cpu_features().nx ? kErrI : 0));
  table.teardown();
}

KTEST(ring3_other_exception_ends_run) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_ud, ring3_prog_ud_end));
  const RunResult r = run_user({.cr3 = table.root(), .regs = {.rip = kCode, .rsp = kData}});
  KASSERT(r.exit == RunExit::Exception);
  KEXPECT_EQ(r.vector, 6);  // #UD
  KEXPECT_EQ(r.regs.rip, kCode);
  table.teardown();
}

// Thousands of real faults: every page is demand-mapped by the hook, then the whole table
// is torn down and the allocator is back where it was (the runner checks in-use frames).
KTEST(ring3_demand_paging_thousands_of_pages) {
  pt::PageTable table = pt::PageTable::create().release_value();
  KASSERT(make_guest(t, table, ring3_prog_fill, ring3_prog_fill_end));
  HookState hs{.table = &table, .map_on_demand = true, .end_code = 99};
  constexpr std::uint64_t kPages = 3000;
  const std::uint64_t value = 0x0123456789abcdefull;
  const RunResult r = run_user({.cr3 = table.root(),
                                .regs = {.rcx = kPages, .rdx = value, .rdi = kData, .rip = kCode, .rsp = kData},
                                .page_fault_hook = test_hook,
                                .hook_ctx = &hs});
  KASSERT(r.exit == RunExit::ExitGate);
  KEXPECT_EQ(r.regs.rax, kPages);
  KEXPECT_EQ(r.faults_resumed, kPages);
  KEXPECT_EQ(hs.calls, kPages);
  unsigned bad = 0;
  for (std::uint64_t i = 0; i < kPages; ++i) bad += read_guest_u64(table, kData + i * 4096) != value;
  KEXPECT_EQ(bad, 0);
  KEXPECT(!table.translate(VirtAddr{kData + kPages * 4096}).ok());
  table.teardown();
}
