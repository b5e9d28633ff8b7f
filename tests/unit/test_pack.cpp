// Page packs (rule 8.7, include/capmem/pack.h): the layout, each rejection with its byte
// offset, lookups, and the index as a hint only (a lying or changing index never hands out a
// location outside the pack, and the page it hands out fails the hash check).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "capmem/hash.h"
#include "capmem/pack.h"

using namespace capmem;
using namespace capmem::store;

namespace {

struct Page {
  Hash32 root;
  std::vector<std::uint8_t> bytes;
};

// `n` distinct pages with their rule 1.2 roots, sorted by root (the index order).
std::vector<Page> make_pages(std::uint32_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Page> pages(n);
  for (auto& p : pages) {
    p.bytes.resize(PAGE_SIZE);
    for (auto& b : p.bytes) b = static_cast<std::uint8_t>(rng());
    p.root = hash::page_content_hash(p.bytes.data());
  }
  std::sort(pages.begin(), pages.end(),
            [](const Page& a, const Page& b) { return std::memcmp(a.root.b.data(), b.root.b.data(), 32) < 0; });
  return pages;
}

void put32(std::vector<std::uint8_t>& v, std::size_t at, std::uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = static_cast<std::uint8_t>(x >> (8 * i));
}
void put64(std::vector<std::uint8_t>& v, std::size_t at, std::uint64_t x) {
  for (int i = 0; i < 8; ++i) v[at + i] = static_cast<std::uint8_t>(x >> (8 * i));
}

// The pack of `pages`, built here from the layout (independent of pack_write): header, index,
// zero pad to `pages_offset` (default: the end of the index rounded up to 4096), pages.
std::vector<std::uint8_t> hand_pack(const std::vector<Page>& pages, std::uint64_t pages_offset = 0) {
  const std::uint64_t index_end = 24 + 32 * pages.size();
  if (pages_offset == 0) pages_offset = (index_end + 4095) / 4096 * 4096;
  std::vector<std::uint8_t> v(pages_offset + PAGE_SIZE * pages.size(), 0);
  std::memcpy(v.data(), "CAPMPAK1", 8);
  put32(v, 8, static_cast<std::uint32_t>(pages.size()));
  put32(v, 12, 0);
  put64(v, 16, pages_offset);
  for (std::size_t i = 0; i < pages.size(); ++i) {
    std::memcpy(v.data() + 24 + 32 * i, pages[i].root.b.data(), 32);
    std::memcpy(v.data() + pages_offset + PAGE_SIZE * i, pages[i].bytes.data(), PAGE_SIZE);
  }
  return v;
}

std::vector<std::uint8_t> written_pack(const std::vector<Page>& pages) {
  std::vector<PackEntry> entries;
  for (const auto& p : pages) entries.push_back(PackEntry{.root = p.root, .bytes = p.bytes.data()});
  std::vector<std::uint8_t> out;
  auto sink = [](void* ctx, const std::uint8_t* d, std::size_t n) {
    auto* o = static_cast<std::vector<std::uint8_t>*>(ctx);
    o->insert(o->end(), d, d + n);
    return Status::Ok;
  };
  const auto r = pack_write(entries.data(), static_cast<std::uint32_t>(entries.size()), +sink, &out);
  EXPECT_TRUE(r.ok()) << status_name(r.status());
  return out;
}

void expect_reject(const std::vector<std::uint8_t>& in, Status want, std::uint64_t at) {
  DecodeError err{Status::Ok, ~std::uint64_t{0}};
  auto p = Pack::parse(in.data(), in.size(), &err);
  ASSERT_FALSE(p.ok()) << "accepted; wanted " << status_name(want);
  EXPECT_EQ(p.status(), want) << status_name(p.status()) << " at " << err.offset;
  EXPECT_EQ(err.status, want);
  EXPECT_EQ(err.offset, at) << status_name(want);
  EXPECT_STREQ(status_rule(want), "8.7");
}

Hash32 with_byte(Hash32 h, std::size_t i, std::uint8_t v) {
  h.b[i] = v;
  return h;
}

}  // namespace

