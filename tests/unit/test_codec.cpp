// Cap wire format (section 5) and its decoder's rejections (rules 2.5, 5.2).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/mem.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;
using capmem::testutil::hex;
using capmem::testutil::slurp;
using capmem::testutil::vectors_dir;

namespace {

std::vector<std::uint8_t> encode(const DataCap& c) {
  std::vector<std::uint8_t> out(c.encoded_size().value());
  EXPECT_TRUE(c.encode(out.data(), out.size()).ok());
  return out;
}

// Hand-built encodings, independent of the encoder.
void put32(std::vector<std::uint8_t>& v, std::uint32_t x) {
  for (int i = 0; i < 4; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}
void put64(std::vector<std::uint8_t>& v, std::uint64_t x) {
  for (int i = 0; i < 8; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}
std::vector<std::uint8_t> empty_slot() { return {0}; }
std::vector<std::uint8_t> missing_slot(std::uint8_t fill) {
  std::vector<std::uint8_t> v{2};
  v.insert(v.end(), 32, fill);
  return v;
}
std::vector<std::uint8_t> loaded_slot(std::uint8_t fill, bool forge = false) {
  std::vector<std::uint8_t> page(PAGE_SIZE, fill);
  Hash32 h = hash::page_content_hash(page.data());
  if (forge) h.b[5] ^= 1;
  std::vector<std::uint8_t> v{1};
  v.insert(v.end(), h.b.begin(), h.b.end());
  put32(v, 36);
  v.insert(v.end(), page.begin(), page.end());
  return v;
}
std::vector<std::uint8_t> cap_wire(std::uint64_t size, const std::vector<std::vector<std::uint8_t>>& slots) {
  std::vector<std::uint8_t> v;
  put64(v, size);
  put32(v, 12);
  std::uint32_t off = static_cast<std::uint32_t>(4 * slots.size());
  for (const auto& s : slots) {
    put32(v, off);
    off += static_cast<std::uint32_t>(s.size());
  }
  for (const auto& s : slots) v.insert(v.end(), s.begin(), s.end());
  return v;
}
void set32(std::vector<std::uint8_t>& v, std::size_t at, std::uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = static_cast<std::uint8_t>(x >> (8 * i));
}

void expect_reject(const std::vector<std::uint8_t>& in, Status want, std::uint64_t at) {
  const auto before = hostsim::quiescent_frame_stats().in_use;
  DecodeError err{};
  auto r = DataCap::decode(in.data(), in.size(), &err);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), want) << status_name(r.status());
  EXPECT_EQ(err.status, want);
  EXPECT_EQ(err.offset, at) << status_name(want);
  EXPECT_STRNE(status_rule(want), "");
  EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before) << "a rejected decode leaks nothing";
}

