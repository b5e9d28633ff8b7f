// The four memory functions the compiler may call on its own (GCC and clang emit calls to
// memcpy/memset/memmove/memcmp for struct copies and large initializers even with
// -ffreestanding). No other libc function exists in the image.
//
// String ops with the direction flag clear (the SysV ABI guarantees DF=0 at calls; the
// trap entry clears it). `rep movsb/stosb` is fast on every CPU with ERMSB
// (SDM Vol. 1 7.3.9.3 "Fast-string operation") and never touches SIMD registers.
#include <cstddef>
#include <cstdint>

extern "C" {

void* memcpy(void* __restrict dst, const void* __restrict src, std::size_t n) {
  void* ret = dst;
  asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
  return ret;
}

void* memset(void* dst, int c, std::size_t n) {
  void* ret = dst;
  asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(static_cast<unsigned char>(c)) : "memory");
  return ret;
}

void* memmove(void* dst, const void* src, std::size_t n) {
  auto d = reinterpret_cast<std::uintptr_t>(dst);
  auto s = reinterpret_cast<std::uintptr_t>(src);
  if (d - s >= n) return memcpy(dst, src, n);  // no forward overlap: copy ascending
  // dst overlaps the tail of src: copy descending (DF=1 only for this instruction).
  void* ret = dst;
  auto* dl = static_cast<unsigned char*>(dst) + n - 1;
  auto* sl = static_cast<const unsigned char*>(src) + n - 1;
  asm volatile("std; rep movsb; cld" : "+D"(dl), "+S"(sl), "+c"(n) : : "memory");
  return ret;
}

int memcmp(const void* a, const void* b, std::size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

}  // extern "C"
