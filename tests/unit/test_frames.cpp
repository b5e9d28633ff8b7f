// Frame allocator (include/capmem/frame.h): accounting, several RAM ranges, bad ranges,
// poisoning, the per-CPU caches (batches, the bound on cached frames, rule 7.4) and fault
// injection counted over every CPU. Multi-threaded runs are in tests/smp.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "capmem/frame.h"
#include "capmem/page.h"
#include "hostsim/cpus.h"

using namespace capmem;

namespace {

constexpr std::uint32_t kBatch = FrameAllocator::kCacheBatch;
constexpr std::uint32_t kHigh = FrameAllocator::kCacheHigh;

// `n` physically contiguous frames taken from the global allocator (a fresh test binary
// hands frames out in ascending order; the search skips any hole), given back on
// destruction. A private FrameAllocator can be built over sub-ranges of them.
class Block {
 public:
  explicit Block(std::uint64_t n) {
    for (int tries = 0; tries < 4 && base_.value() == 0; ++tries) {
      for (std::uint64_t i = 0; i < n + 64; ++i) {
        FrameDesc* d = frames().alloc(FrameKind::Page);
        if (d == nullptr) break;
        got_.push_back(d);
      }
      std::vector<std::uint64_t> pfns;
      for (FrameDesc* d : got_) pfns.push_back(d->pfn);
      std::sort(pfns.begin(), pfns.end());
      for (std::size_t i = 0, run = 1; i + 1 < pfns.size(); ++i) {
        run = pfns[i + 1] == pfns[i] + 1 ? run + 1 : 1;
        if (run == n) {
          base_ = PhysAddr::from_pfn(pfns[i + 1] - (n - 1));
          break;
        }
      }
    }
  }
  ~Block() {
    for (FrameDesc* d : got_) frames().free(d);
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  [[nodiscard]] PhysAddr base() const { return base_; }
  [[nodiscard]] env::PhysRange range(std::uint64_t first, std::uint64_t count) const {
    return env::PhysRange{.base = base_ + first * PAGE_SIZE, .size = count * PAGE_SIZE};
  }

 private:
  std::vector<FrameDesc*> got_;
  PhysAddr base_{};
};

// A private FrameAllocator over one Block of `n` frames (`ok` once both worked).
struct BlockAllocator {
  explicit BlockAllocator(std::uint64_t n) : blk(n) {
    const env::PhysRange r = blk.range(0, n);
    ok = blk.base().value() != 0 && fa.init(&r, 1).ok();
  }
  Block blk;
  FrameAllocator fa;
  bool ok = false;
};

// Frames the descriptor array of `frames_total` frames takes (frame.cpp's layout).
std::uint64_t meta_frames(std::uint64_t frames_total) {
  return (frames_total * sizeof(FrameDesc) + PAGE_SIZE - 1) / PAGE_SIZE;
}

}  // namespace

TEST(Frames, AllocFreeAccounting) {
  const auto before = frames().stats();
  EXPECT_EQ(before.free + before.in_use, before.total);
  FrameDesc* d = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->phys().page_aligned());
  EXPECT_EQ(frames().stats().free, before.free - 1);
  EXPECT_EQ(frames().stats().in_use, before.in_use + 1);
  EXPECT_EQ(frames().desc_of(d->phys()), d);
  EXPECT_EQ(frames().desc_of_virt(d->virt()), d);
  frames().free(d);
  EXPECT_EQ(frames().stats().free, before.free);
}

TEST(Frames, ExhaustionIsAStatus) {
  frames().set_exhausted(true);
  EXPECT_EQ(frames().alloc(FrameKind::Page), nullptr);
  auto r = PageRef::unhashed_copy(nullptr);
  EXPECT_EQ(r.status(), Status::OutOfFrames);
  frames().set_exhausted(false);
  FrameDesc* d = frames().alloc(FrameKind::Page);
  EXPECT_NE(d, nullptr);
  if (d != nullptr) frames().free(d);
}