// Rules 2.3, 2.5 and 5.3 on an accepted cap, checked from the cap alone: every Loaded page
// sits in an aligned frame, is not all zero, and its hash is the rule 1.2 hash of the bytes in
// its frame (computed here with hash::page_content_hash); the cap's root is the root that
// from_bytes (which hashes on its own) gives for the cap's own bytes and size.
::testing::AssertionResult consistent(const DataCap& c) {
  const std::uint32_t n = c.extent();
  for (std::uint32_t i = 0; i < n; ++i) {
    const SlotView v = c.effective(i);
    if (v.kind == SlotKind::Missing) return ::testing::AssertionFailure() << "page " << i << " is Missing";
    if (v.kind != SlotKind::Loaded) continue;
    const auto* bytes = static_cast<const std::uint8_t*>(v.frame->virt());
    if (reinterpret_cast<std::uintptr_t>(bytes) % PAGE_SIZE != 0)
      return ::testing::AssertionFailure() << "page " << i << " not in an aligned frame";
    if (mem::page_is_zero(bytes)) return ::testing::AssertionFailure() << "page " << i << " is a zero Loaded page";
    if (!(hash::page_content_hash(bytes) == *v.hash))
      return ::testing::AssertionFailure() << "page " << i << ": hash is not the hash of its bytes";
  }
  std::vector<std::uint8_t> bytes(std::size_t{n} * PAGE_SIZE);
  if (!c.read(0, bytes.data(), bytes.size()).ok()) return ::testing::AssertionFailure() << "read failed";
  auto fb = DataCap::from_bytes(bytes.data(), bytes.size(), c.size());
  if (!fb.ok() || fb->size() != c.size()) return ::testing::AssertionFailure() << "from_bytes of its bytes failed";
  if (!(fb->root().value() == c.root().value()))
    return ::testing::AssertionFailure() << "root is not the root of its own bytes";
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(Rule5_1, VectorsEncodeByteForByte) {
  const std::string dir = vectors_dir();
  ASSERT_FALSE(dir.empty());
  std::ifstream roots(dir + "/ROOTS");
  std::string want, name;
  int n = 0;
  while (roots >> want >> name) {
    const auto bin = slurp(dir + "/" + name);
    const auto ssz = slurp(dir + "/" + name.substr(0, name.size() - 4) + ".ssz");
    ASSERT_FALSE(ssz.empty()) << name;
    auto c = DataCap::from_bytes(bin.data(), bin.size()).release_value();
    EXPECT_EQ(c.encoded_size().value(), ssz.size()) << name;
    EXPECT_EQ(encode(c), ssz) << name;
    auto d = DataCap::decode(ssz.data(), ssz.size());
    ASSERT_TRUE(d.ok()) << name << ": " << status_name(d.status());
    EXPECT_EQ(hex(d->root().value()), want) << name;
    ++n;
  }
  EXPECT_GE(n, 6);
}

TEST(Rule5_1, AllZeroCapIsTwelveBytes) {
  auto c = DataCap::create(7 * PAGE_SIZE).release_value();
  const auto w = encode(c);
  std::vector<std::uint8_t> want;
  put64(want, 7 * PAGE_SIZE);
  put32(want, 12);
  EXPECT_EQ(w, want);
}

TEST(Rule5_1, HandBuiltEncodingMatchesEncoder) {
  std::vector<std::uint8_t> bytes(4 * PAGE_SIZE, 0);
  std::memset(bytes.data(), 0x11, PAGE_SIZE);
  std::memset(bytes.data() + 2 * PAGE_SIZE, 0x22, PAGE_SIZE);
  auto c = DataCap::from_bytes(bytes.data(), bytes.size(), 6 * PAGE_SIZE).release_value();
  EXPECT_EQ(encode(c), cap_wire(6 * PAGE_SIZE, {loaded_slot(0x11), empty_slot(), loaded_slot(0x22)}));
}

TEST(Rule5_1, EncodeNeedsFlushedCapWithoutMissing) {
  auto c = DataCap::create(2 * PAGE_SIZE).release_value();
  std::uint8_t b[PAGE_SIZE];
  std::memset(b, 1, sizeof b);
  ASSERT_TRUE(c.write_page(0, PageRef::unhashed_copy(b).release_value()).ok());
  EXPECT_EQ(c.encoded_size().status(), Status::OverlayNotEmpty);
  std::vector<std::uint8_t> out(10000);
  EXPECT_EQ(c.encode(out.data(), out.size()).status(), Status::OverlayNotEmpty);
  ASSERT_TRUE(c.flush().ok());
  EXPECT_EQ(c.encode(out.data(), 100).status(), Status::InvalidArgument);  // buffer too small
  // A Missing slot in a backing (placed from a cap whose overlay holds one) cannot go on the wire.
  auto m = DataCap::create(PAGE_SIZE).release_value();
  ASSERT_TRUE(m.write_slot(0, Slot::missing(Hash32{{1}}).release_value()).ok());
  ASSERT_TRUE(c.place_shared(m, PAGE_SIZE).ok());
  EXPECT_EQ(c.encoded_size().status(), Status::MissingPage);
}

TEST(Rule5_1, StreamingSinkSeesChunksAndCanAbort) {
  std::vector<std::uint8_t> bytes(9 * PAGE_SIZE, 0x5c);
  auto c = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  struct Ctx {
    std::vector<std::uint8_t> out;
    int calls = 0;
    int fail_at = -1;
  } ctx;
  auto sink = [](void* p, const std::uint8_t* d, std::size_t n) {
    auto* x = static_cast<Ctx*>(p);
    if (x->calls++ == x->fail_at) return Status::InvalidArgument;
    x->out.insert(x->out.end(), d, d + n);
    return Status::Ok;
  };
  ASSERT_TRUE(c.encode(+sink, &ctx).ok());
  EXPECT_EQ(ctx.out, encode(c));
  EXPECT_GT(ctx.calls, 2);
  Ctx failing;
  failing.fail_at = 2;
  EXPECT_EQ(c.encode(+sink, &failing).status(), Status::InvalidArgument);
}

TEST(Rule5_2, RandomCapsRoundTrip) {
  std::mt19937 rng(99);
  for (int round = 0; round < 20; ++round) {
    const std::uint32_t pages = 1 + rng() % 200;
    std::vector<std::uint8_t> bytes(std::size_t{pages} * PAGE_SIZE, 0);
    for (std::uint32_t p = 0; p < pages; ++p)
      if (rng() % 3 != 0)
        for (std::size_t i = 0; i < PAGE_SIZE; i += 97)
          bytes[std::size_t{p} * PAGE_SIZE + i] = static_cast<std::uint8_t>(rng());
    auto c =
        DataCap::from_bytes(bytes.data(), bytes.size(), std::uint64_t{pages + rng() % 5} * PAGE_SIZE).release_value();
    const auto w = encode(c);
    auto d = DataCap::decode(w.data(), w.size());
    ASSERT_TRUE(d.ok()) << status_name(d.status());
    EXPECT_EQ(d->root().value(), c.root().value());
    EXPECT_EQ(d->size(), c.size());
    EXPECT_EQ(encode(d.value()), w);
  }
}

TEST(Rule5_2, DecodeSweepLeavesNothingBehind) {
  std::vector<std::uint8_t> bytes(40 * PAGE_SIZE, 0);
  for (std::size_t i = 0; i < bytes.size(); i += 61) bytes[i] = static_cast<std::uint8_t>(i);
  std::memset(bytes.data() + 5 * PAGE_SIZE, 0, 2 * PAGE_SIZE);
  auto c = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const auto w = encode(c);
  for (std::uint64_t n = 1;; ++n) {
    const auto before = hostsim::quiescent_frame_stats().in_use;
    frames().inject_failure_at(n);
    DecodeError err{};
    auto d = DataCap::decode(w.data(), w.size(), &err);
    frames().inject_failure_at(0);
    if (d.ok()) {
      EXPECT_EQ(d->root().value(), c.root().value());
      break;
    }
    EXPECT_EQ(d.status(), Status::OutOfFrames);
    EXPECT_EQ(err.status, Status::OutOfFrames);
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
    ASSERT_LT(n, 1000u);
  }
}

// --- Every rejection class, with a hand-made input --------------------------------------------

TEST(Rule5_2, RejectsBadContainer) {
  expect_reject({}, Status::DecodeEmptyBuffer, 0);
  expect_reject({1, 2, 3, 4, 5}, Status::DecodeMissingBytes, 5);
  expect_reject(cap_wire(100, {}), Status::DecodeBadSize, 0);
  expect_reject(cap_wire(0, {}), Status::DecodeBadSize, 0);  // 3.6 makes at least one page
  expect_reject(cap_wire(0, {loaded_slot(1)}), Status::DecodeBadSize, 0);
  expect_reject(cap_wire(kMaxCapSize + PAGE_SIZE, {}), Status::DecodeBadSize, 0);
  auto w = cap_wire(PAGE_SIZE, {loaded_slot(1)});
  set32(w, 8, 16);
  expect_reject(w, Status::DecodeBadFirstOffset, 8);
  expect_reject(cap_wire(PAGE_SIZE, {loaded_slot(1), loaded_slot(2)}), Status::DecodeTooManySlots, 12);
  EXPECT_TRUE(DataCap::decode(cap_wire(kMaxCapSize, {}).data(), 12).ok());  // 4 GiB exactly is fine
}

TEST(Rule5_2, RejectsBadOffsetTable) {
  auto base = cap_wire(4 * PAGE_SIZE, {loaded_slot(1), missing_slot(3), loaded_slot(2)});
  auto w = base;
  set32(w, 12, 6);  // first offset not a multiple of 4
  expect_reject(w, Status::DecodeBadOffsetTable, 12);
  w = base;
  set32(w, 12, 0x100000);  // out of bounds
  expect_reject(w, Status::DecodeBadOffsetTable, 12);
  w = base;
  set32(w, 16, 5);  // decreasing
  expect_reject(w, Status::DecodeBadOffsetTable, 16);
  w = base;
  set32(w, 20, static_cast<std::uint32_t>(w.size()));  // past the end
  expect_reject(w, Status::DecodeBadOffsetTable, 20);
  w = cap_wire(PAGE_SIZE, {});
  w.push_back(4);
  w.push_back(0);
  expect_reject(w, Status::DecodeBadListLength, 12);
}

TEST(Rule5_2, RejectsNonCanonicalSlots) {
  expect_reject(cap_wire(3 * PAGE_SIZE, {loaded_slot(1), empty_slot()}), Status::DecodeTrailingEmpty, 12 + 8 + 4133);
  expect_reject(cap_wire(3 * PAGE_SIZE, {empty_slot(), loaded_slot(0)}), Status::DecodeZeroLoaded, 12 + 8 + 1 + 37);
  expect_reject(cap_wire(3 * PAGE_SIZE, {missing_slot(7), loaded_slot(1)}), Status::DecodeMissingSlot, 12 + 8);
  expect_reject(cap_wire(3 * PAGE_SIZE, {empty_slot()}), Status::DecodeTrailingEmpty, 12 + 4);
}

TEST(Rule5_2, RejectsBadSlotsInsideACap) {
  const std::uint64_t s0 = 12 + 8;  // the first slot of a two-slot list
  auto forged = cap_wire(2 * PAGE_SIZE, {loaded_slot(1), loaded_slot(2, true)});
  expect_reject(forged, Status::DecodeForgedHash, s0 + 4133 + 1);
  expect_reject(cap_wire(2 * PAGE_SIZE, {{9}, loaded_slot(1)}), Status::DecodeUnknownSelector, s0);
  expect_reject(cap_wire(2 * PAGE_SIZE, {{0, 0}, loaded_slot(1)}), Status::DecodeTrailingBytes, s0 + 1);
  expect_reject(cap_wire(2 * PAGE_SIZE, {{}, loaded_slot(1)}), Status::DecodeEmptyBuffer, s0);
  auto bad_off = loaded_slot(1);
  bad_off[33] = 40;
  expect_reject(cap_wire(2 * PAGE_SIZE, {bad_off, loaded_slot(2)}), Status::DecodeBadPageOffset, s0 + 33);
  auto short_page = loaded_slot(1);
  short_page.pop_back();
  expect_reject(cap_wire(2 * PAGE_SIZE, {short_page, loaded_slot(2)}), Status::DecodeBadPayloadLength, s0 + 37);
  expect_reject(cap_wire(2 * PAGE_SIZE, {{1, 2, 3}, loaded_slot(2)}), Status::DecodeMissingBytes, s0 + 3);
  // A forged hash after many good pages: the partial tree and pages are all released.
  std::vector<std::vector<std::uint8_t>> many;
  for (int i = 1; i <= 40; ++i) many.push_back(loaded_slot(static_cast<std::uint8_t>(i), i == 37));
  expect_reject(cap_wire(40 * PAGE_SIZE, many), Status::DecodeForgedHash, 12 + 4 * 40 + 36 * 4133 + 1);
}

// --- Rule 5.3: the input changes while it is decoded --------------------------------------------

// A second thread keeps changing bytes of a plain buffer (page bytes, claimed hashes,
// offsets: one at a time, flipped and then restored) while this thread decodes it again and
// again. Whatever the timing, an accepted cap is consistent (rules 2.3, 2.5). This test
// races on purpose: ThreadSanitizer runs exclude it with --gtest_filter=-*RacyInput*.
TEST(Rule5_3RacyInput, WriterRacingTheDecoderNeverGetsAnInconsistentCapAccepted) {
  constexpr std::uint32_t kPages = 16;
  std::vector<std::uint8_t> bytes(kPages * PAGE_SIZE);
  std::mt19937 rng(53);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  auto c = DataCap::from_bytes(bytes.data(), bytes.size(), 20 * PAGE_SIZE).release_value();
  std::vector<std::uint8_t> wire = encode(c);
  const std::uint64_t list = 12 + 4 * kPages;  // the first slot
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::mt19937 wrng(5);
    volatile std::uint8_t* buf = wire.data();
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint32_t slot = wrng() % kPages;
      const std::uint64_t at = list + std::uint64_t{slot} * codec::kLoadedLen;
      std::uint64_t pos = 0;
      switch (wrng() % 4) {
        case 0: pos = 16 + 4 * (wrng() % (kPages - 1)); break;                // an offset's low byte
        case 1: pos = at + 1 + wrng() % 32; break;                            // a claimed hash
        default: pos = at + codec::kSlotHeadMax + wrng() % PAGE_SIZE; break;  // page bytes
      }
      const std::uint8_t old = buf[pos];
      buf[pos] = static_cast<std::uint8_t>(old ^ (1 + wrng() % 255));
      for (unsigned spin = wrng() % 2000; spin != 0; --spin) (void)buf[pos];
      buf[pos] = old;
      for (unsigned spin = wrng() % 8000; spin != 0; --spin) (void)buf[0];
    }
  });
  int accepted = 0;
  int inconsistent = 0;
  for (int round = 0; round < 3000 && inconsistent < 5; ++round) {
    const auto before = hostsim::quiescent_frame_stats().in_use;
    {
      auto d = DataCap::decode(wire.data(), wire.size());
      if (d.ok()) {
        ++accepted;
        const auto r = consistent(d.value());
        EXPECT_TRUE(r) << "round " << round;
        if (!r) ++inconsistent;
      }
    }
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
  }
  stop.store(true);
  writer.join();
  EXPECT_GT(accepted, 0) << "the writer left the decoder no chance to accept";
}

