// Helpers shared by the fuzz targets.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "capmem/frame.h"
#include "capmem/status.h"

// A property of the code under test does not hold: name the file, line and condition (and,
// with FUZZ_CHECK_MSG, a printf-style explanation) and abort, so libFuzzer keeps the input.
#define FUZZ_CHECK_MSG(cond, ...)                                                         \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                  \
      std::fprintf(stderr, "\n");                                                         \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
#define FUZZ_CHECK(cond) FUZZ_CHECK_MSG(cond, "%s", "")

// A rejection status of the wire decoders (rules 2.5 and 5.2).
inline bool is_decode_status(capmem::Status s) {
  return s >= capmem::Status::DecodeEmptyBuffer && s <= capmem::Status::DecodeMissingSlot;
}

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
