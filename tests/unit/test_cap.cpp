// DataCap (rules 3.1-3.7, issue 7): every test compares against an independent flat model
// (per-page bytes + hash::merkleize over per-page roots) and ends with every frame back.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;
using capmem::testutil::hex;
using capmem::testutil::slurp;
using capmem::testutil::vectors_dir;

namespace {

// The independent reference: rule 3.4 straight from its definition.
Hash32 ref_page_root(const std::uint8_t* p) {
  for (std::size_t i = 0; i < PAGE_SIZE; ++i)
    if (p[i] != 0) return hash::page_content_hash(p);
  return Hash32{};  // Empty (rule 2.2)
}
Hash32 ref_root(const std::vector<std::uint8_t>& bytes) {  // bytes.size() == cap size
  const std::size_t n = bytes.size() / PAGE_SIZE;
  std::vector<Hash32> roots(n);
  for (std::size_t i = 0; i < n; ++i) roots[i] = ref_page_root(bytes.data() + i * PAGE_SIZE);
  const Hash32 pages = hash::merkleize(roots.data(), n, n > 1 ? n : 1);
  return hash::node(hash::uint64_root(bytes.size()), pages);
}

PageRef page_of(std::uint8_t fill, std::uint32_t salt = 0) {
  std::uint8_t b[PAGE_SIZE];
  std::memset(b, fill, sizeof b);
  std::memcpy(b, &salt, sizeof salt);
  return PageRef::from_content(b, PAGE_SIZE).release_value();
}

std::vector<std::uint8_t> cap_bytes(const DataCap& c) {
  std::vector<std::uint8_t> out(c.size());
  EXPECT_TRUE(c.read(0, out.data(), out.size()).ok());
  return out;
}

// Runs `op` with the n-th frame allocation failing for n = 1, 2, ... until it succeeds;
// after every failed run `check_unchanged` must hold and frames must be back.
template <typename Op, typename Check>
void sweep(Op op, Check check_unchanged) {
  for (std::uint64_t n = 1;; ++n) {
    const auto before = hostsim::quiescent_frame_stats();
    frames().inject_failure_at(n);
    const Status st = op();
    frames().inject_failure_at(0);
    if (st == Status::Ok) {
      ASSERT_GT(n, 0u);
      return;
    }
    ASSERT_EQ(st, Status::OutOfFrames) << "at n=" << n;
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before.in_use) << "leak after failure at allocation " << n;
    check_unchanged();
    ASSERT_LT(n, 100000u);
  }
}

}  // namespace

// --- Reference vectors (section 6) ------------------------------------------------------------

TEST(Rule3_6, VectorRootsMatch) {
  const std::string dir = vectors_dir();
  ASSERT_FALSE(dir.empty()) << "CAPMEM_VECTORS not set";
  std::ifstream roots(dir + "/ROOTS");
  ASSERT_TRUE(roots.good());
  std::string want, name;
  int seen = 0;
  while (roots >> want >> name) {
    const auto bin = slurp(dir + "/" + name);
    auto c = DataCap::from_bytes(bin.data(), bin.size());
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_EQ(hex(c->root().value()), want) << name;
    // Rule 3.6 independently: size rounded up to a page, at least one.
    std::vector<std::uint8_t> padded(bin);
    padded.resize(bin.empty() ? PAGE_SIZE : (bin.size() + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE);
    EXPECT_EQ(c->size(), padded.size());
    EXPECT_EQ(hex(ref_root(padded)), want) << name << ": the test's reference disagrees with the vectors";
    ++seen;
  }
  EXPECT_GE(seen, 6);
}

TEST(Rule3_6, SizeTargetAndZeroPages) {
  std::vector<std::uint8_t> bytes(3 * PAGE_SIZE + 5, 0);
  bytes[PAGE_SIZE + 7] = 1;
  bytes[3 * PAGE_SIZE + 4] = 9;
  auto c = DataCap::from_bytes(bytes.data(), bytes.size(), 10 * PAGE_SIZE - 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->size(), 10 * PAGE_SIZE);
  EXPECT_EQ(c->effective(0).kind, SlotKind::Empty);
  EXPECT_EQ(c->effective(1).kind, SlotKind::Loaded);
  EXPECT_EQ(c->effective(2).kind, SlotKind::Empty);
  EXPECT_EQ(c->effective(3).kind, SlotKind::Loaded);
  EXPECT_EQ(c->extent(), 4u);
  bytes.resize(10 * PAGE_SIZE, 0);
  EXPECT_EQ(c->root().value(), ref_root(bytes));
  EXPECT_EQ(DataCap::from_bytes(bytes.data(), 0, kMaxCapSize + 1).status(), Status::TooLarge);
}

// --- 3.1 / 3.2 / 3.3 ----------------------------------------------------------------------------

TEST(Rule3_1, CopySharesBackingInConstantTime) {
  std::vector<std::uint8_t> bytes(8 * PAGE_SIZE, 3);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const auto before = hostsim::quiescent_frame_stats().in_use;
  auto b = a.copy().release_value();
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before) << "copying a flushed cap must not allocate";
  EXPECT_EQ(a.backing_id(), b.backing_id());
  EXPECT_EQ(a.effective(3).frame, b.effective(3).frame) << "pages are shared, not copied";
  EXPECT_EQ(a.root().value(), b.root().value());
}

