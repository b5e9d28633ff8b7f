// The backing's persistent merkle tree (issue 7): roots against hash::merkleize, path
// copying shares untouched subtrees, all-Empty subtrees are never stored, memory bound.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <optional>
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

namespace {
// Everything a Txn could change in a tree, read without touching a refcount: per page its
// slot word (frame or box identity), per node its address, refcount and 31 cached hashes.
struct Shape {
  std::vector<std::uintptr_t> nodes;  // address, refs
  std::vector<Hash32> hashes;
  std::map<std::uint32_t, const void*> slots;
  bool operator==(const Shape&) const = default;
};
void shape_of(const tree::Node* n, std::uint32_t base, Shape& s) {
  if (n == nullptr) return;
  s.nodes.push_back(reinterpret_cast<std::uintptr_t>(n));
  s.nodes.push_back(n->refs.load());
  for (const Hash32& h : n->h) s.hashes.push_back(h);
  for (std::uint32_t i = 0; i < tree::kFan; ++i) {
    const std::uint32_t at = base | (i << (tree::kFanBits * n->level));
    if (n->level == 0) {
      if (!n->u.slots[i].empty()) s.slots[at] = n->u.slots[i].frame();
    } else {
      shape_of(n->u.kids[i], at, s);
    }
  }
}
Shape shape_of(const tree::Node* root) {
  Shape s;
  shape_of(root, 0, s);
  return s;
}
}  // namespace

// In place (a flush whose cap alone holds its backing): nodes only the base holds are
// changed where they are, so changing pages that already have a path makes no node; the
// roots are those of merkleize, as in the default mode.
TEST(Tree, InPlaceTxnTakesOverUnsharedNodes) {
  std::vector<PageRef> pool;
  for (std::uint32_t i = 0; i < 8; ++i) pool.push_back(page_of(200 + i));
  std::map<std::uint32_t, Hash32> model;
  tree::Txn build(nullptr);
  for (std::uint32_t i = 0; i < 5000; i += 3) {
    ASSERT_TRUE(build.set(i, Slot::loaded(pool[i % 8])).ok());
    model[i] = pool[i % 8].hash();
  }
  tree::Node* root = build.commit();
  const auto nodes = tree::live_nodes();
  const auto refs = pool[5].ref_count();
  std::uint32_t gained = 0;
  {
    tree::Txn t(root, tree::Txn::InPlace{});
    for (std::uint32_t i = 0; i < 5000; i += 30) {
      ASSERT_TRUE(t.set(i, Slot::loaded(pool[5])).ok());
      model[i] = pool[5].hash();
      gained += i % 8 != 5 ? 1 : 0;
    }
    tree::Node* next = t.commit();
    EXPECT_EQ(next, root) << "the root is taken over, not copied";
    root = next;
  }
  EXPECT_EQ(tree::live_nodes(), nodes) << "no node copied, none released";
  EXPECT_EQ(pool[5].ref_count(), refs + gained) << "one reference per slot that did not hold it already";
  EXPECT_EQ(tree::pages_root(root, 70000), ref_pages_root(model, 70000));
  // New subtrees, and pages made Empty until their leaf is pruned.
  {
    tree::Txn t(root, tree::Txn::InPlace{});
    ASSERT_TRUE(t.set(65000, Slot::loaded(pool[1])).ok());
    model[65000] = pool[1].hash();
    for (std::uint32_t i = 0; i < 32; i += 3) {
      ASSERT_TRUE(t.set(i, Slot{}).ok());
      model.erase(i);
    }
    root = t.commit();
  }
  EXPECT_EQ(tree::live_nodes(), nodes + 3 - 1) << "a level-2, a level-1 and a leaf node made; leaf 0 pruned";
  EXPECT_EQ(tree::pages_root(root, 70000), ref_pages_root(model, 70000));
  // A shared subtree is path-copied as in the default mode; the other holder keeps its view.
  tree::Node* other = root;
  tree::node_ref(other);
  const Hash32 other_root = tree::pages_root(other, 70000);
  {
    tree::Txn t(root, tree::Txn::InPlace{});
    ASSERT_TRUE(t.set(4998, Slot::loaded(pool[2])).ok());
    model[4998] = pool[2].hash();
    root = t.commit();
  }
  EXPECT_NE(root, other);
  EXPECT_EQ(tree::pages_root(root, 70000), ref_pages_root(model, 70000));
  EXPECT_EQ(tree::pages_root(other, 70000), other_root);
  tree::node_unref(other);
  tree::node_unref(root);
  EXPECT_EQ(tree::live_nodes(), 0u);
}

