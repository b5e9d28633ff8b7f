/*
 * Application-processor start-up trampoline (docs/smp.md "AP start").
 *
 * smp.cpp copies the bytes [ap_trampoline, ap_trampoline_end) to the physical page
 * AP_TRAMPOLINE_PA (below 1 MiB, page-aligned: the Start-up IPI's vector is its page number,
 * SDM Vol. 3A 9.4.4.1), fills the parameter block at AP_PARAMS_OFF and sends INIT-SIPI-SIPI.
 * The AP starts here in real mode with CS = AP_TRAMPOLINE_PA >> 4, IP = 0, and walks the same
 * path as boot.S (SDM Vol. 3A 10.8.5 "Initializing IA-32e Mode"): protected mode, PAE, CR3 =
 * a PML4 with an identity slot 0 (params), EFER.LME (+NXE), paging, 64-bit code, then the
 * higher half at ap_main(PerCpu*) on its own stack.
 *
 * Every absolute address is AP_TRAMPOLINE_PA + (label - ap_trampoline): the code runs at the
 * copy's address, not where it is linked.
 */
#define AP_TRAMPOLINE_PA 0x8000
#define AP_PARAMS_OFF 0xf00
#define T(x) (AP_TRAMPOLINE_PA + (x) - ap_trampoline)
#define P(off) (AP_TRAMPOLINE_PA + AP_PARAMS_OFF + (off))
/* Parameter block (smp.cpp: struct ApParams). */
#define P_CR3 0      /* u32: PML4 (physical, < 4 GiB) */
#define P_NX 4       /* u32: 1 = set EFER.NXE */
#define P_ENTRY 8    /* u64: ap_main, higher half */
#define P_STACK 16   /* u64: stack pointer for ap_main */
#define P_PERCPU 24  /* u64: &g_cpus[id] */

	.section .rodata.ap_trampoline, "a", @progbits
	.balign 16
	.globl ap_trampoline, ap_trampoline_end
	.code16
ap_trampoline:
	cli
	cld
	xor %ax, %ax
	mov %ax, %ds
	lgdtl T(tramp_gdtr)
	mov %cr0, %eax
	or $1, %eax                    /* PE */
	mov %eax, %cr0
	ljmpl $0x18, $T(tramp_pm32)

	.code32
tramp_pm32:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $(1 << 5), %eax             /* PAE */
	mov %eax, %cr4
	mov P(P_CR3), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx          /* IA32_EFER */
	rdmsr
	or $(1 << 8), %eax             /* LME */
	testl $1, P(P_NX)
	jz 1f
	or $(1 << 11), %eax            /* NXE */
1:	wrmsr
	mov %cr0, %eax
	and $0x9fffffff, %eax          /* CD = NW = 0: an AP leaves INIT with caching off
	                                * (CR0 = 60000010H, SDM Vol. 3A 10.1.1 Table 10-1) */
	or $0x80010001, %eax           /* PG | WP | PE */
	mov %eax, %cr0
	ljmp $0x08, $T(tramp_lm64)

	.code64
tramp_lm64:
	mov P(P_STACK), %rsp
	mov P(P_PERCPU), %rdi
	mov P(P_ENTRY), %rax
	xor %ebp, %ebp                 /* end of the frame-pointer chain */
	jmp *%rax

	.balign 16
tramp_gdt:                         /* the same layout as boot.S's boot_gdt */
	.quad 0
	.quad 0x00af9b000000ffff       /* 0x08: 64-bit code, DPL 0 */
	.quad 0x00cf93000000ffff       /* 0x10: data, DPL 0 */
	.quad 0x00cf9b000000ffff       /* 0x18: 32-bit code, DPL 0 */
tramp_gdt_end:
tramp_gdtr:
	.word tramp_gdt_end - tramp_gdt - 1
	.long T(tramp_gdt)
ap_trampoline_end:

	.section .note.GNU-stack, "", @progbits
