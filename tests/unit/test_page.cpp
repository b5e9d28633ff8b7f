// Pages and their hashes (rules 1.1-1.4): PageRef constructors, the record's hash, the
// intrusive count, and the traps (death tests) for misuse.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "capmem/codec.h"
#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/mem.h"
#include "capmem/page.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

namespace {
bool aligned(const PageRef& p) {
  return p.phys().page_aligned() && (reinterpret_cast<std::uintptr_t>(p.bytes()) & (PAGE_SIZE - 1)) == 0 &&
         frames().desc_of(p.phys()) == p.desc();
}
// Rule 1.2 straight from its definition, with plain SHA-256 of 64-byte messages.
Hash32 ref_page_hash(const std::uint8_t* page) {
  std::vector<Hash32> level(128);
  for (int i = 0; i < 128; ++i) std::memcpy(level[i].b.data(), page + 32 * i, 32);
  while (level.size() > 1) {
    std::vector<Hash32> up(level.size() / 2);
    for (std::size_t i = 0; i < up.size(); ++i) {
      std::uint8_t msg[64];
      std::memcpy(msg, level[2 * i].b.data(), 32);
      std::memcpy(msg + 32, level[2 * i + 1].b.data(), 32);
      up[i] = hash::sha256(msg, 64);
    }
    level = up;
  }
  return level[0];
}
}  // namespace

TEST(Rule1_1, EveryConstructorYieldsAnAlignedFrame) {
  std::uint8_t src[PAGE_SIZE];
  for (std::size_t i = 0; i < PAGE_SIZE; ++i) src[i] = static_cast<std::uint8_t>(i * 3 + 1);
  PageRef a = PageRef::from_content(src, 100).release_value();
  PageRef b = PageRef::unhashed_copy(src).release_value();
  PageRef z = PageRef::unhashed_copy(nullptr).release_value();
  PageRef c = PageRef::from_verified(src, hash::page_content_hash(src)).release_value();
  PageRef d = c.clone().release_value();
  for (const PageRef* p : {&a, &b, &z, &c, &d}) EXPECT_TRUE(aligned(*p));
  // Decoded from the wire (slot and cap), built from bytes, and copied by flush.
  std::vector<std::uint8_t> wire(codec::slot_encoded_size(Slot::loaded(c)));
  codec::slot_encode(Slot::loaded(c), wire.data());
  Slot s = codec::slot_decode(wire.data(), wire.size()).release_value();
  EXPECT_TRUE(aligned(s.page()));
  std::vector<std::uint8_t> bytes(3 * PAGE_SIZE + 1, 0x7e);
  auto cap = DataCap::from_bytes(bytes.data() + 1, bytes.size() - 1).release_value();  // unaligned source
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(aligned(cap.slot(i).value().page()));
  std::vector<std::uint8_t> enc(cap.encoded_size().value() + 1);
  ASSERT_TRUE(cap.encode(enc.data() + 1, enc.size() - 1).ok());
  auto dec = DataCap::decode(enc.data() + 1, enc.size() - 1).release_value();  // unaligned input
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(aligned(dec.slot(i).value().page()));
  PageRef keep = b;  // shared unhashed page: flush copies it
  ASSERT_TRUE(cap.write_page(1, b).ok());
  ASSERT_TRUE(cap.flush().ok());
  EXPECT_NE(cap.effective(1).frame, b.desc());
  EXPECT_TRUE(aligned(cap.slot(1).value().page()));
}

TEST(Rule1_2, PageContentHashIsTheSszByteVectorRoot) {
  std::uint8_t page[PAGE_SIZE];
  for (std::size_t i = 0; i < PAGE_SIZE; ++i) page[i] = static_cast<std::uint8_t>(i ^ (i >> 5));
  EXPECT_EQ(hash::page_content_hash(page), ref_page_hash(page));
  std::memset(page, 0, sizeof page);
  EXPECT_EQ(hash::page_content_hash(page), ref_page_hash(page));
}

TEST(Rule1_3, FromContentPadsAndHashes) {
  const std::uint8_t abc[3] = {'a', 'b', 'c'};
  PageRef p = PageRef::from_content(abc, 3).release_value();
  std::uint8_t want[PAGE_SIZE] = {'a', 'b', 'c'};
  EXPECT_EQ(std::memcmp(p.bytes(), want, PAGE_SIZE), 0);
  EXPECT_EQ(p.hash(), ref_page_hash(want));
  EXPECT_FALSE(p.unhashed());
}

TEST(Rule1_3, UnhashedCopyHasSentinelAndCloneKeepsBytesAndHash) {
  std::uint8_t src[PAGE_SIZE];
  std::memset(src, 0xc3, sizeof src);
  PageRef u = PageRef::unhashed_copy(src).release_value();
  EXPECT_TRUE(u.unhashed());
  EXPECT_EQ(u.hash(), Hash32{});
  EXPECT_EQ(std::memcmp(u.bytes(), src, PAGE_SIZE), 0);
  PageRef z = PageRef::unhashed_copy(nullptr).release_value();
  EXPECT_TRUE(z.unhashed());
  EXPECT_EQ(z.bytes()[4095], 0);
  PageRef h = PageRef::from_content(src, PAGE_SIZE).release_value();
  PageRef c = h.clone().release_value();
  EXPECT_NE(c.desc(), h.desc());
  EXPECT_EQ(c.hash(), h.hash());
  EXPECT_EQ(std::memcmp(c.bytes(), h.bytes(), PAGE_SIZE), 0);
}