TEST(Rule8_7Pack, WriterMatchesTheLayoutByteForByte) {
  for (std::uint32_t n : {0u, 1u, 3u, 127u, 128u, 200u}) {
    const auto pages = make_pages(n, n + 1);
    const auto w = written_pack(pages);
    EXPECT_EQ(w, hand_pack(pages)) << n;
    EXPECT_EQ(w.size(), pack_size(n)) << n;
  }
  // 127 roots end the index at 24 + 4064 = 4088: one page of header; 128 need a second.
  EXPECT_EQ(pack_min_pages_offset(127), 4096u);
  EXPECT_EQ(pack_min_pages_offset(128), 8192u);
  EXPECT_EQ(pack_min_pages_offset(0), 4096u);
  EXPECT_EQ(pack_size(0), 4096u);
}

TEST(Rule8_7Pack, EveryPageIsFoundWhereItIs) {
  const auto pages = make_pages(300, 7);
  const auto w = hand_pack(pages);
  DecodeError err{};
  auto p = Pack::parse(w.data(), w.size(), &err);
  ASSERT_TRUE(p.ok()) << status_name(p.status()) << " at " << err.offset;
  EXPECT_EQ(p->count(), 300u);
  EXPECT_EQ(p->pages_offset(), 12288u);  // 24 + 9600 = 9624, rounded up
  EXPECT_EQ(p->size(), w.size());
  for (std::uint32_t i = 0; i < 300; ++i) {
    auto f = p->find(pages[i].root);
    ASSERT_TRUE(f.ok()) << i;
    EXPECT_EQ(f->index, i);
    EXPECT_EQ(f->offset, 12288u + PAGE_SIZE * i);
    const std::uint8_t* b = p->page_bytes(f.value());
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b, w.data() + f->offset);
    EXPECT_EQ(std::memcmp(b, pages[i].bytes.data(), PAGE_SIZE), 0);
    EXPECT_EQ(hash::page_content_hash(b), pages[i].root);
    EXPECT_EQ(p->root_at(i).value(), pages[i].root);
    EXPECT_EQ(p->page(i)->offset, f->offset);
  }
  EXPECT_EQ(p->root_at(300).status(), Status::OutOfExtent);
  EXPECT_EQ(p->page(300).status(), Status::OutOfExtent);
  // Roots that are not there: below the first, above the last, between two, a near miss.
  Hash32 lo{};
  Hash32 hi;
  hi.b.fill(0xff);
  Hash32 near = pages[150].root;
  near.b[31] ^= 1;
  for (const Hash32& h : {lo, hi, near}) EXPECT_EQ(p->find(h).status(), Status::NotInStore);
  // An empty pack finds nothing.
  const auto e = hand_pack({});
  auto ep = Pack::parse(e.data(), e.size());
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->count(), 0u);
  EXPECT_EQ(ep->find(pages[0].root).status(), Status::NotInStore);
  // A default Pack holds nothing.
  EXPECT_EQ(Pack{}.find(lo).status(), Status::NotInStore);
  EXPECT_EQ(Pack{}.page(0).status(), Status::OutOfExtent);
}

TEST(Rule8_7Pack, ByteSourcePacksReadHeaderIndexAndPadOnceAndServePagesThroughSources) {
  const auto pages = make_pages(5, 11);
  const auto w = hand_pack(pages, 3 * PAGE_SIZE);  // a longer zero pad than the writer's
  struct Counting {
    const std::vector<std::uint8_t>* bytes;
    std::vector<unsigned> reads;
    static void copy_in(const void* ctx, std::uint64_t off, std::uint8_t* out, std::size_t n) {
      auto* c = const_cast<Counting*>(static_cast<const Counting*>(ctx));
      ASSERT_LE(off + n, c->bytes->size());
      for (std::size_t i = 0; i < n; ++i) {
        ++c->reads[off + i];
        out[i] = (*c->bytes)[off + i];
      }
    }
  } c{.bytes = &w, .reads = std::vector<unsigned>(w.size(), 0)};
  const ByteSource src{.copy_in = Counting::copy_in, .ctx = &c, .len = w.size()};
  auto p = Pack::parse(src);
  ASSERT_TRUE(p.ok()) << status_name(p.status());
  EXPECT_EQ(p->pages_offset(), 3 * PAGE_SIZE);
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (i < 3 * PAGE_SIZE) ASSERT_EQ(c.reads[i], 1u) << "header, index and pad: each byte read once; byte " << i;
    else ASSERT_EQ(c.reads[i], 0u) << "parse reads no page byte; byte " << i;
  }
  auto f = p->find(pages[3].root);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(p->page_bytes(f.value()), nullptr);  // not a memory pack
  const PackPageSource ps = p->page_source(f.value());
  const ByteSource one = ps.source();
  EXPECT_EQ(one.len, PAGE_SIZE);
  std::vector<std::uint8_t> got(PAGE_SIZE);
  one.copy_in(one.ctx, 0, got.data(), PAGE_SIZE);
  EXPECT_EQ(got, pages[3].bytes);
}

