// E3: capmem's exported sources (capmem_sources, capmem_simd_sources, capmem_includes)
// compiled by the consumer with its own flags (small code model, freestanding), linked with
// this _start and no libc, run as a plain static Linux process. Its roots must equal E1's.
#include <cstddef>
#include <cstdint>

#include "roots_main.h"

namespace {
long sys3(long nr, long a, long b, long c) {
  long ret = 0;
  asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}
constexpr long kSysWrite = 1;
constexpr long kSysExitGroup = 231;
}  // namespace

extern "C" void embed_write(const char* s, std::size_t n) {
  while (n > 0) {
    const long w = sys3(kSysWrite, 1, reinterpret_cast<long>(s), static_cast<long>(n));
    if (w <= 0) embed_exit(4);
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

extern "C" [[noreturn]] void embed_exit(int code) {
  for (;;) sys3(kSysExitGroup, code, 0, 0);
}

extern "C" [[noreturn]] void embed_main() {
  int rc = embed::start_capmem();
  if (rc == 0) rc = embed::print_fixed_roots();
  embed_exit(rc);
}

// The process entry: the kernel leaves argc at (%rsp), 16-byte aligned; call with the ABI's
// alignment (rsp + 8 a multiple of 16 at the callee's entry).
asm(R"(
  .text
  .globl _start
_start:
  xor %ebp, %ebp
  and $-16, %rsp
  call embed_main
  ud2
)");
