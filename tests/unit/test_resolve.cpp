// Rule 8.4 (docs/rules.md section 8): DataCap::resolve / resolve_page / resolve_many /
// missing_count on thin caps. Every expected root and byte comes from the full cap the thin
// one was encoded from, built independently by from_bytes; every hostile resolver must leave
// the cap, its root, the frame counts and the slab counts exactly as they were, and a correct
// resolve must still work afterwards.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

namespace {

constexpr std::uint32_t kPages = 40;  // two leaves of the tree, so paths share nodes

// Page p: filled with (p * 7 + 1), salted with p; pages 3, 17 and 33 are all zero (Empty).
std::vector<std::uint8_t> full_bytes() {
  std::vector<std::uint8_t> b(kPages * PAGE_SIZE, 0);
  for (std::uint32_t p = 0; p < kPages; ++p) {
    if (p == 3 || p == 17 || p == 33) continue;
    std::memset(b.data() + p * PAGE_SIZE, static_cast<int>(p * 7 + 1), PAGE_SIZE);
    std::memcpy(b.data() + p * PAGE_SIZE + 100, &p, sizeof p);
  }
  return b;
}
const std::uint8_t* page_bytes(const std::vector<std::uint8_t>& b, std::uint32_t p) {
  return b.data() + std::size_t{p} * PAGE_SIZE;
}
bool loaded_in_full(std::uint32_t p) { return p != 3 && p != 17 && p != 33; }

std::vector<std::uint8_t> encode(const DataCap& c, const EncodeOptions& opt = {}) {
  auto n = c.encoded_size(opt);
  EXPECT_TRUE(n.ok()) << status_name(n.status());
  if (!n.ok()) return {};
  std::vector<std::uint8_t> out(n.value());
  EXPECT_TRUE(c.encode(out.data(), out.size(), opt).ok());
  return out;
}

struct Thin {
  std::vector<std::uint8_t> bytes = full_bytes();
  DataCap full = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  std::vector<std::uint8_t> full_wire = encode(full);
  DataCap thin = make_thin();
  DataCap make_thin() {
    const auto w = encode(full, EncodeOptions{.thin = true});
    DecodeError err{};
    auto d = DataCap::decode(w.data(), w.size(), DecodeOptions{.thin = true}, &err);
    EXPECT_TRUE(d.ok()) << status_name(d.status()) << " at " << err.offset;
    return d.release_value();
  }
  ByteSource src(std::uint32_t p) const { return ByteSource::memory(page_bytes(bytes, p), PAGE_SIZE); }
};

// Everything a failed resolve must leave as it was.
struct Snapshot {
  const void* backing;
  std::uint32_t overlay;
  std::uint32_t missing;
  std::vector<SlotKind> kinds;
  std::vector<Hash32> roots;
  std::vector<FrameDesc*> frames_of;
  std::uint64_t frames_in_use, nodes, backings, boxes;
  bool operator==(const Snapshot&) const = default;
};
Snapshot snap(const DataCap& c) {
  Snapshot s{.backing = c.backing_id(),
             .overlay = c.overlay_count(),
             .missing = c.missing_count(),
             .kinds = {},
             .roots = {},
             .frames_of = {},
             .frames_in_use = hostsim::quiescent_frame_stats().in_use,
             .nodes = tree::live_nodes(),
             .backings = tree::live_backings(),
             .boxes = Slot::missing_boxes()};
  for (std::uint32_t p = 0; p < c.page_count(); ++p) {
    const SlotView v = c.effective(p);
    s.kinds.push_back(v.kind);
    s.roots.push_back(*v.hash);
    s.frames_of.push_back(v.frame);
  }
  return s;
}

Hash32 root_of(const DataCap& c) {
  auto r = c.root();
  EXPECT_TRUE(r.ok()) << status_name(r.status());
  return r.ok() ? r.value() : Hash32{};
}

// Runs `op` with the n-th frame allocation failing for n = 1, 2, ... until it succeeds;
// every failed run is OutOfFrames and leaves `c` (snapshot) exactly as it was.
template <typename Op>
void sweep_oom(const DataCap& c, Op op) {
  for (std::uint64_t n = 1;; ++n) {
    const Snapshot before = snap(c);
    frames().inject_failure_at(n);
    const Status st = op();
    frames().inject_failure_at(0);
    if (st == Status::Ok) return;
    ASSERT_EQ(st, Status::OutOfFrames) << "at n=" << n << ": " << status_name(st);
    ASSERT_EQ(snap(c), before) << "failure at allocation " << n << " changed something";
    ASSERT_LT(n, 10000u);
  }
}

}  // namespace