namespace {

// A decoder input (ByteSource) that answers the first read of each byte from `first` and
// every later read of it from `later`, and counts the reads of every byte. Tests build
// `later` to be as hostile as possible: page bytes and hashes flipped, offsets moved to
// another slot or past the end after the decoder checked them.
struct TwoFacedSource {
  std::vector<std::uint8_t> first;
  std::vector<std::uint8_t> later;
  mutable std::vector<unsigned> reads;
  // Frames in use when each read was asked, against the bytes read before it (item: nothing
  // sized from a claim before the bytes backing it were read).
  mutable std::uint64_t frames_before = 0;
  mutable std::uint64_t bytes_read = 0;
  mutable std::int64_t worst_excess = -1000000;

  static void copy_in(const void* ctx, std::uint64_t off, std::uint8_t* out, std::size_t n) {
    const auto* s = static_cast<const TwoFacedSource*>(ctx);
    EXPECT_LE(off + n, s->first.size()) << "a read past the input";
    const auto held = static_cast<std::int64_t>(hostsim::quiescent_frame_stats().in_use - s->frames_before);
    const auto allowed = static_cast<std::int64_t>(8 + 2 * (s->bytes_read / PAGE_SIZE));
    if (held - allowed > s->worst_excess) s->worst_excess = held - allowed;
    for (std::size_t i = 0; i < n && off + i < s->first.size(); ++i)
      out[i] = s->reads[off + i]++ == 0 ? s->first[off + i] : s->later[off + i];
    s->bytes_read += n;
  }
  explicit TwoFacedSource(std::vector<std::uint8_t> w) : first(w), later(std::move(w)), reads(first.size(), 0) {}
  [[nodiscard]] ByteSource source() const {
    frames_before = hostsim::quiescent_frame_stats().in_use;
    return ByteSource{.copy_in = copy_in, .ctx = this, .len = first.size()};
  }
  [[nodiscard]] unsigned max_reads() const {
    unsigned m = 0;
    for (unsigned r : reads) m = r > m ? r : m;
    return m;
  }
};

}  // namespace

