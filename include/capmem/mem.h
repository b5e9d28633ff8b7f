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

// True if all 4096 bytes are zero (rule 3.5 / 3.6: such pages become Empty).
bool page_is_zero(const void* p);

}  // namespace capmem::mem
