// Internal to the core (include/capmem/internal/): a layout the public headers need to see,
// not an API an embedder calls. The public API is datacap.h, fault.h, pt.h, frame.h, page.h,
// slot.h, codec.h, hash.h, status.h and the seam env.h.
// The backing's persistent merkle tree of page roots (rules 3.2, 3.4; issue 7).
//
// Geometry: fixed, 2^20 leaves (every cap up to 4 GiB), fan-out 32, four node levels:
//   level 3 (the root node)  covers pages [0, 2^20)   bottom items: level-2 node roots
//   level 2                  covers 2^15 pages        bottom items: level-1 node roots
//   level 1                  covers 2^10 pages        bottom items: leaf node roots
//   level 0 (leaf)           covers 32 pages          bottom items: slot roots (rule 2.2)
// A node at level t has 32 bottom items of merkle depth 5t and its own root is the root of
// a depth-(5t+5) subtree of the SSZ binary tree. Each node caches all 31 internal hashes of
// its 5-level binary subtree, so changing one bottom item rehashes 5 positions per node and
// one page costs 4 x 5 = 20 node hashes.
//
// Sharing: nodes are refcounted and immutable once committed; a change path-copies the
// nodes above it (Txn) and shares every untouched subtree. A null child is an all-Empty
// subtree whose root is zero_hash(depth); all-Empty nodes are never stored (a Txn prunes
// them), so the tree of a given slot array is unique.
#pragma once

#include <atomic>
#include <cstdint>

#include "capmem/slot.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem::tree {

inline constexpr unsigned kFanBits = 5;
inline constexpr unsigned kFan = 1u << kFanBits;  // 32
inline constexpr unsigned kLevels = 4;
inline constexpr unsigned kDepth = kFanBits * kLevels;  // 20
inline constexpr std::uint32_t kMaxPages = 1u << kDepth;

struct Node {
  // Invariants (committed node): refs >= 1 counts parents + backings + open Txns holding it;
  // h[i-1] is heap position i of the node's binary subtree (1 = node root, 2..3 its
  // children, ..., 16..31 the parents of the 32 bottom items); a committed node is never
  // modified (two exceptions, both on nodes only one cap can reach: DataCap::resolve* turns
  // a Missing slot into a Loaded slot with the same root in place, tree::exclusive_slot; an
  // in-place Txn (a flush of a backing only its cap holds) takes over nodes with refs == 1
  // and rehashes them at commit); fresh == 0.
  std::atomic<std::uint32_t> refs;
  std::uint8_t level;  // 0 = leaf (u.slots), 1..3 = internal (u.kids)
  // --- scratch, meaningful only while fresh (refs == 1: made by the open Txn, fresh == 1,
  // or taken over by an in-place Txn, fresh == 2) ---
  std::uint8_t fresh;
  std::uint8_t index;    // position in the parent
  std::uint8_t cleared;  // the Txn made it empty or stored an Empty slot / null child in it:
                         // only such a node can have become all-Empty (commit() prunes)
  std::uint32_t dirty;   // bottom items changed since the node was copied
  std::uint32_t unused2;
  Node* parent;
  Node* next;  // the Txn's list of fresh nodes of this level
  Hash32 h[kFan - 1];
  union U {
    U() {}
    ~U() {}
    Slot slots[kFan];  // level 0: absolute page = base + i
    Node* kids[kFan];  // level >= 1: nullptr = all-Empty subtree
  } u;
};
// Layout: 32 bytes of header and scratch + 992 bytes of hashes + 256 bytes of items;
// three per slab frame.
static_assert(sizeof(Node) == 1280);

// Shared, immutable, canonical backing (rule 3.2). Invariants: refs >= 1 counts DataCaps;
// extent = 1 + index of the last non-Empty slot (0 if none) <= size / 4096; root is the
// tree of the slot array (nullptr when all Empty); cap_root caches rule 3.4's root.
struct Backing {
  std::atomic<std::uint32_t> refs;
  std::uint32_t extent;
  std::uint64_t size;
  Node* root;
  Hash32 cap_root;
};

void node_ref(Node* n);
void node_unref(Node* n);  // releases children / slots when the last reference goes

// Root of a node at `level` (zero_hash of its depth when n is null).
const Hash32& node_root(const Node* n, unsigned level);
// The slot of `page`, or nullptr when it reads Empty. O(4), touches no refcount.
const Slot* lookup(const Node* root, std::uint32_t page);
// 1 + index of the last non-Empty slot, 0 for an empty tree. O(4 * 32).
std::uint32_t extent(const Node* root);
// Rule 3.4: merkleize(slot roots, limit = max(page_count, 1)): the leftmost subtree of
// depth ceil(log2(limit)). O(4).
Hash32 pages_root(const Node* root, std::uint32_t page_count);
// Rule 3.4 cap root = node(uint64_root(size), pages_root).
Hash32 cap_root(const Node* root, std::uint64_t size);

// Backings (slab-allocated).
Result<Backing*> backing_alloc();  // refs = 1, everything else zero
// Fill in a fresh backing for tree `root` (ownership of one reference moves in).
void backing_init(Backing* b, Node* root, std::uint64_t size);
// The same for a tree whose slot roots all equal those of `like`'s tree (Txn::resolve only):
// size, extent and cap_root are taken from `like`, nothing is hashed (rule 2.3).
void backing_init_like(Backing* b, Node* root, const Backing& like);
void backing_ref(Backing* b);
void backing_unref(Backing* b);
void backing_free_unused(Backing* b);  // a backing_alloc() result that was never initialized

