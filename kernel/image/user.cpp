// Ring-3 runs: see user.h.
#include "user.h"

#include <cstddef>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "kernel.h"
#include "percpu.h"
#include "smp.h"

namespace capmem::kernel {

struct KernelContext {
  std::uint64_t rbx, rbp, r12, r13, r14, r15, rsp;
};

extern "C" void user_enter(const UserRegs* regs, KernelContext* save);
extern "C" [[noreturn]] void user_return(KernelContext* ctx);

static_assert(offsetof(UserRegs, rdi) == 40 && offsetof(UserRegs, r15) == 112 && offsetof(UserRegs, rip) == 120 &&
                  offsetof(UserRegs, rsp) == 128 && offsetof(UserRegs, rflags) == 136,
              "user.S uses these offsets");

// The run in progress on one CPU, on run_user()'s stack; active_user_run() (percpu.h) points at
// it. Invariant: active_user_run() != nullptr <=> a run_user() call is on this CPU's stack and
// kctx holds its callee-saved registers; result points at its RunResult.
struct ActiveRun {
  const RunSpec* spec;
  RunResult* result;
  KernelContext kctx;
};

namespace {

// RFLAGS bits a guest may choose (SDM Vol. 1 3.4.3): CF, PF, AF, ZF, SF, DF, OF. Bit 1 is
// always 1. IF, TF, IOPL, NT, RF, VM, AC, VIF, VIP, ID stay 0.
constexpr std::uint64_t kUserFlagsMask = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800;
constexpr std::uint64_t kRflagsFixed = 0x2;
// Guests run with interrupts on: a shootdown IPI must reach a CPU running ring-3 code
// (docs/smp.md). Every interrupt gate clears IF again on the way into the kernel.
constexpr std::uint64_t kRflagsIf = 0x200;

UserRegs regs_of(const TrapFrame& f) {
  return UserRegs{.rax = f.rax,
                  .rbx = f.rbx,
                  .rcx = f.rcx,
                  .rdx = f.rdx,
                  .rsi = f.rsi,
                  .rdi = f.rdi,
                  .rbp = f.rbp,
                  .r8 = f.r8,
                  .r9 = f.r9,
                  .r10 = f.r10,
                  .r11 = f.r11,
                  .r12 = f.r12,
                  .r13 = f.r13,
                  .r14 = f.r14,
                  .r15 = f.r15,
                  .rip = f.rip,
                  .rsp = f.rsp,
                  .rflags = f.rflags};
}

[[noreturn]] void end_run(const TrapFrame& f, RunExit exit) {
  ActiveRun& run = *active_user_run();
  RunResult& r = *run.result;
  r.exit = exit;
  r.regs = regs_of(f);
  r.vector = f.vector;
  r.error_code = f.error_code;
  user_return(&run.kctx);
}

}  // namespace

void link_kernel_half(pt::PageTable& table) {
  auto* slots = static_cast<std::uint64_t*>(env::phys_to_virt(table.root()));
  for (unsigned i = kKernelHalfFirstSlot; i < 512; ++i) slots[i] = boot_pml4[i];
}

Status map_ring3_program(pt::PageTable& table, VirtAddr at, const char* begin, const char* end) {
  CAPMEM_ASSERT(end >= begin && static_cast<std::size_t>(end - begin) <= PAGE_SIZE);
  auto page = PageRef::unhashed_copy(nullptr);
  if (!page.ok()) return page.status();
  char* dst = reinterpret_cast<char*>(page->mutable_bytes());
  for (const char* p = begin; p != end; ++p) *dst++ = *p;
  return table.map_leaf(at, page->phys(), {.user = true, .holds_ref = true}).status();
}  // `page` drops its reference here: the leaf's is the only one left

RunResult run_user(const RunSpec& spec) {
  CAPMEM_ASSERT(active_user_run() == nullptr);
  CAPMEM_ASSERT(spec.cr3.page_aligned() && spec.cr3.value() != 0);
  RunResult result{};
  ActiveRun run{.spec = &spec, .result = &result, .kctx = {}};
  const bool irq_on = arch::irq_save();  // ring 0 runs with interrupts off (smp.h)
  active_user_run() = &run;
  UserRegs start = spec.regs;
  start.rflags = (start.rflags & kUserFlagsMask) | kRflagsFixed | kRflagsIf;
  const std::uint64_t saved_cr3 = arch::read_cr3();
  smp::load_cr3(spec.cr3.value());
  user_enter(&start, &run.kctx);  // comes back through user_return()
  smp::load_cr3(saved_cr3);
  active_user_run() = nullptr;
  arch::irq_restore(irq_on);
  return result;
}

bool user_trap(TrapFrame* f) {
  ActiveRun* run = active_user_run();
  if (run == nullptr) return false;
  if (f->vector == kVectorPageFault) {
    const std::uint64_t cr2 = arch::read_cr2();  // before anything else can fault
    RunResult& r = *run->result;
    r.cr2 = cr2;
    if (run->spec->page_fault_hook != nullptr) {
      const FaultVerdict v = run->spec->page_fault_hook(run->spec->hook_ctx, VirtAddr{cr2}, f->error_code, *f);
      if (v.action == FaultAction::Resume) {
        ++r.faults_resumed;
        // The hook may have changed the frame: keep it a ring-3 frame with sane flags.
        f->cs = kUserCs;
        f->ss = kUserDs;
        f->rflags = (f->rflags & kUserFlagsMask) | kRflagsFixed | kRflagsIf;
        return true;
      }
      r.code = v.code;
    }
    end_run(*f, RunExit::PageFault);
  }
  if (f->vector == kVectorExitGate) end_run(*f, RunExit::ExitGate);
  // Any other exception is a property of the guest program: report it and end the run.
  log::str("capmem: guest exception ends the run:");
  dump_trap(*f);
  end_run(*f, RunExit::Exception);
}

}  // namespace capmem::kernel