// Rule 5.3, deterministic: each later read of a byte answers differently (page bytes and
// claimed hashes flipped, every offset moved to the previous slot's start or past the end).
// The decoder reads every byte once, so it decodes exactly the first answers: the cap of the
// original encoding, consistent (2.3, 2.5) and with the root of its own bytes.
TEST(Rule5_3, EveryByteIsReadOnceWhateverLaterReadsWouldAnswer) {
  std::vector<std::uint8_t> bytes(40 * PAGE_SIZE, 0);
  std::mt19937 rng(530);
  for (std::size_t p = 0; p < 40; ++p)
    if (p % 7 != 3)
      for (std::size_t i = 0; i < PAGE_SIZE; i += 1 + rng() % 64)
        bytes[p * PAGE_SIZE + i] = static_cast<std::uint8_t>(rng());
  auto c = DataCap::from_bytes(bytes.data(), bytes.size(), 64 * PAGE_SIZE).release_value();
  const auto w = encode(c);
  const std::uint32_t count = codec::get_u32(w.data() + 12) / 4;
  // Variants: 0 offsets moved to the previous slot, 1 offsets moved past the end, 2 slot
  // bytes complemented, 3 offsets kept and only page bytes flipped (a two-pass decoder
  // accepts that one with hashes of bytes its frames do not hold).
  for (int variant = 0; variant < 4; ++variant) {
    TwoFacedSource src(w);
    for (std::size_t i = 12 + 4 * count; i < w.size(); ++i) src.later[i] ^= variant == 2 ? 0xff : 0x5a;
    for (std::uint32_t i = 1; i < count && variant != 3; ++i) {
      const std::uint32_t mine = codec::get_u32(w.data() + 12 + 4 * i);
      const std::uint32_t prev = codec::get_u32(w.data() + 12 + 4 * (i - 1));
      codec::put_u32(src.later.data() + 12 + 4 * i, variant == 1 ? mine + 0x10000 : prev);
    }
    if (variant == 3)  // selectors, hashes and page offsets as first answered
      for (std::uint32_t i = 0; i < count; ++i) {
        const std::uint32_t at = 12 + codec::get_u32(w.data() + 12 + 4 * i);
        for (std::uint32_t j = at; j < at + codec::kSlotHeadMax && j < w.size(); ++j) src.later[j] = w[j];
      }
    const auto before = hostsim::quiescent_frame_stats().in_use;
    {
      DecodeError err{};
      auto d = DataCap::decode(src.source(), &err);
      EXPECT_EQ(src.max_reads(), 1u) << "variant " << variant << ": a byte was read twice";
      if (!d.ok()) {
        ADD_FAILURE() << "variant " << variant << ": " << status_name(d.status()) << " at " << err.offset;
        continue;
      }
      EXPECT_TRUE(consistent(d.value())) << "variant " << variant;
      EXPECT_EQ(d->root().value(), c.root().value()) << "variant " << variant;
      EXPECT_LE(src.worst_excess, 0) << "frames held beyond what the bytes read so far back";
    }
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
  }
  // The same for a lone slot.
  const auto sw = loaded_slot(0x3c);
  TwoFacedSource s(sw);
  for (auto& b : s.later) b ^= 0x81;
  auto slot = codec::slot_decode(s.source());
  ASSERT_TRUE(slot.ok()) << status_name(slot.status());
  EXPECT_EQ(s.max_reads(), 1u);
  EXPECT_EQ(hash::page_content_hash(static_cast<const std::uint8_t*>(slot->frame()->virt())), slot->root());
  EXPECT_EQ(std::memcmp(slot->frame()->virt(), sw.data() + 37, PAGE_SIZE), 0);
}

// Rule 5.3: nothing is sized from a claim. A 12-byte header claiming 4 GiB, and offset
// tables claiming up to 2^20 slots over inputs that hold a few, allocate no more than
// the bytes read so far back (TwoFacedSource samples frames in use at every read).
TEST(Rule5_3, AllocationFollowsTheBytesReadNotTheClaims) {
  {
    TwoFacedSource src(cap_wire(kMaxCapSize, {}));
    auto d = DataCap::decode(src.source());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->size(), kMaxCapSize);
    EXPECT_LE(src.worst_excess, 0);
    EXPECT_LE(hostsim::quiescent_frame_stats().in_use - src.frames_before, 1u)
        << "a 4 GiB claim costs at most the backing's slab frame";
  }
  {
    // 2^20 slots claimed by the first offset, 3 pages present.
    auto w = cap_wire(kMaxCapSize, {loaded_slot(1), loaded_slot(2), loaded_slot(3)});
    set32(w, 12, 4u << 20);
    TwoFacedSource src(w);
    EXPECT_EQ(DataCap::decode(src.source()).status(), Status::DecodeBadOffsetTable);
    EXPECT_LE(src.worst_excess, 0);
  }
  {
    // 300 pages, the last offset out of bounds: every page before it was read and held.
    std::vector<std::vector<std::uint8_t>> many;
    for (int i = 0; i < 300; ++i) many.push_back(loaded_slot(static_cast<std::uint8_t>(1 + i % 250)));
    auto w = cap_wire(kMaxCapSize, many);
    set32(w, 12 + 4 * 299, static_cast<std::uint32_t>(w.size()));
    TwoFacedSource src(w);
    const auto before = hostsim::quiescent_frame_stats().in_use;
    EXPECT_EQ(DataCap::decode(src.source()).status(), Status::DecodeBadOffsetTable);
    EXPECT_LE(src.worst_excess, 0);
    EXPECT_EQ(hostsim::quiescent_frame_stats().in_use, before);
  }
}

// Rule 3.6 with bytes that change while from_bytes reads them: a second thread keeps
// flipping the last byte of every page between 0 and 1 (each page all zero or not, only
// that byte differing). The cap built is consistent: no Loaded page of all zero bytes, every
// hash the hash of its frame, the root of its own bytes. Races on purpose (see above).
TEST(Rule5_3RacyInput, FromBytesOfAChangingBufferBuildsAConsistentCap) {
  constexpr std::size_t kPages = 32;
  std::vector<std::uint8_t> bytes(kPages * PAGE_SIZE, 0);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    volatile std::uint8_t* buf = bytes.data();
    for (std::uint8_t v = 1; !stop.load(std::memory_order_relaxed); v ^= 1)
      for (std::size_t p = 0; p < kPages; ++p) buf[p * PAGE_SIZE + PAGE_SIZE - 1] = v;
  });
  int bad = 0;
  for (int round = 0; round < 2000 && bad < 5; ++round) {
    auto c = DataCap::from_bytes(bytes.data(), bytes.size());
    ASSERT_TRUE(c.ok());
    const auto r = consistent(c.value());
    EXPECT_TRUE(r) << "round " << round;
    if (!r) ++bad;
  }
  stop.store(true);
  writer.join();
}

// --- codec::decode_pages: DataCap::decode's checks, the pages streamed out -------------------

namespace {

struct Seen {
  std::vector<std::uint32_t> pages;
  std::vector<std::vector<std::uint8_t>> bytes;
  std::vector<Hash32> hashes;
  std::uint32_t stop_at = UINT32_MAX;  // answer InvalidArgument for this page
};

Status collect(void* ctx, std::uint32_t page, const std::uint8_t* bytes, const Hash32& hash) {
  auto* s = static_cast<Seen*>(ctx);
  if (page == s->stop_at) return Status::InvalidArgument;
  s->pages.push_back(page);
  s->bytes.emplace_back(bytes, bytes + PAGE_SIZE);
  s->hashes.push_back(hash);
  return Status::Ok;
}

}  // namespace

