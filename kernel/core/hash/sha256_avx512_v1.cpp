// FROZEN: avx512-v1, a verbatim copy of the AVX-512 16-lane kernel as of issue 23
// (sha256_avx512.cpp with sha256_lanes.h inlined), kept only so that capmem-bench can measure
// the live kernel against it (BM_PageRoot_Impl/avx512-v1; hash::force_frozen). Never chosen
// by hash::init(); do not edit or tune it: a change here moves the reference the ratio lines
// in tests/bench/run-bench.sh are judged against.
// 16-lane multi-buffer SHA-256 of 64-byte messages with AVX-512 (F + BW for the byte
// shuffle + VL). Compiled with -mavx512f -mavx512bw -mavx512vl; callable only inside the
// SIMD section when CPUID.(EAX=07H,ECX=0):EBX bits 16 (AVX512F), 30 (AVX512BW) and 31
// (AVX512VL) are set and XCR0 enables opmask/ZMM state (Intel SDM Vol. 1 section 15.2;
// hash.cpp checks). VPRORD and VPTERNLOGD give each rotate and each 3-input boolean
// function (Sigma xors, Ch, Maj) in one instruction.
// GCC 12's avx512fintrin.h builds the unmasked forms (vprord, vpternlogd, ...) on
// _mm512_undefined_epi32(), whose deliberate self-initialisation trips -Wmaybe-uninitialized
// (or -Wuninitialized, depending on the optimisation level) once inlined here; the warning
// is about the header's idiom, not about this code. GCC only: clang has no
// -Wmaybe-uninitialized and would warn about the unknown group (-Wunknown-warning-option).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "hash_internal.h"
#include "simd_intrin.h"

namespace capmem::hash::detail {
namespace v1 {
namespace lanes {

template <class V>
[[gnu::always_inline]] inline typename V::T big_sigma0(typename V::T a) {
  return V::xor3(V::template ror<2>(a), V::template ror<13>(a), V::template ror<22>(a));
}
template <class V>
[[gnu::always_inline]] inline typename V::T big_sigma1(typename V::T e) {
  return V::xor3(V::template ror<6>(e), V::template ror<11>(e), V::template ror<25>(e));
}
template <class V>
[[gnu::always_inline]] inline typename V::T small_sigma0(typename V::T x) {
  return V::xor3(V::template ror<7>(x), V::template ror<18>(x), V::template shr<3>(x));
}
template <class V>
[[gnu::always_inline]] inline typename V::T small_sigma1(typename V::T x) {
  return V::xor3(V::template ror<17>(x), V::template ror<19>(x), V::template shr<10>(x));
}

// Round i (FIPS 180-4 section 6.2.2 step 3) on the state ring s[8]: slot (j - i) & 7 holds
// working variable j (a = 0 ... h = 7), so no variable is moved: the new a lands in h's
// slot and the new e in d's. `wk` = W[i] + K[i].
//
// Simple vector ops have multi-cycle latency on current cores, so the sums are ordered for
// a short dependency chain rather than the fewest adds: everything that does not depend on
// this round's e or a (h + WK, d + h + WK, Ch and Maj partial sums) is formed first, so
//   e' = Sigma1(e) + (Ch(e,f,g) + (d + h + WK))      -> rotate, ternlog, add, add
//   a' = Sigma0(a) + (Maj(a,b,c) + T1)
template <class V, int I>
[[gnu::always_inline]] inline void round(typename V::T (&s)[8], typename V::T wk) {
  using T = typename V::T;
  T& a = s[(0 - I) & 7];
  T& b = s[(1 - I) & 7];
  T& c = s[(2 - I) & 7];
  T& d = s[(3 - I) & 7];
  T& e = s[(4 - I) & 7];
  T& f = s[(5 - I) & 7];
  T& g = s[(6 - I) & 7];
  T& h = s[(7 - I) & 7];
  const T hk = V::add(h, wk);
  const T hkd = V::add(hk, d);
  const T chv = V::ch(e, f, g);
  const T s1 = big_sigma1<V>(e);
  const T t1 = V::add(s1, V::add(chv, hk));
  d = V::add(s1, V::add(chv, hkd));
  h = V::add(big_sigma0<V>(a), V::add(V::maj(a, b, c), t1));
}

// NB independent batches can advance round by round together, so one batch's dependency
// chain overlaps the other's; with GCC 12 the extra register pressure costs more than it
// gains (measured: NB = 2 is slower), so the kernels use NB = 1. The feed-forward state and
// the constant tables are kept in memory (pointers laundered through an empty asm) so the
// compiler neither spills the working state for them nor re-materializes every constant.
template <class T>
[[gnu::always_inline]] inline T* launder(T* p) {  // also: const tables stay in memory
  asm("" : "+r"(p));
  return p;
}

// Sixteen rounds, fully unrolled (the state ring and the 16-word schedule ring both come
// back to the same slots after 16 rounds, so the same code serves rounds 16-31, 32-47 and
// 48-63 in a loop; keeping the code small keeps it in the op cache). `k` points at the
// sixteen K[i] (or, for the padding block, W[i] + K[i]) of this group.
template <class V, int NB, int I, bool kSchedule>
[[gnu::always_inline]] inline void rounds16_msg(typename V::T (&s)[NB][8], typename V::T (*w)[16],
                                                const std::uint32_t* k) {
  if constexpr (I < 16) {
    for (int b = 0; b < NB; ++b) {
      typename V::T wi = w[b][I];
      if constexpr (kSchedule) {
        // W[i] = W[i-16] + sigma0(W[i-15]) + W[i-7] + sigma1(W[i-2])
        wi = V::add(V::add(wi, small_sigma0<V>(w[b][(I + 1) & 15])),
                    V::add(w[b][(I + 9) & 15], small_sigma1<V>(w[b][(I + 14) & 15])));
        w[b][I] = wi;
      }
      round<V, I>(s[b], V::add(wi, V::set1(k[I])));
    }
    rounds16_msg<V, NB, I + 1, kSchedule>(s, w, k);
  }
}

template <class V, int NB, int I>
[[gnu::always_inline]] inline void rounds16_const(typename V::T (&s)[NB][8], const std::uint32_t* wk) {
  if constexpr (I < 16) {
    for (int b = 0; b < NB; ++b) round<V, I>(s[b], V::set1(wk[I]));
    rounds16_const<V, NB, I + 1>(s, wk);
  }
}

// w[b][j] = big-endian word j of every lane's message in batch b.
// out[b][j] = digest word j of batch b.
template <class V, int NB>
[[gnu::always_inline]] inline void hash64(const typename V::T (&w)[NB][16], typename V::T (&out)[NB][8]) {
  using T = typename V::T;
  alignas(64) T wbuf[NB][16];
  alignas(64) T fbuf[NB][8];
  T(*wm)[16] = wbuf;  // the compiler keeps what fits in registers
  T(*fm)[8] = launder(fbuf);
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 16; ++j) wm[b][j] = w[b][j];
  T s[NB][8];
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 8; ++j) s[b][j] = V::set1(kInit[j]);
  const std::uint32_t* k = launder(kK);
  rounds16_msg<V, NB, 0, false>(s, wm, k);
#pragma GCC unroll 1
  for (int base = 16; base < 64; base += 16) rounds16_msg<V, NB, 0, true>(s, wm, k + base);
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 8; ++j) fm[b][j] = s[b][j] = V::add(s[b][j], V::set1(kInit[j]));
  // Second block: the constant padding of a 64-byte message; W+K precomputed (kPadWK).
  const std::uint32_t* pwk = launder(kPadWK.data());
#pragma GCC unroll 1
  for (int base = 0; base < 64; base += 16) rounds16_const<V, NB, 0>(s, pwk + base);
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 8; ++j) out[b][j] = V::add(s[b][j], fm[b][j]);
}

}  // namespace lanes

