// SHA-256 back ends, node/level hashing and page roots (rule 1.2).
//
// Every back end the CPU supports is checked against the portable one (and the portable
// one against the published FIPS 180 examples), on random data of every shape the
// dispatcher distinguishes: message lengths 0..300, level sizes around every batch width,
// in-place levels, single pages and batches of scattered pages.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../test_util.h"
#include "capmem/hash.h"

using namespace capmem;
using capmem::testutil::hex;
using hash::Impl;

namespace {

constexpr Impl kAllImpls[] = {Impl::Portable, Impl::ShaNi, Impl::Avx2, Impl::Avx512};

std::vector<Impl> supported_impls() {
  std::vector<Impl> v;
  for (Impl i : kAllImpls)
    if (hash::supported(i)) v.push_back(i);
  return v;
}

// Restores the start-up choice after a test that forces back ends.
struct ForceGuard {
  ~ForceGuard() { hash::init(); }
};

Hash32 from_hex(const std::string& s) {
  Hash32 h{};
  for (int i = 0; i < 32; ++i) h.b[i] = static_cast<std::uint8_t>(std::stoul(s.substr(2 * i, 2), nullptr, 16));
  return h;
}

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// Independent reference for a node and a page root: plain sha256() of the 64-byte
// concatenation, evaluated with the portable back end, level by level over 128 chunks.
Hash32 ref_node(const Hash32& l, const Hash32& r) {
  std::uint8_t m[64];
  std::memcpy(m, l.b.data(), 32);
  std::memcpy(m + 32, r.b.data(), 32);
  return hash::sha256(m, 64);
}

Hash32 ref_page_root(const std::uint8_t* page) {
  std::vector<Hash32> lvl(128);
  std::memcpy(lvl.data(), page, 4096);
  while (lvl.size() > 1) {
    std::vector<Hash32> up(lvl.size() / 2);
    for (std::size_t i = 0; i < up.size(); ++i) up[i] = ref_node(lvl[2 * i], lvl[2 * i + 1]);
    lvl = up;
  }
  return lvl[0];
}

}  // namespace

