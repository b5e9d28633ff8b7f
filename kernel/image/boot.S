/*
 * capmem kernel entry: two boot protocols, one path -> IA-32e (long) mode -> the higher
 * half -> kmain(start_info_pa). See docs/boot.md.
 *
 * PVH (x86/HVM direct boot ABI, as QEMU's `-kernel` implements it for an ELF64 carrying a
 * XEN_ELFNOTE_PHYS32_ENTRY note), entered at pvh_entry. State
 * (xen/include/public/arch-x86/hvm/start_info.h): 32-bit protected mode, paging off, flat
 * 4 GiB CS/DS/ES/SS, interrupts off, EBX = physical address of struct hvm_start_info.
 * Nothing else (no stack, GDT contents undefined).
 *
 * Multiboot2 (GRUB's `multiboot2` command; Multiboot2 specification 1.0, section 3.3 "I386
 * machine state"), entered at mb2_entry: the same 32-bit protected mode with paging off and
 * interrupts off, EAX = 0x36d76289, EBX = physical address of the boot information (8-byte
 * aligned tags). After the common set-up below (GDT, .bss, stack) mb2_to_pvh copies what
 * capmem uses out of it (command line, memory map, the ACPI RSDP) into a struct
 * hvm_start_info in .bss and the path continues exactly as PVH's, with that address.
 */
#define KERNEL_VMA 0xffffffff80000000
#define PHYS(x) ((x) - KERNEL_VMA)

/* Paging-structure entry bits (SDM Vol. 3A 4.5, Tables 4-15..4-18). */
#define PTE_P   0x001
#define PTE_W   0x002
#define PTE_PS  0x080

#define HVM_START_MAGIC   0x336ec578
#define MB2_HEADER_MAGIC  0xe85250d6   /* Multiboot2 spec 3.1.1 */
#define MB2_BOOT_MAGIC    0x36d76289   /* in EAX at entry (spec 3.3) */
#define MB2_CMDLINE_MAX   4097         /* kernel.h kCmdlineMax + 1: see mb2_to_pvh */
#define MB2_MEMMAP_MAX    256          /* E820 entries kept; more are counted in mb2_memmap_dropped */
#define MB2_RSDP_MAX      36           /* ACPI 2.0+ RSDP (ACPI 6.5 5.2.5.3) */
#define MB2_MODULES_MAX   8            /* kernel.h kMaxBootModules; more are counted in mb2_modules_dropped */
#define MB2_MODNAME_MAX   128          /* kernel.h kBootModuleNameMax: a module's string, NUL included */

/* ---- The Multiboot2 header (spec 3.1): in the first 32 KiB of the file, 8-byte aligned;
 * linker/kernel.ld puts .boot.mb2 first in the first PT_LOAD segment. GRUB loads the ELF64
 * PT_LOAD segments at their p_paddr and enters at the entry-address tag's address. */
	.section .boot.mb2, "a", @progbits
	.balign 8
mb2_header:
	.long MB2_HEADER_MAGIC
	.long 0                        /* architecture: i386 (32-bit protected mode) */
	.long mb2_header_end - mb2_header
	.long -(MB2_HEADER_MAGIC + (mb2_header_end - mb2_header))
	.balign 8
	.word 3, 0                     /* entry address tag (3.1.6), required */
	.long 12
	.long mb2_entry
	.balign 8
	.word 0, 0                     /* end tag */
	.long 8
mb2_header_end:

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
	.globl pvh_entry, mb2_entry
mb2_entry:
	cli
	cld
	cmp $MB2_BOOT_MAGIC, %eax
	jne bad_mb2_magic
	mov %ebx, %ebp                 /* boot information PA, converted below */
	mov $1, %esi                   /* protocol: Multiboot2 (esi survives until the CPUID check) */
	jmp boot32

pvh_entry:
	cli
	cld
	mov %ebx, %ebp                 /* hvm_start_info PA, handed to kmain */
	xor %esi, %esi                 /* protocol: PVH */
boot32:
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
	mov %esi, PHYS(boot_protocol)
	test %esi, %esi
	jz 1f
	call mb2_to_pvh                /* %ebp: boot information -> our hvm_start_info */
1:

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
	/* boot_pdpt_k[510] -> the first PD: 0xffffffff80000000 maps physical [0, 1 GiB). cpu_init
	 * later gives the kernel half a PD of its own, with 4 KiB pages around the stack guard
	 * pages (cpu.cpp install_stack_guards); the direct map keeps boot_pd. */
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

bad_mb2_magic:
	mov $msg_bad_mb2, %esi
	jmp boot_fail
no_long_mode:
	mov $msg_no_lm, %esi
/* Print the string at %esi on port 0xe9 and COM1 (unconfigured: whatever the firmware set)
 * and leave through isa-debug-exit (QEMU) and the Bochs shutdown port; halt if neither. */
boot_fail:
4:	lodsb
	test %al, %al
	jz 5f
	outb %al, $0xe9
	mov $0x3f8, %dx
	outb %al, %dx
	jmp 4b
