#include "capmem/internal/tree.h"

#include <new>

#include "capmem/hash.h"
#include "capmem/internal/slab.h"
#include "capmem/log.h"

namespace capmem::tree {

namespace {
constinit Slab g_nodes{sizeof(Node)};
constinit Slab g_backings{sizeof(Backing)};

// Heap position `i` (1..63) of node n's binary subtree: 1..31 cached, 32..63 bottom items.
const Hash32& item(const Node* n, unsigned i) {
  if (i < kFan) return n->h[i - 1];
  const unsigned j = i - kFan;
  if (n->level == 0) return n->u.slots[j].root();
  return node_root(n->u.kids[j], n->level - 1u);
}

Node* node_new(unsigned level) {
  void* mem = g_nodes.alloc();
  if (mem == nullptr) return nullptr;
  Node* n = new (mem) Node{};
  n->refs.store(1, std::memory_order_relaxed);
  n->level = static_cast<std::uint8_t>(level);
  if (level == 0) {
    for (auto& s : n->u.slots) new (&s) Slot();
  } else {
    for (auto& k : n->u.kids) k = nullptr;
  }
  // Hashes of an all-Empty node: zero hashes per heap level.
  for (unsigned i = 1; i < kFan; ++i) {
    const unsigned local_depth = kFanBits - static_cast<unsigned>(31 - __builtin_clz(i));  // 5 for i = 1
    n->h[i - 1] = hash::zero_hash(kFanBits * level + local_depth);
  }
  return n;
}

Node* node_copy(const Node* src) {
  void* mem = g_nodes.alloc();
  if (mem == nullptr) return nullptr;
  Node* n = new (mem) Node{};
  n->refs.store(1, std::memory_order_relaxed);
  n->level = src->level;
  for (unsigned i = 0; i < kFan - 1; ++i) n->h[i] = src->h[i];
  if (src->level == 0) {
    for (unsigned i = 0; i < kFan; ++i) new (&n->u.slots[i]) Slot(src->u.slots[i]);
  } else {
    for (unsigned i = 0; i < kFan; ++i) {
      n->u.kids[i] = src->u.kids[i];
      if (n->u.kids[i] != nullptr) node_ref(n->u.kids[i]);
    }
  }
  return n;
}

bool all_empty(const Node* n) {
  if (n->level == 0) {
    for (const auto& s : n->u.slots)
      if (!s.empty()) return false;
  } else {
    for (const Node* k : n->u.kids)
      if (k != nullptr) return false;
  }
  return true;
}

// Gathers (left, right) pairs from many nodes and hashes them through hash::nodes in
// batches, so independent positions of one level go through the multi-buffer back end.
class PairBatch {
 public:
  void add(const Hash32& l, const Hash32& r, Hash32* dst) {
    in_[2 * n_] = l;
    in_[2 * n_ + 1] = r;
    dst_[n_++] = dst;
    if (n_ == kBatch) drain();
  }
  void drain() {
    if (n_ == 0) return;
    hash::nodes(in_, out_, n_);
    for (std::size_t i = 0; i < n_; ++i) *dst_[i] = out_[i];
    n_ = 0;
  }

 private:
  static constexpr std::size_t kBatch = 32;
  Hash32 in_[2 * kBatch];
  Hash32 out_[kBatch];
  Hash32* dst_[kBatch];
  std::size_t n_ = 0;
};
}  // namespace

std::uint64_t live_nodes() { return g_nodes.stats().objects; }
std::uint64_t live_backings() { return g_backings.stats().objects; }

void node_ref(Node* n) {
  if (n->refs.fetch_add(1, std::memory_order_relaxed) == 0) env::panic("tree: ref of a dead node");
}

void node_unref(Node* n) {
  const std::uint32_t old = n->refs.fetch_sub(1, std::memory_order_acq_rel);
  if (old == 0) env::panic("tree: node released below zero");
  if (old != 1) return;
  if (n->level == 0) {
    for (auto& s : n->u.slots) s.~Slot();
  } else {
    for (Node* k : n->u.kids)
      if (k != nullptr) node_unref(k);  // recursion depth <= 3
  }
  n->~Node();
  g_nodes.free(n);
}

const Hash32& node_root(const Node* n, unsigned level) {
  return n != nullptr ? n->h[0] : hash::zero_hash(kFanBits * (level + 1));
}

const Slot* lookup(const Node* n, std::uint32_t page) {
  if (page >= kMaxPages) return nullptr;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    const unsigned i = (page >> (kFanBits * level)) & (kFan - 1);
    if (level == 0) return n->u.slots[i].empty() ? nullptr : &n->u.slots[i];
    n = n->u.kids[i];
  }
  return nullptr;
}

