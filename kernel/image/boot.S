/*
 * capmem kernel entry: PVH boot (x86/HVM direct boot ABI, as QEMU's `-kernel` implements it
 * for an ELF64 carrying a XEN_ELFNOTE_PHYS32_ENTRY note) -> IA-32e (long) mode -> the
 * higher half -> kmain(start_info_pa). See docs/boot.md.
 *
 * State at pvh_entry (xen/include/public/arch-x86/hvm/start_info.h): 32-bit protected mode,
 * paging off, flat 4 GiB CS/DS/ES/SS, interrupts off, EBX = physical address of struct
 * hvm_start_info. Nothing else (no stack, GDT contents undefined).
 */
#define KERNEL_VMA 0xffffffff80000000
#define PHYS(x) ((x) - KERNEL_VMA)

/* Paging-structure entry bits (SDM Vol. 3A 4.5, Tables 4-15..4-18). */
#define PTE_P   0x001
#define PTE_W   0x002
#define PTE_PS  0x080

/* ---- The PVH note (XEN_ELFNOTE_PHYS32_ENTRY = 18). QEMU reads an 8-byte descriptor for
 * an ELF64 image; the PT_NOTE segment must be 4-byte aligned (linker/kernel.ld). */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4            /* namesz: "Xen\0" */
	.long 8            /* descsz */
	.long 18           /* type: XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry    /* physical: .boot runs where it is loaded */
	.balign 4

/* ---- Low, identity-addressed boot code (VMA == LMA, linker/kernel.ld section .boot). */
	.section .boot.text, "ax", @progbits
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	mov %ebx, %ebp                 /* hvm_start_info PA, handed to kmain */
	lgdt boot_gdtr
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	ljmp $0x18, $1f                /* 32-bit code segment of our own GDT */
1:
	/* Zero .bss (the page tables and stacks live there). */
	mov $PHYS(__bss_start), %edi
	mov $PHYS(__bss_end), %ecx
	sub %edi, %ecx
	xor %eax, %eax
	rep stosb
	mov $PHYS(boot_stack_top), %esp

	/* Long mode present? CPUID.80000001H:EDX.LM[bit 29] (SDM Vol. 3A 10.8.5 / 9.8.5). */
	mov $0x80000000, %eax
	cpuid
	cmp $0x80000001, %eax
	jb no_long_mode
	mov $0x80000001, %eax
	cpuid
	bt $29, %edx
	jnc no_long_mode
	mov %edx, %esi                 /* keep: bit 20 = NX */

	/* boot_pd: 4 page directories = 2048 2 MiB pages mapping physical [0, 4 GiB). */
	mov $PHYS(boot_pd), %edi
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $21, %eax
	or $(PTE_P | PTE_W | PTE_PS), %eax
	mov %eax, (%edi,%ecx,8)        /* high dword stays 0 (bss) */
	inc %ecx
	cmp $2048, %ecx
	jb 2b
	/* boot_pdpt_dm[0..3] -> the four PDs (direct map and, for the switch, identity). */
	mov $PHYS(boot_pdpt_dm), %edi
	mov $(PHYS(boot_pd) + PTE_P + PTE_W), %eax
	mov %eax, 0(%edi)
	add $4096, %eax
	mov %eax, 8(%edi)
	add $4096, %eax
	mov %eax, 16(%edi)
	add $4096, %eax
	mov %eax, 24(%edi)
	/* boot_pdpt_k[510] -> the first PD: 0xffffffff80000000 maps physical [0, 1 GiB). */
	movl $(PHYS(boot_pd) + PTE_P + PTE_W), PHYS(boot_pdpt_k) + 510 * 8
	/* PML4: slot 0 = identity (dropped after the jump), 256 = direct map, 511 = kernel. */
	mov $PHYS(boot_pml4), %edi
	movl $(PHYS(boot_pdpt_dm) + PTE_P + PTE_W), 0(%edi)
	movl $(PHYS(boot_pdpt_dm) + PTE_P + PTE_W), 256 * 8(%edi)
	movl $(PHYS(boot_pdpt_k) + PTE_P + PTE_W), 511 * 8(%edi)

	/* Enter IA-32e mode (SDM Vol. 3A 10.8.5 "Initializing IA-32e Mode"): CR4.PAE, CR3,
	 * IA32_EFER.LME (+ NXE when CPUID has NX, so XD bits are legal), then CR0.PG. */
	mov %cr4, %eax
	or $(1 << 5), %eax             /* PAE */
	mov %eax, %cr4
	mov $PHYS(boot_pml4), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx          /* IA32_EFER */
	rdmsr
	or $(1 << 8), %eax             /* LME */
	bt $20, %esi
	jnc 3f
	or $(1 << 11), %eax            /* NXE */
3:	wrmsr
	mov %cr0, %eax
	or $0x80010001, %eax           /* PG | WP | PE */
	mov %eax, %cr0
	ljmp $0x08, $long_mode_low     /* 64-bit code segment: IA-32e mode active */

no_long_mode:
	mov $msg_no_lm, %esi
4:	lodsb
	test %al, %al
	jz 5f
	outb %al, $0xe9
	jmp 4b
5:	mov $1, %eax
	outl %eax, $0xf4               /* isa-debug-exit: failure */
6:	hlt
	jmp 6b

	.code64
long_mode_low:
	movabs $higher_half, %rax
	jmp *%rax

	.section .boot.data, "aw", @progbits
	.balign 16
boot_gdt:
	.quad 0
	.quad 0x00af9b000000ffff       /* 0x08: 64-bit code, DPL 0 (L=1, D=0) */
	.quad 0x00cf93000000ffff       /* 0x10: data, DPL 0 */
	.quad 0x00cf9b000000ffff       /* 0x18: 32-bit code, DPL 0 */
	/* Accessed bits (type bit 0) preset: the CPU never writes this read-only GDT
	 * (SDM Vol. 3A 3.4.5.1). */
boot_gdt_end:
boot_gdtr:
	.word boot_gdt_end - boot_gdt - 1
	.long boot_gdt
msg_no_lm:
	.asciz "capmem: CPU has no long mode\n"

/* ---- Higher half. */
	.text
	.code64
higher_half:
	lgdt boot_gdtr_high(%rip)      /* same GDT, through the kernel mapping */
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	lea boot_stack_top(%rip), %rsp
	/* Drop the identity mapping: PML4 slot 0 belongs to guest memory (rule 4.1). A CR3
	 * load flushes the non-global TLB entries (SDM Vol. 3A 4.10.4.1). */
	movq $0, boot_pml4(%rip)
	mov %cr3, %rax
	mov %rax, %cr3
	mov %ebp, %edi                 /* kmain(start_info_pa) */
	xor %ebp, %ebp                 /* end of the frame-pointer chain */
	call kmain
7:	cli
	hlt
	jmp 7b

	.section .rodata
	.balign 8
boot_gdtr_high:
	.word boot_gdt_end - boot_gdt - 1
	.quad boot_gdt + KERNEL_VMA

/* ---- Boot page tables and stacks (zeroed above). */
	.section .bss
	.balign 4096
	.globl boot_pml4, boot_pdpt_dm, boot_pdpt_k, boot_pd
boot_pml4:    .skip 4096
boot_pdpt_dm: .skip 4096
boot_pdpt_k:  .skip 4096
boot_pd:      .skip 4 * 4096
	.balign 16
	.globl boot_stack_top
boot_stack:   .skip 64 * 1024
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
