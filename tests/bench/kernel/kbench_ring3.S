/*
 * Ring-3 loops for the in-kernel fault benchmarks (kbench.cpp). Position independent, no
 * data: kbench.cpp copies the bytes between kbench_progs and kbench_progs_end into one user
 * page in the JIT arena and enters at the offset of a label. rcx >= 1.
 */
	.section .rodata.ring3_progs, "a", @progbits
	.globl kbench_progs, kbench_progs_end, kbench_read_pages, kbench_write_pages

kbench_progs:
/* Load 8 bytes from rdi + 4096 * i for i in [0, rcx), then exit. */
kbench_read_pages:
1:	mov (%rdi), %rax
	add $4096, %rdi
	dec %rcx
	jnz 1b
	int $0x81
	ud2

/* Store rdx (8 bytes) at rdi + 4096 * i for i in [0, rcx), then exit. */
kbench_write_pages:
1:	mov %rdx, (%rdi)
	add $4096, %rdi
	dec %rcx
	jnz 1b
	int $0x81
	ud2
kbench_progs_end:

	.section .note.GNU-stack, "", @progbits
