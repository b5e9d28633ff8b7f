// SHA-256 with the Intel SHA extensions (SHA256RNDS2 / SHA256MSG1 / SHA256MSG2; Intel SDM
// Vol. 2B "SHA256RNDS2", Vol. 1 section 5.19 "Intel SHA Extensions"). Compiled with -msha
// -msse4.1; callable only inside the SIMD section when CPUID.(EAX=07H,ECX=0):EBX.SHA[bit 29]
// is set (hash.cpp checks).
//
// SHA256RNDS2 has a multi-cycle latency and each 4-round step depends on the previous one,
// so a single message leaves the unit idle most of the time. hash64_shani interleaves four
// independent 64-byte messages (the nodes of one merkle level) so their rounds overlap.
#include "hash_internal.h"
#include "simd_intrin.h"

namespace capmem::hash::detail {
namespace {

// State layout used by SHA256RNDS2: s0 = {F,E,B,A}, s1 = {H,G,D,C} (element 0 first).
inline __m128i iv0() { return _mm_set_epi32(int(kInit[0]), int(kInit[1]), int(kInit[4]), int(kInit[5])); }
inline __m128i iv1() { return _mm_set_epi32(int(kInit[2]), int(kInit[3]), int(kInit[6]), int(kInit[7])); }
inline __m128i bswap32_mask() { return _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL); }
inline __m128i kvec(const std::uint32_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// Four 4-round groups g = G0 .. G0 + 3 over message words m[k][0..3] (W[4g..4g+3] of lane k
// sits in m[k][g & 3]); kSchedule (G0 >= 4) computes those words first. `kk` = K + 4 * G0.
template <int N, bool kSchedule>
[[gnu::always_inline]] inline void groups4_msg(__m128i (&s0)[N], __m128i (&s1)[N], __m128i (&m)[N][4],
                                               const std::uint32_t* kk) {
  CAPMEM_UNROLL
  for (int j = 0; j < 4; ++j) {
    const __m128i kv = kvec(kk + 4 * j);
    __m128i wk[N];
    CAPMEM_UNROLL
    for (int k = 0; k < N; ++k) {
      if constexpr (kSchedule) {
        // W[4g..4g+3] = MSG2(MSG1(W[4g-16..], W[4g-12..]) + W[4g-7..4g-4], W[4g-4..4g-1])
        __m128i x = _mm_sha256msg1_epu32(m[k][j], m[k][(j + 1) & 3]);
        x = _mm_add_epi32(x, _mm_alignr_epi8(m[k][(j + 3) & 3], m[k][(j + 2) & 3], 4));
        m[k][j] = _mm_sha256msg2_epu32(x, m[k][(j + 3) & 3]);
      }
      wk[k] = _mm_add_epi32(m[k][j], kv);
      s1[k] = _mm_sha256rnds2_epu32(s1[k], s0[k], wk[k]);
    }
    CAPMEM_UNROLL
    for (int k = 0; k < N; ++k) s0[k] = _mm_sha256rnds2_epu32(s0[k], s1[k], _mm_shuffle_epi32(wk[k], 0x0E));
  }
}

// 64 rounds over message words m[k][0..3] (W[0..15] of lane k), no feed-forward: groups 0-3
// from the message, then three passes of four scheduled groups. Looped rather than unrolled:
// half the code at the same speed (docs/performance.md, "Cold code").
template <int N>
[[gnu::always_inline]] inline void rounds_msg(__m128i (&s0)[N], __m128i (&s1)[N], __m128i (&m)[N][4]) {
  groups4_msg<N, false>(s0, s1, m, kK);
#pragma GCC unroll 1
  for (int g = 4; g < 16; g += 4) groups4_msg<N, true>(s0, s1, m, kK + 4 * g);
}

// 64 rounds of the constant padding block of a 64-byte message: W+K from kPadWK.
template <int N>
[[gnu::always_inline]] inline void rounds_pad(__m128i (&s0)[N], __m128i (&s1)[N]) {
#pragma GCC unroll 1
  for (int g = 0; g < 16; g += 4) {
    CAPMEM_UNROLL
    for (int j = 0; j < 4; ++j) {
      const __m128i lo = kvec(kPadWK.data() + 4 * (g + j));
      const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kPadWK.data() + 4 * (g + j) + 2));
      CAPMEM_UNROLL
      for (int k = 0; k < N; ++k) s1[k] = _mm_sha256rnds2_epu32(s1[k], s0[k], lo);
      CAPMEM_UNROLL
      for (int k = 0; k < N; ++k) s0[k] = _mm_sha256rnds2_epu32(s0[k], s1[k], hi);
    }
  }
}

