#include "capmem/mem.h"

namespace capmem::mem {

// `p` need not be aligned (the decoder checks pages in place in a wire buffer): words are
// read with memcpy, which compiles to plain unaligned loads. A page that is not all zero
// almost always shows it in its first 64 bytes, so each 64-byte block is tested as it is
// read (from_bytes skips all-zero input pages this way); an all-zero page reads all 4096
// bytes either way. The answer is the same as OR-ing the whole page.
bool page_is_zero(const void* p) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  for (std::size_t i = 0; i < 4096; i += 64) {
    std::uint64_t w[8];
    __builtin_memcpy(w, b + i, sizeof w);
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  return true;
}

}  // namespace capmem::mem