// An in-place Txn destroyed uncommitted, after any number of successful set() calls and at
// every allocation that can fail (nodes, log chunks): the base is exactly as it was (same
// nodes, refcounts, hashes and slots) and nothing leaks.
TEST(Tree, InPlaceTxnAbortRestoresTheBaseExactly) {
  std::vector<PageRef> pool;
  for (std::uint32_t i = 0; i < 8; ++i) pool.push_back(page_of(300 + i));
  tree::Txn build(nullptr);
  for (std::uint32_t i = 0; i < 40000; i += 5) ASSERT_TRUE(build.set(i, Slot::loaded(pool[i % 8])).ok());
  tree::Node* root = build.commit();
  // One level-1 subtree (pages 2048..3071) and one leaf (pages 9984..10015) shared with
  // another holder: the Txn must copy those, and what hangs below a copy.
  tree::Node* shared_mid = root->u.kids[0]->u.kids[2];
  tree::Node* shared_leaf = root->u.kids[0]->u.kids[9]->u.kids[24];
  tree::node_ref(shared_mid);
  tree::node_ref(shared_leaf);
  const Shape before = shape_of(root);
  const auto nodes = tree::live_nodes();
  std::vector<std::uint32_t> refs;
  for (const PageRef& p : pool) refs.push_back(p.ref_count());
  std::mt19937 rng(11);
  std::vector<std::pair<std::uint32_t, int>> ops;  // page, pool index or -1 for Empty
  for (int j = 0; j < 400; ++j) {
    const std::uint32_t pg = j % 4 == 0 ? 2048 + rng() % 1024 : j % 4 == 1 ? 9984 + rng() % 32 : rng() % 70000;
    ops.emplace_back(pg, rng() % 5 == 0 ? -1 : static_cast<int>(rng() % 8));
  }
  const auto apply = [&](tree::Txn& t, std::size_t upto) {
    for (std::size_t j = 0; j < upto; ++j) {
      const Status st = t.set(ops[j].first, ops[j].second < 0 ? Slot{} : Slot::loaded(pool[ops[j].second])).status();
      if (st != Status::Ok) return st;
    }
    return Status::Ok;
  };
  for (std::size_t upto : {std::size_t{1}, std::size_t{7}, std::size_t{100}, ops.size()}) {
    {
      tree::Txn t(root, tree::Txn::InPlace{});
      ASSERT_EQ(apply(t, upto), Status::Ok);
    }
    EXPECT_TRUE(shape_of(root) == before) << "after " << upto << " changes";
    EXPECT_EQ(tree::live_nodes(), nodes);
  }
  int failures = 0;
  for (std::uint64_t n = 1;; ++n) {
    const auto in_use = hostsim::quiescent_frame_stats().in_use;
    Status st = Status::Ok;
    {
      tree::Txn t(root, tree::Txn::InPlace{});
      frames().inject_failure_at(n);
      st = apply(t, ops.size());
      frames().inject_failure_at(0);
    }
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, in_use) << "at allocation " << n;
    EXPECT_TRUE(shape_of(root) == before) << "at allocation " << n;
    if (st == Status::Ok) break;
    ASSERT_EQ(st, Status::OutOfFrames);
    ++failures;
    ASSERT_LT(n, 1000u);
  }
  EXPECT_GT(failures, 1);
  for (std::size_t i = 0; i < pool.size(); ++i) EXPECT_EQ(pool[i].ref_count(), refs[i]);
  // And committed, the result is the default mode's.
  tree::Txn copy(root);
  ASSERT_EQ(apply(copy, ops.size()), Status::Ok);
  tree::Node* expect = copy.commit();
  tree::Txn t(root, tree::Txn::InPlace{});
  ASSERT_EQ(apply(t, ops.size()), Status::Ok);
  root = t.commit();
  EXPECT_EQ(tree::pages_root(root, tree::kMaxPages), tree::pages_root(expect, tree::kMaxPages));
  EXPECT_EQ(tree::extent(root), tree::extent(expect));
  tree::node_unref(expect);
  tree::node_unref(root);
  tree::node_unref(shared_mid);
  tree::node_unref(shared_leaf);
  EXPECT_EQ(tree::live_nodes(), 0u);
}