5:	mov $1, %eax
	outl %eax, $0xf4               /* isa-debug-exit: failure */
	mov $msg_shutdown, %esi
	mov $0x8900, %dx
	mov $8, %ecx
	rep outsb                      /* Bochs: "Shutdown" on port 0x8900 */
6:	cli
	hlt
	jmp 6b

/* ---- mb2_to_pvh: Multiboot2 boot information (spec 3.6) at %ebp -> mb2_start_info, a
 * struct hvm_start_info (version 1) in .bss whose command line, memory map and RSDP are
 * copies in .bss too. Everything capmem uses is copied here, before anything else runs, so
 * the memory GRUB left its information in needs no protection afterwards (the frame
 * allocator only ever sees the RAM ranges of the memory map minus the image).
 *   tag 3  module (mod_start, mod_end: [start, end); its string)    -> mb2_modlist, one
 *          struct hvm_modlist_entry each {paddr, size = end - start, cmdline_paddr} in the
 *          order of the tags, at most MB2_MODULES_MAX (more: counted in mb2_modules_dropped,
 *          and memory_init fails the boot); each string copied into mb2_modnames, at most
 *          MB2_MODNAME_MAX - 1 bytes and never past the tag's end
 *   tag 1  command line (NUL-terminated)      -> mb2_cmdline: at most 4096 bytes, NUL-
 *          terminated (the buffer's last byte is never written); a line of 4096 bytes or
 *          more thus reaches cmdline_capture without a NUL in its first kCmdlineMax bytes,
 *          and the boot fails saying the line is too long (never cut silently)
 *   tag 6  memory map (entry_size >= 24; base, length, type as E820) -> mb2_memmap
 *   tag 14 ACPI old RSDP (a copy of the 20-byte ACPI 1.0 RSDP)        -> mb2_rsdp_v1
 *   tag 15 ACPI new RSDP (a copy of the 36-byte ACPI 2.0+ RSDP)       -> mb2_rsdp_v2
 * rsdp_paddr = the v2 copy if GRUB gave one, else the v1 copy, else 0. A malformed memory
 * map tag is skipped: memory_init then reports that there is no memory map.
 * In: %ebp. Out: %ebp = PHYS(mb2_start_info). Clobbers eax, ebx, ecx, edx, esi, edi. */
mb2_to_pvh:
	movl $HVM_START_MAGIC, PHYS(mb2_start_info) + 0
	movl $1, PHYS(mb2_start_info) + 4          /* version */
	lea 8(%ebp), %ebx                          /* first tag */
	mov 0(%ebp), %edx
	add %ebp, %edx                             /* end of the information */
.Ltag:
	lea 8(%ebx), %eax
	cmp %edx, %eax
	ja .Ltags_done                             /* no room for a tag header */
	mov 0(%ebx), %eax
	test %eax, %eax
	jz .Ltags_done                             /* end tag */
	cmp $1, %eax
	je .Lcmdline
	cmp $3, %eax
	je .Lmodule
	cmp $6, %eax
	je .Lmemmap
	cmp $14, %eax
	je .Lrsdp_v1
	cmp $15, %eax
	je .Lrsdp_v2
.Lnext:
	mov 4(%ebx), %eax                          /* size (header included) */
	cmp $8, %eax
	jb .Ltags_done                             /* malformed: stop */
	add $7, %eax
	and $~7, %eax                              /* tags are 8-byte aligned */
	add %eax, %ebx
	jmp .Ltag

.Lcmdline:
	lea 8(%ebx), %esi
	mov $PHYS(mb2_cmdline), %edi
	mov $(MB2_CMDLINE_MAX - 1), %ecx
1:	lodsb
	test %al, %al
	jz 2f
	stosb
	loop 1b
2:	movl $PHYS(mb2_cmdline), PHYS(mb2_start_info) + 24   /* cmdline_paddr */
	jmp .Lnext

.Lmodule:
	mov PHYS(mb2_start_info) + 12, %eax        /* nr_modules so far */
	cmp $MB2_MODULES_MAX, %eax
	jae .Lmodule_full
	mov %eax, %edi
	shl $5, %edi
	add $PHYS(mb2_modlist), %edi               /* its hvm_modlist_entry (32 bytes) */
	mov 8(%ebx), %ecx                          /* mod_start */
	mov %ecx, 0(%edi)                          /* paddr (high dword stays 0: .bss) */
	mov 12(%ebx), %esi                         /* mod_end */
	sub %ecx, %esi
	mov %esi, 8(%edi)                          /* size (end before start: huge, refused later) */
	shl $7, %eax
	add $PHYS(mb2_modnames), %eax              /* its name buffer (MB2_MODNAME_MAX bytes) */
	mov %eax, 16(%edi)                         /* cmdline_paddr */
	mov %eax, %edi
	mov 4(%ebx), %ecx
	sub $16, %ecx                              /* string bytes inside the tag */
	jbe 2f                                     /* none */
	cmp $(MB2_MODNAME_MAX - 1), %ecx
	jbe 1f
	mov $(MB2_MODNAME_MAX - 1), %ecx
