// Ring 3: enter guest code with iretq, leave through the exit gate (`int 0x81`), a page
// fault the hook does not resolve, or any other exception. See docs/boot.md "Ring 3".
//
// Typical use (the fault path connects its handler as the hook):
//
//   auto table = CAPMEM_TRY(pt::PageTable::create());      // per-run PML4, slot 0 empty (4.2)
//   link_kernel_half(table);                         // slots 256..511: the kernel half
//   ... map the guest program ...
//   const RunResult r = run_user({.cr3 = table.root(),
//                                 .regs = {.rip = entry, .rsp = stack_top},
//                                 .page_fault_hook = my_hook, .hook_ctx = &state});
//   switch (r.exit) { case RunExit::ExitGate: ... r.regs.rax ... }
//   table.teardown();                                // after run_user returned (CR3 restored)
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/pt.h"
#include "capmem/status.h"
#include "capmem/types.h"
#include "trap.h"

namespace capmem::kernel {

// The general registers of a ring-3 context, plus RIP, RSP and RFLAGS.
struct UserRegs {
  std::uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rbp = 0;
  std::uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
  std::uint64_t rip = 0, rsp = 0, rflags = 0;
};

// What a page-fault hook decides.
enum class FaultAction : std::uint8_t {
  Resume,  // the cause is fixed (e.g. a page was mapped): iretq re-executes the access
  EndRun,  // stop the guest: run_user returns RunExit::PageFault with `code`
};
struct FaultVerdict {
  FaultAction action;
  std::uint64_t code = 0;  // the hook's own reason, handed back in RunResult::code
};

// Called for every #PF taken at CPL 3 while a run is in progress: interrupts off, at ring 0
// on the TSS.RSP0 stack, with the run's CR3 loaded. `cr2` is the faulting linear address,
// `error_code` the x86 error code (SDM Vol. 3A 4.7: P=1, W/R=2, U/S=4 (always set here),
// RSVD=8, I/D=16). `regs` is the guest's saved state; changes to it take effect on Resume.
// The hook must not enable interrupts or switch CR3; it may map/unmap in the run's table
// (env::tlb_invalidate_page is invlpg in the current, i.e. the run's, address space).
using PageFaultHook = FaultVerdict (*)(void* ctx, VirtAddr cr2, std::uint64_t error_code, TrapFrame& regs);

struct RunSpec {
  PhysAddr cr3;                             // the run's PML4 (kernel half linked)
  UserRegs regs{};                          // initial registers (rip and rsp at least)
  PageFaultHook page_fault_hook = nullptr;  // nullptr: every #PF ends the run
  void* hook_ctx = nullptr;
};

enum class RunExit : std::uint8_t {
  ExitGate,    // the guest executed `int 0x81`; regs.rip is the next instruction
  PageFault,   // a #PF the hook ended (or no hook): cr2, error_code, code; regs.rip = the access
  Exception,   // any other exception at CPL 3 (vector, error_code); regs.rip = the instruction
  NotEntered,  // enter_guest() (guest_run.h) did not start the guest: code = fault::Outcome::Busy
               // (another run over one of its caps was executing, rule 3.9); regs = the input
  NeedPage,    // enter_guest(): the access met a Missing page of a run set up to resolve them
               // (rule 8.2): code = fault::Outcome::NeedPage, cr2 = the address, the run's
               // pending() names the page; regs.rip = the access (entering again re-executes it)
};

struct RunResult {
  RunExit exit = RunExit::ExitGate;
  UserRegs regs;                     // guest registers at the exit
  std::uint64_t vector = 0;          // 0x81, 14 or the exception vector
  std::uint64_t error_code = 0;      // the CPU's error code (0 for the gate)
  std::uint64_t cr2 = 0;             // PageFault: the faulting address
  std::uint64_t code = 0;            // PageFault: FaultVerdict::code of the hook (0 without hook)
  std::uint64_t faults_resumed = 0;  // #PFs the hook answered with Resume during the run
};

// Runs guest code at ring 3 until it leaves; returns to the caller with the outcome and the
// guest's registers. Loads spec.cr3 for the run and restores the caller's CR3 afterwards.
// RFLAGS: only the arithmetic flags and DF are taken from spec.regs.rflags; IF is 1 at ring 3
// (a shootdown IPI must reach a CPU running a guest; docs/smp.md), IOPL 0. One run at a time
// per CPU (the current run is per CPU, percpu.h active_user_run()); any CPU may run any run that
// is not on another CPU (rule 7.1). CR3 switches go through smp::load_cr3 (shootdown targets).
RunResult run_user(const RunSpec& spec);

// Copy the kernel half (PML4 slots 256..511 of the boot address space: direct map and image,
// supervisor-only) into a per-run PML4. Those entries are plain (not SharedLink): the page
// table neither owns nor references the kernel's tables, and clear()/teardown() only zero
// them. Call again after clear() before reusing the table.
void link_kernel_half(pt::PageTable& table);

// Copy the ring-3 program [begin, end) (at most one page of position-independent code) into
// a fresh frame and map it at `at`: user, read-only, executable. The mapping holds the only
// reference, so the table's teardown frees the frame. On failure (OutOfFrames) nothing is
// left mapped or allocated.
Status map_ring3_program(pt::PageTable& table, VirtAddr at, const char* begin, const char* end);

// For trap.cpp: a trap taken at CPL 3. Returns true to resume the frame; ends the run (and
// does not return) otherwise; returns false when no run is in progress (a kernel bug: dump).
bool user_trap(TrapFrame* f);

}  // namespace capmem::kernel
