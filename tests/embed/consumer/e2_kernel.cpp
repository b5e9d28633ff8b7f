// E2: a freestanding kernel link on dependency('capmem-kernel') (libcapmem_kernel.a): this
// file, seam.cpp and mem.cpp, linked -nostdlib -static with kernel.ld (the top 2 GiB). It is
// never run; run-embed.sh checks what the link holds (no undefined symbol but the seam's and
// mem*, no runtime symbol, no sanitizer code, no .init_array) and that leaving one seam
// function out (EMBED_OMIT_SHOOTDOWN) fails the link naming it.
#include <cstddef>
#include <cstdint>

#include "capmem/fault.h"
#include "capmem/pt.h"
#include "roots_main.h"

extern "C" void embed_write(const char* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) asm volatile("outb %0, $0xe9" : : "a"(s[i]));  // debug port
}
extern "C" [[noreturn]] void embed_exit(int /*code*/) {
  for (;;) asm volatile("cli; hlt");
}

// What a kernel's #PF vector calls (docs/embedding.md): referenced so the fault handler and
// the page-table walker are in the link.
capmem::fault::Answer embed_page_fault(capmem::fault::Run& run, std::uint64_t cr2, std::uint32_t error_code) {
  return run.handle_page_fault(capmem::VirtAddr{cr2}, error_code);
}
capmem::Status embed_make_table() { return capmem::pt::PageTable::create().status(); }

extern "C" {
alignas(16) std::uint8_t embed_stack[64 * 1024];
}

extern "C" [[noreturn]] void embed_kmain() {
  if (embed::start_capmem() == 0) (void)embed::print_fixed_roots();
  embed_exit(0);
}

// Entry: a stack, then C++.
asm(R"(
  .section .text.entry, "ax", @progbits
  .globl _start
_start:
  lea embed_stack+65536(%rip), %rsp
  call embed_kmain
  ud2
)");
