// SSZ merkleization (rule 3.4): zero-subtree table, merkleize(leaves, limit), uint64 root
// and the two-field container root, against straightforward references written here.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "capmem/hash.h"

using namespace capmem;
using hash::Impl;

namespace {

constexpr Impl kAllImpls[] = {Impl::Portable, Impl::ShaNi, Impl::Avx2, Impl::Avx512};

struct ForceGuard {
  ~ForceGuard() { hash::init(); }
};

// The reference hashes through plain sha256() of 64 bytes (portable back end), never
// through node()/nodes()/merkleize.
Hash32 H(const Hash32& l, const Hash32& r) {
  std::uint8_t m[64];
  std::memcpy(m, l.b.data(), 32);
  std::memcpy(m + 32, r.b.data(), 32);
  return hash::sha256(m, 64);
}

std::uint64_t next_pow2(std::uint64_t x) {
  std::uint64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// SSZ merkleize as docs/rules.md 3.4 states it: pad with zero chunks to the next power of two of
// max(limit, 1) and hash pairwise up to one root. Only for small widths.
Hash32 ref_merkleize_padded(const std::vector<Hash32>& leaves, std::uint64_t limit) {
  const std::uint64_t width = next_pow2(limit < 1 ? 1 : limit);
  std::vector<Hash32> lvl(leaves);
  lvl.resize(width, Hash32{});
  while (lvl.size() > 1) {
    std::vector<Hash32> up(lvl.size() / 2);
    for (std::size_t i = 0; i < up.size(); ++i) up[i] = H(lvl[2 * i], lvl[2 * i + 1]);
    lvl.swap(up);
  }
  return lvl[0];
}

// Zero subtrees by iterating H from the zero chunk.
std::vector<Hash32> ref_zero_hashes() {
  std::vector<Hash32> z(65, Hash32{});
  for (int d = 1; d <= 64; ++d) z[d] = H(z[d - 1], z[d - 1]);
  return z;
}

// For huge limits: the padded tree over the leaves' own power-of-two width, then one
// H(root, zero subtree) per remaining level (the right half of every higher node is empty).
Hash32 ref_merkleize_wide(const std::vector<Hash32>& leaves, std::uint64_t limit) {
  static const std::vector<Hash32> z = ref_zero_hashes();
  const std::uint64_t w = next_pow2(leaves.empty() ? 1 : leaves.size());
  Hash32 root = ref_merkleize_padded(leaves, w);
  unsigned d = 0;
  while ((std::uint64_t{1} << d) < w) ++d;
  for (; d < 64 && (std::uint64_t{1} << d) < limit; ++d) root = H(root, z[d]);
  return root;
}

std::vector<Hash32> random_leaves(std::mt19937_64& rng, std::size_t n) {
  std::vector<Hash32> v(n);
  for (auto& h : v)
    for (auto& b : h.b) b = static_cast<std::uint8_t>(rng());
  return v;
}

}  // namespace

TEST(Rule3_4, ZeroHashTableIsIteratedNode) {
  ForceGuard guard;
  hash::force(Impl::Portable);
  const auto z = ref_zero_hashes();
  for (unsigned d = 0; d <= 64; ++d) EXPECT_EQ(hash::zero_hash(d), z[d]) << "depth " << d;
  for (Impl impl : kAllImpls) {
    if (!hash::supported(impl)) continue;
    hash::force(impl);
    for (unsigned d = 1; d <= 64; ++d) EXPECT_EQ(hash::node(z[d - 1], z[d - 1]), z[d]) << hash::impl_name(impl);
  }
}

// Every leaf count 0..300, then random counts up to 1100, each with several limits
// (exact, next power of two, a bit above, far above), on every supported back end.
TEST(Rule3_4, MerkleizeMatchesPaddedReference) {
  ForceGuard guard;
  std::mt19937_64 rng(7);
  std::vector<std::size_t> counts;
  for (std::size_t c = 0; c <= 300; c += (c < 140 ? 1 : 7)) counts.push_back(c);
  for (int i = 0; i < 25; ++i) counts.push_back(301 + rng() % 800);
  counts.push_back(1024);
  counts.push_back(1100);
  for (std::size_t count : counts) {
    const auto leaves = random_leaves(rng, count);
    const std::uint64_t limits[] = {count, next_pow2(count), count + 1 + rng() % 300, 2048};
    for (std::uint64_t limit : limits) {
      hash::force(Impl::Portable);
      const Hash32 want = ref_merkleize_padded(leaves, limit);
      for (Impl impl : kAllImpls) {
        if (!hash::supported(impl)) continue;
        hash::force(impl);
        ASSERT_EQ(hash::merkleize(leaves.data(), count, limit), want)
            << hash::impl_name(impl) << " count " << count << " limit " << limit;
      }
    }
  }
}

// Limits of 2^20 and beyond (up to 2^64) need no allocation and agree with the reference.
TEST(Rule3_4, MerkleizeLargeLimits) {
  ForceGuard guard;
  std::mt19937_64 rng(8);
  for (std::size_t count : {0u, 1u, 5u, 129u, 1000u, 70000u}) {
    const auto leaves = random_leaves(rng, count);
    const std::uint64_t limits[] = {std::uint64_t{1} << 20, (std::uint64_t{1} << 20) + 1, std::uint64_t{1} << 40,
                                    ~std::uint64_t{0}};
    for (std::uint64_t limit : limits) {
      hash::force(Impl::Portable);
      const Hash32 want = ref_merkleize_wide(leaves, limit);
      for (Impl impl : kAllImpls) {
        if (!hash::supported(impl)) continue;
        hash::force(impl);
        ASSERT_EQ(hash::merkleize(leaves.data(), count, limit), want)
            << hash::impl_name(impl) << " count " << count << " limit " << limit;
      }
    }
  }
}

TEST(Rule3_4, MerkleizeEmptyIsZeroSubtree) {
  const auto z = ref_zero_hashes();
  EXPECT_EQ(hash::merkleize(nullptr, 0, 0), Hash32{});
  EXPECT_EQ(hash::merkleize(nullptr, 0, 1), Hash32{});
  EXPECT_EQ(hash::merkleize(nullptr, 0, 5), z[3]);
  EXPECT_EQ(hash::merkleize(nullptr, 0, std::uint64_t{1} << 20), z[20]);
}

// SSZ uint64: little-endian bytes in a zero-padded 32-byte chunk.
TEST(Rule3_4, Uint64Root) {
  const std::uint64_t v = 0x0123456789abcdefull;
  const Hash32 h = hash::uint64_root(v);
  const std::uint8_t want[8] = {0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(h.b[i], want[i]);
  for (int i = 8; i < 32; ++i) EXPECT_EQ(h.b[i], 0);
  EXPECT_EQ(hash::uint64_root(0), Hash32{});
}

// Rule 3.4's two-field container: merkleize([uint64_root(size), pages_root], 2)
// = sha256(u64le(size) ++ 24 zero bytes ++ pages_root).
TEST(Rule3_4, CapRootIsTwoFieldContainer) {
  std::mt19937_64 rng(9);
  const auto pr = random_leaves(rng, 1)[0];
  const std::uint64_t size = 3 * 4096;
  std::uint8_t msg[64] = {};
  for (int i = 0; i < 8; ++i) msg[i] = static_cast<std::uint8_t>(size >> (8 * i));
  std::memcpy(msg + 32, pr.b.data(), 32);
  const Hash32 want = hash::sha256(msg, 64);
  const Hash32 fields[2] = {hash::uint64_root(size), pr};
  EXPECT_EQ(hash::merkleize(fields, 2, 2), want);
  EXPECT_EQ(hash::node(fields[0], fields[1]), want);
}
