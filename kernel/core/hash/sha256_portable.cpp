// Portable SHA-256 (FIPS 180-4), general-register only (compiled with -mgeneral-regs-only
// in the kernel build; it is the fallback whenever the SIMD section is unavailable).
#include "hash_internal.h"

namespace capmem::hash::detail {

namespace {
constexpr std::uint32_t load_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}
void store_be32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
void compress_one(std::uint32_t state[8], const std::uint8_t* block) {
  std::uint32_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = load_be32(block + 4 * i);
  compress_words(state, m);
}
}  // namespace

void compress_portable(std::uint32_t state[8], const std::uint8_t* block, std::size_t nblocks) {
  for (; nblocks != 0; --nblocks, block += 64) compress_one(state, block);
}

void hash64_portable(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t st[8];
    for (int j = 0; j < 8; ++j) st[j] = kInit[j];
    compress_one(st, in + 64 * i);  // reads all 64 input bytes before any output byte is written
    rounds_wk(st, kPadWK.data());   // the constant padding block, schedule precomputed
    for (int j = 0; j < 8; ++j) store_be32(out + 32 * i + 4 * j, st[j]);
  }
}

}  // namespace capmem::hash::detail