TEST(DecodePages, HandsEveryLoadedPageOfRandomCapsInOrderWithItsHash) {
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    const std::uint32_t pages = 1 + rng() % 100;
    std::vector<std::uint8_t> bytes(std::size_t{pages} * PAGE_SIZE, 0);
    for (std::uint32_t p = 0; p < pages; ++p)
      if (rng() % 3 != 0)
        bytes[std::size_t{p} * PAGE_SIZE + rng() % PAGE_SIZE] = static_cast<std::uint8_t>(1 + rng() % 255);
    auto c =
        DataCap::from_bytes(bytes.data(), bytes.size(), std::uint64_t{pages + rng() % 5} * PAGE_SIZE).release_value();
    const auto w = encode(c);
    const auto before = frames().stats().in_use;
    Seen s;
    std::uint64_t size = 0;
    ASSERT_EQ(codec::decode_pages(ByteSource::memory(w.data(), w.size()), collect, &s, &size), Status::Ok);
    EXPECT_EQ(frames().stats().in_use, before) << "no frame outlives its call";
    EXPECT_EQ(size, c.size());
    std::size_t k = 0;
    for (std::uint32_t p = 0; p < c.page_count(); ++p) {
      const SlotView v = c.effective(p);
      if (v.kind != SlotKind::Loaded) continue;
      ASSERT_LT(k, s.pages.size());
      EXPECT_EQ(s.pages[k], p);
      EXPECT_EQ(0, std::memcmp(s.bytes[k].data(), bytes.data() + std::size_t{p} * PAGE_SIZE, PAGE_SIZE));
      EXPECT_EQ(s.hashes[k], *v.hash);
      EXPECT_EQ(s.hashes[k], hash::page_content_hash(s.bytes[k].data()));
      ++k;
    }
    EXPECT_EQ(k, s.pages.size()) << "only Loaded pages are handed out";
  }
}

// Every one-byte change and every truncation of an encoding: decode_pages answers exactly
// what DataCap::decode answers (status and offset), and leaks nothing.
TEST(DecodePages, SameStatusAndOffsetAsDecodeForEveryDamagedInput) {
  std::vector<std::uint8_t> bytes(4 * PAGE_SIZE, 0);
  bytes[5] = 1;
  bytes[2 * PAGE_SIZE + 99] = 2;
  bytes[3 * PAGE_SIZE + 4095] = 3;
  const auto w = encode(DataCap::from_bytes(bytes.data(), bytes.size(), 6 * PAGE_SIZE).release_value());
  auto same = [](const std::vector<std::uint8_t>& in, const char* what, std::size_t at) {
    const auto before = frames().stats().in_use;
    DecodeError want{Status::Ok, 0}, got{Status::Ok, 0};
    const Status ws = DataCap::decode(in.data(), in.size(), &want).status();
    Seen s;
    std::uint64_t size = 0;
    const Status gs = codec::decode_pages(ByteSource::memory(in.data(), in.size()), collect, &s, &size, &got);
    EXPECT_EQ(gs, ws) << what << " at " << at << ": " << status_name(gs) << " vs " << status_name(ws);
    if (ws != Status::Ok) {
      EXPECT_EQ(got.status, want.status) << what << " at " << at;
      EXPECT_EQ(got.offset, want.offset) << what << " at " << at;
    }
    EXPECT_EQ(frames().stats().in_use, before) << what << " at " << at;
  };
  for (std::size_t i = 0; i < w.size(); ++i) {
    auto v = w;
    v[i] ^= 0xff;
    same(v, "flip", i);
  }
  for (std::size_t n = 0; n <= w.size(); ++n) same(std::vector<std::uint8_t>(w.begin(), w.begin() + n), "truncate", n);
}

TEST(DecodePages, TheCallersStatusStopsTheDecodeAtThatSlot) {
  const auto w = cap_wire(3 * PAGE_SIZE, {loaded_slot(1), empty_slot(), loaded_slot(2)});
  const auto before = frames().stats().in_use;
  Seen s;
  s.stop_at = 2;
  std::uint64_t size = 0;
  DecodeError err{};
  EXPECT_EQ(codec::decode_pages(ByteSource::memory(w.data(), w.size()), collect, &s, &size, &err),
            Status::InvalidArgument);
  EXPECT_EQ(err.status, Status::InvalidArgument);
  EXPECT_EQ(err.offset, 12u + 12 + 4133 + 1) << "the slot of page 2";
  EXPECT_EQ(s.pages, std::vector<std::uint32_t>{0});
  EXPECT_EQ(frames().stats().in_use, before);
}

// --- Rule 8.6: thin caps on the wire --------------------------------------------------------------

namespace {

// The rule 1.2 root of the all-zero page, computed here by hashing 4096 zero bytes (the codec
// takes it from hash::zero_hash(7), the depth-7 zero subtree).
Hash32 zero_page_root() {
  const std::vector<std::uint8_t> z(PAGE_SIZE, 0);
  return hash::page_content_hash(z.data());
}

std::vector<std::uint8_t> missing_of(const Hash32& h) {
  std::vector<std::uint8_t> v{2};
  v.insert(v.end(), h.b.begin(), h.b.end());
  return v;
}

// A hand-built slot for page content `fill` travelling thin: Missing(root of the page).
std::vector<std::uint8_t> thin_slot(std::uint8_t fill) {
  const std::vector<std::uint8_t> page(PAGE_SIZE, fill);
  return missing_of(hash::page_content_hash(page.data()));
}

std::vector<std::uint8_t> encode(const DataCap& c, const EncodeOptions& opt) {
  auto n = c.encoded_size(opt);
  EXPECT_TRUE(n.ok()) << status_name(n.status());
  if (!n.ok()) return {};
  std::vector<std::uint8_t> out(n.value());
  const auto r = c.encode(out.data(), out.size(), opt);
  EXPECT_TRUE(r.ok()) << status_name(r.status());
  return out;
}

DataCap decode_thin(const std::vector<std::uint8_t>& w) {
  DecodeError err{};
  auto d = DataCap::decode(w.data(), w.size(), DecodeOptions{.thin = true}, &err);
  EXPECT_TRUE(d.ok()) << status_name(d.status()) << " at " << err.offset;
  if (!d.ok()) std::abort();
  return d.release_value();
}

void expect_reject_thin(const std::vector<std::uint8_t>& in, Status want, std::uint64_t at) {
  const auto before = frames().stats().in_use;
  const auto boxes = Slot::missing_boxes();
  DecodeError err{};
  auto r = DataCap::decode(in.data(), in.size(), DecodeOptions{.thin = true}, &err);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), want) << status_name(r.status());
  EXPECT_EQ(err.status, want);
  EXPECT_EQ(err.offset, at) << status_name(want);
  EXPECT_STRNE(status_rule(want), "");
  EXPECT_EQ(frames().stats().in_use, before) << "a rejected decode leaks nothing";
  EXPECT_EQ(Slot::missing_boxes(), boxes);
}

// Pages 0x11, Empty, 0x22, 0x33, Empty, 0x44 in a cap of 8 pages (two trailing Empty).
DataCap sample_cap() {
  std::vector<std::uint8_t> bytes(6 * PAGE_SIZE, 0);
  const std::uint8_t fills[6] = {0x11, 0, 0x22, 0x33, 0, 0x44};
  for (int p = 0; p < 6; ++p) std::memset(bytes.data() + p * PAGE_SIZE, fills[p], PAGE_SIZE);
  return DataCap::from_bytes(bytes.data(), bytes.size(), 8 * PAGE_SIZE).release_value();
}

}  // namespace