TEST(Frames, SeveralRanges) {
  Block blk(160);
  ASSERT_NE(blk.base().value(), 0u) << "no 160 contiguous simulated frames";
  // Three ranges with holes between them; the largest (80 frames) holds the descriptors.
  const env::PhysRange r[3] = {blk.range(0, 30), blk.range(40, 80), blk.range(130, 20)};
  FrameAllocator fa;
  ASSERT_TRUE(fa.init(r, 3).ok());
  const std::uint64_t meta = meta_frames(130);
  const auto s0 = fa.stats();
  EXPECT_EQ(s0.total, 130 - meta);
  EXPECT_EQ(s0.in_use, 1u);  // the zero frame
  EXPECT_EQ(s0.free, s0.total - 1);

  // desc_of: every frame of a range, nothing in the holes or outside.
  for (const auto& rg : r) {
    for (std::uint64_t off = 0; off < rg.size; off += PAGE_SIZE) {
      FrameDesc* d = fa.desc_of(rg.base + off);
      ASSERT_NE(d, nullptr);
      EXPECT_EQ(d->phys(), rg.base + off);
    }
  }
  EXPECT_EQ(fa.desc_of(blk.base() + 30 * PAGE_SIZE), nullptr);
  EXPECT_EQ(fa.desc_of(blk.base() + 125 * PAGE_SIZE), nullptr);
  EXPECT_EQ(fa.desc_of(blk.base() + 150 * PAGE_SIZE), nullptr);

  // Every usable frame comes out exactly once, none of them a descriptor frame.
  std::set<std::uint64_t> seen;
  std::vector<FrameDesc*> all;
  while (FrameDesc* d = fa.alloc(FrameKind::Page)) {
    EXPECT_TRUE(seen.insert(d->pfn).second) << "frame handed out twice";
    const std::uint64_t off = d->pfn - blk.base().pfn();
    const bool in_range = off < 30 || (off >= 40 + meta && off < 120) || (off >= 130 && off < 150);
    EXPECT_TRUE(in_range) << "frame at block offset " << off;
    EXPECT_NE(d, fa.zero_frame());
    all.push_back(d);
  }
  EXPECT_EQ(all.size(), s0.total - 1);
  EXPECT_EQ(fa.stats().free, 0u);
  EXPECT_EQ(fa.stats().in_use, s0.total);
  for (FrameDesc* d : all) fa.free(d);
  const auto s1 = fa.stats();
  EXPECT_EQ(s1.free, s0.free);
  EXPECT_EQ(s1.in_use, 1u);
  EXPECT_LE(s1.cached, kHigh);
}

