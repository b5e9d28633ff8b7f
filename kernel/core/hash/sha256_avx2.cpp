// 8-lane multi-buffer SHA-256 of 64-byte messages with AVX2. Compiled with -mavx2;
// callable only inside the SIMD section when CPUID.(EAX=07H,ECX=0):EBX.AVX2[bit 5] is set
// and XCR0 enables SSE and AVX state (Intel SDM Vol. 1 section 14.7.1; hash.cpp checks).
// AVX2 has no vector rotate and no 3-input logic, so each rotate is two shifts and an or.
#include "sha256_lanes.h"

namespace capmem::hash::detail {
namespace {

struct V256 {
  using T = __m256i;
  static T set1(std::uint32_t c) { return _mm256_set1_epi32(static_cast<int>(c)); }
  static T add(T a, T b) { return _mm256_add_epi32(a, b); }
  template <int n>
  static T ror(T a) {
    return _mm256_or_si256(_mm256_srli_epi32(a, n), _mm256_slli_epi32(a, 32 - n));
  }
  template <int n>
  static T shr(T a) {
    return _mm256_srli_epi32(a, n);
  }
  static T xor3(T a, T b, T c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
  static T ch(T e, T f, T g) { return _mm256_xor_si256(_mm256_and_si256(_mm256_xor_si256(f, g), e), g); }
  static T maj(T a, T b, T c) {
    return _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(c, _mm256_or_si256(a, b)));
  }
};

inline __m256i bswap32_mask() {
  return _mm256_broadcastsi128_si256(_mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL));
}

// 8 x 8 transpose of 32-bit elements: r[i] word j -> r[j] word i.
[[gnu::always_inline]] inline void transpose8(__m256i (&r)[8]) {
  __m256i b[8], c[8];
  for (int p = 0; p < 4; ++p) {
    b[2 * p] = _mm256_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    b[2 * p + 1] = _mm256_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  // c[4q + k], 128-bit lane L = element 4L + k of rows 4q..4q+3.
  for (int q = 0; q < 2; ++q) {
    c[4 * q + 0] = _mm256_unpacklo_epi64(b[4 * q], b[4 * q + 2]);
    c[4 * q + 1] = _mm256_unpackhi_epi64(b[4 * q], b[4 * q + 2]);
    c[4 * q + 2] = _mm256_unpacklo_epi64(b[4 * q + 1], b[4 * q + 3]);
    c[4 * q + 3] = _mm256_unpackhi_epi64(b[4 * q + 1], b[4 * q + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2x128_si256(c[k], c[4 + k], 0x20);
    r[4 + k] = _mm256_permute2x128_si256(c[k], c[4 + k], 0x31);
  }
}

// Hash messages [0, n) of the 8 at `in` (n <= 8; the other lanes compute on zeros and are
// not stored).
[[gnu::always_inline]] inline void batch(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  const __m256i bs = bswap32_mask();
  __m256i lo[8], hi[8];
  for (int i = 0; i < 8; ++i) {
    const bool have = static_cast<std::size_t>(i) < n;
    lo[i] = have ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 64 * i)) : _mm256_setzero_si256();
    hi[i] = have ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 64 * i + 32)) : _mm256_setzero_si256();
  }
  transpose8(lo);
  transpose8(hi);
  __m256i w[1][16];
  for (int j = 0; j < 8; ++j) {
    w[0][j] = _mm256_shuffle_epi8(lo[j], bs);
    w[0][8 + j] = _mm256_shuffle_epi8(hi[j], bs);
  }
  __m256i s[1][8];
  lanes::hash64<V256, 1>(w, s);
  transpose8(s[0]);
  for (int i = 0; i < 8; ++i)
    if (static_cast<std::size_t>(i) < n)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * i), _mm256_shuffle_epi8(s[0][i], bs));
}

}  // namespace

void hash64_avx2(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) batch(in + 64 * i, out + 32 * i, 8);
  if (i < n) batch(in + 64 * i, out + 32 * i, n - i);
}

}  // namespace capmem::hash::detail
