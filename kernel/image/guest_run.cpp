// Guest runs at ring 3 under the fault handler: see guest_run.h.
#include "guest_run.h"

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"
#include "trap.h"
#include "tsc.h"

namespace capmem::kernel {
namespace {

// What the #PF route needs while a guest runs on this CPU.
struct CpuRun {
  fault::Run* run = nullptr;                // the current run, nullptr outside enter_guest()
  std::uint64_t* handler_cycles = nullptr;  // enter_guest()'s timing sink, or nullptr
};
CpuRun g_cpu_run[env::kMaxCpus];

// The one accessor of the current run: the calling CPU's slot (rule 7.1: a run is on at
// most one CPU, and enter_guest() runs with interrupts off on the CPU it entered from).
CpuRun& this_cpu_run() { return g_cpu_run[env::cpu_id()]; }

// user.h's page-fault hook: a #PF at CPL 3, interrupts off, the run's CR3 loaded.
FaultVerdict route_page_fault(void* /*ctx*/, VirtAddr cr2, std::uint64_t error_code, TrapFrame& /*regs*/) {
  CpuRun& cur = this_cpu_run();
  CAPMEM_ASSERT(cur.run != nullptr);
  const auto code = static_cast<std::uint32_t>(error_code);
  fault::Answer a;
  if (cur.handler_cycles != nullptr) {
    const std::uint64_t t0 = tsc::read_fast();
    a = cur.run->handle_page_fault(cr2, code);
    *cur.handler_cycles += tsc::read_fast() - t0;
  } else {
    a = cur.run->handle_page_fault(cr2, code);
  }
  if (a.outcome == fault::Outcome::Retry) return {.action = FaultAction::Resume};
  return {.action = FaultAction::EndRun, .code = static_cast<std::uint64_t>(a.outcome)};
}

}  // namespace

fault::Run* current_run() { return this_cpu_run().run; }

Result<pt::PageTable> guest_table(const char* program, const char* program_end) {
  pt::PageTable table = TRY(pt::PageTable::create());
  link_kernel_half(table);
  const Status s = map_ring3_program(table, VirtAddr{fault::JIT_BASE}, program, program_end);
  if (s != Status::Ok) return s;  // `table` is torn down on the way out
  return table;
}

RunResult enter_guest(fault::Run& run, const UserRegs& regs, std::uint64_t* handler_cycles) {
  CpuRun& cur = this_cpu_run();
  CAPMEM_ASSERT(cur.run == nullptr);
  cur = CpuRun{.run = &run, .handler_cycles = handler_cycles};
  // Rule 3.8: executing from here, so checkpoints of its caps are Busy meanwhile. enter()
  // waits while a checkpoint on another CPU holds the run, and that checkpoint's shootdown
  // needs this CPU to answer an IPI: the wait runs with interrupts on (rule 7.2).
  const bool irq_on = arch::irq_save();
  arch::sti();
  run.enter();
  arch::cli();
  const RunResult r = run_user(RunSpec{.cr3 = run.table().root(), .regs = regs, .page_fault_hook = route_page_fault});
  run.leave();
  cur = CpuRun{};
  arch::irq_restore(irq_on);
  return r;
}

Result<GuestResult> run_guest(const GuestSpec& spec, const UserRegs& regs) {
  pt::PageTable table = TRY(guest_table(spec.program, spec.program_end));
  GuestResult out;
  {
    fault::Run run(
        fault::RunConfig{.table = &table, .code = spec.code, .mem = spec.mem, .pinned = spec.pinned, .gas = spec.gas});
    out.result = enter_guest(run, regs);
    out.counters = run.counters();
    out.gas_used = run.gas_used();
  }
  table.teardown();
  return out;
}

}  // namespace capmem::kernel