TEST(Rule3_2, CreateValidatesSizeAndTrims) {
  EXPECT_EQ(DataCap::create(100).status(), Status::InvalidArgument);
  EXPECT_EQ(DataCap::create(kMaxCapSize + PAGE_SIZE).status(), Status::TooLarge);
  auto c = DataCap::create(16 * PAGE_SIZE).release_value();
  EXPECT_EQ(c.page_count(), 16u);
  EXPECT_EQ(c.extent(), 0u);
  ASSERT_TRUE(c.write_page(9, page_of(1)).ok());
  ASSERT_TRUE(c.write_page(2, page_of(2)).ok());
  ASSERT_TRUE(c.flush().ok());
  EXPECT_EQ(c.extent(), 10u);
  // A zero write to the last non-Empty page trims the array back.
  ASSERT_TRUE(c.write_page(9, PageRef::unhashed_copy(nullptr).release_value()).ok());
  ASSERT_TRUE(c.flush().ok());
  EXPECT_EQ(c.extent(), 3u);
  // Past the trimmed array but inside size: reads Empty. Past size: out of extent.
  EXPECT_EQ(c.effective(12).kind, SlotKind::Empty);
  EXPECT_EQ(c.slot(12).value().kind(), SlotKind::Empty);
  EXPECT_EQ(c.slot(16).status(), Status::OutOfExtent);
  EXPECT_EQ(c.page_at(16 * PAGE_SIZE).status(), Status::OutOfExtent);
  EXPECT_EQ(c.write_page(16, page_of(1)).status(), Status::OutOfExtent);
  EXPECT_EQ(c.reserve_overlay(16).status(), Status::OutOfExtent);
}

TEST(Rule3_3, OverlayShadowsAndZeroWriteSticks) {
  std::vector<std::uint8_t> bytes(4 * PAGE_SIZE, 0x11);
  auto c = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const Hash32 r0 = c.root().value();
  // An explicit all-zero Loaded entry shadows the backing.
  ASSERT_TRUE(c.write_page(1, PageRef::unhashed_copy(nullptr).release_value()).ok());
  EXPECT_EQ(c.effective(1).kind, SlotKind::Loaded);
  std::vector<std::uint8_t> got(PAGE_SIZE, 0xff);
  ASSERT_TRUE(c.read(PAGE_SIZE, got.data(), PAGE_SIZE).ok());
  EXPECT_EQ(got, std::vector<std::uint8_t>(PAGE_SIZE, 0));
  // Missing shadows too.
  ASSERT_TRUE(c.write_slot(2, Slot::missing(page_of(7).hash()).release_value()).ok());
  EXPECT_EQ(c.effective(2).kind, SlotKind::Missing);
  EXPECT_EQ(c.read(2 * PAGE_SIZE + 5, got.data(), 1).status(), Status::MissingPage);
  // An explicit Empty entry is inert (3.3 names only Loaded and Missing as shadowing).
  ASSERT_TRUE(c.write_slot(3, Slot{}).ok());
  EXPECT_EQ(c.effective(3).kind, SlotKind::Loaded);
  EXPECT_EQ(c.overlay_count(), 3u);
  EXPECT_EQ(c.root().status(), Status::OverlayNotEmpty);
  EXPECT_EQ(c.flush().status(), Status::MissingInOverlay);
  EXPECT_EQ(c.overlay_count(), 3u);                  // unchanged
  ASSERT_TRUE(c.write_page(2, page_of(0x11)).ok());  // replace the Missing entry
  ASSERT_TRUE(c.flush().ok());
  EXPECT_EQ(c.effective(1).kind, SlotKind::Empty) << "a zero write over non-zero backing sticks";
  EXPECT_EQ(c.effective(3).kind, SlotKind::Loaded);
  std::memset(bytes.data() + PAGE_SIZE, 0, PAGE_SIZE);
  std::memset(bytes.data() + 2 * PAGE_SIZE, 0x11, PAGE_SIZE);
  std::memcpy(bytes.data() + 2 * PAGE_SIZE, "\0\0\0\0", 4);
  EXPECT_EQ(c.root().value(), ref_root(bytes));
  EXPECT_NE(c.root().value(), r0);
}

// --- 3.4 --------------------------------------------------------------------------------------

TEST(Rule3_4, RootNeedsEmptyOverlayAndMatchesDefinition) {
  for (std::uint32_t pages : {1u, 2u, 3u, 5u, 31u, 32u, 33u, 1000u, 1025u, 40000u}) {
    auto c = DataCap::create(std::uint64_t{pages} * PAGE_SIZE).release_value();
    std::vector<std::uint8_t> model(c.size(), 0);
    EXPECT_EQ(c.root().value(), ref_root(model)) << pages;
    const std::uint32_t last = pages - 1;
    ASSERT_TRUE(c.write_page(last, page_of(5, last)).ok());
    EXPECT_EQ(c.root().status(), Status::OverlayNotEmpty);
    ASSERT_TRUE(c.flush().ok());
    std::memset(model.data() + std::size_t{last} * PAGE_SIZE, 5, PAGE_SIZE);
    std::memcpy(model.data() + std::size_t{last} * PAGE_SIZE, &last, 4);
    EXPECT_EQ(c.root().value(), ref_root(model)) << pages;
  }
  // Rule 3.10: every cap has at least one page (3.6), so size 0 is refused rather than
  // built with a root of limit max(0, 1) that no decoder would accept (5.2).
  EXPECT_EQ(DataCap::create(0).status(), Status::InvalidArgument);
}

