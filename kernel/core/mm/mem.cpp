#include "capmem/mem.h"

namespace capmem::mem {

bool page_is_zero(const void* p) {
  const auto* w = static_cast<const std::uint64_t*>(p);
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < 4096 / 8; i += 8)
    acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
  return acc == 0;
}

}  // namespace capmem::mem
