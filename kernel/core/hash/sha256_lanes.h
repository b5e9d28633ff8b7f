// Multi-buffer SHA-256 of 64-byte messages, generic over the vector width: lane i of every
// vector belongs to message i (one message per 32-bit lane). Included only by the SIMD
// translation units (sha256_avx2.cpp, sha256_avx512.cpp), each of which supplies `V`:
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
  const T t1 = V::add(V::add(h, wk), V::add(big_sigma1<V>(e), V::ch(e, f, g)));
  const T t2 = V::add(big_sigma0<V>(a), V::maj(a, b, c));
  d = V::add(d, t1);
  h = V::add(t1, t2);
}

template <class V, int I>
[[gnu::always_inline]] inline void rounds_msg_from(typename V::T (&s)[8], typename V::T (&w)[16]) {
  if constexpr (I < 64) {
    if constexpr (I >= 16) {
      w[I & 15] = V::add(V::add(w[I & 15], small_sigma0<V>(w[(I + 1) & 15])),
                         V::add(w[(I + 9) & 15], small_sigma1<V>(w[(I + 14) & 15])));
    }
    round<V, I>(s, V::add(w[I & 15], V::set1(kK[I])));
    rounds_msg_from<V, I + 1>(s, w);
  }
}

template <class V, int I>
[[gnu::always_inline]] inline void rounds_pad_from(typename V::T (&s)[8]) {
  if constexpr (I < 64) {
    round<V, I>(s, V::set1(kPadWK[I]));
    rounds_pad_from<V, I + 1>(s);
  }
}

// w[j] = big-endian word j of every lane's message (consumed). out[j] = digest word j.
template <class V>
[[gnu::always_inline]] inline void hash64(typename V::T (&w)[16], typename V::T (&out)[8]) {
  using T = typename V::T;
  T s[8];
  for (int j = 0; j < 8; ++j) s[j] = V::set1(kInit[j]);
  rounds_msg_from<V, 0>(s, w);
  T f[8];
  for (int j = 0; j < 8; ++j) f[j] = s[j] = V::add(s[j], V::set1(kInit[j]));
  // Second block: the constant padding of a 64-byte message; W+K precomputed (kPadWK).
  rounds_pad_from<V, 0>(s);
  for (int j = 0; j < 8; ++j) out[j] = V::add(s[j], f[j]);
}

}  // namespace capmem::hash::detail::lanes
