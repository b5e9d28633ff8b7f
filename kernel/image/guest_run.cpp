// Guest runs at ring 3 under the fault handler: see guest_run.h.
#include "guest_run.h"

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"
#include "percpu.h"
#include "trap.h"
#include "tsc.h"

namespace capmem::kernel {
namespace {

// What the #PF route needs while a guest runs: on enter_guest()'s stack, handed to run_user()
// as the hook's context (the run in progress on this CPU is PerCpu::run, user.cpp; no second
// per-CPU table).
struct RouteCtx {
  fault::Run* run;
  std::uint64_t* handler_cycles;  // enter_guest()'s timing sink, or nullptr
};

// user.h's page-fault hook: a #PF at CPL 3, interrupts off, the run's CR3 loaded.
FaultVerdict route_page_fault(void* ctx, VirtAddr cr2, std::uint64_t error_code, TrapFrame& /*regs*/) {
  const auto& cur = *static_cast<const RouteCtx*>(ctx);
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

Result<pt::PageTable> guest_table(const char* program, const char* program_end) {
  pt::PageTable table = CAPMEM_TRY(pt::PageTable::create());
  link_kernel_half(table);
  const Status s = map_ring3_program(table, VirtAddr{fault::JIT_BASE}, program, program_end);
  if (s != Status::Ok) return s;  // `table` is torn down on the way out
  return table;
}

RunResult enter_guest(fault::Run& run, const UserRegs& regs, std::uint64_t* handler_cycles) {
  CAPMEM_ASSERT(active_user_run() == nullptr);  // not reentrant: one run at a time per CPU
  RouteCtx ctx{.run = &run, .handler_cycles = handler_cycles};
  // Rule 3.8: executing from here, so checkpoints of its caps are Busy meanwhile. try_enter()
  // waits while a checkpoint on another CPU holds the run, and that checkpoint's shootdown
  // needs this CPU to answer an IPI: the wait runs with interrupts on (rule 7.2).
  // Rule 3.9: runs over one cap take turns; a turn another run holds is refused (Busy),
  // never waited for, and nothing changed: the caller may enter again later.
  const bool irq_on = arch::irq_save();
  arch::sti();
  if (run.try_enter() != Status::Ok) {
    arch::irq_restore(irq_on);
    return RunResult{
        .exit = RunExit::NotEntered, .regs = regs, .code = static_cast<std::uint64_t>(fault::Outcome::Busy)};
  }
  arch::cli();
  const RunResult r =
      run_user(RunSpec{.cr3 = run.table().root(), .regs = regs, .page_fault_hook = route_page_fault, .hook_ctx = &ctx});
  run.leave();
  arch::irq_restore(irq_on);
  if (r.exit == RunExit::PageFault && r.code == static_cast<std::uint64_t>(fault::Outcome::NeedPage)) {
    CAPMEM_ASSERT(run.pending() != nullptr);
    RunResult need = r;
    need.exit = RunExit::NeedPage;
    return need;
  }
  return r;
}

Result<void> PackResolver::resolve_from_pack(void* ctx, const fault::PageRequest& req) {
  const auto& self = *static_cast<const PackResolver*>(ctx);
  DataCap* cap = req.region == Region::Mem ? self.mem : self.code;
  if (self.pack == nullptr || cap == nullptr) return Status::NotInStore;
  const store::PackPage where = CAPMEM_TRY(self.pack->find(req.hash));
  const std::uint8_t* bytes = self.pack->page_bytes(where);
  if (bytes != nullptr) return cap->resolve(req.page, bytes, PAGE_SIZE);
  const store::PackPageSource src = self.pack->page_source(where);
  return cap->resolve(req.page, src.source());
}

Result<GuestResult> run_guest(const GuestSpec& spec, const UserRegs& regs) {
  pt::PageTable table = CAPMEM_TRY(guest_table(spec.program, spec.program_end));
  GuestResult out;
  {
    const bool resolving = spec.resolver.resolve != nullptr;
    fault::Run run(fault::RunConfig{.table = &table,
                                    .code = spec.code,
                                    .mem = spec.mem,
                                    .pinned = spec.pinned,
                                    .gas = spec.gas,
                                    .resolve_missing = resolving});
    std::uint64_t resumed = 0;
    out.result = enter_guest(run, regs);
    ++out.entries;
    resumed += out.result.faults_resumed;
    while (resolving && out.result.exit == RunExit::NeedPage) {  // only a resolving run asks
      ++out.need_page;
      const fault::PageRequest req = *run.pending();
      const auto answered = spec.resolver.resolve(spec.resolver.ctx, req);
      if (!answered.ok()) {
        // Rule 8.2: declined, the request is the guest fault of 4.3; the guest is not entered.
        out.declined = answered.status();
        out.declined_request = req;
        const fault::Answer a = run.decline();
        out.result.exit = RunExit::PageFault;
        out.result.code = static_cast<std::uint64_t>(a.outcome);
        break;
      }
      out.result = enter_guest(run, out.result.regs);  // re-executes the access
      ++out.entries;
      resumed += out.result.faults_resumed;
    }
    out.result.faults_resumed = resumed;
    out.counters = run.counters();
    out.gas_used = run.gas_used();
  }
  table.teardown();
  return out;
}

}  // namespace capmem::kernel