TEST(Rule8_6, ThinEncodingIsMissingOfEachLoadedPageByteForByte) {
  auto c = sample_cap();
  // keep_first = 0: every Loaded page travels as Missing(its root); Empty stays one byte.
  const auto thin = encode(c, EncodeOptions{.thin = true});
  EXPECT_EQ(thin, cap_wire(8 * PAGE_SIZE, {thin_slot(0x11), empty_slot(), thin_slot(0x22), thin_slot(0x33),
                                           empty_slot(), thin_slot(0x44)}));
  EXPECT_EQ(c.encoded_size(EncodeOptions{.thin = true}).value(), thin.size());
  // The default options are the full encoding.
  EXPECT_EQ(encode(c, EncodeOptions{}), encode(c));
  // Streaming through a sink gives the same bytes.
  std::vector<std::uint8_t> streamed;
  auto sink = [](void* p, const std::uint8_t* d, std::size_t n) {
    static_cast<std::vector<std::uint8_t>*>(p)->insert(static_cast<std::vector<std::uint8_t>*>(p)->end(), d, d + n);
    return Status::Ok;
  };
  ASSERT_TRUE(c.encode(+sink, &streamed, EncodeOptions{.thin = true}).ok());
  EXPECT_EQ(streamed, thin);
}

TEST(Rule8_6, KeepFirstKeepsThosePagesWithTheirBytes) {
  auto c = sample_cap();
  // keep_first = 3: pages 0 and 2 keep their bytes (page 1 is Empty either way).
  EXPECT_EQ(encode(c, EncodeOptions{.thin = true, .keep_first = 3}),
            cap_wire(8 * PAGE_SIZE, {loaded_slot(0x11), empty_slot(), loaded_slot(0x22), thin_slot(0x33), empty_slot(),
                                     thin_slot(0x44)}));
  // keep_first = 2 stops at an Empty page: the same as keep_first = 1.
  EXPECT_EQ(encode(c, EncodeOptions{.thin = true, .keep_first = 2}),
            encode(c, EncodeOptions{.thin = true, .keep_first = 1}));
  // keep_first past the extent, at page_count, past page_count and at its maximum: the full encoding.
  for (std::uint32_t n : {6u, 8u, 9u, 0xffffffffu})
    EXPECT_EQ(encode(c, EncodeOptions{.thin = true, .keep_first = n}), encode(c)) << n;
  // keep_first without thin changes nothing.
  EXPECT_EQ(encode(c, EncodeOptions{.keep_first = 1}), encode(c));
}

TEST(Rule8_6, KeepPredicateChoosesPagesAndMustBeStable) {
  auto c = sample_cap();
  auto odd = [](void*, std::uint32_t page) { return page % 2 == 1; };
  // Pages 3 and 5 (odd) and 0 (keep_first) keep their bytes; page 1 (odd) is Empty.
  EXPECT_EQ(encode(c, EncodeOptions{.thin = true, .keep_first = 1, .keep = +odd}),
            cap_wire(8 * PAGE_SIZE, {loaded_slot(0x11), empty_slot(), thin_slot(0x22), loaded_slot(0x33), empty_slot(),
                                     loaded_slot(0x44)}));
  // A predicate whose answers change between the encoder's passes (the sample has 4 Loaded
  // pages: encoded_size asks calls 0-3, the offset table 4-7, the slots 8-11): the offset table
  // would not describe the slots, so the encode fails instead of passing as a good encoding.
  struct Flaky {
    int calls = 0;
    int flip_at = 0;
  };
  auto flaky = [](void* ctx, std::uint32_t) {
    auto* f = static_cast<Flaky*>(ctx);
    return f->calls++ >= f->flip_at;
  };
  auto sink = [](void*, const std::uint8_t*, std::size_t) { return Status::Ok; };
  for (int flip_at : {4, 8}) {  // between size and offsets (harmless), between offsets and slots
    Flaky f{.flip_at = flip_at};
    const auto r = c.encode(+sink, nullptr, EncodeOptions{.thin = true, .keep = +flaky, .keep_ctx = &f});
    EXPECT_EQ(r.status(), flip_at == 4 ? Status::Ok : Status::InvalidArgument) << flip_at;
    EXPECT_EQ(f.calls, 12);
  }
  // Into a buffer (encoded_size is asked once more first): sized for thin, then written full.
  Flaky f{.flip_at = 12};
  std::vector<std::uint8_t> out(c.encoded_size(EncodeOptions{.thin = true}).value());
  EXPECT_EQ(c.encode(out.data(), out.size(), EncodeOptions{.thin = true, .keep = +flaky, .keep_ctx = &f}).status(),
            Status::InvalidArgument);
}

TEST(Rule8_6, ThinAndFullRootsAreEqualAndRoundTrip) {
  std::mt19937 rng(86);
  for (int round = 0; round < 12; ++round) {
    const std::uint32_t pages = 1 + rng() % 90;
    std::vector<std::uint8_t> bytes(std::size_t{pages} * PAGE_SIZE, 0);
    for (std::uint32_t p = 0; p < pages; ++p)
      if (rng() % 3 != 0)
        for (std::size_t i = 0; i < PAGE_SIZE; i += 89)
          bytes[std::size_t{p} * PAGE_SIZE + i] = static_cast<std::uint8_t>(rng());
    auto full =
        DataCap::from_bytes(bytes.data(), bytes.size(), std::uint64_t{pages + rng() % 4} * PAGE_SIZE).release_value();
    const Hash32 root = full.root().value();
    const std::uint32_t keep = rng() % (pages + 2);
    const auto w = encode(full, EncodeOptions{.thin = true, .keep_first = keep});
    auto thin = decode_thin(w);
    EXPECT_EQ(thin.root().value(), root) << "round " << round;  // rule 2.3
    EXPECT_EQ(thin.size(), full.size());
    EXPECT_EQ(thin.extent(), full.extent());
    // Every Loaded page at or past `keep` is Missing(its hash) in the decoded cap; the rest as before.
    for (std::uint32_t i = 0; i < full.extent(); ++i) {
      const SlotView f = full.effective(i);
      const SlotView t = thin.effective(i);
      EXPECT_EQ(*t.hash, *f.hash) << i;
      if (f.kind == SlotKind::Loaded && i >= keep) {
        EXPECT_EQ(t.kind, SlotKind::Missing) << i;
        std::uint8_t b[8];
        EXPECT_EQ(thin.read(std::uint64_t{i} * PAGE_SIZE, b, sizeof b).status(), Status::MissingPage);  // rule 2.1
      } else {
        EXPECT_EQ(t.kind, f.kind) << i;
      }
    }
    // Thin -> thin is byte for byte; thin -> full is refused while pages are Missing (5.2);
    // keeping everything again gives the thin encoding back.
    EXPECT_EQ(encode(thin, EncodeOptions{.thin = true, .keep_first = keep}), w);
    EXPECT_EQ(encode(thin, EncodeOptions{.thin = true}), encode(full, EncodeOptions{.thin = true}));
    bool any_missing = false;
    for (std::uint32_t i = keep; i < full.extent(); ++i) any_missing |= full.effective(i).kind == SlotKind::Loaded;
    if (any_missing) EXPECT_EQ(thin.encoded_size().status(), Status::MissingPage);
    else EXPECT_EQ(encode(thin), encode(full));
    // A full cap's encoding decodes in thin mode to the same cap.
    const auto fw = encode(full);
    EXPECT_EQ(decode_thin(fw).root().value(), root);
    EXPECT_EQ(encode(decode_thin(fw)), fw);
  }
}