// The fault path's two-step form (prepare, then copy): the same page as unhashed_copy, and
// the fill writes every byte over whatever the recycled frame held.
TEST(Rule1_3, UnhashedFrameThenFillIsAnUnhashedCopy) {
  std::uint8_t old[PAGE_SIZE], src[PAGE_SIZE];
  std::memset(old, 0xee, sizeof old);
  std::memset(src, 0x5c, sizeof src);
  src[0] = 1;
  src[4095] = 2;
  for (const std::uint8_t* from : {static_cast<const std::uint8_t*>(src), static_cast<const std::uint8_t*>(nullptr)}) {
    PageRef stale = PageRef::unhashed_copy(old).release_value();
    stale.reset();  // its frame goes back with 0xee in it; the next allocation here reuses it
    PageRef p = PageRef::unhashed_frame(from).release_value();
    p.unhashed_fill(from);
    EXPECT_TRUE(p.unhashed());
    EXPECT_EQ(p.hash(), Hash32{});
    EXPECT_EQ(p.ref_count(), 1u);
    if (from != nullptr) {
      EXPECT_EQ(std::memcmp(p.bytes(), src, PAGE_SIZE), 0);
    } else {
      EXPECT_TRUE(mem::page_is_zero(p.bytes()));
    }
  }
}

// Rules 3.5 / 3.6 decide Empty with mem::page_is_zero: any one non-zero bit anywhere in
// the 4096 bytes, at any alignment of the page, makes it non-zero.
TEST(Rule3_5, PageIsZeroSeesEveryByte) {
  std::vector<std::uint8_t> buf(PAGE_SIZE + 8, 0);
  for (std::size_t shift : {0, 1, 7}) {
    std::uint8_t* page = buf.data() + shift;
    EXPECT_TRUE(mem::page_is_zero(page));
    for (std::size_t i = 0; i < PAGE_SIZE; ++i) {
      page[i] = static_cast<std::uint8_t>(1u << (i % 8));
      ASSERT_FALSE(mem::page_is_zero(page)) << "byte " << i << " shift " << shift;
      page[i] = 0;
    }
    buf[shift + PAGE_SIZE] = 0xff;  // past the page: not part of it
    EXPECT_TRUE(mem::page_is_zero(page));
    buf[shift + PAGE_SIZE] = 0;
  }
}

TEST(Rule1_4, CountLivesInTheDescriptor) {
  const auto before = hostsim::quiescent_frame_stats().in_use;
  PageRef a = PageRef::unhashed_copy(nullptr).release_value();
  FrameDesc* d = a.desc();
  EXPECT_EQ(d->refs.load(), 1u);
  {
    PageRef b = a;
    Slot s = Slot::loaded(a);
    Slot t = s;
    EXPECT_EQ(d->refs.load(), 4u);
    EXPECT_EQ(b.desc(), d);
  }
  EXPECT_EQ(d->refs.load(), 1u);
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before + 1);
  a.reset();
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before) << "the last reference returns the frame";
}

using Rule1_4Death = ::testing::Test;

TEST(Rule1_4Death, ReleaseBelowZeroTraps) {
  EXPECT_DEATH(
      {
        FrameDesc* d = frames().alloc(FrameKind::Page);
        d->refs.store(0);
        frames().unref(d);
      },
      "below zero");
}

TEST(Rule1_4Death, OverflowTraps) {
  EXPECT_DEATH(
      {
        PageRef p = PageRef::unhashed_copy(nullptr).release_value();
        p.desc()->refs.store(FrameAllocator::kMaxRefs);
        PageRef q = p;
      },
      "overflow");
}

TEST(Rule1_4Death, DoubleAdoptTraps) {
  EXPECT_DEATH(
      {
        FrameDesc* d = frames().alloc(FrameKind::Page);
        PageRef a = PageRef::adopt(d);
        PageRef b = PageRef::adopt(d);
      },
      "adopt");
}

TEST(Rule1_4Death, UseAfterFreeIsDetectedByPoison) {
  EXPECT_DEATH(
      {
        PageRef p = PageRef::unhashed_copy(nullptr).release_value();
        std::uint8_t* bytes = p.mutable_bytes();
        p.reset();
        bytes[17] = 1;                                                // write after free
        PageRef q = PageRef::unhashed_copy(nullptr).release_value();  // LIFO: the same frame
      },
      "after free");
}

TEST(Rule1_4Death, SlotOfAFreedFrameTraps) {
  EXPECT_DEATH(
      {
        PageRef p = PageRef::unhashed_copy(nullptr).release_value();
        FrameDesc* d = p.desc();
        p.reset();
        PageRef again = PageRef::ref_existing(d);
      },
      "not live");
}