template <int N>
[[gnu::always_inline]] inline void hash64_n(const std::uint8_t* in, std::uint8_t* out) {
  const __m128i bs = bswap32_mask();
  __m128i m[N][4], s0[N], s1[N], f0[N], f1[N];
  CAPMEM_UNROLL
  for (int k = 0; k < N; ++k) {
    CAPMEM_UNROLL
    for (int j = 0; j < 4; ++j)
      m[k][j] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 64 * k + 16 * j)), bs);
    s0[k] = iv0();
    s1[k] = iv1();
  }
  rounds_msg<N>(s0, s1, m);
  CAPMEM_UNROLL
  for (int k = 0; k < N; ++k) {
    s0[k] = f0[k] = _mm_add_epi32(s0[k], iv0());
    s1[k] = f1[k] = _mm_add_epi32(s1[k], iv1());
  }
  rounds_pad<N>(s0, s1);
  // {F,E,B,A},{H,G,D,C} -> big-endian A..H: the high halves give {B,A,D,C}, the low halves
  // {F,E,H,G}; reversing the bytes of each 64-bit half yields A,B,C,D / E,F,G,H big-endian.
  const __m128i rev64 = _mm_set_epi8(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  CAPMEM_UNROLL
  for (int k = 0; k < N; ++k) {
    s0[k] = _mm_add_epi32(s0[k], f0[k]);
    s1[k] = _mm_add_epi32(s1[k], f1[k]);
    const __m128i abcd = _mm_shuffle_epi8(_mm_unpackhi_epi64(s0[k], s1[k]), rev64);
    const __m128i efgh = _mm_shuffle_epi8(_mm_unpacklo_epi64(s0[k], s1[k]), rev64);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * k), abcd);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * k + 16), efgh);
  }
}

}  // namespace

void compress_shani(std::uint32_t state[8], const std::uint8_t* block, std::size_t nblocks) {
  // {A,B,C,D},{E,F,G,H} -> {F,E,B,A},{H,G,D,C}
  __m128i t = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)), 0xB1);        // B,A,D,C
  __m128i s1v = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4)), 0x1B);  // H,G,F,E
  __m128i s0[1] = {_mm_alignr_epi8(t, s1v, 8)};                                                         // F,E,B,A
  __m128i s1[1] = {_mm_blend_epi16(s1v, t, 0xF0)};                                                      // H,G,D,C
  const __m128i bs = bswap32_mask();
  for (; nblocks != 0; --nblocks, block += 64) {
    const __m128i a0 = s0[0], a1 = s1[0];
    __m128i m[1][4];
    for (int j = 0; j < 4; ++j)
      m[0][j] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16 * j)), bs);
    rounds_msg<1>(s0, s1, m);
    s0[0] = _mm_add_epi32(s0[0], a0);
    s1[0] = _mm_add_epi32(s1[0], a1);
  }
  // back: {F,E,B,A},{H,G,D,C} -> {A,B,C,D},{E,F,G,H}
  t = _mm_shuffle_epi32(s0[0], 0x1B);    // A,B,E,F
  s1v = _mm_shuffle_epi32(s1[0], 0xB1);  // G,H,C,D
  const __m128i abcd = _mm_blend_epi16(t, s1v, 0xF0);
  const __m128i efgh = _mm_alignr_epi8(s1v, t, 8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), abcd);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), efgh);
}

void hash64_shani(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) hash64_n<4>(in + 64 * i, out + 32 * i);
  if (n - i >= 2) {
    hash64_n<2>(in + 64 * i, out + 32 * i);
    i += 2;
  }
  if (i < n) hash64_n<1>(in + 64 * i, out + 32 * i);
}

}  // namespace capmem::hash::detail
