// Helpers shared by the hosted-simulation tests (test_fault.cpp, test_checkpoint.cpp): a
// reproducible byte pattern and the caps built from it.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "capmem/datacap.h"

namespace capmem::testutil {

// `pages` pages of bytes from a seeded generator (no page is all zero in practice).
inline std::vector<std::uint8_t> pattern(std::size_t pages, std::uint32_t seed) {
  std::vector<std::uint8_t> v(pages * PAGE_SIZE);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// The cap of `bytes` (rule 3.6); a failure is reported and leaves an empty cap.
inline DataCap cap_of(const std::vector<std::uint8_t>& bytes) {
  auto c = DataCap::from_bytes(bytes.data(), bytes.size());
  EXPECT_TRUE(c.ok());
  return c.ok() ? c.release_value() : DataCap{};
}

}  // namespace capmem::testutil
