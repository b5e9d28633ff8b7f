// Ring-3 runs: see user.h.
#include "user.h"

#include <cstddef>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "kernel.h"

namespace capmem::kernel {

struct KernelContext {
  std::uint64_t rbx, rbp, r12, r13, r14, r15, rsp;
};

extern "C" void user_enter(const UserRegs* regs, KernelContext* save);
extern "C" [[noreturn]] void user_return(KernelContext* ctx);

static_assert(offsetof(UserRegs, rdi) == 40 && offsetof(UserRegs, r15) == 112 && offsetof(UserRegs, rip) == 120 &&
                  offsetof(UserRegs, rsp) == 128 && offsetof(UserRegs, rflags) == 136,
              "user.S uses these offsets");

namespace {

// The run in progress. Invariant: active <=> a run_user() call is on the boot stack and
// kctx holds its callee-saved registers; result points at its RunResult.
struct ActiveRun {
  bool active;
  const RunSpec* spec;
  RunResult* result;
  KernelContext kctx;
};
ActiveRun g_run;

// RFLAGS bits a guest may choose (SDM Vol. 1 3.4.3): CF, PF, AF, ZF, SF, DF, OF. Bit 1 is
// always 1. IF, TF, IOPL, NT, RF, VM, AC, VIF, VIP, ID stay 0.
constexpr std::uint64_t kUserFlagsMask = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800;
constexpr std::uint64_t kRflagsFixed = 0x2;

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
  RunResult& r = *g_run.result;
  r.exit = exit;
  r.regs = regs_of(f);
  r.vector = f.vector;
  r.error_code = f.error_code;
  user_return(&g_run.kctx);
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
  CAPMEM_ASSERT(!g_run.active);
  CAPMEM_ASSERT(spec.cr3.page_aligned() && spec.cr3.value() != 0);
  RunResult result{};
  g_run.spec = &spec;
  g_run.result = &result;
  g_run.active = true;
  UserRegs start = spec.regs;
  start.rflags = (start.rflags & kUserFlagsMask) | kRflagsFixed;
  const std::uint64_t saved_cr3 = arch::read_cr3();
  arch::write_cr3(spec.cr3.value());
  user_enter(&start, &g_run.kctx);  // comes back through user_return()
  arch::write_cr3(saved_cr3);
  g_run.active = false;
  g_run.spec = nullptr;
  g_run.result = nullptr;
  return result;
}

bool user_trap(TrapFrame* f) {
  if (!g_run.active) return false;
  if (f->vector == kVectorPageFault) {
    const std::uint64_t cr2 = arch::read_cr2();  // before anything else can fault
    RunResult& r = *g_run.result;
    r.cr2 = cr2;
    if (g_run.spec->page_fault_hook != nullptr) {
      const FaultVerdict v = g_run.spec->page_fault_hook(g_run.spec->hook_ctx, VirtAddr{cr2}, f->error_code, *f);
      if (v.action == FaultAction::Resume) {
        ++r.faults_resumed;
        // The hook may have changed the frame: keep it a ring-3 frame with sane flags.
        f->cs = kUserCs;
        f->ss = kUserDs;
        f->rflags = (f->rflags & kUserFlagsMask) | kRflagsFixed;
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
