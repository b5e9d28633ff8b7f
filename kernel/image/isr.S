/*
 * Exception and interrupt entry stubs. Every vector 0..31 and the ring-3 exit gate 0x81
 * get a stub that makes the stack uniform (a 0 error code where the CPU pushes none; SDM
 * Vol. 3A 6.13 "Error Code" and Table 6-1 for which vectors push one), pushes its vector
 * number and joins isr_common, which saves every general register and calls
 * trap_dispatch(TrapFrame*) (kernel/image/trap.h). Returning from trap_dispatch restores
 * the registers (possibly changed by the handler) and resumes with iretq.
 *
 * Stack alignment: in 64-bit mode the CPU aligns RSP to 16 before pushing its 5-word frame
 * (SDM Vol. 3A 6.14.2); with error code + vector + 15 registers = 22 words the call to
 * trap_dispatch is made with RSP 16-byte aligned, as the SysV ABI requires.
 */
	.text
	.code64

.macro ISR_NOERR vec
	.globl isr_\vec
isr_\vec:
	pushq $0
	pushq $\vec
	jmp isr_common
.endm

.macro ISR_ERR vec
	.globl isr_\vec
isr_\vec:
	pushq $\vec
	jmp isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31
ISR_NOERR 129      /* 0x81: ring-3 exit gate */

isr_common:
	pushq %r15
	pushq %r14
	pushq %r13
	pushq %r12
	pushq %r11
	pushq %r10
	pushq %r9
	pushq %r8
	pushq %rbp
	pushq %rdi
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %rbx
	pushq %rax
	cld
	mov %rsp, %rdi
	call trap_dispatch
	.globl isr_resume
isr_resume:
	popq %rax
	popq %rbx
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	popq %rbp
	popq %r8
	popq %r9
	popq %r10
	popq %r11
	popq %r12
	popq %r13
	popq %r14
	popq %r15
	add $16, %rsp      /* vector, error code */
	iretq

/* Table of stub addresses for the IDT set-up in cpu.cpp: isr_table[0..31], then 0x81. */
	.section .rodata
	.balign 8
	.globl isr_table
isr_table:
	.quad isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
	.quad isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
	.quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
	.quad isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31
	.quad isr_129

	.section .note.GNU-stack, "", @progbits
