// Tiny freestanding formatter over env::log_write: strings, decimal and hex numbers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/env.h"

namespace capmem::log {

void str(const char* s);
void dec(std::uint64_t v);
void hex(std::uint64_t v, int min_digits = 1);
void hash_hex(const std::uint8_t* b32);  // 64 lowercase hex digits
inline void nl() { str("\n"); }

// Formats into a caller buffer; returns the number of chars (excluding NUL).
std::size_t fmt_hex32(char out[65], const std::uint8_t* b32);

}  // namespace capmem::log

// Checked invariants: CAPMEM_ASSERT always on (kernel and hosted). A failure is a bug in
// capmem, never bad input: bad input gets a Status.
#define CAPMEM_STR2(x) #x
#define CAPMEM_STR(x) CAPMEM_STR2(x)
#define CAPMEM_ASSERT(cond)                                                                      \
  do {                                                                                           \
    if (__builtin_expect(!(cond), 0))                                                            \
      ::capmem::env::panic("assertion failed: " #cond " at " __FILE__ ":" CAPMEM_STR(__LINE__)); \
  } while (0)