TEST(Rule3_4, FullSizeCapRoot) {
  // 2^20 pages (4 GiB) sharing one frame: the whole fixed tree is in use.
  auto c = DataCap::create(kMaxCapSize).release_value();
  PageRef p = page_of(0x42);
  for (std::uint32_t i : {0u, 1u, 77777u, (1u << 20) - 1}) ASSERT_TRUE(c.write_page(i, p).ok());
  ASSERT_TRUE(c.flush().ok());
  std::vector<Hash32> roots(1u << 20, Hash32{});
  for (std::uint32_t i : {0u, 1u, 77777u, (1u << 20) - 1}) roots[i] = p.hash();
  const Hash32 want =
      hash::node(hash::uint64_root(kMaxCapSize), hash::merkleize(roots.data(), roots.size(), roots.size()));
  EXPECT_EQ(c.root().value(), want);
  EXPECT_EQ(c.extent(), 1u << 20);
}

// --- 3.5 --------------------------------------------------------------------------------------

TEST(Rule3_5, FlushHashesUnhashedCopiesAndLeavesOldBacking) {
  std::vector<std::uint8_t> bytes(6 * PAGE_SIZE, 0x21);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  auto b = a.copy().release_value();
  const Hash32 r0 = a.root().value();
  std::uint8_t src[PAGE_SIZE];
  std::memset(src, 0x99, sizeof src);
  PageRef mine = PageRef::unhashed_copy(src).release_value();
  PageRef shared = PageRef::unhashed_copy(src).release_value();
  PageRef keep = shared;  // someone else holds this frame: flush must copy, not hash in place
  ASSERT_TRUE(mine.unhashed());
  FrameDesc* mine_desc = mine.desc();
  ASSERT_TRUE(a.write_page(0, std::move(mine)).ok());
  ASSERT_TRUE(a.write_page(1, std::move(shared)).ok());
  ASSERT_TRUE(a.flush().ok());
  EXPECT_EQ(a.overlay_count(), 0u);
  EXPECT_EQ(a.effective(0).frame, mine_desc) << "an unshared unhashed copy is hashed in place";
  EXPECT_EQ(mine_desc->hash, hash::page_content_hash(src));
  EXPECT_NE(a.effective(1).frame, keep.desc());
  EXPECT_TRUE(keep.unhashed()) << "a shared unhashed page is never hashed in place";
  EXPECT_EQ(*a.effective(1).hash, hash::page_content_hash(src));
  std::memset(bytes.data(), 0x99, 2 * PAGE_SIZE);
  EXPECT_EQ(a.root().value(), ref_root(bytes));
  EXPECT_EQ(b.root().value(), r0) << "the old (shared) backing is untouched";
  EXPECT_NE(a.backing_id(), b.backing_id());
}

TEST(Rule3_5, EmptyOverlayFlushMakesNoBacking) {
  std::vector<std::uint8_t> bytes(2 * PAGE_SIZE, 1);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const void* id = a.backing_id();
  const auto before = hostsim::quiescent_frame_stats().in_use;
  ASSERT_TRUE(a.flush().ok());
  EXPECT_EQ(a.backing_id(), id);
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
}

TEST(Rule3_5, SameBytesWriteKeepsRoot) {
  std::vector<std::uint8_t> bytes(3 * PAGE_SIZE, 0x5a);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const Hash32 r0 = a.root().value();
  ASSERT_TRUE(a.write_page(1, PageRef::unhashed_copy(bytes.data()).release_value()).ok());
  EXPECT_EQ(a.overlay_count(), 1u) << "stays in the overlay until flush";
  EXPECT_EQ(a.root().status(), Status::OverlayNotEmpty);
  ASSERT_TRUE(a.flush().ok());
  EXPECT_EQ(a.root().value(), r0);
}

TEST(Rule3_5, FlushOfFullOverlay) {
  const std::uint32_t n = 301;
  auto a = DataCap::create(n * PAGE_SIZE).release_value();
  std::vector<std::uint8_t> model(a.size());
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint8_t* p = model.data() + std::size_t{i} * PAGE_SIZE;
    std::memset(p, static_cast<int>(i % 3 == 0 ? 0 : i), PAGE_SIZE);
    ASSERT_TRUE(a.write_page(i, PageRef::unhashed_copy(p).release_value()).ok());
  }
  EXPECT_EQ(a.overlay_count(), n);
  ASSERT_TRUE(a.flush().ok());
  EXPECT_EQ(a.root().value(), ref_root(model));
  EXPECT_EQ(a.extent(), n - 1);  // page 300 is a multiple of 3: zero, trimmed
}

TEST(Rule3_5, FlushIsAllOrNothingUnderOutOfFrames) {
  std::vector<std::uint8_t> bytes(70 * PAGE_SIZE, 0x31);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  auto shared = a.copy().release_value();
  const Hash32 r0 = a.root().value();
  std::vector<PageRef> held;
  for (std::uint32_t i = 0; i < 70; i += 3) {
    std::uint8_t src[PAGE_SIZE];
    std::memset(src, static_cast<int>(i + 1), sizeof src);
    PageRef p = PageRef::unhashed_copy(src).release_value();
    held.push_back(p);  // shared: flush must copy (an allocation point)
    ASSERT_TRUE(a.write_page(i, p).ok());
    std::memcpy(bytes.data() + std::size_t{i} * PAGE_SIZE, src, PAGE_SIZE);
  }
  const void* id = a.backing_id();
  sweep([&] { return a.flush().status(); },
        [&] {
          EXPECT_EQ(a.backing_id(), id);
          EXPECT_EQ(a.overlay_count(), 24u);
        });
  EXPECT_EQ(a.root().value(), ref_root(bytes));
  EXPECT_EQ(shared.root().value(), r0);
}

