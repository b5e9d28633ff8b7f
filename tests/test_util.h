// Helpers shared by the hosted tests: the reference vectors directory, file reading, hex,
// and unwrapping a Result that must hold a value.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "capmem/log.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem::testutil {

// tests/vectors, passed by tests/unit/meson.build as CAPMEM_VECTORS.
inline std::string vectors_dir() {
  const char* d = std::getenv("CAPMEM_VECTORS");
  return d != nullptr ? d : "";
}

inline std::vector<std::uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline std::string hex(const Hash32& h) {
  char buf[65];
  log::fmt_hex32(buf, h.b.data());
  return buf;
}

// The value of a Result that the test needs to go on: a failure is reported with its status
// name and ends the test binary (a later step could not run meaningfully).
template <typename T>
T val(Result<T>&& r) {
  EXPECT_TRUE(r.ok()) << status_name(r.status());
  if (!r.ok()) std::abort();
  return r.release_value();
}

}  // namespace capmem::testutil
