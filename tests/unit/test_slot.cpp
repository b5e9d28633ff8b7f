// Page slots (rules 2.1-2.5): kinds, roots, the substitution invariant, the wire codec.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "capmem/codec.h"
#include "capmem/hash.h"
#include "capmem/internal/tree.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

namespace {
PageRef page_of(std::uint8_t fill) {
  std::uint8_t b[PAGE_SIZE];
  std::memset(b, fill, sizeof b);
  return PageRef::from_content(b, PAGE_SIZE).release_value();
}
std::vector<std::uint8_t> enc(const Slot& s) {
  std::vector<std::uint8_t> v(codec::slot_encoded_size(s));
  codec::slot_encode(s, v.data());
  return v;
}
void expect_reject(const std::vector<std::uint8_t>& in, Status want, std::uint64_t at) {
  const auto before = hostsim::quiescent_frame_stats().in_use;
  const auto boxes = Slot::missing_boxes();
  DecodeError err{};
  auto r = codec::slot_decode(in.data(), in.size(), &err);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), want);
  EXPECT_EQ(err.status, want);
  EXPECT_EQ(err.offset, at);
  EXPECT_STREQ(status_rule(want), "2.5");
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
  EXPECT_EQ(Slot::missing_boxes(), boxes);
}
}  // namespace

TEST(Rule2_1, ThreeKinds) {
  Slot e;
  EXPECT_EQ(e.kind(), SlotKind::Empty);
  PageRef p = page_of(1);
  Slot l = Slot::loaded(p);
  EXPECT_EQ(l.kind(), SlotKind::Loaded);
  EXPECT_EQ(l.frame(), p.desc());
  Slot m = Slot::missing(p.hash()).release_value();
  EXPECT_EQ(m.kind(), SlotKind::Missing);
  EXPECT_EQ(m.view().frame, nullptr);
  EXPECT_EQ(sizeof(Slot), 8u);
}

TEST(Rule2_1, CopyIsARefDestroyIsAnUnref) {
  PageRef p = page_of(2);
  const std::uint32_t base = p.ref_count();
  const auto boxes = Slot::missing_boxes();
  {
    Slot a = Slot::loaded(p);
    Slot b = a;
    Slot c = std::move(b);
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(p.ref_count(), base + 2);
    Slot m = Slot::missing(p.hash()).release_value();
    Slot m2 = m;
    EXPECT_TRUE(m.same(m2));
    EXPECT_EQ(Slot::missing_boxes(), boxes + 1);
    m = a;
    EXPECT_EQ(Slot::missing_boxes(), boxes + 1);
    EXPECT_EQ(p.ref_count(), base + 3);
  }
  EXPECT_EQ(p.ref_count(), base);
  EXPECT_EQ(Slot::missing_boxes(), boxes);
  drain_slab_caches(env::cpu_id());  // no box left in this CPU's cache: the slab must grow
  frames().set_exhausted(true);
  EXPECT_EQ(Slot::missing(p.hash()).status(), Status::OutOfFrames);
  frames().set_exhausted(false);
}

TEST(Rule2_2, Roots) {
  EXPECT_EQ(Slot{}.root(), Hash32{}) << "Empty is 32 zero bytes, not the zero page's hash";
  EXPECT_NE(hash::zero_hash(7), Hash32{});
  PageRef p = page_of(3);
  EXPECT_EQ(Slot::loaded(p).root(), p.hash());
  Hash32 h{};
  h.b[0] = 0xab;
  EXPECT_EQ(Slot::missing(h).value().root(), h);
  EXPECT_EQ(*Slot{}.view().hash, Hash32{});
}

TEST(Rule2_3, LoadedAndMissingOfItsHashHaveTheSameRootAbove) {
  PageRef p = page_of(4);
  EXPECT_EQ(Slot::loaded(p).root(), Slot::missing(p.hash()).value().root());
  // ... and any tree above them: substitute page 777 of a 2000-page tree.
  tree::Txn a(nullptr), b(nullptr);
  ASSERT_TRUE(a.set(777, Slot::loaded(p)).ok());
  ASSERT_TRUE(b.set(777, Slot::missing(p.hash()).release_value()).ok());
  PageRef q = page_of(5);
  ASSERT_TRUE(a.set(3, Slot::loaded(q)).ok());
  ASSERT_TRUE(b.set(3, Slot::loaded(q)).ok());
  tree::Node* ra = a.commit();
  tree::Node* rb = b.commit();
  EXPECT_EQ(tree::pages_root(ra, 2000), tree::pages_root(rb, 2000));
  EXPECT_EQ(tree::cap_root(ra, 2000 * PAGE_SIZE), tree::cap_root(rb, 2000 * PAGE_SIZE));
  tree::node_unref(ra);
  tree::node_unref(rb);
}

