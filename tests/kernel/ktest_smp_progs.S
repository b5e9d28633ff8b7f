/*
 * Ring-3 programs of the SMP cases (ktest_smp.cpp), copied into a guest page like those of
 * ktest_ring3_progs.S.
 */
	.section .rodata.ring3_progs, "a", @progbits

/* Reader: while the 8 bytes at rdi equal rdx, count one more read at (rsi). Leaves through
 * the exit gate with rax = the first different value, or through the #PF of a read that no
 * longer translates. */
	.globl ring3_prog_reader, ring3_prog_reader_end
ring3_prog_reader:
1:	mov (%rdi), %rax
	cmp %rdx, %rax
	jne 2f
	incq (%rsi)
	jmp 1b
2:	int $0x81
	ud2
ring3_prog_reader_end:

	.section .note.GNU-stack, "", @progbits
