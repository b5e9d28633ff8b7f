// Multi-buffer SHA-256 of 64-byte messages, generic over the vector width: lane i of every
// vector belongs to message i (one message per 32-bit lane). Included only by SIMD
// translation units (today sha256_avx2.cpp; sha256_avx512.cpp has its own two-batch round
// code), each of which supplies `V`:
//   using T;                       the vector type
//   T set1(u32); T add(T,T);
//   template<int n> T ror(T);      rotate right each lane
//   template<int n> T shr(T);      logical shift right each lane
//   T xor3(T,T,T); T ch(e,f,g) = (e&f)^(~e&g); T maj(a,b,c).
#pragma once

#include "hash_internal.h"
#include "simd_intrin.h"

namespace capmem::hash::detail::lanes {

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

}  // namespace capmem::hash::detail::lanes