TEST(Rule8_4, ThinDecodeHasTheFullRootAndEveryLoadedPageMissing) {
  Thin t;
  EXPECT_EQ(root_of(t.thin), root_of(t.full));
  EXPECT_EQ(t.thin.missing_count(), kPages - 3);
  EXPECT_EQ(t.full.missing_count(), 0u);
  EXPECT_EQ(t.thin.effective(3).kind, SlotKind::Empty);
  EXPECT_EQ(t.thin.effective(4).kind, SlotKind::Missing);
}

TEST(Rule8_4, ResolvingEveryPageKeepsTheRootAndGivesTheFullEncoding) {
  Thin t;
  const Hash32 root = root_of(t.full);
  std::uint32_t missing = t.thin.missing_count();
  // An order that is not page order, crossing both leaves.
  for (std::uint32_t k = 0; k < kPages; ++k) {
    const std::uint32_t p = (k * 13) % kPages;
    if (!loaded_in_full(p)) {
      EXPECT_EQ(t.thin.resolve(p, t.src(p)).status(), Status::NotMissing) << p;
      continue;
    }
    const Hash32 h = *t.thin.effective(p).hash;
    ASSERT_TRUE(t.thin.resolve(p, t.src(p)).ok()) << p;
    EXPECT_EQ(--missing, t.thin.missing_count());
    const SlotView v = t.thin.effective(p);
    ASSERT_EQ(v.kind, SlotKind::Loaded);
    EXPECT_EQ(v.frame->hash, h);
    EXPECT_EQ(std::memcmp(v.frame->virt(), page_bytes(t.bytes, p), PAGE_SIZE), 0);
    EXPECT_EQ(root_of(t.thin), root) << "resolving page " << p << " changed the root";
    EXPECT_EQ(t.thin.overlay_count(), 0u);
    // A second answer for the same page is harmless.
    EXPECT_EQ(t.thin.resolve(p, t.src(p)).status(), Status::NotMissing);
  }
  EXPECT_EQ(t.thin.missing_count(), 0u);
  EXPECT_EQ(encode(t.thin), t.full_wire);
  std::vector<std::uint8_t> back(t.thin.size());
  ASSERT_TRUE(t.thin.read(0, back.data(), back.size()).ok());
  EXPECT_EQ(back, t.bytes);
}

