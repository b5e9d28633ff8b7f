/*
 * Exception and interrupt entry stubs. Every vector 0..31 and the ring-3 exit gate 0x81
 * and the interrupt vectors of trap.h get a stub that makes the stack uniform (a 0 error code where the CPU pushes none; SDM
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
/* Interrupts (trap.h kIrqVectors): the masked 8259's 0x20..0x2f, the IPIs, APIC spurious. */
ISR_NOERR 32
ISR_NOERR 33
ISR_NOERR 34
ISR_NOERR 35
ISR_NOERR 36
ISR_NOERR 37
ISR_NOERR 38
ISR_NOERR 39
ISR_NOERR 40
ISR_NOERR 41
ISR_NOERR 42
ISR_NOERR 43
ISR_NOERR 44
ISR_NOERR 45
ISR_NOERR 46
ISR_NOERR 47
ISR_NOERR 240      /* 0xf0: TLB shootdown IPI */
ISR_NOERR 241      /* 0xf1: wake IPI */
ISR_NOERR 255      /* 0xff: APIC spurious */

isr_common:
	/* swapgs discipline (docs/smp.md): a trap from ring 3 (the saved CS, 24(%rsp) here, has
	 * RPL 3) swaps the guest's GS base out and this CPU's PerCpu block in. From ring 0 GS is
	 * already the kernel's. NMI/#DF/#MC may arrive between a swapgs and its iretq with a
	 * ring-0 CS and the guest's GS: trap_dispatch reloads IA32_GS_BASE for them from their
	 * IST stack, and they never return. */
	testb $3, 24(%rsp)
	jz 1f
	swapgs
1:
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
	testb $3, 8(%rsp)  /* back to ring 3: the guest's GS base again */
	jz 2f
	swapgs
2:
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
	.quad isr_32, isr_33, isr_34, isr_35, isr_36, isr_37, isr_38, isr_39
	.quad isr_40, isr_41, isr_42, isr_43, isr_44, isr_45, isr_46, isr_47
	.quad isr_240, isr_241, isr_255

	.section .note.GNU-stack, "", @progbits