// --- Every rejection, with its byte offset ---------------------------------------------------

TEST(Rule8_7Pack, RejectsBadHeaders) {
  const auto pages = make_pages(3, 3);
  const auto good = hand_pack(pages);
  ASSERT_TRUE(Pack::parse(good.data(), good.size()).ok());
  auto w = good;
  w[7] = '2';  // CAPMPAK2
  expect_reject(w, Status::PackBadMagic, 0);
  expect_reject({'E', 'L', 'F'}, Status::PackBadMagic, 0);  // short and not a pack
  expect_reject(std::vector<std::uint8_t>(good.begin(), good.begin() + 5), Status::PackTruncated, 5);
  expect_reject(std::vector<std::uint8_t>(good.begin(), good.begin() + 23), Status::PackTruncated, 23);
  expect_reject({}, Status::PackTruncated, 0);
  w = good;
  put32(w, 12, 1);
  expect_reject(w, Status::PackBadFlags, 12);
  w = good;
  put32(w, 12, 0x80000000u);
  expect_reject(w, Status::PackBadFlags, 12);
}

TEST(Rule8_7Pack, RejectsCountsThatCannotFit) {
  const auto good = hand_pack(make_pages(3, 3));  // 4096 + 3 x 4096 bytes
  auto w = good;
  put32(w, 8, 0xffffffffu);  // 2^32 - 1 roots: 128 GiB of index claimed by a 16 KiB file
  expect_reject(w, Status::PackBadCount, 8);
  w = good;
  put32(w, 8, 4);  // the index fits, the 4 pages do not
  expect_reject(w, Status::PackBadCount, 8);
  w = good;
  put32(w, 8, 0x80000000u);  // 32 x count overflows 32 bits, not 64
  expect_reject(w, Status::PackBadCount, 8);
}

TEST(Rule8_7Pack, RejectsBadPagesOffsets) {
  const auto good = hand_pack(make_pages(3, 3));
  auto w = good;
  put64(w, 16, 4096 + 8);  // misaligned
  expect_reject(w, Status::PackBadPagesOffset, 16);
  w = good;
  put64(w, 16, 0);  // aligned, inside the header
  expect_reject(w, Status::PackBadPagesOffset, 16);
  w = good;
  put64(w, 16, 1ull << 63);  // aligned, far past the end (and pages_offset + 4096 x count fits 64 bits)
  expect_reject(w, Status::PackBadPagesOffset, 16);
  w = good;
  put64(w, 16, 0xfffffffffffff000ull);  // aligned; pages_offset + 4096 x count would overflow 64 bits
  expect_reject(w, Status::PackBadPagesOffset, 16);
  // 200 roots end the index at 6424: pages_offset 4096 is aligned but inside the index.
  auto big = hand_pack(make_pages(200, 5));
  put64(big, 16, 4096);
  expect_reject(big, Status::PackBadPagesOffset, 16);
}

TEST(Rule8_7Pack, RejectsWrongLengths) {
  const auto good = hand_pack(make_pages(3, 3));
  auto w = good;
  w.pop_back();  // the last page is one byte short: the file ends at its length
  expect_reject(w, Status::PackBadLength, w.size());
  w = good;
  w.push_back(0);  // one trailing byte, at the end the layout says
  expect_reject(w, Status::PackBadLength, good.size());
  // pages_offset one page later than the file allows: the pages would end past it.
  w = good;
  put64(w, 16, 8192);
  expect_reject(w, Status::PackBadLength, good.size());
  // pages_offset at the end of a count-0 pack's pad with trailing bytes.
  auto e = hand_pack({});
  e.resize(e.size() + PAGE_SIZE, 0);
  expect_reject(e, Status::PackBadLength, 4096);
  // ... which is a good pack once pages_offset says the pad is two pages long.
  put64(e, 16, 8192);
  EXPECT_TRUE(Pack::parse(e.data(), e.size()).ok());
}

