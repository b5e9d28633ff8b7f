// The backing's persistent merkle tree (issue 7): roots against hash::merkleize, path
// copying shares untouched subtrees, all-Empty subtrees are never stored, memory bound.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/internal/tree.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

namespace {
PageRef page_of(std::uint32_t salt) {
  std::uint8_t b[PAGE_SIZE];
  std::memset(b, 0x5a, sizeof b);
  std::memcpy(b, &salt, 4);
  return PageRef::from_content(b, PAGE_SIZE).release_value();
}
Hash32 ref_pages_root(const std::map<std::uint32_t, Hash32>& roots, std::uint32_t page_count) {
  std::vector<Hash32> leaves(page_count, Hash32{});
  for (const auto& [i, h] : roots)
    if (i < page_count) leaves[i] = h;
  return hash::merkleize(leaves.data(), leaves.size(), page_count > 1 ? page_count : 1);
}
}  // namespace

TEST(Tree, RandomUpdatesMatchMerkleize) {
  std::mt19937 rng(5);
  std::vector<PageRef> pool;
  for (std::uint32_t i = 0; i < 8; ++i) pool.push_back(page_of(i));
  std::map<std::uint32_t, Hash32> model;
  tree::Node* root = nullptr;
  for (int round = 0; round < 30; ++round) {
    const std::uint32_t span = round < 15 ? 100 : 70000;
    tree::Txn txn(root);
    const int k = 1 + static_cast<int>(rng() % 50);
    for (int j = 0; j < k; ++j) {
      const std::uint32_t pg = rng() % span;
      if (rng() % 4 == 0) {
        ASSERT_TRUE(txn.set(pg, Slot{}).ok());
        model.erase(pg);
      } else {
        const PageRef& p = pool[rng() % pool.size()];
        ASSERT_TRUE(txn.set(pg, Slot::loaded(p)).ok());
        model[pg] = p.hash();
      }
    }
    tree::Node* next = txn.commit();
    const Hash32 old_root = tree::pages_root(root, 70000);
    for (std::uint32_t pc : {1u, 2u, 7u, 32u, 100u, 1024u, 1025u, 70000u}) {
      bool fits = model.empty() || model.rbegin()->first < pc;
      if (fits) EXPECT_EQ(tree::pages_root(next, pc), ref_pages_root(model, pc)) << "round " << round << " pc " << pc;
    }
    EXPECT_EQ(tree::extent(next), model.empty() ? 0u : model.rbegin()->first + 1);
    EXPECT_EQ(tree::pages_root(root, 70000), old_root) << "the base is untouched";
    if (root != nullptr) tree::node_unref(root);
    root = next;
  }
  if (root != nullptr) tree::node_unref(root);
  EXPECT_EQ(tree::live_nodes(), 0u);
}

TEST(Tree, EmptySubtreesAreNeverStored) {
  PageRef p = page_of(1);
  tree::Txn a(nullptr);
  ASSERT_TRUE(a.set(40000, Slot::loaded(p)).ok());
  tree::Node* r = a.commit();
  EXPECT_EQ(tree::live_nodes(), 4u) << "one path of four nodes";
  tree::Txn b(r);
  ASSERT_TRUE(b.set(40000, Slot{}).ok());
  tree::Node* r2 = b.commit();
  EXPECT_EQ(r2, nullptr) << "an all-Empty tree is the null tree";
  EXPECT_EQ(tree::live_nodes(), 4u);
  tree::node_unref(r);
  EXPECT_EQ(tree::live_nodes(), 0u);
}

TEST(Tree, AbortedTxnReleasesEverything) {
  PageRef p = page_of(2);
  tree::Txn base(nullptr);
  ASSERT_TRUE(base.set(5, Slot::loaded(p)).ok());
  tree::Node* r = base.commit();
  const auto nodes = tree::live_nodes();
  const auto refs = p.ref_count();
  {
    tree::Txn t(r);
    for (std::uint32_t i = 0; i < 3000; i += 7) ASSERT_TRUE(t.set(i, Slot::loaded(p)).ok());
  }
  EXPECT_EQ(tree::live_nodes(), nodes);
  EXPECT_EQ(p.ref_count(), refs);
  // Out of frames inside set(): the base is unchanged and nothing leaks.
  const Hash32 base_root = tree::pages_root(r, 30000);
  int failures = 0;
  for (std::uint64_t n = 1;; ++n) {
    const auto before = hostsim::quiescent_frame_stats().in_use;
    Status st = Status::Ok;
    {
      tree::Txn t(r);
      frames().inject_failure_at(n);
      for (std::uint32_t i = 0; i < 30000 && st == Status::Ok; i += 500) st = t.set(i, Slot::loaded(p)).status();
      frames().inject_failure_at(0);
    }
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
    EXPECT_EQ(tree::pages_root(r, 30000), base_root);
    if (st == Status::Ok) break;
    EXPECT_EQ(st, Status::OutOfFrames);
    ++failures;
    ASSERT_LT(n, 1000u);
  }
  EXPECT_GT(failures, 0);
  EXPECT_EQ(tree::live_nodes(), nodes);
  tree::node_unref(r);
}

TEST(Tree, FlushPathCopiesOnlyTheDirtyPathAndMemoryIsUnderTwoPercent) {
  // A fully loaded 4 GiB cap (every slot Loaded, all sharing 16 frames).
  std::vector<PageRef> pool;
  for (std::uint32_t i = 0; i < 16; ++i) pool.push_back(page_of(100 + i));
  const auto frames_before = hostsim::quiescent_frame_stats().in_use;
  tree::Txn build(nullptr);
  for (std::uint32_t i = 0; i < tree::kMaxPages; ++i) ASSERT_TRUE(build.set(i, Slot::loaded(pool[i % 16])).ok());
  tree::Node* full = build.commit();
  const std::uint64_t node_frames = hostsim::quiescent_frame_stats().in_use - frames_before;
  const std::uint64_t nodes = tree::live_nodes();
  EXPECT_EQ(nodes, 32768u + 1024u + 32u + 1u);
  EXPECT_LE(node_frames * PAGE_SIZE * 50, std::uint64_t{tree::kMaxPages} * PAGE_SIZE)
      << "cached nodes must cost at most 2% of the page data";
  std::vector<Hash32> leaves(tree::kMaxPages);
  for (std::uint32_t i = 0; i < tree::kMaxPages; ++i) leaves[i] = pool[i % 16].hash();
  EXPECT_EQ(tree::pages_root(full, tree::kMaxPages), hash::merkleize(leaves.data(), leaves.size(), leaves.size()));

  // One dirty page: a new root sharing everything but four path nodes.
  auto b = tree::backing_alloc().release_value();
  tree::backing_init(b, full, kMaxCapSize);
  tree::Txn t(b->root);
  PageRef q = page_of(9999);
  ASSERT_TRUE(t.set(654321, Slot::loaded(q)).ok());
  tree::Node* next = t.commit();
  EXPECT_EQ(tree::live_nodes(), nodes + 4);
  leaves[654321] = q.hash();
  EXPECT_EQ(tree::pages_root(next, tree::kMaxPages), hash::merkleize(leaves.data(), leaves.size(), leaves.size()));
  EXPECT_EQ(b->cap_root, tree::cap_root(full, kMaxCapSize)) << "old backing unchanged";
  tree::node_unref(next);
  tree::backing_unref(b);
  EXPECT_EQ(tree::live_nodes(), 0u);
  EXPECT_EQ(tree::live_backings(), 0u);
}
