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
// A run set up to resolve Missing pages (RunConfig::resolve_missing, rule 8.2) leaves step 3
// with RunExit::NeedPage at each access to a Missing page; the host resolves the page
// (DataCap::resolve*, here from the boot page store: resolve_from_pack) and enters again
// from the registers it got back, which re-executes the access, or declines (Run::decline():
// the guest fault of rule 4.3). run_guest() does that loop with GuestSpec::resolver.
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
#include "capmem/pack.h"
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
// the fault::Outcome in RunResult::code, except NeedPage (rule 8.2, a run with
// RunConfig::resolve_missing): RunExit::NeedPage, with run.pending() naming the page and
// RunResult::regs.rip at the access. The run is no longer executing then (rule 3.8: its caps
// may be resolved); entering again with RunResult::regs re-executes the access; or
// run.decline() turns the request into the guest fault. The same run may be entered again
// afterwards (its mappings, counters and gas carry over). When `handler_cycles` is not null, the TSC cycles
// spent inside handle_page_fault are added to it (unordered RDTSC, for benchmarks).
// Not reentrant: one run at a time per CPU. Runs over one cap take turns (rule 3.9): while
// another run over one of this run's caps executes (on another CPU), the guest is not
// entered and the result is RunExit::NotEntered with code fault::Outcome::Busy.
RunResult enter_guest(fault::Run& run, const UserRegs& regs, std::uint64_t* handler_cycles = nullptr);

// How a host answers a NeedPage (rule 8.2): Ok once page `req.page` of the request's cap is
// resolved (the guest is entered again at the access); any other status declines it (the
// guest fault of rule 4.3). Called with the run paused, never from the fault path (8.5).
struct PageResolver {
  void* ctx = nullptr;
  Result<void> (*resolve)(void* ctx, const fault::PageRequest& req) = nullptr;
};
// A resolver over a page pack (the boot page store, kernel.h boot_pack()): Pack::find by the
// requested hash, then DataCap::resolve of the request's cap (`mem` for Region::Mem, `code`
// for Region::Code; a null cap declines) with the pack's 4096 bytes, which copies them once
// and checks their hash (rules 8.4, 8.7). NotInStore when the pack has no such root; a lying
// index or changed bytes: HashMismatch, and the cap is as before.
struct PackResolver {
  const store::Pack* pack = nullptr;
  DataCap* code = nullptr;
  DataCap* mem = nullptr;
  [[nodiscard]] PageResolver resolver() { return PageResolver{.ctx = this, .resolve = resolve_from_pack}; }
  static Result<void> resolve_from_pack(void* ctx, const fault::PageRequest& req);
};

// run_guest(): steps 1 to 4 for one entry into the guest (and, with a resolver, the
// NeedPage entries after it).
struct GuestSpec {
  const DataCap* code = nullptr;  // read-only code image at CODE_BASE
  DataCap* mem = nullptr;         // memory at DATA_BASE; the guest's writes land in its overlay
  std::span<const fault::PinnedRange> pinned;
  std::uint64_t gas = 0;
  const char* program = nullptr;  // ring-3 code mapped at fault::JIT_BASE (guest_table())
  const char* program_end = nullptr;
  // Set: the run resolves Missing pages (RunConfig::resolve_missing): each NeedPage exit is
  // answered by `resolver` and the guest entered again from its registers; a request it
  // declines ends the run with the guest fault (RunExit::PageFault, Outcome::GuestFault).
  // Unset: a Missing page is the guest fault at once (section 4, as before).
  PageResolver resolver{};
};
struct GuestResult {
  RunResult result;  // how the guest left (exit, registers, cr2, code); faults_resumed summed
  fault::Counters counters;
  std::uint64_t gas_used = 0;
  std::uint64_t need_page = 0;            // NeedPage exits (each answered or declined)
  std::uint64_t entries = 0;              // times the guest was entered
  Status declined = Status::Ok;           // the resolver's status for a declined request
  fault::PageRequest declined_request{};  // that request (valid when declined != Ok)
};
// OutOfFrames when the page table or the program's frame could not be allocated (the guest
// did not run; nothing is left allocated). Otherwise the guest ran and its table is torn
// down: every frame it mapped is released (copies stay referenced by `mem`'s overlay).
Result<GuestResult> run_guest(const GuestSpec& spec, const UserRegs& regs);

}  // namespace capmem::kernel