TEST(Rule8_6, FullModeStillRejectsMissing) {
  auto c = sample_cap();
  const auto w = encode(c, EncodeOptions{.thin = true, .keep_first = 2});
  // The first Missing slot is page 2's: after the header, six offsets, page 0 (4133) and page 1 (1).
  expect_reject(w, Status::DecodeMissingSlot, 12 + 4 * 6 + codec::kLoadedLen + 1);
  DecodeError err{};
  EXPECT_EQ(DataCap::decode(w.data(), w.size(), DecodeOptions{}, &err).status(), Status::DecodeMissingSlot);
  EXPECT_EQ(DataCap::decode(ByteSource::memory(w.data(), w.size()), DecodeOptions{.thin = false}).status(),
            Status::DecodeMissingSlot);
  EXPECT_TRUE(DataCap::decode(ByteSource::memory(w.data(), w.size()), DecodeOptions{.thin = true}).ok());
}

TEST(Rule8_6, ThinModeRejectsTheTwoUnresolvableHashesAtTheirOffsets) {
  const Hash32 zp = zero_page_root();
  ASSERT_FALSE(zp.is_zero());
  const std::uint64_t s0 = 12 + 4 * 3;  // the first slot of a three-slot list
  // Missing(zero(32)): the root of Empty.
  expect_reject_thin(cap_wire(4 * PAGE_SIZE, {missing_of(Hash32{}), empty_slot(), loaded_slot(1)}),
                     Status::DecodeUnresolvableMissing, s0 + 1);
  // Missing(root of the all-zero page), after a Loaded page and an Empty one.
  expect_reject_thin(cap_wire(4 * PAGE_SIZE, {loaded_slot(1), empty_slot(), missing_of(zp)}),
                     Status::DecodeUnresolvableMissing, s0 + codec::kLoadedLen + 1 + 1);
  // Full mode rejects both as any Missing slot, at the slot.
  expect_reject(cap_wire(4 * PAGE_SIZE, {missing_of(Hash32{}), empty_slot(), loaded_slot(1)}),
                Status::DecodeMissingSlot, s0);
  // One bit off either hash is an ordinary (resolvable) Missing slot.
  Hash32 near_zero{};
  near_zero.b[31] = 1;
  Hash32 near_zp = zp;
  near_zp.b[0] ^= 0x80;
  for (const Hash32& h : {near_zero, near_zp}) {
    auto d = decode_thin(cap_wire(2 * PAGE_SIZE, {missing_of(h)}));
    EXPECT_EQ(d.effective(0).kind, SlotKind::Missing);
    EXPECT_EQ(*d.effective(0).hash, h);
  }
  EXPECT_FALSE(codec::missing_resolvable(Hash32{}));
  EXPECT_FALSE(codec::missing_resolvable(zp));
  EXPECT_TRUE(codec::missing_resolvable(near_zero));
  EXPECT_TRUE(codec::missing_resolvable(near_zp));
}

TEST(Rule8_6, ThinModeKeepsEveryOtherCheckOf5_2) {
  const std::uint64_t s0 = 12 + 8;
  expect_reject_thin(cap_wire(3 * PAGE_SIZE, {thin_slot(1), empty_slot()}), Status::DecodeTrailingEmpty,
                     s0 + codec::kMissingLen);
  expect_reject_thin(cap_wire(3 * PAGE_SIZE, {thin_slot(1), loaded_slot(0)}), Status::DecodeZeroLoaded,
                     s0 + codec::kMissingLen + 37);
  expect_reject_thin(cap_wire(3 * PAGE_SIZE, {thin_slot(1), loaded_slot(2, true)}), Status::DecodeForgedHash,
                     s0 + codec::kMissingLen + 1);
  expect_reject_thin(cap_wire(PAGE_SIZE, {thin_slot(1), thin_slot(2)}), Status::DecodeTooManySlots, 12);
  auto short_missing = thin_slot(1);
  short_missing.pop_back();
  expect_reject_thin(cap_wire(3 * PAGE_SIZE, {short_missing, thin_slot(2)}), Status::DecodeMissingBytes,
                     s0 + codec::kMissingLen - 1);
  expect_reject_thin(cap_wire(0, {thin_slot(1)}), Status::DecodeBadSize, 0);
  // A trailing Missing slot is fine (only trailing Empty slots are not canonical).
  EXPECT_EQ(decode_thin(cap_wire(3 * PAGE_SIZE, {empty_slot(), thin_slot(9)})).extent(), 2u);
}

TEST(Rule8_6, BackingMissingSlotsTravelThinOnly) {
  // A backing that holds Missing slots (placed from a cap whose overlay holds them).
  auto c = sample_cap();
  auto m = DataCap::create(2 * PAGE_SIZE).release_value();
  const std::vector<std::uint8_t> pg(PAGE_SIZE, 0x77);
  const Hash32 h = hash::page_content_hash(pg.data());
  ASSERT_TRUE(m.write_slot(1, Slot::missing(h).release_value()).ok());
  ASSERT_TRUE(c.place_shared(m, 4 * PAGE_SIZE).ok());  // page 4: Empty, page 5: Missing(h)
  EXPECT_EQ(c.encoded_size().status(), Status::MissingPage);
  const auto w = encode(c, EncodeOptions{.thin = true, .keep_first = 8});
  EXPECT_EQ(w, cap_wire(8 * PAGE_SIZE, {loaded_slot(0x11), empty_slot(), loaded_slot(0x22), loaded_slot(0x33),
                                        empty_slot(), missing_of(h)}));
  EXPECT_EQ(decode_thin(w).root().value(), c.root().value());
  // Missing(zero(32)) and Missing(zero page root) in a backing cannot travel: a thin encode
  // refuses them rather than write bytes a thin decode rejects.
  for (const Hash32& bad : {Hash32{}, zero_page_root()}) {
    auto x = sample_cap();
    auto b = DataCap::create(PAGE_SIZE).release_value();
    ASSERT_TRUE(b.write_slot(0, Slot::missing(bad).release_value()).ok());
    ASSERT_TRUE(x.place_shared(b, 0).ok());
    EXPECT_EQ(x.encoded_size(EncodeOptions{.thin = true}).status(), Status::UnresolvableMissing);
    std::vector<std::uint8_t> out(100000);
    EXPECT_EQ(x.encode(out.data(), out.size(), EncodeOptions{.thin = true}).status(), Status::UnresolvableMissing);
    EXPECT_EQ(x.encoded_size().status(), Status::MissingPage);
  }
}