// The same for a cap that alone holds its backing, which flush changes in place (datacap.cpp):
// a failed flush leaves the backing itself as it was, not only what the overlay shows over
// it (an explicit Empty overlay entry, rule 3.3, would reveal it).
TEST(Rule3_5, InPlaceFlushIsAllOrNothingUnderOutOfFrames) {
  std::vector<std::uint8_t> bytes(2100 * PAGE_SIZE, 0);
  for (std::uint32_t i = 0; i < 2100; i += 2)
    std::memset(bytes.data() + std::size_t{i} * PAGE_SIZE, 0x40 + i % 7, PAGE_SIZE);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const std::vector<std::uint8_t> old_bytes = bytes;
  std::vector<PageRef> held;
  std::vector<std::uint32_t> written;
  for (std::uint32_t i = 0; i < 2100; i += 37) {  // old pages, Empty pages, new leaves
    std::uint8_t src[PAGE_SIZE];
    std::memset(src, i % 5 == 0 ? 0 : static_cast<int>(i + 1), sizeof src);  // some all-zero
    PageRef p = PageRef::unhashed_copy(src).release_value();
    if (i % 3 == 0) held.push_back(p);  // shared: flush must copy (an allocation point)
    ASSERT_TRUE(a.write_page(i, p).ok());
    written.push_back(i);
    std::memcpy(bytes.data() + std::size_t{i} * PAGE_SIZE, src, PAGE_SIZE);
  }
  const void* id = a.backing_id();
  const auto nodes = tree::live_nodes();
  sweep([&] { return a.flush().status(); },
        [&] {
          EXPECT_EQ(a.backing_id(), id);
          EXPECT_EQ(a.overlay_count(), written.size());
          EXPECT_EQ(tree::live_nodes(), nodes);
          EXPECT_EQ(cap_bytes(a), bytes);
          auto view = a.copy().release_value();  // the backing alone: Empty over every entry
          for (std::uint32_t i : written) ASSERT_TRUE(view.write_slot(i, Slot{}).ok());
          EXPECT_EQ(cap_bytes(view), old_bytes);
        });
  EXPECT_EQ(a.backing_id(), id) << "changed in place";
  EXPECT_EQ(a.overlay_count(), 0u);
  EXPECT_EQ(a.root().value(), ref_root(bytes));
  EXPECT_EQ(a.extent(), 2099u);
}

// --- 3.7 operations -----------------------------------------------------------------------------

TEST(Rule3_7, ReadAndPageAt) {
  std::vector<std::uint8_t> bytes(5 * PAGE_SIZE);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7 + 1);
  std::memset(bytes.data() + 2 * PAGE_SIZE, 0, PAGE_SIZE);
  auto c = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  std::vector<std::uint8_t> out(3 * PAGE_SIZE + 10);
  ASSERT_TRUE(c.read(PAGE_SIZE - 5, out.data(), out.size()).ok());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), bytes.begin() + PAGE_SIZE - 5));
  EXPECT_EQ(c.read(4 * PAGE_SIZE + 1, out.data(), PAGE_SIZE).status(), Status::OutOfExtent);
  EXPECT_TRUE(c.read(5 * PAGE_SIZE, out.data(), 0).ok());
  EXPECT_EQ(c.page_at(2 * PAGE_SIZE + 9).value().kind, SlotKind::Empty);
  const SlotView v = c.page_at(3 * PAGE_SIZE).value();
  ASSERT_EQ(v.kind, SlotKind::Loaded);
  EXPECT_EQ(std::memcmp(v.frame->virt(), bytes.data() + 3 * PAGE_SIZE, PAGE_SIZE), 0);
  // A Missing page anywhere in the range: error and nothing written.
  ASSERT_TRUE(c.write_slot(4, Slot::missing(*v.hash).release_value()).ok());
  std::fill(out.begin(), out.end(), 0xee);
  EXPECT_EQ(c.read(3 * PAGE_SIZE, out.data(), 2 * PAGE_SIZE).status(), Status::MissingPage);
  EXPECT_EQ(out[0], 0xee);
}

TEST(Rule3_7, ReserveAndPublish) {
  auto c = DataCap::create(2048 * PAGE_SIZE).release_value();
  auto r = c.reserve_overlay(1500);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(c.overlay_count(), 0u) << "reserve changes nothing visible";
  EXPECT_EQ(c.effective(1500).kind, SlotKind::Empty);
  PageRef p = PageRef::unhashed_copy(nullptr).release_value();
  FrameDesc* d = p.desc();
  c.publish(r.release_value(), std::move(p));
  EXPECT_EQ(c.effective(1500).frame, d);
  EXPECT_EQ(c.overlay_count(), 1u);
  {
    auto dropped = c.reserve_overlay(7);  // a dropped reservation frees its nodes
    ASSERT_TRUE(dropped.ok());
  }
  EXPECT_EQ(c.effective(7).kind, SlotKind::Empty);
  // Reservation under failure: every failing run leaves the overlay as it was.
  sweep(
      [&] {
        auto rr = c.reserve_overlay(100);  // needs a level-1 node and a leaf
        if (!rr.ok()) return rr.status();
        auto pg = PageRef::unhashed_copy(nullptr);
        if (!pg.ok()) return pg.status();  // rr dropped: its nodes go back
        c.publish(rr.release_value(), pg.release_value());
        return Status::Ok;
      },
      [&] { EXPECT_EQ(c.overlay_count(), 1u); });
  EXPECT_EQ(c.overlay_count(), 2u);
  EXPECT_EQ(c.reserve_overlay(2048).status(), Status::OutOfExtent);
}