// A fragmented map: far more ranges than the allocator indexes (kMaxRanges), every one
// taken. Ranges of 1-3 frames with 1-frame gaps (and one 3-frame gap that stays a gap), plus
// a large range for the descriptors. Every frame of every range comes out exactly once and
// nothing from a gap (bridged gaps hold Reserved descriptors: frame.h).
TEST(Frames, ManyRangesAreAllTaken) {
  constexpr std::size_t kSmall = 3 * FrameAllocator::kMaxRanges;
  Block blk(4 * kSmall + 80);
  ASSERT_NE(blk.base().value(), 0u) << "not enough contiguous simulated frames";
  std::vector<env::PhysRange> r;
  std::set<std::uint64_t> usable;  // pfns
  std::uint64_t at = 0;
  for (std::size_t i = 0; i < kSmall; ++i) {
    const std::uint64_t len = 1 + i % 3;
    r.push_back(blk.range(at, len));
    for (std::uint64_t f = 0; f < len; ++f) usable.insert(blk.base().pfn() + at + f);
    at += len + (i == kSmall / 2 ? 3 : 1);
  }
  const std::uint64_t big_at = at;
  r.push_back(blk.range(big_at, 64));
  for (std::uint64_t f = 0; f < 64; ++f) usable.insert(blk.base().pfn() + big_at + f);
  ASSERT_GT(r.size(), FrameAllocator::kMaxRanges);
  ASSERT_LE(big_at + 64, 4 * kSmall + 80);

  FrameAllocator fa;
  ASSERT_TRUE(fa.init(r.data(), r.size()).ok());
  // The descriptors cover every frame from the first range to the last but the one 3-frame
  // gap (the 1-frame gaps are bridged: kMaxRanges is reached first by bridging them all).
  const std::uint64_t meta = meta_frames(big_at + 64 - 3);
  EXPECT_EQ(fa.stats().total, usable.size() - meta);
  for (const std::uint64_t pfn : usable) {
    FrameDesc* d = fa.desc_of(PhysAddr::from_pfn(pfn));
    ASSERT_NE(d, nullptr) << "no descriptor for usable frame " << pfn;
    EXPECT_EQ(d->pfn, pfn);
  }
  const FrameDesc* bridged = fa.desc_of(r[0].base + r[0].size);  // the 1-frame gap after r[0]
  ASSERT_NE(bridged, nullptr);
  EXPECT_EQ(bridged->kind, FrameKind::Reserved);
  const PhysAddr wide_gap = r[kSmall / 2].base + r[kSmall / 2].size;  // the 3-frame gap
  for (std::uint64_t f = 0; f < 3; ++f) EXPECT_EQ(fa.desc_of(wide_gap + f * PAGE_SIZE), nullptr);
  EXPECT_EQ(fa.desc_of(blk.base() + (big_at + 64) * PAGE_SIZE), nullptr);

  std::set<std::uint64_t> seen;
  std::vector<FrameDesc*> all;
  while (FrameDesc* d = fa.alloc(FrameKind::Page)) {
    EXPECT_TRUE(seen.insert(d->pfn).second) << "frame handed out twice";
    EXPECT_EQ(usable.count(d->pfn), 1u) << "frame " << d->pfn << " is in a gap";
    EXPECT_FALSE(d->pfn >= blk.base().pfn() + big_at && d->pfn < blk.base().pfn() + big_at + meta)
        << "descriptor frame handed out";
    all.push_back(d);
  }
  EXPECT_EQ(seen.size(), usable.size() - meta - 1);  // all but the descriptors and the zero frame
  for (FrameDesc* d : all) fa.free(d);
  EXPECT_EQ(fa.stats().free, fa.stats().total - 1);
}

TEST(Frames, BadRangesAreRejected) {
  Block blk(64);
  ASSERT_NE(blk.base().value(), 0u);
  FrameAllocator fa;
  EXPECT_EQ(fa.init(nullptr, 0).status(), Status::InvalidArgument);  // none
  EXPECT_EQ(fa.init(nullptr, 3).status(), Status::InvalidArgument);
  env::PhysRange unaligned = blk.range(0, 8);
  unaligned.base = unaligned.base + 8;
  EXPECT_EQ(fa.init(&unaligned, 1).status(), Status::InvalidArgument);
  env::PhysRange odd_size = blk.range(0, 8);
  odd_size.size -= 1;
  EXPECT_EQ(fa.init(&odd_size, 1).status(), Status::InvalidArgument);
  const env::PhysRange overlap[2] = {blk.range(0, 20), blk.range(10, 20)};
  EXPECT_EQ(fa.init(overlap, 2).status(), Status::InvalidArgument);
  const env::PhysRange descending[2] = {blk.range(30, 20), blk.range(0, 20)};
  EXPECT_EQ(fa.init(descending, 2).status(), Status::InvalidArgument);
  const env::PhysRange tiny = blk.range(0, 2);  // descriptors + zero frame, nothing usable
  EXPECT_EQ(fa.init(&tiny, 1).status(), Status::InvalidArgument);
  EXPECT_FALSE(fa.initialized());
  const env::PhysRange ok = blk.range(0, 64);
  EXPECT_TRUE(fa.init(&ok, 1).ok());
  EXPECT_EQ(fa.init(&ok, 1).status(), Status::InvalidArgument);  // twice
}

TEST(Frames, PoisonFillsFreedFrames) {
  BlockAllocator ba(40);
  ASSERT_TRUE(ba.ok);
  FrameAllocator& fa = ba.fa;
  fa.set_poison(true);
  FrameDesc* d = fa.alloc(FrameKind::Page);
  ASSERT_NE(d, nullptr);
  auto* bytes = static_cast<std::uint8_t*>(d->virt());
  bytes[0] = 1;
  fa.free(d);
  EXPECT_EQ(d->flags, FrameAllocator::kFlagPoisoned);
  EXPECT_TRUE(std::all_of(bytes, bytes + PAGE_SIZE, [](std::uint8_t b) { return b == FrameAllocator::kPoison; }));
  // Handed out again (the cache is LIFO): the check passes, Zero clears the poison.
  FrameDesc* again = fa.alloc(FrameKind::Page, AllocFlags::Zero);
  EXPECT_EQ(again, d);
  EXPECT_EQ(again->flags, 0u);
  EXPECT_TRUE(std::all_of(bytes, bytes + PAGE_SIZE, [](std::uint8_t b) { return b == 0; }));
  fa.free(again);
}