TEST(Rule2_4, Encodings) {
  EXPECT_EQ(enc(Slot{}), std::vector<std::uint8_t>{0});
  PageRef p = page_of(6);
  const auto l = enc(Slot::loaded(p));
  ASSERT_EQ(l.size(), 4133u);
  EXPECT_EQ(l[0], 1);
  EXPECT_EQ(std::memcmp(l.data() + 1, p.hash().b.data(), 32), 0);
  EXPECT_EQ(l[33], 36);
  EXPECT_EQ(l[34] | l[35] | l[36], 0);
  EXPECT_EQ(std::memcmp(l.data() + 37, p.bytes(), PAGE_SIZE), 0);
  const auto m = enc(Slot::missing(p.hash()).release_value());
  ASSERT_EQ(m.size(), 33u);
  EXPECT_EQ(m[0], 2);
  EXPECT_EQ(std::memcmp(m.data() + 1, p.hash().b.data(), 32), 0);
}

TEST(Rule2_5, RoundTrip) {
  PageRef p = page_of(7);
  for (const Slot& s : {Slot{}, Slot::loaded(p), Slot::missing(p.hash()).release_value()}) {
    const auto w = enc(s);
    Slot d = codec::slot_decode(w.data(), w.size()).release_value();
    EXPECT_EQ(d.kind(), s.kind());
    EXPECT_EQ(d.root(), s.root());
    if (s.kind() == SlotKind::Loaded) {
      EXPECT_NE(d.frame(), p.desc()) << "a fresh frame";
      EXPECT_EQ(std::memcmp(d.frame()->virt(), p.bytes(), PAGE_SIZE), 0);
    }
  }
  // A zero Loaded page is a valid slot (only a cap forbids it, rule 5.2).
  PageRef z = PageRef::from_content(nullptr, 0).release_value();
  const auto w = enc(Slot::loaded(z));
  EXPECT_TRUE(codec::slot_decode(w.data(), w.size()).ok());
}

TEST(Rule2_5, RejectsEveryBadInputClass) {
  PageRef p = page_of(8);
  const auto good = enc(Slot::loaded(p));
  expect_reject({}, Status::DecodeEmptyBuffer, 0);
  expect_reject({3}, Status::DecodeUnknownSelector, 0);
  expect_reject({0xff, 0}, Status::DecodeUnknownSelector, 0);
  expect_reject({0, 0}, Status::DecodeTrailingBytes, 1);
  auto m = enc(Slot::missing(p.hash()).release_value());
  auto m_long = m;
  m_long.push_back(0);
  expect_reject(m_long, Status::DecodeTrailingBytes, 33);
  m.pop_back();
  expect_reject(m, Status::DecodeMissingBytes, 32);
  expect_reject(std::vector<std::uint8_t>(good.begin(), good.begin() + 20), Status::DecodeMissingBytes, 20);
  auto off = good;
  off[33] = 37;
  expect_reject(off, Status::DecodeBadPageOffset, 33);
  auto big = good;
  big.push_back(0);
  expect_reject(big, Status::DecodeBadPayloadLength, 37);
  auto small = good;
  small.resize(good.size() - 1);
  expect_reject(small, Status::DecodeBadPayloadLength, 37);
  auto forged = good;
  forged[100] ^= 1;  // bytes changed, hash kept
  expect_reject(forged, Status::DecodeForgedHash, 1);
}

TEST(Rule2_5, OutOfFramesLeavesNothing) {
  PageRef p = page_of(9);
  const auto w = enc(Slot::loaded(p));
  const auto before = hostsim::quiescent_frame_stats().in_use;
  frames().set_exhausted(true);
  DecodeError err{};
  auto r = codec::slot_decode(w.data(), w.size(), &err);
  frames().set_exhausted(false);
  EXPECT_EQ(r.status(), Status::OutOfFrames);
  EXPECT_EQ(err.status, Status::OutOfFrames);
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
}