TEST(Rule3_7, WritePageSweep) {
  auto c = DataCap::create(40000 * PAGE_SIZE).release_value();
  ASSERT_TRUE(c.write_page(5, page_of(1)).ok());
  for (std::uint32_t page : {6u, 33000u, 1025u}) {
    PageRef p = page_of(2, page);
    sweep([&] { return c.write_page(page, p).status(); }, [&] { EXPECT_EQ(c.effective(page).kind, SlotKind::Empty); });
    EXPECT_EQ(c.effective(page).frame, p.desc());
  }
  EXPECT_EQ(c.overlay_count(), 4u);
}

TEST(Rule3_7, PutPage) {
  auto c = DataCap::create(64 * PAGE_SIZE).release_value();
  std::vector<std::uint8_t> model(c.size(), 0);
  for (std::uint32_t i = 0; i < 64; i += 5) {
    PageRef p = PageRef::unhashed_copy(nullptr).release_value();
    std::memset(p.mutable_bytes(), static_cast<int>(i + 1), PAGE_SIZE);
    std::memset(model.data() + std::size_t{i} * PAGE_SIZE, static_cast<int>(i + 1), PAGE_SIZE);
    ASSERT_TRUE(c.put_page(i, std::move(p)).ok());
  }
  EXPECT_EQ(c.overlay_count(), 0u);
  EXPECT_EQ(c.root().value(), ref_root(model));
  PageRef shared = PageRef::unhashed_copy(model.data()).release_value();
  PageRef other = shared;
  EXPECT_EQ(c.put_page(1, shared).status(), Status::InvalidArgument);
  EXPECT_EQ(c.put_page(64, page_of(1)).status(), Status::OutOfExtent);
}

TEST(Rule3_7, PlaceSharedByReference) {
  std::vector<std::uint8_t> img(5 * PAGE_SIZE);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<std::uint8_t>(i % 251 + 1);
  std::memset(img.data() + PAGE_SIZE, 0, PAGE_SIZE);
  auto b = DataCap::from_bytes(img.data(), img.size()).release_value();
  // An unhashed overlay page in b goes in hashed (b keeps its own frame).
  std::uint8_t src[PAGE_SIZE];
  std::memset(src, 0x77, sizeof src);
  ASSERT_TRUE(b.write_page(2, PageRef::unhashed_copy(src).release_value()).ok());
  std::memcpy(img.data() + 2 * PAGE_SIZE, src, PAGE_SIZE);

  std::vector<std::uint8_t> model(8 * PAGE_SIZE, 0x10);
  auto a = DataCap::from_bytes(model.data(), model.size()).release_value();
  auto a_old = a.copy().release_value();
  const Hash32 a_root = a.root().value();
  const auto before = hostsim::quiescent_frame_stats().in_use;
  ASSERT_TRUE(a.place_shared(b, 4 * PAGE_SIZE).ok());
  EXPECT_EQ(a.effective(4).frame, b.effective(0).frame) << "placed by reference";
  EXPECT_EQ(a.effective(7).frame, b.effective(3).frame);
  EXPECT_EQ(a.effective(5).kind, SlotKind::Empty);
  EXPECT_NE(a.effective(6).frame, b.effective(2).frame);
  EXPECT_GT(hostsim::quiescent_frame_stats().in_use, before);            // the hashed copy + tree nodes
  std::memcpy(model.data() + 4 * PAGE_SIZE, img.data(), 4 * PAGE_SIZE);  // page 4 of b dropped
  EXPECT_EQ(a.root().value(), ref_root(model));
  EXPECT_EQ(a_old.root().value(), a_root);
  EXPECT_EQ(a.place_shared(b, 3).status(), Status::Misaligned);
  EXPECT_EQ(a.place_shared(b, 9 * PAGE_SIZE).status(), Status::OutOfExtent);
  const Hash32 r1 = a.root().value();
  sweep([&] { return a.place_shared(b, 0).status(); }, [&] { EXPECT_EQ(a.root().value(), r1); });
  std::memcpy(model.data(), img.data(), 5 * PAGE_SIZE);
  EXPECT_EQ(a.root().value(), ref_root(model));
}

TEST(Rule3_7, NInstancesFromOneImage) {
  std::vector<std::uint8_t> img(3 * PAGE_SIZE, 0x3c);
  auto image = DataCap::from_bytes(img.data(), img.size()).release_value();
  std::vector<DataCap> inst;
  for (int i = 0; i < 4; ++i) {
    auto c = DataCap::create(4 * PAGE_SIZE).release_value();
    ASSERT_TRUE(c.place_shared(image, PAGE_SIZE).ok());
    inst.push_back(std::move(c));
  }
  ASSERT_TRUE(inst[1].write_page(2, page_of(9)).ok());
  ASSERT_TRUE(inst[1].flush().ok());
  for (int i : {0, 2, 3}) EXPECT_EQ(inst[i].root().value(), inst[0].root().value());
  EXPECT_NE(inst[1].root().value(), inst[0].root().value());
  EXPECT_EQ(inst[0].effective(2).frame, image.effective(1).frame);
}

