#include "capmem/mem.h"

namespace capmem::mem {

// `p` need not be aligned (the decoder checks pages in place in a wire buffer): words are
// read with memcpy, which compiles to plain unaligned loads.
bool page_is_zero(const void* p) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < 4096; i += 64) {
    std::uint64_t w[8];
    __builtin_memcpy(w, b + i, sizeof w);
    acc |= w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
  }
  return acc == 0;
}

}  // namespace capmem::mem
