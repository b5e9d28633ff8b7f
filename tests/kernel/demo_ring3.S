/*
 * The demo's guest program at ring 3 (capmem::demo, tests/demo/demo.h): real x86-64
 * code that walks the 16-byte op table at CODE_BASE through guest loads and performs each
 * load/store itself, so every page-in and copy-on-write is a real hardware #PF handled at
 * ring 0 by fault::Run::handle_page_fault. Lives in the JIT arena (PML4 slot 1), never in
 * guest memory. Out: r8 = load checksum (same fold as demo::run_ops), r9 = ops done.
 * Op fields: kind @0 (0 end, 1 load, 2 store), width @1, addr @4 (u32), value @8 (u64).
 */
	.section .rodata.ring3_progs, "a", @progbits
	.globl ring3_demo_prog, ring3_demo_prog_end
ring3_demo_prog:
	mov $0x400000, %esi          /* CODE_BASE */
	xor %r8d, %r8d
	xor %r9d, %r9d
1:	movzbl (%rsi), %eax          /* kind */
	test %eax, %eax
	jz 9f
	movzbl 1(%rsi), %ecx         /* width */
	mov 4(%rsi), %edi            /* addr (zero-extended) */
	mov 8(%rsi), %rdx            /* value */
	cmp $2, %eax
	je 5f
	/* load of `width` bytes into rax */
	cmp $1, %ecx
	jne 2f
	movzbl (%rdi), %eax
	jmp 4f
2:	cmp $2, %ecx
	jne 3f
	movzwl (%rdi), %eax
	jmp 4f
3:	cmp $4, %ecx
	jne 31f
	mov (%rdi), %eax
	jmp 4f
31:	mov (%rdi), %rax
4:	rol $7, %r8
	xor %rax, %r8
	jmp 8f
	/* store of `width` bytes of rdx */
5:	cmp $1, %ecx
	jne 6f
	mov %dl, (%rdi)
	jmp 7f
6:	cmp $2, %ecx
	jne 61f
	mov %dx, (%rdi)
	jmp 7f
61:	cmp $4, %ecx
	jne 62f
	mov %edx, (%rdi)
	jmp 7f
62:	mov %rdx, (%rdi)
7:	rol $7, %r8                  /* a store contributes value 0 to the fold */
8:	add $16, %rsi
	inc %r9
	jmp 1b
9:	int $0x81
	ud2
ring3_demo_prog_end:

	.section .note.GNU-stack, "", @progbits