namespace {

struct V512 {
  using T = __m512i;
  static T set1(std::uint32_t c) { return _mm512_set1_epi32(static_cast<int>(c)); }
  static T add(T a, T b) { return _mm512_add_epi32(a, b); }
  template <int n>
  static T ror(T a) {
    return _mm512_ror_epi32(a, n);
  }
  template <int n>
  static T shr(T a) {
    return _mm512_srli_epi32(a, n);
  }
  static T xor3(T a, T b, T c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
  static T ch(T e, T f, T g) { return _mm512_ternarylogic_epi32(e, f, g, 0xCA); }
  static T maj(T a, T b, T c) { return _mm512_ternarylogic_epi32(a, b, c, 0xE8); }
};

inline __m512i bswap32_mask() {
  return _mm512_broadcast_i32x4(_mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL));
}

// r[i] = message i (16 words) -> r[j] = word j of messages 0..15.
[[gnu::always_inline]] inline void transpose16(__m512i (&r)[16]) {
  __m512i b[16], c[16];
  for (int p = 0; p < 8; ++p) {
    b[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    b[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  // c[4q + k], 128-bit lane L = word 4L + k of messages 4q..4q+3.
  for (int q = 0; q < 4; ++q) {
    c[4 * q + 0] = _mm512_unpacklo_epi64(b[4 * q], b[4 * q + 2]);
    c[4 * q + 1] = _mm512_unpackhi_epi64(b[4 * q], b[4 * q + 2]);
    c[4 * q + 2] = _mm512_unpacklo_epi64(b[4 * q + 1], b[4 * q + 3]);
    c[4 * q + 3] = _mm512_unpackhi_epi64(b[4 * q + 1], b[4 * q + 3]);
  }
  // word 4L + k = [c[k].L, c[4+k].L, c[8+k].L, c[12+k].L]
  for (int k = 0; k < 4; ++k) {
    const __m512i d0 = _mm512_shuffle_i32x4(c[k], c[4 + k], 0x44);  // c[k].L0 L1, c[4+k].L0 L1
    const __m512i d1 = _mm512_shuffle_i32x4(c[k], c[4 + k], 0xEE);  // c[k].L2 L3, c[4+k].L2 L3
    const __m512i d2 = _mm512_shuffle_i32x4(c[8 + k], c[12 + k], 0x44);
    const __m512i d3 = _mm512_shuffle_i32x4(c[8 + k], c[12 + k], 0xEE);
    r[k] = _mm512_shuffle_i32x4(d0, d2, 0x88);       // lanes L0 of all four
    r[4 + k] = _mm512_shuffle_i32x4(d0, d2, 0xDD);   // L1
    r[8 + k] = _mm512_shuffle_i32x4(d1, d3, 0x88);   // L2
    r[12 + k] = _mm512_shuffle_i32x4(d1, d3, 0xDD);  // L3
  }
}

// 16 messages -> w[j] = word j (big-endian) of each; rows >= n are zero.
[[gnu::always_inline]] inline void load16(const std::uint8_t* in, std::size_t n, __m512i (&w)[16]) {
  const __m512i bs = bswap32_mask();
  for (int i = 0; i < 16; ++i)
    w[i] = static_cast<std::size_t>(i) < n ? _mm512_shuffle_epi8(_mm512_loadu_si512(in + 64 * i), bs)
                                           : _mm512_setzero_si512();
  transpose16(w);
}

// s[j] = digest word j of 16 messages -> out (messages [0, n) only).
[[gnu::always_inline]] inline void store16(__m512i (&s)[8], std::uint8_t* out, std::size_t n) {
  const __m512i bs = bswap32_mask();
  for (int j = 0; j < 8; ++j) s[j] = _mm512_shuffle_epi8(s[j], bs);
  // 8 x 16 -> 16 x 8: u[k] (lane L) = words 0..3 of message 4L+k, u[4+k] = words 4..7.
  __m512i t[8], u[8];
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = _mm512_unpacklo_epi32(s[2 * p], s[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_epi32(s[2 * p], s[2 * p + 1]);
  }
  u[0] = _mm512_unpacklo_epi64(t[0], t[2]);
  u[1] = _mm512_unpackhi_epi64(t[0], t[2]);
  u[2] = _mm512_unpacklo_epi64(t[1], t[3]);
  u[3] = _mm512_unpackhi_epi64(t[1], t[3]);
  u[4] = _mm512_unpacklo_epi64(t[4], t[6]);
  u[5] = _mm512_unpackhi_epi64(t[4], t[6]);
  u[6] = _mm512_unpacklo_epi64(t[5], t[7]);
  u[7] = _mm512_unpackhi_epi64(t[5], t[7]);
  const __m512i lo_idx = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);    // [a.L0 b.L0 a.L1 b.L1]
  const __m512i hi_idx = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);  // [a.L2 b.L2 a.L3 b.L3]
  for (int k = 0; k < 4; ++k) {
    const __m512i x = _mm512_permutex2var_epi64(u[k], lo_idx, u[4 + k]);  // messages k, 4+k
    const __m512i y = _mm512_permutex2var_epi64(u[k], hi_idx, u[4 + k]);  // messages 8+k, 12+k
    const std::size_t m[4] = {std::size_t(k), std::size_t(4 + k), std::size_t(8 + k), std::size_t(12 + k)};
    const __m256i v[4] = {_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1), _mm512_castsi512_si256(y),
                          _mm512_extracti64x4_epi64(y, 1)};
    for (int z = 0; z < 4; ++z)
      if (m[z] < n) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * m[z]), v[z]);
  }
}

// Hash messages [0, n) of the 16 * NB at `in` (n <= 16 * NB; lanes >= n compute on zeros
// and are not stored). All loads happen before any store (in-place levels).
template <int NB>
[[gnu::noinline]] void batch(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  __m512i w[NB][16];
  for (int k = 0; k < NB; ++k) {
    const std::size_t nk = n > 16u * k ? n - 16u * k : 0;
    load16(in + 64 * 16 * k, nk < 16 ? nk : 16, w[k]);
  }
  __m512i s[NB][8];
  lanes::hash64<V512, NB>(w, s);
  for (int k = 0; k < NB; ++k) {
    const std::size_t nk = n > 16u * k ? n - 16u * k : 0;
    store16(s[k], out + 32 * 16 * k, nk < 16 ? nk : 16);
  }
}

}  // namespace

void run(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 16) batch<1>(in + 64 * i, out + 32 * i, n - i < 16 ? n - i : 16);
}

}  // namespace v1

void hash64_avx512_v1(const std::uint8_t* in, std::uint8_t* out, std::size_t n) { v1::run(in, out, n); }

}  // namespace capmem::hash::detail