std::uint32_t extent(const Node* n) {
  std::uint32_t base = 0;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    int last = -1;
    for (int i = kFan - 1; i >= 0; --i) {
      const bool used = level == 0 ? !n->u.slots[i].empty() : n->u.kids[i] != nullptr;
      if (used) {
        last = i;
        break;
      }
    }
    CAPMEM_ASSERT(last >= 0);  // all-Empty nodes are pruned
    base |= static_cast<std::uint32_t>(last) << (kFanBits * level);
    if (level == 0) return base + 1;
    n = n->u.kids[last];
  }
  return 0;
}

Hash32 pages_root(const Node* n, std::uint32_t page_count) {
  const std::uint32_t limit = page_count > 1 ? page_count : 1;
  const unsigned d = limit == 1 ? 0 : 32 - static_cast<unsigned>(__builtin_clz(limit - 1));  // ceil(log2)
  CAPMEM_ASSERT(d <= kDepth);
  if (d == kDepth) return node_root(n, kLevels - 1);
  const unsigned t = d / kFanBits;  // the node level holding that subtree root
  for (unsigned level = kLevels - 1; level > t; --level) {
    if (n == nullptr) return hash::zero_hash(d);
    n = n->u.kids[0];
  }
  if (n == nullptr) return hash::zero_hash(d);
  return item(n, 1u << (kFanBits - (d - kFanBits * t)));
}

Hash32 cap_root(const Node* root, std::uint64_t size) {
  return hash::node(hash::uint64_root(size), pages_root(root, static_cast<std::uint32_t>(size / PAGE_SIZE)));
}

Result<Backing*> backing_alloc() {
  void* mem = g_backings.alloc();
  if (mem == nullptr) return Status::OutOfFrames;
  auto* b = new (mem) Backing{};
  b->refs.store(1, std::memory_order_relaxed);
  return b;
}

void backing_init(Backing* b, Node* root, std::uint64_t size) {
  b->root = root;
  b->size = size;
  b->extent = extent(root);
  b->cap_root = cap_root(root, size);
}

void backing_init_like(Backing* b, Node* root, const Backing& like) {
  CAPMEM_ASSERT(node_root(root, kLevels - 1) == node_root(like.root, kLevels - 1));
  b->root = root;
  b->size = like.size;
  b->extent = like.extent;
  b->cap_root = like.cap_root;
}

bool path_exclusive(const Node* n, std::uint32_t page) {
  if (page >= kMaxPages) return false;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    if (n->refs.load(std::memory_order_acquire) != 1) return false;
    if (level == 0) return true;
    n = n->u.kids[(page >> (kFanBits * level)) & (kFan - 1)];
  }
  return true;
}

Slot* exclusive_slot(Node* n, std::uint32_t page) {
  CAPMEM_ASSERT(path_exclusive(n, page));
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    const unsigned i = (page >> (kFanBits * level)) & (kFan - 1);
    if (level == 0) return &n->u.slots[i];
    n = n->u.kids[i];
  }
  return nullptr;
}

std::uint32_t count_missing(const Node* n) {
  if (n == nullptr) return 0;
  std::uint32_t c = 0;
  if (n->level == 0) {
    for (const auto& s : n->u.slots) c += s.kind() == SlotKind::Missing ? 1 : 0;
  } else {
    for (const Node* k : n->u.kids) c += count_missing(k);  // recursion depth <= 3
  }
  return c;
}

void backing_ref(Backing* b) {
  if (b->refs.fetch_add(1, std::memory_order_relaxed) == 0) env::panic("backing: ref of a dead backing");
}

void backing_unref(Backing* b) {
  const std::uint32_t old = b->refs.fetch_sub(1, std::memory_order_acq_rel);
  if (old == 0) env::panic("backing released below zero");
  if (old != 1) return;
  if (b->root != nullptr) node_unref(b->root);
  b->~Backing();
  g_backings.free(b);
}

void backing_free_unused(Backing* b) {
  CAPMEM_ASSERT(b->root == nullptr);
  b->~Backing();
  g_backings.free(b);
}

