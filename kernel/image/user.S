/*
 * Ring-3 entry and the way back (kernel/image/user.cpp).
 *
 * user_enter(const UserRegs* regs, KernelContext* save): saves the SysV callee-saved
 * registers and RSP in *save, builds the 64-bit iretq frame (SS, RSP, RFLAGS, CS, RIP; SDM
 * Vol. 3A 6.14.3 "IRET in IA-32e Mode") for ring 3, loads every guest register and iretq's.
 * It "returns" only through user_return.
 *
 * user_return(KernelContext* ctx): called on the RSP0 stack by the trap path when a run ends:
 * restores RSP and the callee-saved registers from ctx and returns from user_enter. The trap
 * frame left on the RSP0 stack is abandoned (RSP0 starts afresh on the next trap from ring 3).
 * The trap entry already executed swapgs: GS is the kernel's again here.
 */
#define UR_RAX 0
#define UR_RBX 8
#define UR_RCX 16
#define UR_RDX 24
#define UR_RSI 32
#define UR_RDI 40
#define UR_RBP 48
#define UR_R8 56
#define UR_R9 64
#define UR_R10 72
#define UR_R11 80
#define UR_R12 88
#define UR_R13 96
#define UR_R14 104
#define UR_R15 112
#define UR_RIP 120
#define UR_RSP 128
#define UR_RFLAGS 136

#define USER_DS (0x18 | 3)
#define USER_CS (0x20 | 3)
#define KERNEL_DS 0x10

	.text
	.code64
	.globl user_enter
user_enter:
	mov %rbx, 0(%rsi)
	mov %rbp, 8(%rsi)
	mov %r12, 16(%rsi)
	mov %r13, 24(%rsi)
	mov %r14, 32(%rsi)
	mov %r15, 40(%rsi)
	mov %rsp, 48(%rsi)           /* -> our return address */
	pushq $USER_DS
	pushq UR_RSP(%rdi)
	pushq UR_RFLAGS(%rdi)
	pushq $USER_CS
	pushq UR_RIP(%rdi)
	mov $USER_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov UR_RAX(%rdi), %rax
	mov UR_RBX(%rdi), %rbx
	mov UR_RCX(%rdi), %rcx
	mov UR_RDX(%rdi), %rdx
	mov UR_RSI(%rdi), %rsi
	mov UR_RBP(%rdi), %rbp
	mov UR_R8(%rdi), %r8
	mov UR_R9(%rdi), %r9
	mov UR_R10(%rdi), %r10
	mov UR_R11(%rdi), %r11
	mov UR_R12(%rdi), %r12
	mov UR_R13(%rdi), %r13
	mov UR_R14(%rdi), %r14
	mov UR_R15(%rdi), %r15
	mov UR_RDI(%rdi), %rdi
	/* swapgs discipline (docs/smp.md): the PerCpu pointer goes to IA32_KERNEL_GS_BASE for
	 * the whole time at ring 3; the trap entry (isr.S) swaps it back. Interrupts are off
	 * here (only an NMI can land between the two, and trap.cpp handles that). */
	swapgs
	iretq

	.globl user_return
user_return:
	mov 48(%rdi), %rsp
	mov 0(%rdi), %rbx
	mov 8(%rdi), %rbp
	mov 16(%rdi), %r12
	mov 24(%rdi), %r13
	mov 32(%rdi), %r14
	mov 40(%rdi), %r15
	mov $KERNEL_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss                /* the trap from ring 3 loaded a null SS */
	ret

	.section .note.GNU-stack, "", @progbits