TEST(Rule8_4, HostileBytesChangeNothingAndTheRightBytesStillResolve) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "backing shared with a copy" : "backing held by the cap alone");
    Thin t;
    DataCap other;
    if (shared) other = t.thin.copy().release_value();
    const std::uint32_t p = 5;
    std::vector<std::uint8_t> wrong(page_bytes(t.bytes, p), page_bytes(t.bytes, p) + PAGE_SIZE);
    wrong[4095] ^= 1;
    std::vector<std::uint8_t> longer(page_bytes(t.bytes, p), page_bytes(t.bytes, p) + PAGE_SIZE);
    longer.push_back(0);
    const std::vector<std::uint8_t> zeros(PAGE_SIZE, 0);
    const Snapshot before = snap(t.thin);
    EXPECT_EQ(t.thin.resolve(p, wrong.data(), wrong.size()).status(), Status::HashMismatch);
    EXPECT_EQ(snap(t.thin), before);
    EXPECT_EQ(t.thin.resolve(p, page_bytes(t.bytes, p), PAGE_SIZE - 1).status(), Status::BadLength);
    EXPECT_EQ(t.thin.resolve(p, longer.data(), longer.size()).status(), Status::BadLength);
    EXPECT_EQ(t.thin.resolve(p, nullptr, 0).status(), Status::BadLength);
    EXPECT_EQ(t.thin.resolve(p, page_bytes(t.bytes, p + 1), PAGE_SIZE).status(), Status::HashMismatch);  // another page
    EXPECT_EQ(t.thin.resolve(p, zeros.data(), zeros.size()).status(), Status::HashMismatch);
    EXPECT_EQ(snap(t.thin), before);
    EXPECT_TRUE(t.thin.resolve(p, page_bytes(t.bytes, p), PAGE_SIZE).ok());
    EXPECT_EQ(t.thin.missing_count(), before.missing - 1);
    EXPECT_EQ(root_of(t.thin), root_of(t.full));
    for (Status s : {Status::NotMissing, Status::HashMismatch, Status::BadLength, Status::UnhashedPage})
      EXPECT_STREQ(status_rule(s), "8.4") << status_name(s);
    if (shared) {
      EXPECT_EQ(other.effective(p).kind, SlotKind::Missing);
    }
  }
}

namespace {
// A source that changes under the read: its bytes are `good` or `bad` by turns, starting
// with `first_good`, and it flips them right after each copy_in returns (as another CPU
// writing the buffer would). A resolver that read twice (hash the source, then copy) would
// install bytes that do not hash to the slot.
struct Fickle {
  const std::uint8_t* good;
  std::vector<std::uint8_t> bad;
  bool next_good;
  int reads = 0;
  static void copy_in(const void* ctx, std::uint64_t off, std::uint8_t* out, std::size_t n) {
    auto* f = const_cast<Fickle*>(static_cast<const Fickle*>(ctx));
    std::memcpy(out, (f->next_good ? f->good : f->bad.data()) + off, n);
    f->next_good = !f->next_good;
    ++f->reads;
  }
  ByteSource source() const { return ByteSource{.copy_in = &Fickle::copy_in, .ctx = this, .len = PAGE_SIZE}; }
};
}  // namespace

TEST(Rule8_4, ASourceThatChangesUnderTheReadIsReadOnce) {
  Thin t;
  const std::uint32_t p = 9;
  std::vector<std::uint8_t> bad(page_bytes(t.bytes, p), page_bytes(t.bytes, p) + PAGE_SIZE);
  bad[0] ^= 0x80;
  // Bad first: a mismatch, after exactly one read, nothing changed.
  Fickle f1{.good = page_bytes(t.bytes, p), .bad = bad, .next_good = false};
  const Snapshot before = snap(t.thin);
  EXPECT_EQ(t.thin.resolve(p, f1.source()).status(), Status::HashMismatch);
  EXPECT_EQ(f1.reads, 1);
  EXPECT_EQ(snap(t.thin), before);
  // Good first (bad afterwards): installed from the one copy, which is the good page.
  Fickle f2{.good = page_bytes(t.bytes, p), .bad = bad, .next_good = true};
  ASSERT_TRUE(t.thin.resolve(p, f2.source()).ok());
  EXPECT_EQ(f2.reads, 1);
  const SlotView v = t.thin.effective(p);
  ASSERT_EQ(v.kind, SlotKind::Loaded);
  EXPECT_EQ(std::memcmp(v.frame->virt(), page_bytes(t.bytes, p), PAGE_SIZE), 0);
  EXPECT_EQ(v.frame->hash, hash::page_content_hash(page_bytes(t.bytes, p)));
  EXPECT_EQ(root_of(t.thin), root_of(t.full));
}