TEST(Rule8_7Pack, RejectsIndexesNotStrictlyIncreasing) {
  auto pages = make_pages(6, 9);
  auto w = hand_pack(pages);
  std::memcpy(w.data() + 24 + 32 * 4, pages[3].root.b.data(), 32);  // root 4 == root 3
  expect_reject(w, Status::PackUnsortedIndex, 24 + 32 * 4);
  w = hand_pack(pages);
  std::swap(pages[1], pages[2]);  // root 2 < root 1
  w = hand_pack(pages);
  expect_reject(w, Status::PackUnsortedIndex, 24 + 32 * 2);
  // Compared as 32-byte strings, byte 0 first: roots differing only in their last byte.
  Page a{.root = with_byte(Hash32{}, 31, 2), .bytes = std::vector<std::uint8_t>(PAGE_SIZE, 1)};
  Page b{.root = with_byte(Hash32{}, 31, 1), .bytes = std::vector<std::uint8_t>(PAGE_SIZE, 2)};
  expect_reject(hand_pack({a, b}), Status::PackUnsortedIndex, 24 + 32);
  EXPECT_TRUE(Pack::parse(hand_pack({b, a}).data(), hand_pack({b, a}).size()).ok());
  // More roots than one read chunk (32): the order is checked across chunk boundaries too.
  auto many = make_pages(70, 13);
  std::swap(many[31], many[32]);
  expect_reject(hand_pack(many), Status::PackUnsortedIndex, 24 + 32 * 32);
}

TEST(Rule8_7Pack, RejectsNonZeroPad) {
  const auto pages = make_pages(3, 3);
  auto w = hand_pack(pages);
  w[24 + 32 * 3] = 1;  // the first pad byte
  expect_reject(w, Status::PackNonzeroPad, 24 + 32 * 3);
  w = hand_pack(pages);
  w[4095] = 0x80;  // the last
  expect_reject(w, Status::PackNonzeroPad, 4095);
  w = hand_pack(pages, 4 * PAGE_SIZE);  // a long pad, read in chunks
  w[3 * PAGE_SIZE + 700] = 9;
  expect_reject(w, Status::PackNonzeroPad, 3 * PAGE_SIZE + 700);
}

// --- The index is a hint -------------------------------------------------------------------------

// A pack whose index lies (a root that is not the hash of its page): it parses, the lookup
// hands out that page's location, and the page's bytes fail the hash check that resolve makes
// (rule 8.4): a mismatch, never a page accepted under a root it does not have.
TEST(Rule8_7Pack, ALyingIndexGivesAMismatchNeverAWrongPage) {
  auto pages = make_pages(4, 21);
  std::swap(pages[1].bytes, pages[2].bytes);  // roots stay sorted; pages 1 and 2 swap bytes
  const auto w = hand_pack(pages);
  auto p = Pack::parse(w.data(), w.size());
  ASSERT_TRUE(p.ok());
  auto f = p->find(pages[1].root);
  ASSERT_TRUE(f.ok());
  EXPECT_NE(hash::page_content_hash(p->page_bytes(f.value())), pages[1].root);
}

// The pack's memory changes after parse (a shared mapping, a boot module another CPU
// scribbles on): lookups read an index that is no longer sorted, or whose entries are not the
// ones parse checked. Whatever they read, every location they hand out is inside the pack, and
// the page count, the page offset and the length are the ones parse read.
TEST(Rule8_7Pack, IndexChangedAfterParseNeverGivesALocationOutsideThePack) {
  const auto pages = make_pages(100, 31);
  auto w = hand_pack(pages);
  auto p = Pack::parse(w.data(), w.size());
  ASSERT_TRUE(p.ok());
  std::mt19937 rng(8);
  for (int round = 0; round < 200; ++round) {
    // Scribble over the header and index: counts, offsets and roots.
    for (int k = 0; k < 40; ++k) w[rng() % (24 + 32 * 100)] = static_cast<std::uint8_t>(rng());
    for (std::uint32_t i = 0; i < 100; i += 7) {
      auto f = p->find(pages[i].root);
      if (!f.ok()) {
        EXPECT_EQ(f.status(), Status::NotInStore);
        continue;
      }
      EXPECT_LT(f->index, 100u);
      EXPECT_EQ(f->offset, p->pages_offset() + PAGE_SIZE * f->index);
      EXPECT_LE(f->offset + PAGE_SIZE, w.size());
    }
    EXPECT_EQ(p->count(), 100u);
    EXPECT_EQ(p->pages_offset(), 4096u);  // 24 + 32 x 100 = 3224, rounded up
  }
}

