// Trap frames and the exception/interrupt entry (isr.S -> trap_dispatch in trap.cpp).
#pragma once

#include <cstdint>

namespace capmem::kernel {

// What isr.S leaves on the stack, lowest address first: the general registers pushed by
// the common stub, the vector and error code pushed by the per-vector stub (0 when the CPU
// pushes none), then the frame the CPU pushes in 64-bit mode (SDM Vol. 3A 6.14.2, Figure
// 6-9): RIP, CS, RFLAGS, RSP, SS, always all five in IA-32e mode.
struct TrapFrame {
  std::uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp;
  std::uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  std::uint64_t vector;
  std::uint64_t error_code;
  std::uint64_t rip, cs, rflags, rsp, ss;

  [[nodiscard]] bool from_user() const { return (cs & 3) == 3; }
};
static_assert(sizeof(TrapFrame) == 22 * 8, "isr.S pushes exactly this layout");

inline constexpr unsigned kVectorDoubleFault = 8;  // #DF (SDM Vol. 3A 6.15 "Interrupt 8"), on IST1
inline constexpr unsigned kVectorPageFault = 14;   // #PF (SDM Vol. 3A 6.15 "Interrupt 14")
inline constexpr unsigned kVectorExitGate = 0x81;  // ring-3 exit gate (`int 0x81`, DPL 3)
inline constexpr unsigned kVectorNmi = 2;

// Interrupt vectors (smp.cpp; docs/smp.md "Interrupts"). The legacy 8259 PICs are remapped
// to 0x20..0x2f and fully masked: anything arriving there is counted and ignored.
inline constexpr unsigned kVectorPicBase = 0x20;
inline constexpr unsigned kVectorShootdown = 0xf0;  // IPI: invalidate a range (rule 7.2)
inline constexpr unsigned kVectorWake = 0xf1;       // IPI: work posted / work done (wakes hlt)
inline constexpr unsigned kVectorSpurious = 0xff;   // local APIC spurious vector (no EOI)
inline constexpr unsigned kIrqVectors[] = {0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
                                           0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0xf0, 0xf1, 0xff};
inline constexpr unsigned kIrqVectorCount = sizeof kIrqVectors / sizeof kIrqVectors[0];
// isr.S's isr_table: vectors 0..31, the exit gate, then kIrqVectors in order.
inline constexpr unsigned kIsrTableSize = 33 + kIrqVectorCount;

// Called by isr.S for every vector with the frame on the stack; returning resumes it
// (iretq). Exits from ring 3 never return here (see user.cpp).
extern "C" void trap_dispatch(TrapFrame* f);

// Print vector, error code, RIP, CR2, CR3 and every general register.
void dump_trap(const TrapFrame& f);

// Print the return addresses of the frame-pointer chain starting at `rbp` (at most 16,
// only frames inside the kernel mapping): one `    backtrace: ...` line. dump_trap and
// env::panic (env_kernel.cpp) use it.
void backtrace_from(std::uint64_t rbp);

}  // namespace capmem::kernel