TEST(Rule8_4, OnlyMissingPagesBelowPageCountResolve) {
  Thin t;
  const Snapshot before = snap(t.thin);
  EXPECT_EQ(t.thin.resolve(3, t.src(3)).status(), Status::NotMissing);  // Empty
  EXPECT_EQ(t.thin.resolve(kPages, t.src(0)).status(), Status::OutOfExtent);
  EXPECT_EQ(t.thin.resolve(0xffffffffu, t.src(0)).status(), Status::OutOfExtent);
  EXPECT_EQ(snap(t.thin), before);
  // Loaded: in the full cap, and in the thin one once resolved.
  EXPECT_EQ(t.full.resolve(4, t.src(4)).status(), Status::NotMissing);
  ASSERT_TRUE(t.thin.resolve(4, t.src(4)).ok());
  EXPECT_EQ(t.thin.resolve(4, t.src(4)).status(), Status::NotMissing);
  // An overlay entry shadows: a Loaded entry over a Missing backing slot is not Missing.
  ASSERT_TRUE(t.thin.write_page(6, PageRef::from_content(page_bytes(t.bytes, 6), PAGE_SIZE).release_value()).ok());
  EXPECT_EQ(t.thin.resolve(6, t.src(6)).status(), Status::NotMissing);
  // An explicit Empty overlay entry is inert (rule 3.3): the backing's Missing slot decides.
  ASSERT_TRUE(t.thin.write_slot(8, Slot{}).ok());
  ASSERT_TRUE(t.thin.resolve(8, t.src(8)).ok());
  EXPECT_EQ(t.thin.effective(8).kind, SlotKind::Loaded);
  EXPECT_EQ(t.thin.overlay_count(), 2u);  // pages 6 and 8
  // An empty cap holds nothing.
  DataCap empty;
  EXPECT_EQ(empty.resolve(0, t.src(0)).status(), Status::EmptyCap);
  EXPECT_EQ(empty.resolve_page(0, PageRef::from_content(t.bytes.data(), PAGE_SIZE).release_value()).status(),
            Status::EmptyCap);
}

TEST(Rule8_4, TheTwoUnresolvableHashesNeverResolve) {
  Thin t;
  const std::vector<std::uint8_t> zeros(PAGE_SIZE, 0);
  const Hash32 zero_page = hash::page_content_hash(zeros.data());  // rule 1.2, computed here
  ASSERT_TRUE(t.thin.write_slot(1, Slot::missing(Hash32{}).release_value()).ok());
  ASSERT_TRUE(t.thin.write_slot(2, Slot::missing(zero_page).release_value()).ok());
  auto zp = PageRef::from_content(zeros.data(), PAGE_SIZE).release_value();
  EXPECT_EQ(zp.hash(), zero_page);
  const Snapshot before = snap(t.thin);
  EXPECT_EQ(t.thin.resolve(1, zeros.data(), zeros.size()).status(), Status::UnresolvableMissing);
  EXPECT_EQ(t.thin.resolve(2, zeros.data(), zeros.size()).status(), Status::UnresolvableMissing);
  EXPECT_EQ(t.thin.resolve_page(2, zp).status(), Status::UnresolvableMissing);
  EXPECT_EQ(snap(t.thin), before);
}

