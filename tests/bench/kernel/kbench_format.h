// Shared by the in-kernel benchmarks (kbench*.cpp): their figures as tenths of a nanosecond
// per item, in integers only (no __int128: no libgcc in the image).
#pragma once

#include <cstdint>

#include "capmem/log.h"

namespace capmem::kernel::kbench {

inline std::uint64_t ns_x10(std::uint64_t cycles, std::uint64_t items, std::uint64_t khz) {
  const std::uint64_t cyc_x100 = cycles * 100 / items;
  return cyc_x100 * 100000 / khz;
}

inline void print_x10(std::uint64_t v) {
  log::dec(v / 10);
  log::str(".");
  log::dec(v % 10);
}

}  // namespace capmem::kernel::kbench
