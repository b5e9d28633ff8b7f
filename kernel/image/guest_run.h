// A guest run at ring 3 under the copy-on-write fault handler: the kernel image's glue
// between its ring-3 entry (user.h) and fault::Run (capmem/fault.h). The in-kernel tests
// (ktest_demo.cpp) and benchmarks (kbench.cpp) run guests through it; an embedding kernel
// reads it as the reference for the four steps (docs/boot.md "The fault handler at ring 3"):
//
//   1. the run's address space: a fresh pt::PageTable (PML4 slot 0 empty, rule 4.2), the
//      kernel half linked, the ring-3 program in the JIT arena at fault::JIT_BASE
//      (PML4 slot 1, rule 4.1)                                           guest_table()
//   2. the run: fault::Run over that table with the caps, pinned ranges and gas
//                                                                        fault::RunConfig
//   3. ring 3 with that run current: every #PF at CPL 3 goes to Run::handle_page_fault;
//      Retry resumes the access, any other outcome ends the run        enter_guest()
//   4. the outcome (RunResult, the run's counters and gas), then the table's teardown,
//      which drops every mapping's frame reference
//
// run_guest() does all four for one entry:
//
//   UserRegs regs{};
//   regs.rip = fault::JIT_BASE;
//   auto r = run_guest({.code = &code, .mem = &mem, .pinned = pinned, .gas = gas,
//                       .program = prog, .program_end = prog_end}, regs);
//   if (r.ok() && r->result.exit == RunExit::PageFault)
//     ... static_cast<fault::Outcome>(r->result.code) ...
//
// A caller that enters the same run several times (kbench.cpp) does steps 1 to 4 itself.
#pragma once

#include <cstdint>
#include <span>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/pt.h"
#include "capmem/status.h"
#include "user.h"

namespace capmem::kernel {

// Step 1: a per-run page table with the kernel half linked and the ring-3 program
// [program, program_end) (at most one page of position-independent code) mapped at
// fault::JIT_BASE: user, read-only, executable, the mapping holding the frame's only
// reference. PML4 slot 0 stays empty for the fault handler (rule 4.2). OutOfFrames: nothing
// is left allocated.
Result<pt::PageTable> guest_table(const char* program, const char* program_end);

// Step 3: runs the guest at ring 3 from `regs` on `run`'s page table, with `run` as the #PF
// hook's context (RunSpec::hook_ctx; the CPU's run in progress is PerCpu::run, user.cpp):
// each #PF at CPL 3 calls run.handle_page_fault(cr2, error_code); Retry resumes the guest
// (iretq re-executes the access), any other outcome ends the run with RunExit::PageFault and
// the fault::Outcome in RunResult::code. The same run may be entered again afterwards (its
// mappings, counters and gas carry over). When `handler_cycles` is not null, the TSC cycles
// spent inside handle_page_fault are added to it (unordered RDTSC, for benchmarks).
// Not reentrant: one run at a time per CPU. Runs over one cap take turns (rule 3.9): while
// another run over one of this run's caps executes (on another CPU), the guest is not
// entered and the result is RunExit::NotEntered with code fault::Outcome::Busy.
RunResult enter_guest(fault::Run& run, const UserRegs& regs, std::uint64_t* handler_cycles = nullptr);

// run_guest(): steps 1 to 4 for one entry into the guest.
struct GuestSpec {
  const DataCap* code = nullptr;  // read-only code image at CODE_BASE
  DataCap* mem = nullptr;         // memory at DATA_BASE; the guest's writes land in its overlay
  std::span<const fault::PinnedRange> pinned;
  std::uint64_t gas = 0;
  const char* program = nullptr;  // ring-3 code mapped at fault::JIT_BASE (guest_table())
  const char* program_end = nullptr;
};
struct GuestResult {
  RunResult result;  // how the guest left (exit, registers, cr2, code)
  fault::Counters counters;
  std::uint64_t gas_used = 0;
};
// OutOfFrames when the page table or the program's frame could not be allocated (the guest
// did not run; nothing is left allocated). Otherwise the guest ran and its table is torn
// down: every frame it mapped is released (copies stay referenced by `mem`'s overlay).
Result<GuestResult> run_guest(const GuestSpec& spec, const UserRegs& regs);

}  // namespace capmem::kernel