TEST(Rule8_4, OverlayMissingEntriesResolveInPlace) {
  Thin t;
  // A full cap with Missing(root of page 7's bytes) written at page 20 (rule 3.3 overlay).
  DataCap c = t.full.copy().release_value();
  const Hash32 h7 = hash::page_content_hash(page_bytes(t.bytes, 7));
  ASSERT_TRUE(c.write_slot(20, Slot::missing(h7).release_value()).ok());
  EXPECT_EQ(c.missing_count(), 1u);
  const void* backing = c.backing_id();
  const Snapshot before = snap(c);
  EXPECT_EQ(c.resolve(20, t.src(20)).status(), Status::HashMismatch);
  EXPECT_EQ(snap(c), before);
  sweep_oom(c, [&] { return c.resolve(20, t.src(7)).status(); });
  EXPECT_EQ(c.backing_id(), backing) << "an overlay entry resolves in place, no new backing";
  EXPECT_EQ(c.overlay_count(), 1u);
  EXPECT_EQ(c.missing_count(), 0u);
  ASSERT_EQ(c.effective(20).kind, SlotKind::Loaded);
  ASSERT_TRUE(c.flush().ok());
  auto expect = t.bytes;
  std::memcpy(expect.data() + 20 * PAGE_SIZE, page_bytes(t.bytes, 7), PAGE_SIZE);
  EXPECT_EQ(root_of(c), root_of(DataCap::from_bytes(expect.data(), expect.size()).value()));
}

TEST(Rule8_4, MissingSlotsCarriedByPlaceSharedResolve) {
  Thin t;
  DataCap big = DataCap::create(2 * kPages * PAGE_SIZE).release_value();
  ASSERT_TRUE(big.place_shared(t.thin, kPages * PAGE_SIZE).ok());
  EXPECT_EQ(big.missing_count(), kPages - 3);
  for (std::uint32_t p = 0; p < kPages; ++p)
    if (loaded_in_full(p)) {
      ASSERT_TRUE(big.resolve(kPages + p, t.src(p)).ok()) << p;
    }
  EXPECT_EQ(big.missing_count(), 0u);
  std::vector<std::uint8_t> expect(2 * kPages * PAGE_SIZE, 0);
  std::memcpy(expect.data() + kPages * PAGE_SIZE, t.bytes.data(), t.bytes.size());
  EXPECT_EQ(root_of(big), root_of(DataCap::from_bytes(expect.data(), expect.size()).value()));
  EXPECT_EQ(t.thin.missing_count(), kPages - 3) << "the source cap keeps its Missing slots";
}

TEST(Rule8_4, ResolvePageSharesAHashedPageAndRefusesAnUnhashedCopy) {
  Thin t;
  const std::uint32_t p = 11;
  auto unhashed = PageRef::unhashed_copy(page_bytes(t.bytes, p)).release_value();
  auto other = PageRef::from_content(page_bytes(t.bytes, p + 1), PAGE_SIZE).release_value();
  const Snapshot before = snap(t.thin);
  EXPECT_EQ(t.thin.resolve_page(p, unhashed).status(), Status::UnhashedPage);
  EXPECT_EQ(t.thin.resolve_page(p, PageRef{}).status(), Status::InvalidArgument);
  FrameDesc* table = frames().alloc(FrameKind::Table);  // not a page
  ASSERT_NE(table, nullptr);
  const DataCap::ResolveItem not_a_page{.page = p, .ref = table};
  EXPECT_EQ(t.thin.resolve_many(&not_a_page, 1).status(), Status::InvalidArgument);
  frames().unref(table);
  EXPECT_EQ(t.thin.resolve_page(p, other).status(), Status::HashMismatch);
  EXPECT_EQ(unhashed.ref_count(), 1u);
  EXPECT_EQ(other.ref_count(), 1u);
  EXPECT_EQ(snap(t.thin), before);
  auto good = PageRef::from_content(page_bytes(t.bytes, p), PAGE_SIZE).release_value();
  ASSERT_TRUE(t.thin.resolve_page(p, good).ok());
  EXPECT_EQ(t.thin.effective(p).frame, good.desc()) << "shared by reference, not copied";
  EXPECT_EQ(good.ref_count(), 2u);
  EXPECT_EQ(root_of(t.thin), root_of(t.full));
  // The same cached page resolves another cap too (a host cache of verified pages).
  DataCap again = t.make_thin();
  ASSERT_TRUE(again.resolve_page(p, good).ok());
  EXPECT_EQ(good.ref_count(), 3u);
}