TEST(FramesDeathTest, WriteAfterFreeIsReported) {
  Block blk(40);
  ASSERT_NE(blk.base().value(), 0u);
  const env::PhysRange r = blk.range(0, 40);
  EXPECT_DEATH(
      {
        FrameAllocator fa;
        if (!fa.init(&r, 1).ok()) return;
        fa.set_poison(true);
        FrameDesc* d = fa.alloc(FrameKind::Page);
        fa.free(d);
        static_cast<std::uint8_t*>(d->virt())[100] = 0;  // the bug: a write after free
        (void)fa.alloc(FrameKind::Page);                 // same frame back: checked
      },
      "written after free");
}

TEST(Frames, CacheRefillsAndDrainsInBatches) {
  BlockAllocator ba(200);
  ASSERT_TRUE(ba.ok);
  FrameAllocator& fa = ba.fa;
  const auto s0 = fa.stats();
  EXPECT_EQ(s0.cached, 0u);
  FrameDesc* first = fa.alloc(FrameKind::Page);  // refill: one batch, one handed out
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(fa.stats().cached, kBatch - 1);
  std::vector<FrameDesc*> held{first};
  for (std::uint32_t i = 0; i < 2 * kHigh; ++i) held.push_back(fa.alloc(FrameKind::Page));
  ASSERT_EQ(std::count(held.begin(), held.end(), nullptr), 0);
  for (FrameDesc* d : held) {
    fa.free(d);
    EXPECT_LE(fa.stats().cached, kHigh);  // the bound holds after every free
  }
  const auto s1 = fa.stats();
  EXPECT_EQ(s1.free, s0.free);  // exact: cached frames count as free
  EXPECT_GT(s1.cached, kHigh - kBatch);
  fa.drain_local();
  EXPECT_EQ(fa.stats().cached, 0u);
  EXPECT_EQ(fa.stats().free, s0.free);
}

// Frames a CPU's cache gives back stay on that CPU's depot list: the same CPU gets them
// back before any other frame, another CPU takes the start-up list's frames first and
// reaches them only when nothing else is left. stats() counts them exactly.
TEST(Frames, FreedFramesComeBackToTheCpuThatFreedThem) {
  hostsim::start_cpus(2);
  constexpr std::uint32_t kN = 3 * kHigh;
  BlockAllocator ba(300);
  ASSERT_TRUE(ba.ok);
  FrameAllocator& fa = ba.fa;
  const std::uint64_t usable = fa.stats().free;
  std::set<FrameDesc*> cpu1_frames;
  {
    const hostsim::CpuBinding on1(1);
    std::vector<FrameDesc*> v;
    for (std::uint32_t i = 0; i < kN; ++i) v.push_back(fa.alloc(FrameKind::Page));
    ASSERT_EQ(std::count(v.begin(), v.end(), nullptr), 0);
    cpu1_frames.insert(v.begin(), v.end());
    for (FrameDesc* d : v) fa.free(d);
  }
  const auto s1 = fa.stats();
  EXPECT_EQ(s1.free, usable);
  EXPECT_LE(s1.cached, kHigh);
  EXPECT_EQ(s1.depot, kN - s1.cached) << "what CPU 1's cache gave back is on its depot list";
  // CPU 0: fresh frames from the start-up list, none of CPU 1's.
  std::vector<FrameDesc*> cpu0;
  for (std::uint32_t i = 0; i < 2 * kBatch; ++i) cpu0.push_back(fa.alloc(FrameKind::Page));
  for (FrameDesc* d : cpu0) {
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(cpu1_frames.count(d), 0u) << "CPU 0 took a frame CPU 1 freed while fresh ones were left";
  }
  EXPECT_EQ(fa.stats().depot, s1.depot);
  {
    // CPU 1 again: exactly its own frames, from its cache and then its depot list.
    const hostsim::CpuBinding on1(1);
    std::vector<FrameDesc*> v;
    for (std::uint32_t i = 0; i < kN; ++i) v.push_back(fa.alloc(FrameKind::Page));
    EXPECT_EQ(std::set<FrameDesc*>(v.begin(), v.end()), cpu1_frames);
    EXPECT_EQ(fa.stats().depot, 0u);
    for (FrameDesc* d : v) fa.free(d);
  }
  // CPU 0 drains the start-up list, then reaches CPU 1's depot list.
  std::uint64_t taken_from_cpu1 = 0;
  while (FrameDesc* d = fa.alloc(FrameKind::Page)) {
    cpu0.push_back(d);
    taken_from_cpu1 += cpu1_frames.count(d);
  }
  const auto s2 = fa.stats();
  EXPECT_EQ(s2.depot, 0u);
  EXPECT_EQ(s2.free, s2.cached) << "only CPU 1's cache is out of reach";
  EXPECT_EQ(taken_from_cpu1, kN - s2.cached);
  for (FrameDesc* d : cpu0) fa.free(d);
  EXPECT_EQ(fa.stats().free, usable);
}

