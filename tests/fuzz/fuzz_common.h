// Helpers shared by the fuzz targets.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "capmem/frame.h"

// Every fuzz iteration must give back every frame it took.
struct FrameLeakGuard {
  std::uint64_t before = capmem::frames().stats().free;
  ~FrameLeakGuard() {
    const std::uint64_t after = capmem::frames().stats().free;
    if (after != before) {
      std::fprintf(stderr, "fuzz: frame leak: %lld frames\n",
                   static_cast<long long>(before) - static_cast<long long>(after));
      std::abort();
    }
  }
};