// --- Txn ---------------------------------------------------------------------------------

Txn::Txn(Node* base) : root_(base) {
  if (root_ != nullptr) node_ref(root_);
}

Txn::~Txn() {
  if (root_ != nullptr) node_unref(root_);  // fresh nodes are reachable only from root_
}

Node* Txn::leaf_for(std::uint32_t page, bool mark) {
  CAPMEM_ASSERT(page < kMaxPages);
  Node** link = &root_;
  Node* parent = nullptr;
  for (unsigned level = kLevels - 1;; --level) {
    const unsigned idx = parent == nullptr ? 0 : (page >> (kFanBits * (level + 1))) & (kFan - 1);
    Node* n = *link;
    if (n == nullptr || n->fresh == 0) {
      Node* c = n == nullptr ? node_new(level) : node_copy(n);
      if (c == nullptr) return nullptr;  // the tree so far is a faithful copy
      if (n != nullptr) node_unref(n);   // drop the reference the parent (or the Txn) held
      c->fresh = 1;
      c->parent = parent;
      c->index = static_cast<std::uint8_t>(idx);
      c->next = fresh_[level];
      fresh_[level] = c;
      *link = c;
      n = c;
    }
    const unsigned i = (page >> (kFanBits * level)) & (kFan - 1);
    if (mark) n->dirty |= 1u << i;
    if (level == 0) return n;
    parent = n;
    link = &n->u.kids[i];
  }
}

Result<void> Txn::set(std::uint32_t page, Slot s) {
  CAPMEM_ASSERT(page < kMaxPages);
  if (s.empty() && lookup(root_, page) == nullptr) return {};  // Empty over Empty
  Node* leaf = leaf_for(page, true);
  if (leaf == nullptr) return Status::OutOfFrames;
  leaf->u.slots[page & (kFan - 1)] = static_cast<Slot&&>(s);
  return {};
}

Result<void> Txn::resolve(std::uint32_t page, Slot s) {
  const Slot* cur = lookup(root_, page);
  if (cur == nullptr || cur->kind() != SlotKind::Missing || s.kind() != SlotKind::Loaded || !(cur->root() == s.root()))
    return Status::InvalidArgument;
  Node* leaf = leaf_for(page, false);  // no dirty bit: the slot root, and so every hash, stays
  if (leaf == nullptr) return Status::OutOfFrames;
  leaf->u.slots[page & (kFan - 1)] = static_cast<Slot&&>(s);
  return {};
}

Slot Txn::take(std::uint32_t page) {
  CAPMEM_ASSERT(page < kMaxPages);
  Node* n = root_;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    if (n->fresh == 0) env::panic("tree::Txn::take on a shared node");
    const unsigned i = (page >> (kFanBits * level)) & (kFan - 1);
    if (level == 0) return static_cast<Slot&&>(n->u.slots[i]);
    n = n->u.kids[i];
  }
  return Slot{};
}

Node* Txn::commit() {
  PairBatch batch;
  for (unsigned level = 0; level < kLevels; ++level) {
    // Five local levels: width 16 (parents of the bottom items) up to 1 (the node root).
    for (unsigned width = kFan / 2; width >= 1; width /= 2) {
      for (Node* n = fresh_[level]; n != nullptr; n = n->next) {
        std::uint32_t up = 0;
        for (unsigned p = 0; p < width; ++p) {
          if (((n->dirty >> (2 * p)) & 3u) == 0) continue;
          up |= 1u << p;
          const unsigned pos = width + p;  // heap position; children 2pos, 2pos+1
          batch.add(item(n, 2 * pos), item(n, 2 * pos + 1), &n->h[pos - 1]);
        }
        n->dirty = up;
      }
      batch.drain();
    }
    // Prune nodes that became all-Empty (their parent, fresh too, sees zero_hash).
    for (Node* n = fresh_[level]; n != nullptr;) {
      Node* next = n->next;
      n->fresh = 0;
      n->next = nullptr;
      Node* parent = n->parent;
      n->parent = nullptr;
      if (all_empty(n)) {
        if (parent == nullptr) root_ = nullptr;
        else parent->u.kids[n->index] = nullptr;
        node_unref(n);
      }
      n = next;
    }
    fresh_[level] = nullptr;
  }
  Node* r = root_;
  root_ = nullptr;
  return r;
}

}  // namespace capmem::tree