TEST(Rule8_7Pack, WriterRefusesUnsortedEntriesAndPassesSinkFailures) {
  auto pages = make_pages(3, 17);
  std::vector<PackEntry> e;
  for (const auto& p : pages) e.push_back(PackEntry{.root = p.root, .bytes = p.bytes.data()});
  int calls = 0;
  auto counting = [](void* ctx, const std::uint8_t*, std::size_t) {
    ++*static_cast<int*>(ctx);
    return Status::Ok;
  };
  std::swap(e[0], e[2]);
  EXPECT_EQ(pack_write(e.data(), 3, +counting, &calls).status(), Status::InvalidArgument);
  e[0] = e[2];  // equal roots
  EXPECT_EQ(pack_write(e.data(), 3, +counting, &calls).status(), Status::InvalidArgument);
  EXPECT_EQ(calls, 0) << "nothing written before the order is checked";
  for (std::size_t i = 0; i < 3; ++i) e[i] = PackEntry{.root = pages[i].root, .bytes = pages[i].bytes.data()};
  EXPECT_TRUE(pack_write(e.data(), 3, +counting, &calls).ok());
  auto failing = [](void*, const std::uint8_t*, std::size_t) { return Status::OutOfFrames; };
  EXPECT_EQ(pack_write(e.data(), 3, +failing, nullptr).status(), Status::OutOfFrames);
  EXPECT_TRUE(pack_write(nullptr, 0, +counting, &calls).ok());
}

// The streaming writer (roots, and each page's bytes asked for as it is written): the same
// bytes as the layout; the order checked before anything is written; a page callback's
// status stops the write.
TEST(Rule8_7Pack, StreamingWriterMatchesTheLayoutAndAsksEachPageOnce) {
  struct Ctx {
    const std::vector<Page>* pages;
    std::vector<std::uint32_t> asked;
    std::uint32_t fail_at = UINT32_MAX;
  };
  auto page = [](void* c, std::uint32_t i, const std::uint8_t** bytes) {
    auto* x = static_cast<Ctx*>(c);
    x->asked.push_back(i);
    if (i == x->fail_at) return Status::HashMismatch;
    *bytes = (*x->pages)[i].bytes.data();
    return Status::Ok;
  };
  auto sink = [](void* ctx, const std::uint8_t* d, std::size_t n) {
    auto* o = static_cast<std::vector<std::uint8_t>*>(ctx);
    o->insert(o->end(), d, d + n);
    return Status::Ok;
  };
  for (std::uint32_t n : {0u, 1u, 5u, 128u}) {
    const auto pages = make_pages(n, n + 40);
    std::vector<Hash32> roots;
    for (const auto& p : pages) roots.push_back(p.root);
    Ctx c{.pages = &pages, .asked = {}};
    std::vector<std::uint8_t> out;
    ASSERT_TRUE(pack_write(roots.data(), n, +page, &c, +sink, &out).ok()) << n;
    EXPECT_EQ(out, hand_pack(pages)) << n;
    std::vector<std::uint32_t> want(n);
    for (std::uint32_t i = 0; i < n; ++i) want[i] = i;
    EXPECT_EQ(c.asked, want) << "each page asked for once, in index order";
  }
  const auto pages = make_pages(4, 99);
  std::vector<Hash32> roots;
  for (const auto& p : pages) roots.push_back(p.root);
  Ctx c{.pages = &pages, .asked = {}, .fail_at = 2};
  std::vector<std::uint8_t> out;
  EXPECT_EQ(pack_write(roots.data(), 4, +page, &c, +sink, &out).status(), Status::HashMismatch);
  EXPECT_EQ(out.size(), pack_min_pages_offset(4) + 2 * PAGE_SIZE) << "stopped at page 2";
  std::swap(roots[1], roots[2]);
  c = Ctx{.pages = &pages, .asked = {}};
  out.clear();
  EXPECT_EQ(pack_write(roots.data(), 4, +page, &c, +sink, &out).status(), Status::InvalidArgument);
  EXPECT_TRUE(out.empty() && c.asked.empty()) << "nothing written before the order is checked";
}
