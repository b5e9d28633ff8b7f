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

#include "capmem/datacap.h"
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

// The little-endian u64 at byte `off` of cap `c`'s effective bytes (a failed read is a test
// failure and reads 0).
inline std::uint64_t u64_at(const DataCap& c, std::uint64_t off) {
  std::uint64_t v = 0;
  EXPECT_TRUE(c.read(off, reinterpret_cast<std::uint8_t*>(&v), 8).ok());
  return v;
}

// The thin cap of `full` (rule 8.6): encoded thin (every Loaded page travels as Missing(hash)
// unless `opt.keep` / `opt.keep_first` keep it) and decoded in thin mode, so the backing holds
// those Missing slots and the root is full's (2.3).
inline DataCap thin_of(const DataCap& full, EncodeOptions opt = {}) {
  opt.thin = true;
  std::vector<std::uint8_t> w(val(full.encoded_size(opt)));
  EXPECT_TRUE(full.encode(w.data(), w.size(), opt).ok());
  return val(DataCap::decode(w.data(), w.size(), DecodeOptions{.thin = true}));
}

}  // namespace capmem::testutil