1:	lea 16(%ebx), %esi
3:	lodsb
	test %al, %al
	jz 2f
	stosb
	loop 3b
2:	incl PHYS(mb2_start_info) + 12             /* nr_modules */
	movl $PHYS(mb2_modlist), PHYS(mb2_start_info) + 16   /* modlist_paddr */
	jmp .Lnext
.Lmodule_full:                                 /* counted; memory_init fails the boot */
	incl PHYS(mb2_modules_dropped)
	jmp .Lnext

.Lmemmap:
	mov 8(%ebx), %ecx                          /* entry_size */
	cmp $24, %ecx
	jb .Lnext
	lea 16(%ebx), %esi                         /* first entry */
	mov $PHYS(mb2_memmap), %edi
	push %edx
	mov 4(%ebx), %edx
	add %ebx, %edx                             /* end of this tag */
3:	lea (%esi,%ecx), %eax
	cmp %edx, %eax
	ja 4f                                      /* no whole entry left */
	cmpl $MB2_MEMMAP_MAX, PHYS(mb2_start_info) + 48
	jae .Lmemmap_full
	mov 0(%esi), %eax                          /* base */
	mov %eax, 0(%edi)
	mov 4(%esi), %eax
	mov %eax, 4(%edi)
	mov 8(%esi), %eax                          /* length */
	mov %eax, 8(%edi)
	mov 12(%esi), %eax
	mov %eax, 12(%edi)
	mov 16(%esi), %eax                         /* type (1 = RAM, as E820) */
	mov %eax, 16(%edi)
	add $24, %edi
	add %ecx, %esi
	incl PHYS(mb2_start_info) + 48             /* memmap_entries */
	jmp 3b
.Lmemmap_full:                                 /* counted, reported by memory_init */
	incl PHYS(mb2_memmap_dropped)
	add %ecx, %esi
	jmp 3b
4:	pop %edx
	movl $PHYS(mb2_memmap), PHYS(mb2_start_info) + 40    /* memmap_paddr */
	jmp .Lnext

.Lrsdp_v1:
	mov $PHYS(mb2_rsdp_v1), %edi
	jmp 5f
.Lrsdp_v2:
	mov $PHYS(mb2_rsdp_v2), %edi
5:	lea 8(%ebx), %esi
	mov 4(%ebx), %ecx
	sub $8, %ecx                               /* RSDP bytes in the tag */
	cmp $MB2_RSDP_MAX, %ecx
	jbe 6f
	mov $MB2_RSDP_MAX, %ecx
6:	rep movsb
	jmp .Lnext

.Ltags_done:
	cmpb $0, PHYS(mb2_rsdp_v2)                 /* "RSD PTR ": non-zero once copied */
	je 7f
	movl $PHYS(mb2_rsdp_v2), PHYS(mb2_start_info) + 32   /* rsdp_paddr */
	jmp 8f
7:	cmpb $0, PHYS(mb2_rsdp_v1)
	je 8f
	movl $PHYS(mb2_rsdp_v1), PHYS(mb2_start_info) + 32
8:	mov $PHYS(mb2_start_info), %ebp
	ret

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
msg_bad_mb2:
	.asciz "capmem: entered at the Multiboot2 entry without the Multiboot2 magic in EAX\n"
msg_shutdown:
	.ascii "Shutdown"

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
	/* The boot CPU's stack, directly above a guard page: cpu.cpp (install_stack_guards)
	 * makes that page not present in the kernel-VMA mapping before any other CPU starts, so
	 * an overflow faults there instead of running into boot_pd below (docs/boot.md). */
	.balign 4096
	.globl boot_stack_guard, boot_stack_top
boot_stack_guard: .skip 4096
boot_stack:   .skip 64 * 1024
boot_stack_top:
	/* Which entry ran (0 = PVH, 1 = Multiboot2) and, for Multiboot2, the hand-off built by
	 * mb2_to_pvh (inside the image: never given to the frame allocator). */
	.balign 8
	.globl boot_protocol, mb2_start_info, mb2_memmap_dropped, mb2_modules_dropped
boot_protocol:  .skip 4
mb2_memmap_dropped: .skip 4    /* Multiboot2 memory-map entries past MB2_MEMMAP_MAX */
mb2_modules_dropped: .skip 4   /* Multiboot2 module tags past MB2_MODULES_MAX */
	.balign 8
mb2_start_info: .skip 56       /* struct hvm_start_info, kernel.h HvmStartInfo */
mb2_memmap:     .skip MB2_MEMMAP_MAX * 24
mb2_rsdp_v1:    .skip MB2_RSDP_MAX
	.balign 8
mb2_rsdp_v2:    .skip MB2_RSDP_MAX
mb2_cmdline:    .skip MB2_CMDLINE_MAX
	.balign 8
mb2_modlist:    .skip MB2_MODULES_MAX * 32     /* struct hvm_modlist_entry, kernel.h HvmModlistEntry */
mb2_modnames:   .skip MB2_MODULES_MAX * MB2_MODNAME_MAX

	.section .note.GNU-stack, "", @progbits
