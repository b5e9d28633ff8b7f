// Helpers shared by the fuzz targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "capmem/codec.h"
#include "capmem/frame.h"
#include "capmem/status.h"
#include "hostsim/env_hostsim.h"

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

// A rejection status of the wire decoders (rules 2.5, 5.2 and, in thin mode, 8.6).
inline bool is_decode_status(capmem::Status s) {
  return (s >= capmem::Status::DecodeEmptyBuffer && s <= capmem::Status::DecodeMissingSlot) ||
         s == capmem::Status::DecodeUnresolvableMissing;  // added later, at the end of the enum
}

// Every fuzz iteration must give back every frame it took.
struct FrameLeakGuard {
  std::uint64_t before = capmem::hostsim::quiescent_frame_stats().free;
  ~FrameLeakGuard() {
    const std::uint64_t after = capmem::hostsim::quiescent_frame_stats().free;
    if (after != before) {
      std::fprintf(stderr, "fuzz: frame leak: %lld frames\n",
                   static_cast<long long>(before) - static_cast<long long>(after));
      std::abort();
    }
  }
};

// Rule 5.3: the input [data, data + size) through a codec::ByteSource that marks each byte it
// hands out and stops the run at the second read of any byte: a decoder that reads each byte
// once cannot be told two stories by input that changes while it reads.
struct ReadOnceSource {
  const std::uint8_t* data;
  std::vector<std::uint8_t> reads;
  ReadOnceSource(const std::uint8_t* d, std::size_t size) : data(d), reads(size, 0) {}
  [[nodiscard]] capmem::ByteSource source() const {
    return capmem::ByteSource{.copy_in = copy_in, .ctx = this, .len = reads.size()};
  }
  static void copy_in(const void* ctx, std::uint64_t off, std::uint8_t* out, std::size_t n) {
    auto* s = const_cast<ReadOnceSource*>(static_cast<const ReadOnceSource*>(ctx));
    FUZZ_CHECK(off <= s->reads.size() && n <= s->reads.size() - off);
    if (n == 0) return;
    // Read once: none of the n bytes read before (memcmp / memset / memcpy rather than a
    // loop, which the coverage instrumentation would make the cost of every decode).
    std::uint8_t* r = s->reads.data() + off;
    FUZZ_CHECK_MSG(r[0] == 0 && std::memcmp(r, r + 1, n - 1) == 0, "a byte of [%llu, %llu) read twice",
                   static_cast<unsigned long long>(off), static_cast<unsigned long long>(off + n));
    std::memset(r, 1, n);
    std::memcpy(out, s->data + off, n);
  }
};