// commit() takes a level's fresh nodes 64 at a time and prunes only nodes the Txn stored
// an Empty slot or a null child in (Node::cleared): with hundreds of fresh leaves, whole
// leaves and level-1 nodes emptied across those groups, the tree is still the canonical
// one of its slot array (the same root and the same node count as built from scratch), in
// both modes.
TEST(Tree, CommitOfManyFreshNodesRehashesAndPrunesAcrossGroups) {
  constexpr std::uint32_t kPages = 300 * 32;  // 300 leaves, level-1 nodes 0..9
  std::vector<PageRef> pool;
  for (std::uint32_t i = 0; i < 8; ++i) pool.push_back(page_of(100 + i));
  for (const bool in_place : {false, true}) {
    SCOPED_TRACE(in_place ? "in place" : "path copy");
    std::map<std::uint32_t, unsigned> model;  // page -> pool index
    tree::Txn build(nullptr);
    for (std::uint32_t i = 0; i < kPages; i += 7) {
      ASSERT_TRUE(build.set(i, Slot::loaded(pool[i % 8])).ok());
      model[i] = i % 8;
    }
    tree::Node* root = build.commit();
    const auto before = tree::live_nodes();
    {
      std::optional<tree::Txn> t;
      if (in_place) t.emplace(root, tree::Txn::InPlace{});
      else t.emplace(root);
      // Leaves 0..149 lose every page (level-1 nodes 0..3 become all Empty, node 4 keeps
      // 10 of its 32 leaves); leaves 150..299 get one more page each.
      for (std::uint32_t i = 0; i < 150 * 32; i += 7) {
        ASSERT_TRUE(t->set(i, Slot{}).ok());
        model.erase(i);
      }
      for (std::uint32_t leaf = 150; leaf < 300; ++leaf) {
        const std::uint32_t pg = leaf * 32 + leaf % 32;
        ASSERT_TRUE(t->set(pg, Slot::loaded(pool[(leaf + 3) % 8])).ok());
        model[pg] = (leaf + 3) % 8;
      }
      tree::Node* next = t->commit();
      if (!in_place) tree::node_unref(root);
      root = next;
    }
    std::map<std::uint32_t, Hash32> roots;
    for (const auto& [i, k] : model) roots[i] = pool[k].hash();
    EXPECT_LT(tree::live_nodes(), before) << "emptied leaves and level-1 nodes are gone";
    EXPECT_EQ(tree::pages_root(root, kPages), ref_pages_root(roots, kPages));
    const auto updated = tree::live_nodes();
    tree::Txn fresh(nullptr);
    for (const auto& [i, k] : model) ASSERT_TRUE(fresh.set(i, Slot::loaded(pool[k])).ok());
    tree::Node* scratch = fresh.commit();
    EXPECT_EQ(tree::live_nodes() - updated, updated) << "as many nodes as the tree built from scratch";
    EXPECT_EQ(tree::pages_root(scratch, kPages), tree::pages_root(root, kPages));
    tree::node_unref(scratch);
    tree::node_unref(root);
    EXPECT_EQ(tree::live_nodes(), 0u);
  }
}
