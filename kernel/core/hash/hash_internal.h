// Internal to kernel/core/hash: SHA-256 constants, the constexpr reference compression
// (used for compile-time tables and by the portable back end), and the back-end kernels
// the dispatcher in hash.cpp chooses between.
//
// Back-end contract (every `hash64_*`): out[32*i .. 32*i+31] = SHA-256(in[64*i .. 64*i+63])
// for i < n. `out == in` is allowed (in-place level reduction: a batch reads all of its
// inputs before it writes, and batch j writes bytes [32*j*L, 32*(j+1)*L) which lie inside
// what batch j already read). Any other overlap is not allowed. No alignment required.
//
// The SIMD kernels (everything but *_portable) live in their own translation units compiled
// with -msha/-mavx2/-mavx512*; they may only be called between env::simd_begin() and
// env::simd_end(), and only when the CPU (and OS, XCR0) supports them. hash.cpp enforces both.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "capmem/hash.h"

namespace capmem::hash::detail {

// FIPS 180-4 section 4.2.2: the 64 round constants.
inline constexpr std::uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// FIPS 180-4 section 5.3.3: initial hash value.
inline constexpr std::uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

constexpr std::uint32_t rotr(std::uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }
constexpr std::uint32_t sig0(std::uint32_t x) { return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3); }
constexpr std::uint32_t sig1(std::uint32_t x) { return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10); }

// Message schedule W[0..63] from the 16 words of one block (FIPS 180-4 section 6.2.2 step 1).
constexpr std::array<std::uint32_t, 64> schedule(const std::uint32_t (&m)[16]) {
  std::array<std::uint32_t, 64> w{};
  for (int i = 0; i < 16; ++i) w[i] = m[i];
  for (int i = 16; i < 64; ++i) w[i] = w[i - 16] + sig0(w[i - 15]) + w[i - 7] + sig1(w[i - 2]);
  return w;
}

// The 64 rounds given W[i] + K[i] (steps 2-4). Runs at compile time for the tables below
// and at run time in the portable back end.
constexpr void rounds_wk(std::uint32_t st[8], const std::uint32_t* wk) {
  std::uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
  std::uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
  for (int i = 0; i < 64; ++i) {
    const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + wk[i];
    const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  st[0] += a;
  st[1] += b;
  st[2] += c;
  st[3] += d;
  st[4] += e;
  st[5] += f;
  st[6] += g;
  st[7] += h;
}

constexpr void compress_words(std::uint32_t st[8], const std::uint32_t (&m)[16]) {
  const auto w = schedule(m);
  std::uint32_t wk[64] = {};
  for (int i = 0; i < 64; ++i) wk[i] = w[i] + kK[i];
  rounds_wk(st, wk);
}

// The second block of every 64-byte message is constant: 0x80, zeros, and the bit length
// 512 big-endian in the last word (FIPS 180-4 section 5.1.1). Its schedule plus the round
// constants, W[i] + K[i], is therefore a constant table, computed here at compile time.
// Every back end runs that block's rounds from this table without a message schedule.
inline constexpr std::array<std::uint32_t, 64> kPadWK = [] {
  constexpr std::uint32_t pad[16] = {0x80000000u, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 512};
  const auto w = schedule(pad);
  std::array<std::uint32_t, 64> r{};
  for (int i = 0; i < 64; ++i) r[i] = w[i] + kK[i];
  return r;
}();

// Compress `nblocks` consecutive 64-byte blocks into `state` (any length hashing).
void compress_portable(std::uint32_t state[8], const std::uint8_t* block, std::size_t nblocks);
void compress_shani(std::uint32_t state[8], const std::uint8_t* block, std::size_t nblocks);

// n 64-byte messages -> n digests (see the contract at the top of this file).
void hash64_portable(const std::uint8_t* in, std::uint8_t* out, std::size_t n);
void hash64_shani(const std::uint8_t* in, std::uint8_t* out, std::size_t n);   // 4 messages interleaved
void hash64_avx2(const std::uint8_t* in, std::uint8_t* out, std::size_t n);    // 8 lanes
void hash64_avx512(const std::uint8_t* in, std::uint8_t* out, std::size_t n);  // 16 lanes
// Frozen AVX-512 kernel of issue 23 (sha256_avx512_v1.cpp): a benchmark reference only.
void hash64_avx512_v1(const std::uint8_t* in, std::uint8_t* out, std::size_t n);

}  // namespace capmem::hash::detail