// A cap whose tree only it holds resolves in place (no allocation but the frame for the
// bytes); one that shares its backing (a copy exists) path-copies (a backing, tree nodes).
// Out of frames at each of those allocations changes nothing, in both.
TEST(Rule8_4, OutOfFramesAtEveryAllocationChangesNothing) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "backing shared with a copy" : "backing held by the cap alone");
    Thin t;
    DataCap other;
    if (shared) other = t.thin.copy().release_value();
    const void* backing = t.thin.backing_id();
    for (std::uint32_t p : {0u, 31u, 32u, 39u}) sweep_oom(t.thin, [&] { return t.thin.resolve(p, t.src(p)).status(); });
    EXPECT_EQ(t.thin.backing_id() == backing, !shared) << "in place exactly when nothing else holds the backing";
    auto good = PageRef::from_content(page_bytes(t.bytes, 10), PAGE_SIZE).release_value();
    sweep_oom(t.thin, [&] { return t.thin.resolve_page(10, good).status(); });
    // A batch: both leaves, bytes and references.
    auto ref20 = PageRef::from_content(page_bytes(t.bytes, 20), PAGE_SIZE).release_value();
    const DataCap::ResolveItem items[] = {
        {.page = 1, .src = t.src(1)}, {.page = 20, .ref = ref20.desc()}, {.page = 35, .src = t.src(35)}};
    if (shared) other = t.thin.copy().release_value();  // shared again
    sweep_oom(t.thin, [&] { return t.thin.resolve_many(items, 3).status(); });
    EXPECT_EQ(t.thin.missing_count(), kPages - 3 - 8);
    EXPECT_EQ(root_of(t.thin), root_of(t.full));
    if (shared) {
      EXPECT_EQ(other.missing_count(), kPages - 3 - 5) << "the copy keeps its Missing slots";
      EXPECT_EQ(other.effective(20).kind, SlotKind::Missing);
    }
  }
}

// In place only where nothing else can reach the path: after a copy wrote and flushed, the
// two caps have their own backings but still share the subtrees the write did not touch.
// Resolving a page in a shared subtree must leave the other cap's slot Missing.
TEST(Rule8_4, ASubtreeSharedWithAnotherCapIsPathCopied) {
  Thin t;
  DataCap y = t.thin.copy().release_value();
  ASSERT_TRUE(y.write_page(0, PageRef::from_content(page_bytes(t.bytes, 0), PAGE_SIZE).release_value()).ok());
  ASSERT_TRUE(y.flush().ok());  // y: new root and leaf 0; leaf 1 (pages 32..39) shared
  ASSERT_NE(y.backing_id(), t.thin.backing_id());
  ASSERT_TRUE(t.thin.resolve(35, t.src(35)).ok());
  ASSERT_TRUE(t.thin.resolve(1, t.src(1)).ok());
  EXPECT_EQ(y.effective(35).kind, SlotKind::Missing);
  EXPECT_EQ(y.effective(1).kind, SlotKind::Missing);
  EXPECT_EQ(y.missing_count(), kPages - 3 - 1);
  EXPECT_EQ(t.thin.effective(35).kind, SlotKind::Loaded);
  EXPECT_EQ(root_of(y), root_of(t.full));
  EXPECT_EQ(root_of(t.thin), root_of(t.full));
  // Once y is gone, the rest of the thin cap's tree is its own again: in place.
  y = DataCap{};
  const void* backing = t.thin.backing_id();
  ASSERT_TRUE(t.thin.resolve(36, t.src(36)).ok());
  EXPECT_EQ(t.thin.backing_id(), backing);
}