// --- Edge cases ------------------------------------------------------------------------------

TEST(EdgeCases, TwoCapsSharingOneBacking) {
  std::vector<std::uint8_t> bytes(4 * PAGE_SIZE, 0x44);
  auto a = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  auto b = a.copy().release_value();
  ASSERT_TRUE(a.write_page(1, page_of(0x55)).ok());
  std::vector<std::uint8_t> got(PAGE_SIZE);
  ASSERT_TRUE(b.read(PAGE_SIZE, got.data(), PAGE_SIZE).ok());
  EXPECT_EQ(got[100], 0x44) << "a write through one never shows in the other (before flush)";
  ASSERT_TRUE(a.flush().ok());
  ASSERT_TRUE(b.read(PAGE_SIZE, got.data(), PAGE_SIZE).ok());
  EXPECT_EQ(got[100], 0x44) << "(after flush)";
  ASSERT_TRUE(b.write_page(2, page_of(0x66)).ok());
  ASSERT_TRUE(b.flush().ok());
  ASSERT_TRUE(a.read(2 * PAGE_SIZE, got.data(), PAGE_SIZE).ok());
  EXPECT_EQ(got[100], 0x44);
  EXPECT_EQ(b.root().value(), ref_root(cap_bytes(b)));
  EXPECT_EQ(a.root().value(), ref_root(cap_bytes(a)));
}

TEST(Rule3_1, CopyWithOverlaySweep) {
  auto a = DataCap::create(5000 * PAGE_SIZE).release_value();
  for (std::uint32_t i : {0u, 31u, 32u, 1024u, 4999u}) ASSERT_TRUE(a.write_page(i, page_of(1, i)).ok());
  DataCap out;
  sweep(
      [&] {
        auto c = a.copy();
        if (!c.ok()) return c.status();
        out = c.release_value();
        return Status::Ok;
      },
      [] {});
  EXPECT_EQ(out.overlay_count(), 5u);
  EXPECT_EQ(out.effective(1024).frame, a.effective(1024).frame);
}

TEST(Rule3_6, FromBytesSweep) {
  std::vector<std::uint8_t> bytes(100 * PAGE_SIZE + 17);
  std::mt19937 rng(7);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  std::memset(bytes.data() + 10 * PAGE_SIZE, 0, 3 * PAGE_SIZE);
  DataCap out;
  sweep(
      [&] {
        auto c = DataCap::from_bytes(bytes.data(), bytes.size());
        if (!c.ok()) return c.status();
        out = c.release_value();
        return Status::Ok;
      },
      [] {});
  bytes.resize(101 * PAGE_SIZE, 0);
  EXPECT_EQ(out.root().value(), ref_root(bytes));
}

// --- Random sequences against the flat model (issue 7) -----------------------------------------

TEST(Rule3_5, RandomSequencesMatchReference) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 6; ++round) {
    const std::uint32_t pages = 1 + static_cast<std::uint32_t>(rng() % (round < 3 ? 70 : 1500));
    struct Inst {
      DataCap cap;
      std::vector<std::uint8_t> flushed;                           // the backing's content
      std::map<std::uint32_t, std::vector<std::uint8_t>> overlay;  // overlay pages
      std::vector<std::uint8_t> effective() const {
        std::vector<std::uint8_t> e = flushed;
        for (const auto& [pg, b] : overlay) std::memcpy(e.data() + std::size_t{pg} * PAGE_SIZE, b.data(), PAGE_SIZE);
        return e;
      }
    };
    std::vector<Inst> caps;
    caps.reserve(8);  // references into caps stay valid
    caps.push_back(Inst{DataCap::create(std::uint64_t{pages} * PAGE_SIZE).release_value(),
                        std::vector<std::uint8_t>(std::size_t{pages} * PAGE_SIZE, 0),
                        {}});
    std::vector<std::tuple<DataCap, Hash32, std::vector<std::uint8_t>>> old;  // old backings
    for (int step = 0; step < 80; ++step) {
      Inst& c = caps[rng() % caps.size()];
      const int op = static_cast<int>(rng() % 10);
      if (op < 5) {  // write: random / zero / same bytes; hashed or unhashed
        const std::uint32_t pg = static_cast<std::uint32_t>(rng() % pages);
        const std::vector<std::uint8_t> eff = c.effective();
        std::vector<std::uint8_t> page(eff.begin() + std::size_t{pg} * PAGE_SIZE,
                                       eff.begin() + std::size_t{pg + 1} * PAGE_SIZE);
        const int kind = static_cast<int>(rng() % 4);
        if (kind == 0) std::fill(page.begin(), page.end(), 0);
        else if (kind >= 2)
          for (std::size_t i = 0; i < PAGE_SIZE; i += 64) page[i] = static_cast<std::uint8_t>(rng());
        PageRef p = PageRef::unhashed_copy(page.data()).release_value();
        if (rng() % 2) p.seal();
        ASSERT_TRUE(c.cap.write_page(pg, std::move(p)).ok());
        c.overlay[pg] = page;
      } else if (op < 7) {  // flush
        ASSERT_TRUE(c.cap.flush().ok());
        c.flushed = c.effective();
        c.overlay.clear();
        ASSERT_EQ(c.cap.root().value(), ref_root(c.flushed)) << "round " << round << " step " << step;
        old.emplace_back(c.cap.copy().release_value(), c.cap.root().value(), c.flushed);
      } else if (op < 8) {  // copy (overlay included)
        if (caps.size() >= 4) continue;
        Inst n{c.cap.copy().release_value(), c.flushed, c.overlay};
        caps.push_back(std::move(n));
      } else if (op < 9) {  // place_shared c into another cap a
        Inst& a = caps[rng() % caps.size()];
        if (&a == &c) continue;
        const std::uint32_t at = static_cast<std::uint32_t>(rng() % (pages + 1));
        const std::vector<std::uint8_t> src = c.effective();
        ASSERT_TRUE(a.cap.place_shared(c.cap, std::uint64_t{at} * PAGE_SIZE).ok());
        const std::size_t n = std::min(src.size(), a.flushed.size() - std::size_t{at} * PAGE_SIZE);
        std::memcpy(a.flushed.data() + std::size_t{at} * PAGE_SIZE, src.data(), n);
        if (a.overlay.empty()) {
          ASSERT_EQ(a.cap.root().value(), ref_root(a.flushed));
        }
      } else {  // decode(encode(c)) round trip of a flushed cap
        if (!c.overlay.empty()) continue;
        const std::uint64_t n = c.cap.encoded_size().value();
        std::vector<std::uint8_t> wire(n);
        ASSERT_TRUE(c.cap.encode(wire.data(), wire.size()).ok());
        auto d = DataCap::decode(wire.data(), wire.size());
        ASSERT_TRUE(d.ok());
        EXPECT_EQ(d->root().value(), c.cap.root().value());
        c.cap = d.release_value();
      }
      ASSERT_EQ(cap_bytes(c.cap), c.effective()) << "round " << round << " step " << step;
    }
    for (auto& [cap, root, bytes] : old) {
      EXPECT_EQ(cap.root().value(), root) << "old backings keep their roots";
      EXPECT_EQ(cap_bytes(cap), bytes);
    }
  }
}