// Rule 7.4: when one CPU runs out, the free frames it cannot reach sit in other CPUs'
// caches and number at most kCacheHigh per CPU; they come back once that CPU drains.
TEST(Frames, OutOfFramesLeavesAtMostCacheHighPerOtherCpu) {
  hostsim::start_cpus(2);
  BlockAllocator ba(120);
  ASSERT_TRUE(ba.ok);
  FrameAllocator& fa = ba.fa;
  const std::uint64_t usable = fa.stats().free;
  {
    // CPU 1 takes frames and frees them again: they stay in its cache.
    hostsim::CpuBinding on1(1);
    std::vector<FrameDesc*> v;
    for (std::uint32_t i = 0; i < kHigh + 5; ++i) v.push_back(fa.alloc(FrameKind::Page));
    for (FrameDesc* d : v) fa.free(d);
  }
  const std::uint64_t stranded = fa.stats().cached;
  EXPECT_GT(stranded, 0u);
  EXPECT_LE(stranded, kHigh);
  std::vector<FrameDesc*> got;
  while (FrameDesc* d = fa.alloc(FrameKind::Page)) got.push_back(d);  // CPU 0 until out
  EXPECT_EQ(got.size(), usable - stranded);
  EXPECT_EQ(fa.stats().free, stranded);
  {
    hostsim::CpuBinding on1(1);
    fa.drain_local();
  }
  std::uint64_t more = 0;
  while (FrameDesc* d = fa.alloc(FrameKind::Page)) {
    got.push_back(d);
    ++more;
  }
  EXPECT_EQ(more, stranded);
  for (FrameDesc* d : got) fa.free(d);
  EXPECT_EQ(fa.stats().free, usable);
}

TEST(Frames, InjectedFailureCountsEveryCpu) {
  hostsim::start_cpus(2);
  const std::uint64_t a0 = frames().alloc_attempts();
  FrameDesc* x = frames().alloc(FrameKind::Page);  // CPU 0, fast path
  FrameDesc* y = nullptr;
  {
    hostsim::CpuBinding on1(1);
    y = frames().alloc(FrameKind::Page);  // CPU 1, fast path
  }
  EXPECT_EQ(frames().alloc_attempts(), a0 + 2);
  frames().inject_failure_at(3);
  FrameDesc* a = frames().alloc(FrameKind::Page);  // 1
  FrameDesc* b = nullptr;
  FrameDesc* c = nullptr;
  {
    hostsim::CpuBinding on1(1);
    b = frames().alloc(FrameKind::Page);  // 2
    c = frames().alloc(FrameKind::Page);  // 3: fails
  }
  FrameDesc* e = frames().alloc(FrameKind::Page);  // 4: one-shot, so fine again
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(c, nullptr);
  EXPECT_NE(e, nullptr);
  EXPECT_EQ(frames().alloc_attempts(), a0 + 6);
  for (FrameDesc* d : {x, y, a, b, e})
    if (d != nullptr) frames().free(d);
}