// FIPS 180-2, Appendix B (SHA-256 examples B.1, B.2, B.3) and the empty message from the
// NIST CSRC "Examples with intermediate values" (SHA256.pdf): published constants.
TEST(Sha256, NistVectors) {
  ForceGuard guard;
  const std::string m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const std::string m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  const std::string million(1000000, 'a');
  struct V {
    const std::string* msg;
    const char* digest;
  };
  const std::string empty, abc = "abc";
  const V vs[] = {
      {&empty, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {&abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {&m448, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {&m896, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {&million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (Impl impl : supported_impls()) {
    hash::force(impl);
    for (const V& v : vs)
      EXPECT_EQ(hex(hash::sha256(v.msg->data(), v.msg->size())), v.digest)
          << hash::impl_name(impl) << " message length " << v.msg->size();
  }
}

// CPUID detection agrees with what the kernel reports in /proc/cpuinfo (Linux only checks
// CPUID too, but also hides features the OS did not enable in XCR0).
TEST(Sha256, SupportedMatchesProcCpuinfo) {
  std::ifstream f("/proc/cpuinfo");
  if (!f) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line, flags;
  while (std::getline(f, line))
    if (line.rfind("flags", 0) == 0) {
      flags = line + " ";
      break;
    }
  if (flags.empty()) GTEST_SKIP() << "no flags line";
  auto has = [&](const char* x) { return flags.find(std::string(" ") + x + " ") != std::string::npos; };
  EXPECT_TRUE(hash::supported(Impl::Portable));
  EXPECT_EQ(hash::supported(Impl::ShaNi), has("sha_ni") && has("sse4_1") && has("ssse3"));
  EXPECT_EQ(hash::supported(Impl::Avx2), has("avx2"));
  EXPECT_EQ(hash::supported(Impl::Avx512), has("avx512f") && has("avx512bw") && has("avx512vl"));
}

TEST(Sha256, InitPicksASupportedImpl) {
  hash::init();
  EXPECT_TRUE(hash::supported(hash::active()));
  // The fastest correct back end: AVX-512 where present.
  if (hash::supported(Impl::Avx512)) {
    EXPECT_EQ(hash::active(), Impl::Avx512);
  }
}

TEST(Sha256, EveryImplMatchesPortableForLengths0To300) {
  ForceGuard guard;
  std::mt19937_64 rng(1);
  const auto data = random_bytes(rng, 301 + 64);
  for (std::size_t off : {0u, 1u, 7u}) {  // unaligned starts too
    std::vector<Hash32> want(301);
    hash::force(Impl::Portable);
    for (std::size_t len = 0; len <= 300; ++len) want[len] = hash::sha256(data.data() + off, len);
    for (Impl impl : supported_impls()) {
      hash::force(impl);
      for (std::size_t len = 0; len <= 300; ++len)
        ASSERT_EQ(hash::sha256(data.data() + off, len), want[len]) << hash::impl_name(impl) << " len " << len;
    }
  }
}

TEST(Rule1_2, NodeIsSha256OfTheConcatenation) {
  ForceGuard guard;
  std::mt19937_64 rng(2);
  for (Impl impl : supported_impls()) {
    hash::force(impl);
    for (int i = 0; i < 50; ++i) {
      Hash32 l, r;
      auto b = random_bytes(rng, 64);
      std::memcpy(l.b.data(), b.data(), 32);
      std::memcpy(r.b.data(), b.data() + 32, 32);
      hash::force(Impl::Portable);
      const Hash32 want = hash::sha256(b.data(), 64);
      hash::force(impl);
      EXPECT_EQ(hash::node(l, r), want) << hash::impl_name(impl);
    }
  }
}

// Level sizes 0..70 cover every batch width (1, 4, 8, 16) with every remainder, both
// out of place and in place.
TEST(Rule1_2, LevelsMatchPortableInAndOutOfPlace) {
  ForceGuard guard;
  std::mt19937_64 rng(3);
  for (std::size_t n = 0; n <= 70; ++n) {
    std::vector<Hash32> in(2 * n);
    for (auto& h : in)
      for (auto& b : h.b) b = static_cast<std::uint8_t>(rng());
    std::vector<Hash32> want(n);
    hash::force(Impl::Portable);
    for (std::size_t i = 0; i < n; ++i) want[i] = ref_node(in[2 * i], in[2 * i + 1]);
    for (Impl impl : supported_impls()) {
      hash::force(impl);
      std::vector<Hash32> out(n + 1);
      const Hash32 canary = out[n] = in.empty() ? Hash32{} : in[0];
      hash::nodes(in.data(), out.data(), n);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(out[i], want[i]) << hash::impl_name(impl) << " n " << n << " i " << i;
      EXPECT_EQ(out[n], canary) << "wrote past the end";
      std::vector<Hash32> inplace = in;
      hash::nodes(inplace.data(), inplace.data(), n);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(inplace[i], want[i]) << hash::impl_name(impl) << " in place n " << n;
    }
  }
}

TEST(Rule1_2, PageRootMatchesStraightforwardTree) {
  ForceGuard guard;
  std::mt19937_64 rng(4);
  std::vector<std::vector<std::uint8_t>> pages;
  pages.push_back(std::vector<std::uint8_t>(4096, 0));
  pages.push_back(std::vector<std::uint8_t>(4096, 0xff));
  for (int i = 0; i < 6; ++i) pages.push_back(random_bytes(rng, 4096));
  hash::force(Impl::Portable);
  std::vector<Hash32> want;
  for (auto& p : pages) want.push_back(ref_page_root(p.data()));
  // The all-zero page is the zero subtree of depth 7 (128 zero chunks).
  EXPECT_EQ(want[0], hash::zero_hash(7));
  for (Impl impl : supported_impls()) {
    hash::force(impl);
    for (std::size_t i = 0; i < pages.size(); ++i)
      EXPECT_EQ(hash::page_content_hash(pages[i].data()), want[i]) << hash::impl_name(impl) << " page " << i;
  }
}

// The frozen benchmark reference (hash::Frozen::Avx512V1) computes the same page roots, so
// BM_PageRoot_Impl/avx512-v1 measures real work; init() never leaves it selected.
TEST(Rule1_2, FrozenAvx512V1MatchesTheStraightforwardTree) {
  if (!hash::frozen_supported(hash::Frozen::Avx512V1)) GTEST_SKIP() << "no AVX-512";
  ForceGuard guard;
  std::mt19937_64 rng(6);
  std::vector<std::vector<std::uint8_t>> pages;
  std::vector<const std::uint8_t*> ptrs;
  for (int i = 0; i < 19; ++i) pages.push_back(random_bytes(rng, 4096));
  hash::force(Impl::Portable);
  std::vector<Hash32> want;
  for (auto& p : pages) {
    want.push_back(ref_page_root(p.data()));
    ptrs.push_back(p.data());
  }
  hash::force_frozen(hash::Frozen::Avx512V1);
  std::vector<Hash32> got(pages.size());
  hash::page_content_hashes(ptrs.data(), got.data(), got.size());
  for (std::size_t i = 0; i < pages.size(); ++i) EXPECT_EQ(got[i], want[i]) << "page " << i;
  hash::init();
  EXPECT_EQ(hash::active(), Impl::Avx512);
}

// Many pages at once (grouped levels) == one page at a time, for batch sizes around the
// group size and pages scattered in memory in a shuffled order.
TEST(Rule1_2, ManyPagesAtOnceMatchOneAtATime) {
  ForceGuard guard;
  std::mt19937_64 rng(5);
  const std::size_t kPages = 41;
  std::vector<std::uint8_t> arena = random_bytes(rng, (kPages + 1) * 4096 + 64);
  std::vector<const std::uint8_t*> ptrs;
  for (std::size_t i = 0; i < kPages; ++i) ptrs.push_back(arena.data() + 3 + 4096 * ((i * 17) % (kPages + 1)));
  hash::force(Impl::Portable);
  std::vector<Hash32> want;
  for (auto* p : ptrs) want.push_back(ref_page_root(p));
  for (Impl impl : supported_impls()) {
    hash::force(impl);
    for (std::size_t n : {0u, 1u, 2u, 7u, 8u, 9u, 16u, 17u, 41u}) {
      std::vector<Hash32> out(n + 1);
      const Hash32 canary = out[n] = want[0];
      hash::page_content_hashes(ptrs.data(), out.data(), n);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(out[i], want[i]) << hash::impl_name(impl) << " n " << n << " page " << i;
      EXPECT_EQ(out[n], canary);
    }
  }
}

// tests/vectors/FIRST_PAGE_ROOTS: "<root>  <file>" = page_content_hash of the file's
// first 4096 bytes, zero-padded (computed by an SSZ implementation outside this project).
TEST(Rule1_2, FirstPageRootsFromSharedVectors) {
  ForceGuard guard;
  const char* dir = std::getenv("CAPMEM_VECTORS");
  ASSERT_NE(dir, nullptr) << "CAPMEM_VECTORS is set by tests/unit/meson.build";
  std::ifstream list(std::string(dir) + "/FIRST_PAGE_ROOTS");
  ASSERT_TRUE(list) << "missing " << dir << "/FIRST_PAGE_ROOTS";
  std::string root, file;
  int checked = 0;
  while (list >> root >> file) {
    std::ifstream f(std::string(dir) + "/" + file, std::ios::binary);
    ASSERT_TRUE(f) << file;
    std::vector<std::uint8_t> page(4096, 0);
    f.read(reinterpret_cast<char*>(page.data()), 4096);
    for (Impl impl : supported_impls()) {
      hash::force(impl);
      EXPECT_EQ(hex(hash::page_content_hash(page.data())), root) << file << " " << hash::impl_name(impl);
      Hash32 many;
      const std::uint8_t* p = page.data();
      hash::page_content_hashes(&p, &many, 1);
      EXPECT_EQ(many, from_hex(root)) << file << " " << hash::impl_name(impl);
    }
    ++checked;
  }
  EXPECT_GE(checked, 5);
}