// Building a large cap reports progress: increasing byte counts, about one per MiB, the
// last equal to the input length, and the result is the same cap as without a listener.
// Decoding its encoding reports the same way up to the encoding's length.
TEST(Rule3_6, BuildAndDecodeReportProgress) {
  constexpr std::size_t kLen = (5u << 20) + 1234;  // 5 MiB and a partial page
  std::vector<std::uint8_t> bytes(kLen);
  std::mt19937_64 rng(36);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  std::memset(bytes.data() + (1u << 20), 0, 2u << 20);  // Empty pages in the middle
  struct Seen {
    std::vector<std::uint64_t> done;
  } seen;
  const BuildProgress listen{.report = [](void* c, std::uint64_t d) { static_cast<Seen*>(c)->done.push_back(d); },
                             .ctx = &seen};
  auto cap = DataCap::from_bytes(bytes.data(), bytes.size(), 0, listen);
  ASSERT_TRUE(cap.ok());
  ASSERT_GE(seen.done.size(), 6u);
  for (std::size_t i = 1; i < seen.done.size(); ++i) EXPECT_LT(seen.done[i - 1], seen.done[i]);
  EXPECT_EQ(seen.done.back(), kLen);
  auto quiet = DataCap::from_bytes(bytes.data(), bytes.size());
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(cap->root().value(), quiet->root().value());

  std::vector<std::uint8_t> enc(cap->encoded_size().value());
  ASSERT_TRUE(cap->encode(enc.data(), enc.size()).ok());
  seen.done.clear();
  auto dec = DataCap::decode(enc.data(), enc.size(), nullptr, listen);
  ASSERT_TRUE(dec.ok());
  ASSERT_GE(seen.done.size(), 3u);  // 3 MiB of Loaded pages, then the end
  for (std::size_t i = 1; i < seen.done.size(); ++i) EXPECT_LT(seen.done[i - 1], seen.done[i]);
  EXPECT_EQ(seen.done.back(), enc.size());
  EXPECT_EQ(dec->root().value(), quiet->root().value());
}

// A long build or decode stops when its BuildProgress's `cancel` says so (here: at its n-th
// poll, for every n the build reaches): the call returns Cancelled and every frame, tree
// node and backing it took is back in the allocator. Without a stop it builds the same cap.
TEST(Rule3_6, BuildAndDecodeCanBeCancelledLeavingNothingBehind) {
  constexpr std::size_t kLen = (5u << 20) + 777;
  std::vector<std::uint8_t> bytes(kLen);
  std::mt19937_64 rng(56);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  std::memset(bytes.data() + (2u << 20), 0, 1u << 20);
  const Hash32 want = DataCap::from_bytes(bytes.data(), bytes.size()).release_value().root().value();
  struct Stop {
    int polls = 0;
    int stop_at = 0;
    int reports = 0;
  };
  auto listen = [](Stop* s) {
    return BuildProgress{.report = [](void* c, std::uint64_t) { ++static_cast<Stop*>(c)->reports; },
                         .ctx = s,
                         .cancel =
                             [](void* c) {
                               auto* st = static_cast<Stop*>(c);
                               return ++st->polls == st->stop_at;
                             }};
  };
  std::vector<std::uint8_t> enc;
  for (int pass = 0; pass < 2; ++pass) {  // 0: from_bytes, 1: decode
    int cancelled = 0;
    for (int n = 1;; ++n) {
      const auto frames_before = hostsim::quiescent_frame_stats().in_use;
      const auto nodes_before = tree::live_nodes();
      const auto backings_before = tree::live_backings();
      Stop s{.stop_at = n};
      DecodeError err{};
      {
        auto r = pass == 0 ? DataCap::from_bytes(bytes.data(), bytes.size(), 0, listen(&s))
                           : DataCap::decode(enc.data(), enc.size(), &err, listen(&s));
        if (r.ok()) {
          EXPECT_LT(s.polls, n) << "a build asked to stop went on";
          EXPECT_EQ(r->root().value(), want);
          if (pass == 0) {
            enc.resize(r->encoded_size().value());
            ASSERT_TRUE(r->encode(enc.data(), enc.size()).ok());
          }
          break;
        }
        EXPECT_EQ(r.status(), Status::Cancelled) << "pass " << pass << " n " << n;
        EXPECT_EQ(s.polls, n);
        EXPECT_EQ(s.reports, n - 1) << "report follows every poll that let the build go on";
        if (pass == 1) {
          EXPECT_EQ(err.status, Status::Cancelled);
          EXPECT_LT(err.offset, enc.size());
        }
        ++cancelled;
      }
      EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, frames_before) << "pass " << pass << " n " << n;
      EXPECT_EQ(tree::live_nodes(), nodes_before);
      EXPECT_EQ(tree::live_backings(), backings_before);
      ASSERT_LT(n, 100);
    }
    EXPECT_GE(cancelled, 3) << "pass " << pass << ": a 5 MiB build offers a cancel point about every MiB";
  }
}

