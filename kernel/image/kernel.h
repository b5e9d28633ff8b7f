// The kernel image's internal interfaces: memory layout, boot hand-off, CPU set-up,
// console and exit. See docs/boot.md for the boot protocol and the layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "capmem/pack.h"
#include "capmem/types.h"

namespace capmem::kernel {

// --- Virtual memory layout (4-level paging, 48-bit canonical addresses) -------------------
//   PML4 slot 0    [0, 512 GiB)                        guest memory of the current run (4.1);
//                                                      empty in the boot page table
//   PML4 slot 1    [512 GiB, 1 TiB)                    kernel-owned per-run pages (4.1)
//   PML4 slot 256  0xffff800000000000 + pa             direct map of RAM (2 MiB pages;
//                                                      1 GiB pages above 4 GiB)
//   PML4 slot 511  0xffffffff80000000 + pa, pa < 1 GiB the kernel image (-mcmodel=kernel);
//                                                      4 KiB pages around the stack guard pages
// Slots 256..511 are the kernel half: built once by boot.S, linked into every per-run PML4.
inline constexpr std::uint64_t kDirectMapBase = 0xffff800000000000ull;
inline constexpr std::uint64_t kDirectMapSpan = 512ull << 30;  // one PML4 slot
inline constexpr std::uint64_t kKernelVma = 0xffffffff80000000ull;
inline constexpr std::uint64_t kKernelMapSpan = 1ull << 30;  // PDPT slot 510 -> cpu.cpp's g_kernel_pd
inline constexpr unsigned kKernelPdptSlot = 510;             // boot_pdpt_k's entry for kKernelVma
inline constexpr unsigned kKernelHalfFirstSlot = 256;

// --- Boot hand-off (boot.S) ------------------------------------------------------------
// NOLINTBEGIN(bugprone-dynamic-static-initializers): clang-tidy 14 false positive on
// extern declarations; these are defined in boot.S / the linker script, never initialized.
// Page tables built by boot.S in .bss (physical = virtual - kKernelVma).
extern "C" std::uint64_t boot_pml4[512];
extern "C" std::uint64_t boot_pdpt_dm[512];  // PML4[256]: direct map, 1 GiB per entry
// Linker-script symbols (linker/kernel.ld): the image's physical extent.
extern "C" char __kernel_phys_start[], __kernel_phys_end[];
// NOLINTEND(bugprone-dynamic-static-initializers)

// PVH start of day (xen/include/public/arch-x86/hvm/start_info.h, version >= 1).
struct HvmStartInfo {
  std::uint32_t magic;  // 0x336ec578
  std::uint32_t version;
  std::uint32_t flags;
  std::uint32_t nr_modules;
  std::uint64_t modlist_paddr;
  std::uint64_t cmdline_paddr;
  std::uint64_t rsdp_paddr;
  std::uint64_t memmap_paddr;  // version >= 1
  std::uint32_t memmap_entries;
  std::uint32_t reserved;
};
struct HvmMemmapEntry {
  std::uint64_t addr;
  std::uint64_t size;
  std::uint32_t type;  // 1 = RAM (E820 numbering)
  std::uint32_t reserved;
};
// One boot module (start_info.h struct hvm_modlist_entry): QEMU's PVH option ROM passes
// `-initrd FILE` as the only one; boot.S converts Multiboot2 module tags into these.
struct HvmModlistEntry {
  std::uint64_t paddr;
  std::uint64_t size;
  std::uint64_t cmdline_paddr;  // NUL-terminated string, 0 if none
  std::uint64_t reserved;
};
inline constexpr std::uint32_t kHvmStartMagic = 0x336ec578;
inline constexpr std::uint32_t kE820Ram = 1;
// boot.S writes these fields by offset when it converts Multiboot2 information.
static_assert(sizeof(HvmStartInfo) == 56 && offsetof(HvmStartInfo, nr_modules) == 12 &&
              offsetof(HvmStartInfo, modlist_paddr) == 16 && offsetof(HvmStartInfo, cmdline_paddr) == 24 &&
              offsetof(HvmStartInfo, rsdp_paddr) == 32 && offsetof(HvmStartInfo, memmap_paddr) == 40 &&
              offsetof(HvmStartInfo, memmap_entries) == 48);
static_assert(sizeof(HvmMemmapEntry) == 24);
static_assert(sizeof(HvmModlistEntry) == 32 && offsetof(HvmModlistEntry, cmdline_paddr) == 16);

// What the loader handed over, beyond memory (main.cpp fills it before the frame allocator
// exists; valid from then on).
enum class BootProtocol : std::uint32_t {
  Pvh = 0,         // QEMU `-kernel` (XEN_ELFNOTE_PHYS32_ENTRY): boot.S pvh_entry
  Multiboot2 = 1,  // GRUB `multiboot2`: boot.S mb2_entry, converted to an HvmStartInfo
};
struct BootInfo {
  BootProtocol protocol;
  // Physical address of the ACPI RSDP ("RSD PTR ", ACPI 6.5 5.2.5), 0 if the loader gave
  // none. PVH: start_info.rsdp_paddr as the loader set it (QEMU: in the BIOS area below
  // 1 MiB). Multiboot2: a copy of the RSDP from GRUB's ACPI tag (new/v2 preferred over
  // old/v1) inside the image's .bss (boot.S mb2_rsdp_v1/v2). Either way it lies outside the
  // frame allocator's ranges, so it stays readable for the whole boot (the ACPI tables it
  // points to are firmware memory, not E820 RAM). The SMP bring-up reads the MADT from it.
  std::uint64_t rsdp_paddr;
};
const BootInfo& boot_info();
// NOLINTBEGIN(bugprone-dynamic-static-initializers): see above.
extern "C" std::uint32_t boot_protocol;        // boot.S: 0 = PVH, 1 = Multiboot2
extern "C" HvmStartInfo mb2_start_info;        // boot.S: the converted Multiboot2 hand-off
extern "C" std::uint32_t mb2_memmap_dropped;   // boot.S: Multiboot2 map entries it had no room for
extern "C" std::uint32_t mb2_modules_dropped;  // boot.S: Multiboot2 module tags it had no room for
// NOLINTEND(bugprone-dynamic-static-initializers)

// --- Console and exit (console.cpp) ------------------------------------------------------
// Every byte goes to the debug console (port 0xe9: QEMU `-debugcon`, Bochs `port_e9_hack`)
// and to COM1 (16550 at 0x3f8, 115200 8N1, polled) when a UART answers there.
void console_write(const char* s, std::size_t n);
// Held output (the test image's summary output, tests/kernel/ktest.cpp): between
// console_hold_begin() and console_hold_end(replay), what reaches console_write is kept (the
// last 16 KiB) instead of written; end(true) writes it out, end(false) drops it. A panic or
// exception report, and exit_qemu, write what is held first: nothing before a crash is lost.
// Boot CPU, with no other CPU logging at the time of either call.
void console_hold_begin();
void console_hold_end(bool replay);
// Leaves through isa-debug-exit at 0xf4 (QEMU exits with (code << 1) | 1; 0 = pass,
// 1 = fail), then Bochs's shutdown port 0x8900 ("Shutdown"), then halts with interrupts off.
// Every exit path (the summary, a panic, an unexpected exception) ends here.
[[noreturn]] void exit_qemu(std::uint32_t code);
inline constexpr std::uint32_t kExitPass = 0;
inline constexpr std::uint32_t kExitFail = 1;

// --- CPU (cpu.cpp) -----------------------------------------------------------------------
// Boot CPU: its GDT (ring-0/ring-3 code and data) and TSS (RSP0 + IST stacks), IA32_GS_BASE
// = its PerCpu block (percpu.h), the IDT, FPU/SSE/AVX state.
void cpu_init();
struct PerCpu;
// An application processor (smp.cpp): its own GDT, TSS, GS base, the shared IDT and the same
// CR0/CR4/XCR0 as the boot CPU. False if its features differ from the boot CPU's (XCR0, NX).
bool cpu_init_ap(PerCpu& c);
// Top of CPU `id`'s own kernel stack (application processors; the boot CPU uses boot.S's).
std::uint64_t kernel_stack_top(unsigned id);
struct CpuFeatures {
  bool nx;
  bool page1gb;
  bool xsave;
  bool avx;
  bool avx512;
  std::uint64_t xcr0;
};
const CpuFeatures& cpu_features();
// Stack guard pages (cpu.cpp; docs/boot.md "Stack guard pages"): every ring-0 stack (the
// boot CPU's boot.S stack; per CPU its kernel, RSP0 and IST1 stacks) lies directly above a
// 4 KiB page that is not present in the kernel-VMA mapping (cpu_init installs them on the
// boot CPU before any other CPU starts). A stack is used only through kernel-VMA addresses;
// the guard page's direct-map alias stays mapped.
struct StackGuard {
  std::uint64_t guard = 0;     // kernel-VMA address of the guard page
  std::uint64_t stack_hi = 0;  // the stack it guards: [guard + PAGE_SIZE, stack_hi)
  unsigned cpu = 0;            // the CPU owning that stack
  const char* name = nullptr;  // "boot stack", "kernel stack", "rsp0 stack", "ist1 stack"; nullptr: none
};
unsigned stack_guard_count();
StackGuard stack_guard(unsigned i);  // i < stack_guard_count()
// The guard page holding `va` (name == nullptr if it is in none).
StackGuard find_stack_guard(std::uint64_t va);
// Recurses at ring 0 until the stack runs into its guard page; never returns (the
// stack-overflow tests: crash=stack-overflow, crash=ap-stack-overflow, nested=rsp0-overflow).
std::uint64_t overflow_stack(std::uint64_t depth);
// Segment selectors (GDT layout in cpu.cpp).
inline constexpr std::uint16_t kKernelCs = 0x08;
inline constexpr std::uint16_t kKernelDs = 0x10;
inline constexpr std::uint16_t kUserDs = 0x18 | 3;
inline constexpr std::uint16_t kUserCs = 0x20 | 3;
inline constexpr std::uint16_t kTss = 0x28;

// --- Memory (env_kernel.cpp) ---------------------------------------------------------------
// Parses the PVH memory map (before anything else uses memory) into the ranges the seam
// reports, minus the image, the boot structures and everything below 1 MiB; extends the
// direct map above 4 GiB when 1 GiB pages exist. Returns false if the hand-off is unusable.
bool memory_init(std::uint64_t start_info_pa);
// The CR3 value of the boot address space (kernel half only, slot 0 empty).
std::uint64_t boot_cr3();
// End of the direct map: phys_to_virt is valid below it.
std::uint64_t direct_map_end();
// True if the firmware memory map says [base, end) is RAM (E820 type 1) in full.
bool firmware_ram(std::uint64_t base, std::uint64_t end);

// --- Boot modules (env_kernel.cpp memory_init; docs/boot.md "Boot modules") ---------------
// What the loader passed besides the kernel: PVH start_info's module list (QEMU `-initrd`),
// Multiboot2 module tags (GRUB `module2`, converted by boot.S). memory_init checks each in
// the loader's order (ram_ranges.h check_module): size 0, a range not wholly inside one
// firmware RAM range below the direct map's end, or an overlap with the kernel image, a boot
// structure (start_info, memory map, command line, module list and names) or an earlier
// module fails the boot naming the module; so does a module that starts like a page pack
// (store::Pack::parse: anything but PackBadMagic) and is malformed, naming the status and
// its offset; and more than kMaxBootModules modules. Every module's range is then left out
// of the frame allocator's RAM (whole pages) for good. The first page pack is the page
// store; a later one is reported and ignored.
inline constexpr unsigned kMaxBootModules = 8;       // boot.S MB2_MODULES_MAX
inline constexpr unsigned kBootModuleNameMax = 128;  // boot.S MB2_MODNAME_MAX, the NUL included
struct BootModule {
  std::uint64_t paddr = 0;
  std::uint64_t size = 0;
  const char* name = "";  // the loader's string for it (printable ASCII kept, others '?'), "" if none
  bool pack = false;      // a well-formed page pack
};
unsigned boot_module_count();
const BootModule& boot_module(unsigned i);  // i < boot_module_count()
// The page store: the first module that is a page pack, parsed in place through the direct
// map (its pages are read by DataCap::resolve, which checks every one, rule 8.7); nullptr
// when the loader passed none. boot_pack_module(): its index, -1 when none.
const store::Pack* boot_pack();
int boot_pack_module();

// Write out this CPU's unfinished console line (env_kernel.cpp buffers lines per CPU).
void console_flush();

// --- The command line (cmdline.cpp; docs/boot.md "The kernel command line") ---------------
// Tokens separated by spaces, each KEY=VALUE; printable ASCII only; at most kCmdlineMax - 1
// bytes (QEMU's PVH option ROM passes up to 4096 with the NUL; boot.S copies as much from
// Multiboot2). One table of known keys, the platform's (cmdline.cpp) plus the image's
// (image_cmdline_keys), is checked against the whole line once, by kmain before anything
// reads it: a line too long, a bare word, an unknown key, a value its key does not take or a
// key given twice fails the boot with a line naming it and the list of keys. Readers then
// look keys up whole (`nosmp=off` is not `smp=off`).
inline constexpr std::size_t kCmdlineMax = 4096;  // bytes, the terminating NUL included
enum class CmdlineKind : std::uint8_t {
  Choice,  // one of `choices`, separated by '|' ("off|scan")
  U64,     // decimal digits, below 2^64
  Text,    // any non-empty text (its reader checks it further: ktest=)
};
struct CmdlineKey {
  const char* key;  // without the '='
  CmdlineKind kind;
  const char* choices = nullptr;  // Choice; Text: how its value reads in the list of keys
  const char* help = nullptr;     // one line for the list of keys
};
// memory_init: copies the loader's NUL-terminated line (too long: refused by cmdline_check).
void cmdline_capture(const char* src);
// The line as the loader gave it, "" if none (the boot log prints it).
const char* cmdline();
// kmain, once: false (after printing why) when the line is refused.
bool cmdline_check();
// After cmdline_check, for a key in the table (asserted): the value of KEY=VALUE, nullptr
// when absent; whether KEY=value was given (value one of the key's choices, asserted); the
// number given to a U64 key, dflt when absent.
const char* cmdline_value(const char* key);
bool cmdline_is(const char* key, const char* value);
std::uint64_t cmdline_u64(const char* key, std::uint64_t dflt);

// --- The image's entry (each image links one: tests/kernel/ktest_main.cpp,
// tests/kernel/nested_main.cpp, tests/bench/kernel/kbench_main.cpp) ------------------------
// The keys the image reads besides the platform's (smp=, acpi=).
std::span<const CmdlineKey> image_cmdline_keys();
// Called by kmain on the boot CPU once the platform is up: memory, the frame allocator,
// hash::init, every CPU online, the command line checked. Returns the exit code
// (kExitPass / kExitFail) kmain leaves with.
std::uint32_t image_main();

}  // namespace capmem::kernel