TEST(Rule8_6, ThinDecodeOutOfFramesAtEveryAllocationLeavesNothing) {
  std::vector<std::uint8_t> bytes(40 * PAGE_SIZE, 0);
  for (std::size_t i = 0; i < bytes.size(); i += 53) bytes[i] = static_cast<std::uint8_t>(i | 1);
  auto c = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
  const auto w = encode(c, EncodeOptions{.thin = true, .keep_first = 5});
  int failures = 0;
  for (std::uint64_t n = 1;; ++n) {
    const auto before = frames().stats().in_use;
    const auto boxes = Slot::missing_boxes();
    frames().inject_failure_at(n);
    DecodeError err{};
    auto d = DataCap::decode(w.data(), w.size(), DecodeOptions{.thin = true}, &err);
    frames().inject_failure_at(0);
    if (d.ok()) {
      EXPECT_EQ(d->root().value(), c.root().value());
      break;
    }
    ++failures;
    EXPECT_EQ(d.status(), Status::OutOfFrames);
    EXPECT_EQ(err.status, Status::OutOfFrames);
    EXPECT_LE(err.offset, w.size());
    EXPECT_EQ(frames().stats().in_use, before);
    EXPECT_EQ(Slot::missing_boxes(), boxes);
    ASSERT_LT(n, 1000u);
  }
  EXPECT_GE(failures, 5) << "at least the five kept pages' frames were each refused once";
}

TEST(Rule8_6, ThinDecodeReadsEveryByteOnce) {
  auto c = sample_cap();
  const auto w = encode(c, EncodeOptions{.thin = true, .keep_first = 1});
  TwoFacedSource src(w);
  for (auto& b : src.later) b ^= 0x5a;
  auto d = DataCap::decode(src.source(), DecodeOptions{.thin = true});
  ASSERT_TRUE(d.ok()) << status_name(d.status());
  EXPECT_EQ(src.max_reads(), 1u);
  EXPECT_EQ(d->root().value(), c.root().value());
}

// --- codec::decode_pages_thin: the streaming decode of a thin encoding (the tool's
// `decode --store`, `inspect`) --------------------------------------------------------------

namespace {

struct SeenThin {
  std::vector<std::pair<std::uint32_t, bool>> order;  // (page, Missing?) in the order handed out
  std::vector<Hash32> hashes;
};

Status thin_loaded(void* ctx, std::uint32_t page, const std::uint8_t* bytes, const Hash32& hash) {
  auto* s = static_cast<SeenThin*>(ctx);
  EXPECT_EQ(hash, hash::page_content_hash(bytes)) << page;
  s->order.emplace_back(page, false);
  s->hashes.push_back(hash);
  return Status::Ok;
}
Status thin_missing(void* ctx, std::uint32_t page, const Hash32& hash) {
  auto* s = static_cast<SeenThin*>(ctx);
  s->order.emplace_back(page, true);
  s->hashes.push_back(hash);
  return Status::Ok;
}

}  // namespace

// Loaded and Missing pages reach the caller in page order (the Loaded pages of a verify
// batch are handed out before a later Missing slot), each with its hash, and the statuses
// and offsets are DataCap::decode's thin mode ones.
TEST(DecodePagesThin, HandsLoadedAndMissingPagesInPageOrder) {
  std::mt19937 rng(22);
  for (int round = 0; round < 12; ++round) {
    const std::uint32_t pages = 1 + rng() % 80;
    std::vector<std::uint8_t> bytes(std::size_t{pages} * PAGE_SIZE, 0);
    for (std::uint32_t p = 0; p < pages; ++p)
      if (rng() % 4 != 0) bytes[std::size_t{p} * PAGE_SIZE + rng() % PAGE_SIZE] = static_cast<std::uint8_t>(1 + p);
    auto full = DataCap::from_bytes(bytes.data(), bytes.size()).release_value();
    // Keep a random set of pages (so Loaded and Missing interleave), the first `keep` too.
    std::vector<bool> kept(pages);
    for (std::uint32_t p = 0; p < pages; ++p) kept[p] = rng() % 2 == 0;
    auto keep_fn = [](void* ctx, std::uint32_t page) -> bool { return (*static_cast<std::vector<bool>*>(ctx))[page]; };
    const auto w = encode(
        full,
        EncodeOptions{
            .thin = true, .keep_first = static_cast<std::uint32_t>(rng() % 3), .keep = +keep_fn, .keep_ctx = &kept});
    const auto before = frames().stats().in_use;
    SeenThin s;
    std::uint64_t size = 0;
    ASSERT_EQ(codec::decode_pages_thin(ByteSource::memory(w.data(), w.size()), thin_loaded, thin_missing, &s, &size),
              Status::Ok);
    EXPECT_EQ(frames().stats().in_use, before);
    EXPECT_EQ(size, full.size());
    auto thin = decode_thin(w);
    std::size_t k = 0;
    for (std::uint32_t p = 0; p < thin.page_count(); ++p) {
      const SlotView v = thin.effective(p);
      if (v.kind == SlotKind::Empty) continue;
      ASSERT_LT(k, s.order.size()) << round;
      EXPECT_EQ(s.order[k].first, p) << round << ": page order";
      EXPECT_EQ(s.order[k].second, v.kind == SlotKind::Missing) << round << " page " << p;
      EXPECT_EQ(s.hashes[k], *v.hash);
      ++k;
    }
    EXPECT_EQ(k, s.order.size());
    // Full mode (decode_pages) refuses the same input where it has a Missing slot (5.2).
    Seen full_seen;
    DecodeError fe{}, de{};
    const Status fs = codec::decode_pages(ByteSource::memory(w.data(), w.size()), collect, &full_seen, &size, &fe);
    const Status ds = DataCap::decode(w.data(), w.size(), &de).status();
    EXPECT_EQ(fs, ds);
    if (ds != Status::Ok) {
      EXPECT_EQ(fe.offset, de.offset);
    }
  }
}

// Every one-byte change and truncation of a thin encoding: the same status and offset as
// DataCap::decode in thin mode.
TEST(DecodePagesThin, SameStatusAndOffsetAsThinDecodeForEveryDamagedInput) {
  std::vector<std::uint8_t> bytes(5 * PAGE_SIZE, 0);
  bytes[5] = 1;
  bytes[PAGE_SIZE + 7] = 4;
  bytes[3 * PAGE_SIZE + 99] = 2;
  bytes[4 * PAGE_SIZE + 4095] = 3;
  const auto w = encode(DataCap::from_bytes(bytes.data(), bytes.size()).release_value(),
                        EncodeOptions{.thin = true, .keep_first = 1});
  for (int mode = 0; mode < 2; ++mode) {
    for (std::size_t i = 0; i <= w.size(); ++i) {
      std::vector<std::uint8_t> in(w.begin(), w.begin() + (mode == 0 ? w.size() : i));
      if (mode == 0) {
        if (i == w.size()) break;
        in[i] ^= 0xff;
      }
      DecodeError want{Status::Ok, 0}, got{Status::Ok, 0};
      const Status ws = DataCap::decode(in.data(), in.size(), DecodeOptions{.thin = true}, &want).status();
      SeenThin s;
      std::uint64_t size = 0;
      const Status gs = codec::decode_pages_thin(ByteSource::memory(in.data(), in.size()), thin_loaded, thin_missing,
                                                 &s, &size, &got);
      EXPECT_EQ(gs, ws) << mode << " at " << i << ": " << status_name(gs) << " vs " << status_name(ws);
      if (ws != Status::Ok) {
        EXPECT_EQ(got.offset, want.offset) << mode << " at " << i;
      }
    }
  }
}
