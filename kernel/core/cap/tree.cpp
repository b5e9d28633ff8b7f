#include "capmem/internal/tree.h"

#include <new>

#include "capmem/hash.h"
#include "capmem/internal/slab.h"
#include "capmem/log.h"

namespace capmem::tree {

// The in-place Txn's log (tree.h): one entry per change to a taken-over node, holding what
// the change replaced (a leaf's slot, or an internal node's child reference).
struct Txn::UndoChunk {
  struct Entry {
    Node* node;
    std::uint32_t index;
    Slot slot;  // level 0
    Node* kid;  // level >= 1 (nullptr: an all-Empty subtree)
  };
  static constexpr std::uint32_t kEntries = 62;
  UndoChunk* prev = nullptr;
  std::uint32_t n = 0;
  Entry e[kEntries] = {};
};

namespace {
constexpr std::uint8_t kMade = 1;   // Node::fresh: made by the open Txn
constexpr std::uint8_t kTaken = 2;  // Node::fresh: a base node an in-place Txn changes in place

constinit Slab g_nodes{sizeof(Node)};
constinit Slab g_backings{sizeof(Backing)};
constinit Slab g_undo{sizeof(Txn::UndoChunk)};

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

// A node taken over in place was last touched by some earlier flush: in a large tree its
// cached hashes are cold. commit() reads and rewrites the five heap positions above bottom
// item i and reads the sibling child's root; ask for those lines now, so that the misses
// overlap with the rest of the walk and the page hashing instead of stalling commit()
// level by level. A hint only: nothing is read or written here.
void prefetch_path(const Node* n, unsigned i) {
  for (unsigned pos = (kFan + i) >> 1; pos >= 1; pos >>= 1) __builtin_prefetch(&n->h[pos - 1], 1);
  if (n->level != 0 && n->u.kids[i ^ 1u] != nullptr) __builtin_prefetch(&n->u.kids[i ^ 1u]->h[0], 0);
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

Txn::Txn(Node* base, InPlace) : root_(base), base_(base), in_place_(true) {}

Txn::~Txn() {
  if (in_place_) {
    abort_in_place();
    return;
  }
  if (root_ != nullptr) node_unref(root_);  // fresh nodes are reachable only from root_
}

bool Txn::log_room() {
  if (log_ != nullptr && log_->n < UndoChunk::kEntries) return true;
  void* mem = g_undo.alloc();
  if (mem == nullptr) return false;
  auto* c = new (mem) UndoChunk{};
  c->prev = log_;
  log_ = c;
  return true;
}

// Records that child `index` of taken-over node n was `kid` (its reference moves into the
// log), or, at level 0, moves the slot out of n into the log. log_room() came first.
void Txn::log(Node* n, unsigned index, Node* kid) {
  UndoChunk::Entry& e = log_->e[log_->n++];
  e.node = n;
  e.index = index;
  if (n->level == 0) e.slot = static_cast<Slot&&>(n->u.slots[index]);
  else e.kid = kid;
}

// Commit: what the log holds is what the new tree no longer references.
void Txn::release_log() {
  while (log_ != nullptr) {
    UndoChunk* c = log_;
    log_ = c->prev;
    for (std::uint32_t i = 0; i < c->n; ++i)
      if (c->e[i].node->level != 0 && c->e[i].kid != nullptr) node_unref(c->e[i].kid);
    c->~UndoChunk();  // releases the logged slots
    g_undo.free(c);
  }
}

// Destroyed uncommitted: put base back as it was, release the nodes the Txn made.
void Txn::abort_in_place() {
  for (auto& head : fresh_) {
    for (Node* n = head; n != nullptr;) {
      Node* next = n->next;
      n->fresh = 0;
      n->dirty = 0;
      n->cleared = 0;
      n->parent = nullptr;
      n->next = nullptr;
      n = next;
    }
    head = nullptr;
  }
  while (log_ != nullptr) {
    UndoChunk* c = log_;
    log_ = c->prev;
    for (std::uint32_t i = c->n; i-- > 0;) {
      UndoChunk::Entry& e = c->e[i];
      if (e.node->level == 0) {
        e.node->u.slots[e.index].swap(e.slot);  // the slot set() put there goes with the chunk
      } else {
        Node* made = e.node->u.kids[e.index];
        e.node->u.kids[e.index] = e.kid;
        if (made != nullptr) node_unref(made);
      }
    }
    c->~UndoChunk();
    g_undo.free(c);
  }
  if (base_replaced_ && root_ != nullptr) node_unref(root_);
  root_ = base_;
}

Node* Txn::leaf_for(std::uint32_t page, bool mark) {
  CAPMEM_ASSERT(page < kMaxPages);
  Node** link = &root_;
  Node* parent = nullptr;
  for (unsigned level = kLevels - 1;; --level) {
    const unsigned idx = parent == nullptr ? 0 : (page >> (kFanBits * (level + 1))) & (kFan - 1);
    Node* n = *link;
    if (n == nullptr || n->fresh == 0) {
      // Acquire: another CPU's release of its last other reference happened before.
      if (in_place_ && n != nullptr && n->refs.load(std::memory_order_acquire) == 1) {
        n->fresh = kTaken;  // only the path down here holds it: change it in place
        n->dirty = 0;
        n->cleared = 0;
      } else {
        const bool logged = parent != nullptr && parent->fresh == kTaken;
        if (logged && !log_room()) return nullptr;
        Node* c = n == nullptr ? node_new(level) : node_copy(n);
        if (c == nullptr) return nullptr;  // the tree so far is a faithful copy
        if (logged) {
          log(parent, idx, n);  // the parent's reference on n moves into the log
        } else if (parent == nullptr && in_place_) {
          base_replaced_ = true;  // base keeps the caller's reference until commit()
        } else if (n != nullptr) {
          node_unref(n);  // drop the reference the parent (or the Txn) held
        }
        c->fresh = kMade;
        c->cleared = n == nullptr ? 1 : 0;  // a new node starts all-Empty
        *link = c;
        n = c;
      }
      n->parent = parent;
      n->index = static_cast<std::uint8_t>(idx);
      n->next = fresh_[level];
      fresh_[level] = n;
    }
    const unsigned i = (page >> (kFanBits * level)) & (kFan - 1);
    if (level <= 1 && n->fresh == kTaken) prefetch_path(n, i);  // levels 2, 3: 33 nodes, hot
    if (mark) n->dirty |= 1u << i;
    if (level == 0) return n;
    parent = n;
    link = &n->u.kids[i];
  }
}

void Txn::prefetch(std::uint32_t page, bool near) const {
  CAPMEM_ASSERT(page < kMaxPages);
  const Node* n = root_;
  for (unsigned level = kLevels - 1; n != nullptr && level > 1; --level)
    n = n->u.kids[(page >> (kFanBits * level)) & (kFan - 1)];  // levels 3, 2: 33 nodes, hot
  if (n == nullptr) return;
  const Node* const* link = &n->u.kids[(page >> kFanBits) & (kFan - 1)];
  if (!near) {
    __builtin_prefetch(link, 0);
    __builtin_prefetch(n, 0);  // leaf_for reads its header (fresh, refs)
    return;
  }
  const Node* leaf = *link;
  if (leaf == nullptr) return;
  const unsigned i = page & (kFan - 1);
  __builtin_prefetch(leaf, 1);  // refs, fresh, dirty, parent, next
  __builtin_prefetch(&leaf->u.slots[i], 1);
  prefetch_path(leaf, i);
}

// A slot of a taken-over leaf is changed only after the log holds the one it replaces.
Result<void> Txn::store(Node* leaf, unsigned i, Slot&& s) {
  if (leaf->fresh == kTaken) {
    if (!log_room()) return Status::OutOfFrames;
    log(leaf, i, nullptr);
  }
  if (s.empty()) leaf->cleared = 1;
  leaf->u.slots[i] = static_cast<Slot&&>(s);
  return {};
}

Result<void> Txn::set(std::uint32_t page, Slot s) {
  CAPMEM_ASSERT(page < kMaxPages);
  if (s.empty() && lookup(root_, page) == nullptr) return {};  // Empty over Empty
  Node* leaf = leaf_for(page, true);
  if (leaf == nullptr) return Status::OutOfFrames;
  return store(leaf, page & (kFan - 1), static_cast<Slot&&>(s));
}

Result<void> Txn::resolve(std::uint32_t page, Slot s) {
  const Slot* cur = lookup(root_, page);
  if (cur == nullptr || cur->kind() != SlotKind::Missing || s.kind() != SlotKind::Loaded || !(cur->root() == s.root()))
    return Status::InvalidArgument;
  Node* leaf = leaf_for(page, false);  // no dirty bit: the slot root, and so every hash, stays
  if (leaf == nullptr) return Status::OutOfFrames;
  return store(leaf, page & (kFan - 1), static_cast<Slot&&>(s));
}

Slot Txn::take(std::uint32_t page) {
  CAPMEM_ASSERT(page < kMaxPages);
  Node* n = root_;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    if (n->fresh != kMade) env::panic("tree::Txn::take on a node the Txn did not make");
    const unsigned i = (page >> (kFanBits * level)) & (kFan - 1);
    if (level == 0) {
      n->cleared = 1;
      return static_cast<Slot&&>(n->u.slots[i]);
    }
    n = n->u.kids[i];
  }
  return Slot{};
}

Node* Txn::commit() {
  if (in_place_) {
    release_log();
    if (base_replaced_ && base_ != nullptr) node_unref(base_);  // the caller's reference
    in_place_ = false;  // from here on the Txn owns root_ as in the default mode
  }
  PairBatch batch;
  for (unsigned level = 0; level < kLevels; ++level) {
    // A level's fresh nodes go kGroup at a time through all five local levels and the
    // prune, so that a group's lines (header, hash lines, items) stay cached from one step
    // to the next instead of being fetched again for each (a flush of many pages of a
    // large tree has thousands of fresh leaves, and the list is a chain of loads).
    constexpr unsigned kGroup = 64;
    for (Node* group = fresh_[level]; group != nullptr;) {
      // Five local levels: width 16 (parents of the bottom items) up to 1 (the node root).
      for (unsigned width = kFan / 2; width >= 1; width /= 2) {
        // Pair p (children 2p, 2p+1 of this local level) is dirty when either bit is: visit
        // only those, lowest first (a flush usually dirties one item per node).
        const std::uint32_t in_level = width == kFan / 2 ? ~0u : (1u << (2 * width)) - 1;
        Node* n = group;
        for (unsigned c = 0; n != nullptr && c < kGroup; ++c, n = n->next) {
          std::uint32_t up = 0;
          for (std::uint32_t pairs = (n->dirty | (n->dirty >> 1)) & 0x55555555u & in_level; pairs != 0;
               pairs &= pairs - 1) {
            const unsigned p = static_cast<unsigned>(__builtin_ctz(pairs)) / 2;
            up |= 1u << p;
            const unsigned pos = width + p;  // heap position; children 2pos, 2pos+1
            batch.add(item(n, 2 * pos), item(n, 2 * pos + 1), &n->h[pos - 1]);
          }
          n->dirty = up;
        }
        batch.drain();
      }
      // Prune the group's nodes that became all-Empty (the parent, a fresh node of the next
      // level, then sees zero_hash). Only a node the Txn cleared something in can have.
      Node* n = group;
      for (unsigned c = 0; n != nullptr && c < kGroup; ++c) {
        Node* next = n->next;
        n->fresh = 0;
        n->next = nullptr;
        Node* parent = n->parent;
        n->parent = nullptr;
        const bool cleared = n->cleared != 0;
        n->cleared = 0;
        if (cleared && all_empty(n)) {
          if (parent == nullptr) {
            root_ = nullptr;
          } else {
            parent->u.kids[n->index] = nullptr;
            parent->cleared = 1;
          }
          node_unref(n);
        }
        n = next;
      }
      group = n;
    }
    fresh_[level] = nullptr;
  }
  Node* r = root_;
  root_ = nullptr;
  return r;
}

}  // namespace capmem::tree
