// Exception dispatch: ring-3 traps go to the run that is in progress (user.cpp); anything
// else is a kernel bug: dump the machine state and fail the boot through isa-debug-exit,
// never hang or triple-fault.
#include "trap.h"

#include "arch.h"
#include "capmem/log.h"
#include "kernel.h"
#include "percpu.h"
#include "smp.h"
#include "user.h"

namespace capmem::kernel {
namespace {

const char* vector_name(std::uint64_t v) {
  // SDM Vol. 3A 6.3.1, Table 6-1 "Protected-Mode Exceptions and Interrupts".
  // A packed table (clang-format would put one string per line).
  // clang-format off
  static constexpr const char* kNames[32] = {
      "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
      "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor segment overrun",
      "#TS invalid TSS", "#NP segment not present", "#SS stack-segment fault", "#GP general protection",
      "#PF page fault", "reserved 15", "#MF x87 FP error", "#AC alignment check", "#MC machine check",
      "#XM SIMD FP exception", "#VE virtualization exception", "#CP control protection", "reserved 22",
      "reserved 23", "reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
      "#VC VMM communication", "#SX security exception", "reserved 31"};
  // clang-format on
  if (v < 32) return kNames[v];
  if (v == kVectorExitGate) return "exit gate (int 0x81)";
  return "interrupt";
}

void reg(const char* name, std::uint64_t v) {
  log::str(name);
  log::str("=0x");
  log::hex(v, 16);
}

bool is_ist_vector(std::uint64_t v) { return v == 2 || v == 8 || v == 18; }  // NMI, #DF, #MC

// The ring-3 trap being handled on each CPU (set on entry from ring 3, before user_trap):
// the CPU puts every trap from ring 3 at the top of its TSS.RSP0 stack, and the kernel runs
// on that stack only while it handles one, so a ring-0 exception whose interrupted RSP lies
// in the kRsp0StackSize bytes below that frame happened inside the handler of that trap (a
// run's #PF hook, the fault path): a nested fault. After a run ends the CPU is back on its
// own kernel stack, so stale values here label nothing.
struct OuterTrap {
  std::uint64_t frame;  // address of its TrapFrame (0: none yet)
  std::uint64_t vector, error_code, rip, cr2;
};
OuterTrap g_outer[kMaxKernelCpus]{};

bool nested_in_ring3_trap(const TrapFrame& f) {
  const OuterTrap& o = g_outer[percpu_id()];
  return o.frame != 0 && f.rsp <= o.frame && o.frame - f.rsp < kRsp0StackSize;
}

// NMI, #DF and #MC run on IST1 and may have interrupted anything, even the instructions
// between a swapgs and its iretq: GS is not trusted. Their CPU's PerCpu pointer sits just
// above the CPU-pushed frame, at the top of that CPU's IST1 stack (cpu.cpp gdt_tss_init).
void adopt_gs_from_ist(const TrapFrame* f) {
  const auto* top = reinterpret_cast<const char*>(f + 1);  // = TSS.IST1 (top - 16)
  PerCpu* c = *reinterpret_cast<PerCpu* const*>(top + 8);
  arch::wrmsr(arch::MSR_GS_BASE, reinterpret_cast<std::uint64_t>(c));
}

// A ring-0 #PF or any #DF whose CR2 (or, failing that, interrupted RSP) lies in a stack's
// guard page (cpu.cpp): that stack overflowed. The #PF on the guard cannot push its own
// frame on the same stack, so it arrives as #DF on IST1 (SDM Vol. 3A 6.15 "Interrupt 8",
// Table 6-5: a page fault while delivering a page fault). The saved CS:RIP of a #DF are
// undefined (6.15), so a #DF is checked whatever its frame says.
StackGuard overflowed_stack(const TrapFrame& f) {
  if (f.vector != kVectorDoubleFault && (f.vector != kVectorPageFault || f.from_user())) return {};
  const StackGuard g = find_stack_guard(arch::read_cr2());
  return g.name != nullptr ? g : find_stack_guard(f.rsp);
}

void report_overflow(const StackGuard& g, const char* tail) {
  log::str("capmem: kernel stack overflow on cpu ");
  log::dec(g.cpu);
  log::str(" (");
  log::str(g.name);
  log::str(")");
  if (g.cpu != percpu_id()) {
    log::str(", touched from cpu ");
    log::dec(percpu_id());
  }
  log::str(": guard page 0x");
  log::hex(g.guard, 16);
  log::str(" below [0x");
  log::hex(g.guard + PAGE_SIZE, 16);
  log::str(", 0x");
  log::hex(g.stack_hi, 16);
  log::str(")");
  log::str(tail);
  log::nl();
}

}  // namespace

void backtrace_from(std::uint64_t rbp) {
  log::str("    backtrace:");
  // Frame-pointer chain (-fno-omit-frame-pointer): [rbp] = caller's rbp, [rbp+8] = return
  // address. Only follow frames inside the kernel mapping, at most 16.
  for (int i = 0; i < 16; ++i) {
    if (rbp < kKernelVma || (rbp & 7) != 0 || rbp > ~std::uint64_t{15}) break;
    if (find_stack_guard(rbp).name != nullptr || find_stack_guard(rbp + 8).name != nullptr) break;  // not mapped
    const auto* fp = reinterpret_cast<const std::uint64_t*>(rbp);
    log::str(" 0x");
    log::hex(fp[1], 16);
    if (fp[0] <= rbp) break;
    rbp = fp[0];
  }
  log::nl();
}

void dump_trap(const TrapFrame& f) {
  log::str("\n*** CPU exception ");
  log::dec(f.vector);
  log::str(" (");
  log::str(vector_name(f.vector));
  log::str(") at ring ");
  log::dec(f.cs & 3);
  log::nl();
  log::str("    on cpu ");
  log::dec(percpu_id());
  log::nl();
  log::str("    ");
  reg("error", f.error_code);
  log::str(" ");
  reg("rip", f.rip);
  log::str(" ");
  reg("cs", f.cs);
  log::nl();
  log::str("    ");
  reg("cr2", arch::read_cr2());
  log::str(" ");
  reg("cr3", arch::read_cr3());
  log::str(" ");
  reg("rflags", f.rflags);
  log::nl();
  const struct {
    const char* n;
    std::uint64_t v;
  } regs[] = {{"rax", f.rax}, {"rbx", f.rbx}, {"rcx", f.rcx}, {"rdx", f.rdx}, {"rsi", f.rsi}, {"rdi", f.rdi},
              {"rbp", f.rbp}, {"rsp", f.rsp}, {"r8 ", f.r8},  {"r9 ", f.r9},  {"r10", f.r10}, {"r11", f.r11},
              {"r12", f.r12}, {"r13", f.r13}, {"r14", f.r14}, {"r15", f.r15}, {"ss ", f.ss}};
  for (std::size_t i = 0; i < sizeof regs / sizeof regs[0]; ++i) {
    log::str(i % 3 == 0 ? "    " : " ");
    reg(regs[i].n, regs[i].v);
    if (i % 3 == 2 || i + 1 == sizeof regs / sizeof regs[0]) log::nl();
  }
  if (!f.from_user()) backtrace_from(f.rbp);
}

extern "C" void trap_dispatch(TrapFrame* f) {
  if (is_ist_vector(f->vector)) adopt_gs_from_ist(f);
  if (f->vector >= 32 && f->vector != kVectorExitGate) {
    smp::on_interrupt(static_cast<unsigned>(f->vector));
    return;
  }
  if (f->vector == kVectorNmi) (void)smp::on_nmi();  // a panic's stop request: never returns
  if (f->from_user() && !is_ist_vector(f->vector)) {
    g_outer[percpu_id()] = OuterTrap{.frame = reinterpret_cast<std::uint64_t>(f),
                                     .vector = f->vector,
                                     .error_code = f->error_code,
                                     .rip = f->rip,
                                     .cr2 = arch::read_cr2()};
    if (user_trap(f)) return;  // resumed (user_trap may also not return: the run ended)
  }
  // A ring-0 exception is a kernel bug: report it once and fail the boot. An exception
  // while reporting (the dump read a bad frame pointer, the console faulted) gets one line
  // without touching the stack chain; a third level exits without printing at all, so a
  // fault in the printing itself cannot recurse until the stack is gone.
  const int depth = ++percpu()->exception_depth;
  if (depth > 2) exit_qemu(kExitFail);
  const StackGuard overflow = overflowed_stack(*f);
  if (depth == 2) {
    log::str("\n*** nested CPU exception ");
    log::dec(f->vector);
    log::str(" (");
    log::str(vector_name(f->vector));
    log::str(") while reporting an exception: ");
    reg("rip", f->rip);
    log::str(" ");
    reg("cr2", arch::read_cr2());
    log::nl();
    // An overflow of IST1 itself (while reporting): the #PF on its guard cannot be
    // delivered on IST1, the #DF it turns into switches to the top of IST1 again and lands
    // here. Not a triple fault: delivering the #DF succeeds (docs/boot.md).
    if (overflow.name != nullptr) report_overflow(overflow, " while reporting an exception");
    log::str("capmem: boot failed: nested CPU exception\n");
    console_flush();
    exit_qemu(kExitFail);
  }
  (void)smp::begin_panic();  // another CPU already reporting: this one halts in there
  const unsigned others = smp::online_count() - 1;
  const unsigned stopped = smp::stop_others();
  dump_trap(*f);
  const bool nested = nested_in_ring3_trap(*f);
  if (nested) {
    const OuterTrap& o = g_outer[percpu_id()];
    log::str("    nested: inside the kernel's handler of ring-3 exception ");
    log::dec(o.vector);
    log::str(" (");
    log::str(vector_name(o.vector));
    log::str(") ");
    reg("error", o.error_code);
    log::str(" ");
    reg("rip", o.rip);
    log::str(" ");
    reg("cr2", o.cr2);
    log::nl();
  }
  if (overflow.name != nullptr) report_overflow(overflow, "");
  if (others != 0) {
    log::str("capmem: stopped ");
    log::dec(stopped);
    log::str(" of ");
    log::dec(others);
    log::str(" other CPUs\n");
  }
  log::str(overflow.name != nullptr ? "capmem: boot failed: kernel stack overflow\n"
           : nested                 ? "capmem: boot failed: CPU exception inside a ring-3 trap handler\n"
                                    : "capmem: boot failed: unexpected CPU exception\n");
  console_flush();
  exit_qemu(kExitFail);
}

}  // namespace capmem::kernel