// Rule 8.4 in place: true if every node on the path from `root` to `page`'s leaf (as far as
// it exists) has refs == 1, so that with a backing only one cap holds, nobody else can reach
// the path. exclusive_slot: the leaf slot of `page` on such a path (nullptr if the path is
// cut short), which the caller may change only to a slot with the same root (the cached
// hashes stay true), with no run executing over the cap (DataCap::resolve*).
bool path_exclusive(const Node* root, std::uint32_t page);
Slot* exclusive_slot(Node* root, std::uint32_t page);

// Missing slots in the tree (rule 8.1): O(nodes).
std::uint32_t count_missing(const Node* root);

// Live counts (tests / docs).
std::uint64_t live_nodes();
std::uint64_t live_backings();

// A batch of slot changes applied by path copying. set() may fail (OutOfFrames) and
// leaves the base untouched; commit() cannot fail: it rehashes every changed position once,
// level by level across all touched nodes (batched through hash::nodes), prunes nodes
// that became all-Empty and returns the new root (one owned reference). Destroying an
// uncommitted Txn releases every node it made.
//
// In place (Txn(base, InPlace{}), a flush whose cap holds the only reference to its
// backing): the Txn borrows the caller's reference on `base` instead of taking one. A base
// node whose only reference is the path the Txn came down (refs == 1: the caller's
// reference for the root, a node taken over for every other) is changed in place ("taken
// over": no copy, no ref of its 32 children, no release of the old path); a shared node is
// path-copied as in the default mode. Every change to a taken-over node (a slot replaced, a
// child replaced by a node the Txn made) is logged first, with the replaced slot or child
// reference moved into the log, so that:
//   - set() still fails (OutOfFrames: a node or a log chunk) only before it changes
//     anything of that call, and destroying an uncommitted Txn puts back every logged slot
//     and child, newest first, and releases the nodes it made: base is then exactly as it
//     was (same nodes, slots and hashes; their hashes are only rewritten by commit()) and
//     the caller's reference is still good;
//   - commit() releases what the log holds (the replaced pages and subtrees) and consumes
//     the caller's reference: the root it returns (possibly base itself) replaces it.
// Until then the caller neither reads nor releases the tree.
class Txn {
 public:
  struct InPlace {};
  // `base` stays owned by the caller; the Txn takes its own reference.
  explicit Txn(Node* base);
  Txn(Node* base, InPlace);
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn();

  Result<void> set(std::uint32_t page, Slot s);
  // Rule 8.4 / 2.3: the slot of `page` in the Txn's tree must be Missing(s.root())
  // (InvalidArgument otherwise: nothing copied) and becomes `s` (Loaded) by a path copy that
  // marks nothing dirty: commit() rehashes no position for it, since no slot root changed.
  // OutOfFrames as set().
  Result<void> resolve(std::uint32_t page, Slot s);
  // A hint ahead of set(page) or resolve(page): reads the Txn's tree, changes nothing.
  // `near` = false (some pages ahead) asks for the level-1 node's line that links to the
  // leaf; `near` = true (fewer ahead) follows that link and asks for the leaf's header,
  // the page's slot and the five hash lines commit() rewrites, so that a walk over pages
  // of a large tree overlaps those misses instead of taking them one by one.
  void prefetch(std::uint32_t page, bool near) const;
  // The slot of `page` in the Txn's current tree (nullptr reads Empty), as lookup().
  [[nodiscard]] const Slot* find(std::uint32_t page) const { return lookup(root_, page); }
  // Moves the slot of `page` out of the Txn's tree (leaving Empty there) for a Txn used as a
  // scratch map of pages (base nullptr, never committed): every node on the path must be one
  // the Txn made (traps otherwise). Empty if there is none.
  Slot take(std::uint32_t page);
  [[nodiscard]] Node* commit();

  struct UndoChunk;

 private:
  // Path-copies down to the leaf of `page` (fresh nodes marked dirty on the path when
  // `mark`); in place, takes over the nodes only the path holds and logs a made node's
  // link into a taken-over parent first. nullptr on OutOfFrames, the tree so far a faithful
  // copy (in place: with every change logged).
  Node* leaf_for(std::uint32_t page, bool mark);
  // Stores s at slot i of `leaf` (from leaf_for), logging the replaced slot first when the
  // leaf is taken over (OutOfFrames if the log cannot grow: nothing changed).
  Result<void> store(Node* leaf, unsigned i, Slot&& s);
  // Room for one more log entry (a new chunk when the newest is full).
  [[nodiscard]] bool log_room();
  void log(Node* n, unsigned index, Node* kid);
  void release_log();
  void abort_in_place();

  Node* root_;
  Node* base_ = nullptr;  // in place: the caller's root
  bool in_place_ = false;
  bool base_replaced_ = false;  // in place: root_ is a node the Txn made, base_ still the caller's
  UndoChunk* log_ = nullptr;    // newest chunk first
  Node* fresh_[kLevels] = {};
};

}  // namespace capmem::tree
