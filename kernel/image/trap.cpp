// Exception dispatch: ring-3 traps go to the run that is in progress (user.cpp); anything
// else is a kernel bug: dump the machine state and fail the boot through isa-debug-exit,
// never hang or triple-fault.
#include "trap.h"

#include "arch.h"
#include "capmem/log.h"
#include "kernel.h"
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

// Ring-0 exceptions being reported: 0 none, 1 dumping one, 2 a fault inside that dump.
// Every ring-0 exception ends the boot, so the count never goes down.
int g_depth = 0;

// The ring-3 trap being handled (set on entry from ring 3, before user_trap): the CPU
// puts every trap from ring 3 at the top of the TSS.RSP0 stack, and the kernel runs on
// that stack only while it handles one, so a ring-0 exception whose interrupted RSP lies
// in the kRsp0Window bytes below that frame happened inside the handler of that trap (a
// run's #PF hook, the fault path) — a nested fault. After a run ends the kernel is back on
// its boot stack, so stale values here label nothing.
constexpr std::uint64_t kRsp0Window = 32 * 1024;  // cpu.cpp g_rsp0_stack
struct OuterTrap {
  std::uint64_t frame;  // address of its TrapFrame (0: none yet)
  std::uint64_t vector, error_code, rip, cr2;
};
OuterTrap g_outer{};

bool nested_in_ring3_trap(const TrapFrame& f) {
  return g_outer.frame != 0 && f.rsp <= g_outer.frame && g_outer.frame - f.rsp < kRsp0Window;
}

}  // namespace

void backtrace_from(std::uint64_t rbp) {
  log::str("    backtrace:");
  // Frame-pointer chain (-fno-omit-frame-pointer): [rbp] = caller's rbp, [rbp+8] = return
  // address. Only follow frames inside the kernel mapping, at most 16.
  for (int i = 0; i < 16; ++i) {
    if (rbp < kKernelVma || (rbp & 7) != 0 || rbp > ~std::uint64_t{15}) break;
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
  if (f->from_user()) {
    g_outer = OuterTrap{.frame = reinterpret_cast<std::uint64_t>(f),
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
  const int depth = ++g_depth;
  if (depth > 2) exit_qemu(kExitFail);
  if (depth == 2) {
    log::str("\n*** nested CPU exception ");
    log::dec(f->vector);
    log::str(" (");
    log::str(vector_name(f->vector));
    log::str(") while reporting an exception: ");
    reg("rip", f->rip);
    log::str(" ");
    reg("cr2", arch::read_cr2());
    log::str("\ncapmem: boot failed: nested CPU exception\n");
    exit_qemu(kExitFail);
  }
  dump_trap(*f);
  if (nested_in_ring3_trap(*f)) {
    log::str("    nested: inside the kernel's handler of ring-3 exception ");
    log::dec(g_outer.vector);
    log::str(" (");
    log::str(vector_name(g_outer.vector));
    log::str(") ");
    reg("error", g_outer.error_code);
    log::str(" ");
    reg("rip", g_outer.rip);
    log::str(" ");
    reg("cr2", g_outer.cr2);
    log::nl();
    log::str("capmem: boot failed: CPU exception inside a ring-3 trap handler\n");
    exit_qemu(kExitFail);
  }
  log::str("capmem: boot failed: unexpected CPU exception\n");
  exit_qemu(kExitFail);
}

}  // namespace capmem::kernel