TEST(Rule8_4, ResolveManyIsAllOrNothing) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "backing shared with a copy" : "backing held by the cap alone");
    Thin t;
    DataCap other;
    if (shared) other = t.thin.copy().release_value();
    std::vector<std::uint8_t> wrong(page_bytes(t.bytes, 8), page_bytes(t.bytes, 8) + PAGE_SIZE);
    wrong[17] ^= 4;
    auto ref30 = PageRef::from_content(page_bytes(t.bytes, 30), PAGE_SIZE).release_value();
    std::vector<DataCap::ResolveItem> items = {{.page = 1, .src = t.src(1)},
                                               {.page = 30, .ref = ref30.desc()},
                                               {.page = 8, .src = ByteSource::memory(wrong.data(), wrong.size())},
                                               {.page = 2, .src = t.src(2)},
                                               {.page = 36, .src = t.src(36)}};
    const Snapshot before = snap(t.thin);
    std::size_t failed = 99;
    EXPECT_EQ(t.thin.resolve_many(items.data(), items.size(), &failed).status(), Status::HashMismatch);
    EXPECT_EQ(failed, 2u);
    EXPECT_EQ(snap(t.thin), before);
    EXPECT_EQ(ref30.ref_count(), 1u);
    // A duplicate page: InvalidArgument at the second one.
    items[2] = {.page = 1, .src = t.src(1)};
    EXPECT_EQ(t.thin.resolve_many(items.data(), items.size(), &failed).status(), Status::InvalidArgument);
    EXPECT_EQ(failed, 2u);
    items[2] = {.page = 36, .src = t.src(36)};  // duplicate of a later item: the later one fails
    EXPECT_EQ(t.thin.resolve_many(items.data(), items.size(), &failed).status(), Status::InvalidArgument);
    EXPECT_EQ(failed, 4u);
    // A failure that is found without reading (past page_count) after a mismatch still names the
    // first failing item.
    items[2] = {.page = 8, .src = ByteSource::memory(wrong.data(), wrong.size())};
    items[4] = {.page = kPages, .src = t.src(0)};
    EXPECT_EQ(t.thin.resolve_many(items.data(), items.size(), &failed).status(), Status::HashMismatch);
    EXPECT_EQ(failed, 2u);
    EXPECT_EQ(snap(t.thin), before);
    // The right batch: one new backing, every page Loaded, the root kept.
    items[2] = {.page = 8, .src = t.src(8)};
    items[4] = {.page = 36, .src = t.src(36)};
    const auto backings = tree::live_backings();
    ASSERT_TRUE(t.thin.resolve_many(items.data(), items.size(), &failed).ok());
    EXPECT_EQ(tree::live_backings(), backings + (shared ? 1 : 0)) << "at most one new backing";
    for (const auto& it : items) EXPECT_EQ(t.thin.effective(it.page).kind, SlotKind::Loaded) << it.page;
    EXPECT_EQ(t.thin.effective(30).frame, ref30.desc());
    EXPECT_EQ(t.thin.missing_count(), before.missing - 5);
    EXPECT_EQ(root_of(t.thin), root_of(t.full));
    EXPECT_EQ(t.thin.backing_id() == before.backing, !shared);
    EXPECT_TRUE(t.thin.resolve_many(nullptr, 0).ok());
  }
}

TEST(Rule8_4, ResolveManyMixesOverlayAndBackingSlotsInOneBatch) {
  Thin t;
  // Every page in one batch, more than a hash batch (16) of them, with two overlay entries.
  const Hash32 h5 = *t.thin.effective(5).hash;
  ASSERT_TRUE(t.thin.write_slot(5, Slot::missing(h5).release_value()).ok());   // over a backing Missing
  ASSERT_TRUE(t.thin.write_slot(17, Slot::missing(h5).release_value()).ok());  // over an Empty
  EXPECT_EQ(t.thin.missing_count(), kPages - 3 + 1);
  std::vector<DataCap::ResolveItem> items;
  for (std::uint32_t p = kPages; p-- > 0;)
    if (loaded_in_full(p) || p == 17) items.push_back({.page = p, .src = t.src(p == 17 ? 5 : p)});
  sweep_oom(t.thin, [&] { return t.thin.resolve_many(items.data(), items.size()).status(); });
  EXPECT_EQ(t.thin.missing_count(), 0u);
  ASSERT_TRUE(t.thin.flush().ok());
  auto expect = t.bytes;
  std::memcpy(expect.data() + 17 * PAGE_SIZE, page_bytes(t.bytes, 5), PAGE_SIZE);
  EXPECT_EQ(root_of(t.thin), root_of(DataCap::from_bytes(expect.data(), expect.size()).value()));
}

