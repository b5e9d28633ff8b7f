/*
 * Tiny ring-3 programs for ktest_ring3.cpp. Position independent, no data: the test copies
 * the bytes between a program's start and end labels into a user page at CODE_BASE and runs
 * it with run_user(). Inputs come in registers; `int $0x81` is the exit gate.
 */
	.section .rodata.ring3_progs, "a", @progbits

/* rax = 3 * rdi + 7, rbx = rsi, rcx = CS (to prove CPL 3), r15 = 0xc0ffee, then exit. */
	.globl ring3_prog_exit, ring3_prog_exit_end, ring3_prog_exit_ud2
ring3_prog_exit:
	lea 7(%rdi,%rdi,2), %rax
	mov %rsi, %rbx
	mov %cs, %ecx
	mov $0xc0ffee, %r15d
	int $0x81
ring3_prog_exit_ud2:
	ud2                     /* never resumed */
ring3_prog_exit_end:

/* Read 8 bytes at rdi into rax, then exit. */
	.globl ring3_prog_load, ring3_prog_load_end
ring3_prog_load:
	mov (%rdi), %rax
	int $0x81
	ud2
ring3_prog_load_end:

/* Store rsi (8 bytes) at rdi, read it back into rax, then exit. */
	.globl ring3_prog_store, ring3_prog_store_end
ring3_prog_store:
	mov %rsi, (%rdi)
	mov (%rdi), %rax
	int $0x81
	ud2
ring3_prog_store_end:

/* Jump to rdi (an instruction fetch there). */
	.globl ring3_prog_jump, ring3_prog_jump_end
ring3_prog_jump:
	jmp *%rdi
ring3_prog_jump_end:

/* Store rdx at rdi + 4096 * i for i in [0, rcx), then exit with rax = rcx. */
	.globl ring3_prog_fill, ring3_prog_fill_end
ring3_prog_fill:
	mov %rcx, %rax
	test %rcx, %rcx
	jz 2f
1:	mov %rdx, (%rdi)
	add $4096, %rdi
	dec %rcx
	jnz 1b
2:	int $0x81
	ud2
ring3_prog_fill_end:

/* An invalid opcode at ring 3. */
	.globl ring3_prog_ud, ring3_prog_ud_end
ring3_prog_ud:
	ud2
ring3_prog_ud_end:

	.section .note.GNU-stack, "", @progbits
