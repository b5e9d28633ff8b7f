// Byte-moving primitives the core uses on whole pages, general-register only so they are
// legal in the kernel build's non-SIMD translation units (`rep movsb/stosb`, fast with
// ERMS: Intel SDM Vol. 1 7.3.9.3).
#pragma once

#include <cstddef>
#include <cstdint>

namespace capmem::mem {

inline void copy_page(void* dst, const void* src) {
  std::size_t n = 4096;
  asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}
inline void fill_page(void* dst, std::uint8_t v) {
  std::size_t n = 4096;
  asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(v) : "memory");
}
inline void zero_page(void* dst) { fill_page(dst, 0); }

// Asks for a page's 64 cache lines ahead of use, to be read or (`for_write`) written: a
// hint only, it reads nothing and cannot fault.
inline void prefetch_page(const void* p, bool for_write = false) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  for (std::size_t off = 0; off < 4096; off += 64) {
    if (for_write) __builtin_prefetch(b + off, 1);
    else __builtin_prefetch(b + off, 0);
  }
}

// True if all 4096 bytes are zero (rule 3.5 / 3.6: such pages become Empty).
bool page_is_zero(const void* p);

}  // namespace capmem::mem