TEST(Rule8_4, ACopySharingTheBackingKeepsItsMissingSlots) {
  Thin t;
  DataCap other = t.thin.copy().release_value();
  ASSERT_EQ(other.backing_id(), t.thin.backing_id());
  ASSERT_TRUE(t.thin.resolve(4, t.src(4)).ok());
  EXPECT_NE(other.backing_id(), t.thin.backing_id());
  EXPECT_EQ(other.effective(4).kind, SlotKind::Missing);
  EXPECT_EQ(root_of(other), root_of(t.thin));
  ASSERT_TRUE(other.resolve(4, t.src(4)).ok());
  EXPECT_EQ(encode(other, EncodeOptions{.thin = true}), encode(t.thin, EncodeOptions{.thin = true}));
}

namespace {
// A mapper that can be made executing (mapper.h), recording what the cap asks of it.
struct FakeMapper {
  MapperNode node;
  bool executing = false;
  std::vector<std::string> calls;
  static FakeMapper& of(MapperNode& n) { return *static_cast<FakeMapper*>(n.owner); }
  explicit FakeMapper();
};
constexpr MapperOps kFakeOps = {
    .try_hold = [](MapperNode& n) { return !FakeMapper::of(n).executing; },
    .release = [](MapperNode&) {},
    .prepare =
        [](MapperNode& n, std::uint32_t p) {
          FakeMapper::of(n).calls.push_back("prepare " + std::to_string(p));
          return Status::Ok;
        },
    .protect = [](MapperNode& n,
                  std::uint32_t p) { FakeMapper::of(n).calls.push_back("protect " + std::to_string(p)); },
    .refresh = [](MapperNode& n,
                  std::uint32_t p) { FakeMapper::of(n).calls.push_back("refresh " + std::to_string(p)); },
    .published = [](MapperNode& n,
                    std::uint32_t p) { FakeMapper::of(n).calls.push_back("published " + std::to_string(p)); },
};
FakeMapper::FakeMapper() : node{.ops = &kFakeOps, .owner = this, .region = Region::Mem} {}
}  // namespace

TEST(Rule8_4, BusyWhileAMapperExecutesThenTheMappersFollow) {
  Thin t;
  FakeMapper m;
  t.thin.attach_mapper(&m.node);
  m.executing = true;
  const Snapshot before = snap(t.thin);
  const std::vector<std::uint8_t> zeros(PAGE_SIZE, 0);
  EXPECT_EQ(t.thin.resolve(4, t.src(4)).status(), Status::Busy);
  EXPECT_EQ(t.thin.resolve(4, zeros.data(), zeros.size()).status(), Status::Busy);
  EXPECT_EQ(t.thin.resolve_page(4, PageRef::from_content(page_bytes(t.bytes, 4), PAGE_SIZE).release_value()).status(),
            Status::Busy);
  EXPECT_EQ(snap(t.thin), before);
  EXPECT_TRUE(m.calls.empty());
  m.executing = false;
  ASSERT_TRUE(t.thin.resolve(4, t.src(4)).ok());
  const DataCap::ResolveItem items[] = {{.page = 6, .src = t.src(6)}, {.page = 7, .src = t.src(7)}};
  ASSERT_TRUE(t.thin.resolve_many(items, 2).ok());
  EXPECT_EQ(m.calls,
            (std::vector<std::string>{"prepare 4", "refresh 4", "prepare 6", "prepare 7", "refresh 6", "refresh 7"}));
  t.thin.detach_mapper(&m.node);
}
