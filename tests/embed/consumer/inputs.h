// The embed suite's fixed inputs and their roots (tests/embed). Freestanding: E1 (hosted),
// E2 (a kernel link) and E3 (a static Linux process without libc) all include it, so every
// consumer hashes the same bytes and prints the same lines, in the format of `capmem root`
// ("<64 hex digits>  <name>"). Names that are also reference vectors (tests/vectors) carry
// the same bytes, so the run-embed.sh driver checks those lines against ROOTS as well.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/datacap.h"
#include "capmem/types.h"

namespace embed {

inline constexpr std::size_t kMaxInput = 40 * 1024;
inline constexpr unsigned kInputs = 6;

struct InputName {
  const char* name;
};
inline constexpr InputName kNames[kInputs] = {
    {"abc.bin"}, {"empty.bin"}, {"one-page-ff.bin"}, {"zero-3-pages.bin"}, {"pattern.bin"}, {"sparse.bin"},
};

// Writes input `i` into `buf` (kMaxInput bytes) and returns its length.
inline std::size_t make_input(unsigned i, std::uint8_t* buf) {
  std::size_t n = 0;
  switch (i) {
    case 0:  // the three bytes "abc"
      buf[0] = 'a';
      buf[1] = 'b';
      buf[2] = 'c';
      return 3;
    case 1:  // no bytes: still one (Empty) page, rule 3.6
      return 0;
    case 2:  // one page of 0xff
      n = capmem::PAGE_SIZE;
      for (std::size_t k = 0; k < n; ++k) buf[k] = 0xff;
      return n;
    case 3:  // three all-zero pages
      n = 3 * capmem::PAGE_SIZE;
      for (std::size_t k = 0; k < n; ++k) buf[k] = 0;
      return n;
    case 4: {  // 40000 bytes of xorshift32: Loaded pages and a partial last page
      n = 40000;
      std::uint32_t x = 0x9e3779b9u;
      for (std::size_t k = 0; k < n; ++k) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[k] = static_cast<std::uint8_t>(x);
      }
      return n;
    }
    case 5:  // nine pages + 5 bytes, zero but one byte in every other page
      n = 9 * capmem::PAGE_SIZE + 5;
      for (std::size_t k = 0; k < n; ++k) buf[k] = 0;
      for (std::size_t p = 0; p < 9; p += 2) buf[p * capmem::PAGE_SIZE + 7] = static_cast<std::uint8_t>(p + 1);
      buf[n - 1] = 0x5a;
      return n;
    default: return 0;
  }
}

// The root of the cap DataCap::from_bytes builds from `len` bytes (rules 3.6, 3.4), flushed.
inline capmem::Result<capmem::Hash32> root_of(const std::uint8_t* bytes, std::size_t len) {
  auto cap = capmem::DataCap::from_bytes(bytes, len);
  if (!cap.ok()) return cap.status();
  if (auto f = cap->flush(); !f.ok()) return f.status();
  return cap->root();
}

// "<hex>  <name>\n" into out (at least 64 + 2 + strlen(name) + 2 bytes); returns the length.
inline std::size_t format_line(char* out, const capmem::Hash32& h, const char* name) {
  constexpr char kHex[] = "0123456789abcdef";
  std::size_t n = 0;
  for (const std::uint8_t b : h.b) {
    out[n++] = kHex[b >> 4];
    out[n++] = kHex[b & 15];
  }
  out[n++] = ' ';
  out[n++] = ' ';
  while (*name != '\0') out[n++] = *name++;
  out[n++] = '\n';
  return n;
}

}  // namespace embed
