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
namespace {

using T = __m512i;

[[gnu::always_inline]] inline T add(T a, T b) { return _mm512_add_epi32(a, b); }
// A broadcast table entry: GCC folds it into the add as an embedded {1to16} memory operand.
[[gnu::always_inline]] inline T bcast(const std::uint32_t* p) { return _mm512_set1_epi32(static_cast<int>(*p)); }
template <int n>
[[gnu::always_inline]] inline T ror(T a) {
  return _mm512_ror_epi32(a, n);
}
template <int n>
[[gnu::always_inline]] inline T shr(T a) {
  return _mm512_srli_epi32(a, n);
}
[[gnu::always_inline]] inline T xor3(T a, T b, T c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
[[gnu::always_inline]] inline T ch(T e, T f, T g) { return _mm512_ternarylogic_epi32(e, f, g, 0xCA); }
[[gnu::always_inline]] inline T maj(T a, T b, T c) { return _mm512_ternarylogic_epi32(a, b, c, 0xE8); }
[[gnu::always_inline]] inline T big_sigma0(T a) { return xor3(ror<2>(a), ror<13>(a), ror<22>(a)); }
[[gnu::always_inline]] inline T big_sigma1(T e) { return xor3(ror<6>(e), ror<11>(e), ror<25>(e)); }
[[gnu::always_inline]] inline T small_sigma0(T x) { return xor3(ror<7>(x), ror<18>(x), shr<3>(x)); }
[[gnu::always_inline]] inline T small_sigma1(T x) { return xor3(ror<17>(x), ror<19>(x), shr<10>(x)); }

// Hides a pointer's value from the optimizer: a table read through it stays a memory
// operand (not a register held across the rounds), and a schedule word written through
// one and read back through another is reloaded rather than kept live in a register.
template <class P>
[[gnu::always_inline]] inline P* launder(P* p) {
  asm("" : "+r"(p));
  return p;
}

// Round i (FIPS 180-4 section 6.2.2 step 3) on the state ring s[8]: slot (j - i) & 7 holds
// working variable j (a = 0 ... h = 7), so no variable is moved: the new a lands in h's
// slot and the new e in d's. `hk` = h + W[i] + K[i], formed by the caller.
//
// vpaddd/vprord/vpternlogd each take 2 cycles, so the round is ordered for the chain
// through e, which is three ops (rotate, ternlog, add): everything not depending on e is
// summed first (hkd = hk + d), and T1 is recovered from the new e by one subtraction
// instead of being summed again:
//   e' = Sigma1(e) + (Ch(e,f,g) + hkd)
//   a' = Sigma0(a) + (Maj(a,b,c) + (e' - d))          (e' - d = T1)
// Seven adds per round (the previous form spent eight). The translation unit is built with
// -fno-tree-reassoc so GCC keeps these groupings.
// `hkd` = h + W[i] + K[i] + d.
template <int I>
[[gnu::always_inline]] inline void round_hkd(T (&s)[8], T hkd) {
  T& a = s[(0 - I) & 7];
  T& b = s[(1 - I) & 7];
  T& c = s[(2 - I) & 7];
  const T d = s[(3 - I) & 7];
  const T e = s[(4 - I) & 7];
  const T f = s[(5 - I) & 7];
  const T g = s[(6 - I) & 7];
  const T e_new = add(big_sigma1(e), add(ch(e, f, g), hkd));
  s[(3 - I) & 7] = e_new;
  s[(7 - I) & 7] = add(big_sigma0(a), add(maj(a, b, c), _mm512_sub_epi32(e_new, d)));
}

template <int I>
[[gnu::always_inline]] inline void round(T (&s)[8], T hk) {
  round_hkd<I>(s, add(hk, s[(3 - I) & 7]));
}

// The first block starts from the constant initial hash value (FIPS 180-4 section 5.3.3),
// so its first four rounds have constant operands: round 0 is W[0] plus a constant for both
// new words, and rounds 1-3 have constant h and d (h + K[i] + d folds into one constant).
// Computed at compile time by the scalar round; saves 22 vector ops per batch.
struct IvRounds {
  std::uint32_t e1, a1;  // round 0: e1 = W[0] + e1, a1 = W[0] + a1
  std::uint32_t hkd[4];  // rounds 1-3: h + K[i] + d (index 0 unused)
};
inline constexpr IvRounds kIvRounds = [] {
  IvRounds r{};
  const std::uint32_t a = kInit[0], b = kInit[1], c = kInit[2], d = kInit[3];
  const std::uint32_t e = kInit[4], f = kInit[5], g = kInit[6], h = kInit[7];
  const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[0];
  const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
  r.e1 = d + t1;
  r.a1 = t1 + t2;
  // Round i in 1..3: h = state word 7 - i, d = state word 3 - i, both still initial values.
  for (int i = 1; i < 4; ++i) r.hkd[i] = kInit[7 - i] + kK[i] + kInit[3 - i];
  return r;
}();

// NB independent batches of 16 lanes advance round by round together: each round's
// dependency chain is 6 cycles long against about 4 cycles of issue, so a single batch
// leaves the vector pipes idle; two batches fill them. The state (8 x NB registers) stays in
// registers; the schedule ring (16 words per batch) lives in memory and is reloaded through
// laundered pointers (loads are cheap, spills of the state are not), so NB = 2 fits the 32
// ZMM registers without spills.
//
// Code size: the rounds run in looped bodies of 8 (the state ring's period), not 16: with
// g++ 12 batch<2> is 13.6 KiB instead of 19 and batch<1> 8 KiB instead of 10.6, at the same
// throughput (docs/performance.md, "Cold code": a page hashed alone runs each kernel once,
// often from a cold instruction cache).
//
// The schedule ring holds word i in slot i & 15. A body of rounds base .. base + 7 (base a
// multiple of 8) reaches it through two pointers per batch that swap every body: lo, the
// slots of words base .. base + 7, and hi, the other 8. ring<Off>(lo, hi) is slot
// (base + Off) & 15: lo + (Off & 15) when that is below 8, else hi + (Off & 15) - 8.
template <int Off>
[[gnu::always_inline]] inline T* ring(T* lo, T* hi) {
  constexpr int o = Off & 15;
  if constexpr (o < 8) return lo + o;
  else return hi + (o - 8);
}

// Rounds base + I .. base + 7 of a message block. kSchedule: W[i] = W[i-16] + sigma0(W[i-15])
// + W[i-7] + sigma1(W[i-2]) is computed into the ring; otherwise W[i] is read from it (the
// message, base < 16). kIv: base == 0 of the first block (IvRounds).
template <int NB, int I, bool kSchedule, bool kIv>
[[gnu::always_inline]] inline void rounds8_msg(T (&s)[NB][8], T* const (&lo)[NB], T* const (&hi)[NB],
                                               const std::uint32_t* k) {
  if constexpr (I < 8) {
    for (int b = 0; b < NB; ++b) {
      T* l = launder(lo[b]);
      T* h = launder(hi[b]);
      T wi;
      if constexpr (kSchedule) {
        wi = add(add(*ring<I>(l, h), small_sigma0(*ring<I + 1>(l, h))),
                 add(*ring<I + 9>(l, h), small_sigma1(*ring<I + 14>(l, h))));
        *ring<I>(l, h) = wi;
      } else {
        wi = *ring<I>(l, h);
      }
      if constexpr (kIv && I == 0) {
        s[b][3] = add(wi, _mm512_set1_epi32(static_cast<int>(kIvRounds.e1)));  // d's slot: new e
        s[b][7] = add(wi, _mm512_set1_epi32(static_cast<int>(kIvRounds.a1)));  // h's slot: new a
      } else if constexpr (kIv && I < 4) {
        round_hkd<I>(s[b], add(wi, _mm512_set1_epi32(static_cast<int>(kIvRounds.hkd[I]))));
      } else {
        round<I>(s[b], add(add(s[b][(7 - I) & 7], bcast(k + I)), wi));
      }
    }
    rounds8_msg<NB, I + 1, kSchedule, kIv>(s, lo, hi, k);
  }
}

template <int NB, int I>
[[gnu::always_inline]] inline void rounds8_const(T (&s)[NB][8], const std::uint32_t* wk) {
  if constexpr (I < 8) {
    for (int b = 0; b < NB; ++b) round<I>(s[b], add(s[b][(7 - I) & 7], bcast(wk + I)));
    rounds8_const<NB, I + 1>(s, wk);
  }
}

// w[b][j] = big-endian word j of every lane's message in batch b (overwritten: it is the
// schedule ring). out[b][j] = digest word j of batch b.
template <int NB>
[[gnu::always_inline]] inline void hash64(T (&w)[NB][16], T (&out)[NB][8]) {
  alignas(64) T fbuf[NB][8];
  T(*fm)[8] = launder(fbuf);
  T s[NB][8];
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 8; ++j) s[b][j] = _mm512_set1_epi32(static_cast<int>(kInit[j]));
  const std::uint32_t* k = launder(kK);
  T* lo[NB];
  T* hi[NB];
  for (int b = 0; b < NB; ++b) {
    lo[b] = w[b];
    hi[b] = w[b] + 8;
  }
  rounds8_msg<NB, 0, false, true>(s, lo, hi, k);       // rounds 0-7
  rounds8_msg<NB, 0, false, false>(s, hi, lo, k + 8);  // rounds 8-15
#pragma GCC unroll 1
  for (int base = 16; base < 64; base += 8) {
    rounds8_msg<NB, 0, true, false>(s, lo, hi, k + base);
    for (int b = 0; b < NB; ++b) {
      T* t = lo[b];
      lo[b] = hi[b];
      hi[b] = t;
    }
  }
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 8; ++j) fm[b][j] = s[b][j] = add(s[b][j], _mm512_set1_epi32(static_cast<int>(kInit[j])));
  // Second block: the constant padding of a 64-byte message; W+K precomputed (kPadWK).
  const std::uint32_t* pwk = launder(kPadWK.data());
#pragma GCC unroll 1
  for (int base = 0; base < 64; base += 8) rounds8_const<NB, 0>(s, pwk + base);
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 8; ++j) out[b][j] = add(s[b][j], fm[b][j]);
}

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
  alignas(64) __m512i w[NB][16];
  for (int k = 0; k < NB; ++k) {
    const std::size_t nk = n > 16u * k ? n - 16u * k : 0;
    load16(in + 64 * 16 * k, nk < 16 ? nk : 16, w[k]);
  }
  __m512i s[NB][8];
  hash64<NB>(w, s);
  for (int k = 0; k < NB; ++k) {
    const std::size_t nk = n > 16u * k ? n - 16u * k : 0;
    store16(s[k], out + 32 * 16 * k, nk < 16 ? nk : 16);
  }
}

}  // namespace

void hash64_avx512(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  std::size_t i = 0;
  for (; n - i >= 32; i += 32) batch<2>(in + 64 * i, out + 32 * i, 32);
  for (; i < n; i += 16) batch<1>(in + 64 * i, out + 32 * i, n - i < 16 ? n - i : 16);
}

}  // namespace capmem::hash::detail