// --- Mappers (mapper.h): the cap reaches whoever maps it only through MapperOps ----------

namespace {
// A fake mapper: records what the cap asks of it, in order, and can be made executing.
struct FakeMapper {
  MapperNode node;
  bool executing = false;
  unsigned holds = 0;
  Status prepare_answer = Status::Ok;
  std::vector<std::string> calls;
  static FakeMapper& of(MapperNode& n) { return *static_cast<FakeMapper*>(n.owner); }
  explicit FakeMapper(Region r);
};
// Defined after FakeMapper is complete (clang rejects member access in its own initializer).
constexpr MapperOps kFakeOps = {
    .try_hold =
        [](MapperNode& n) {
          if (FakeMapper::of(n).executing) return false;
          ++FakeMapper::of(n).holds;
          return true;
        },
    .release = [](MapperNode& n) { --FakeMapper::of(n).holds; },
    .prepare =
        [](MapperNode& n, std::uint32_t p) {
          FakeMapper::of(n).calls.push_back("prepare " + std::to_string(p));
          return FakeMapper::of(n).prepare_answer;
        },
    .protect = [](MapperNode& n,
                  std::uint32_t p) { FakeMapper::of(n).calls.push_back("protect " + std::to_string(p)); },
    .refresh = [](MapperNode& n,
                  std::uint32_t p) { FakeMapper::of(n).calls.push_back("refresh " + std::to_string(p)); },
    .published = [](MapperNode& n,
                    std::uint32_t p) { FakeMapper::of(n).calls.push_back("published " + std::to_string(p)); },
};
FakeMapper::FakeMapper(Region r) : node{.ops = &kFakeOps, .owner = this, .region = r} {}
}  // namespace

TEST(Mapper, CheckpointsAndPublishesGoThroughTheOpsTable) {
  auto c = DataCap::create(4 * PAGE_SIZE).release_value();
  FakeMapper m(Region::Mem);
  c.attach_mapper(&m.node);
  EXPECT_TRUE(c.mapped_by_run());
  ASSERT_TRUE(c.write_page(2, page_of(7)).ok());
  EXPECT_EQ(m.calls, (std::vector<std::string>{"prepare 2", "refresh 2"}));
  EXPECT_EQ(m.holds, 0u);  // held for the call, released after
  m.calls.clear();
  ASSERT_TRUE(c.flush().ok());  // overlay page 2: prepared, then write-protected
  EXPECT_EQ(m.calls, (std::vector<std::string>{"prepare 2", "protect 2"}));
  m.calls.clear();
  auto r = c.reserve_overlay(1);  // a publish by someone else (no `by`): prepare, published
  ASSERT_TRUE(r.ok());
  c.publish(r.release_value(), page_of(8));
  EXPECT_EQ(m.calls, (std::vector<std::string>{"prepare 1", "published 1"}));
  m.calls.clear();
  m.prepare_answer = Status::OutOfFrames;  // a failed prepare changes nothing
  EXPECT_EQ(c.reserve_overlay(3).status(), Status::OutOfFrames);
  EXPECT_EQ(c.write_page(3, page_of(9)).status(), Status::OutOfFrames);
  EXPECT_EQ(c.overlay_count(), 1u);
  m.prepare_answer = Status::Ok;
  m.executing = true;  // executing: every checkpoint is Busy, nothing asked but the hold
  m.calls.clear();
  EXPECT_EQ(c.flush().status(), Status::Busy);
  EXPECT_EQ(c.copy().status(), Status::Busy);
  EXPECT_TRUE(m.calls.empty());
  EXPECT_EQ(m.holds, 0u);
  m.executing = false;
  c.detach_mapper(&m.node);
  EXPECT_FALSE(c.mapped_by_run());
  EXPECT_TRUE(c.flush().ok());
}

TEST(MapperDeath, ACapWithAMapperCannotBeDestroyed) {
  EXPECT_DEATH(
      {
        auto* m = new FakeMapper(Region::Code);
        DataCap c = DataCap::create(PAGE_SIZE).release_value();
        c.attach_mapper(&m->node);
      },
      "destroying a DataCap that a run maps(.|\n)*rule 3.9");
}
