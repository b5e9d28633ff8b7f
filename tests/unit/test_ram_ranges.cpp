// The kernel's collection of usable RAM from a firmware memory map (kernel/image/ram_ranges.h,
// used by env_kernel.cpp memory_init), driven with maps QEMU cannot easily produce: many
// fragments, overlapping and adjacent entries, removals that split, more ranges than kept.
// The last test hands a collected fragmented map to a FrameAllocator, as the kernel's boot does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "capmem/frame.h"
#include "capmem/page.h"
#include "ram_ranges.h"

using namespace capmem;
using capmem::kernel::RamRanges;

namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kPage = PAGE_SIZE;

struct Span {
  std::uint64_t base, end;
  bool operator==(const Span&) const = default;
};

template <std::size_t Max>
std::vector<Span> spans(const RamRanges<Max>& m) {
  std::vector<Span> out;
  for (std::size_t i = 0; i < m.n; ++i) out.push_back({m.r[i].base.value(), m.r[i].base.value() + m.r[i].size});
  return out;
}

// The expected result from a page bitmap: the reference the ranges are checked against.
std::vector<Span> from_bitmap(const std::vector<bool>& page, std::uint64_t base) {
  std::vector<Span> out;
  for (std::size_t i = 0; i < page.size();) {
    if (!page[i]) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < page.size() && page[j]) ++j;
    out.push_back({base + i * kPage, base + j * kPage});
    i = j;
  }
  return out;
}

}  // namespace

TEST(RamRanges, OverlappingAndAdjacentEntriesMerge) {
  RamRanges<8> m;
  m.add(4 * kMiB, 8 * kMiB);
  m.add(1 * kMiB, 2 * kMiB);
  m.add(2 * kMiB, 3 * kMiB);                  // adjacent to [1, 2)
  m.add(6 * kMiB, 10 * kMiB);                 // overlaps [4, 8)
  m.add(3 * kMiB + 5, 3 * kMiB + kPage - 1);  // no whole page: nothing
  m.add(20 * kMiB + 1, 21 * kMiB + 7);        // aligned inward
  EXPECT_EQ(spans(m), (std::vector<Span>{{1 * kMiB, 3 * kMiB}, {4 * kMiB, 10 * kMiB}, {20 * kMiB + kPage, 21 * kMiB}}));
  EXPECT_EQ(m.dropped, 0u);
  EXPECT_EQ(m.bytes(), 2 * kMiB + 6 * kMiB + kMiB - kPage);
}

TEST(RamRanges, RemoveTrimsSplitsAndDeletes) {
  RamRanges<8> m;
  m.add(1 * kMiB, 16 * kMiB);
  m.add(32 * kMiB, 40 * kMiB);
  m.remove(2 * kMiB + 10, 3 * kMiB - 10);  // split, aligned outward
  m.remove(15 * kMiB, 33 * kMiB);          // tail of one, head of the next
  m.remove(0, 1 * kMiB + kPage);           // head
  EXPECT_EQ(spans(m), (std::vector<Span>{{1 * kMiB + kPage, 2 * kMiB}, {3 * kMiB, 15 * kMiB}, {33 * kMiB, 40 * kMiB}}));
  m.remove(0, 64 * kMiB);
  EXPECT_EQ(m.n, 0u);
  EXPECT_EQ(m.dropped, 0u);
}

// A firmware map in 200 fragments (more than the 32 the kernel kept and the 16 the allocator
// took before), entries listed out of order and some twice, then the image and the hand-off
// removed as memory_init does: every usable page is kept, checked against a page bitmap.
TEST(RamRanges, FragmentedMapKeepsEveryRange) {
  constexpr std::uint64_t kBase = 1 * kMiB;
  constexpr std::size_t kPages = 2000;
  std::vector<bool> page(kPages, false);
  std::vector<Span> entries;
  for (std::size_t i = 0; i < 200; ++i) {
    const std::size_t first = i * 10, len = 3 + i % 5;  // 3-7 pages, then a hole
    entries.push_back({kBase + first * kPage, kBase + (first + len) * kPage});
    for (std::size_t p = first; p < first + len; ++p) page[p] = true;
  }
  std::reverse(entries.begin(), entries.end());
  entries.push_back(entries[17]);  // listed twice
  RamRanges<FrameAllocator::kMaxEnvRanges> m;
  for (const Span& e : entries) m.add(e.base, e.end);
  EXPECT_EQ(m.n, 200u);
  const Span removed[] = {{kBase + 52 * kPage, kBase + 55 * kPage},     // inside one fragment: a split
                          {kBase + 995 * kPage, kBase + 1203 * kPage},  // across several
                          {kBase + 1994 * kPage + 1, kBase + 1994 * kPage + 2}};
  for (const Span& x : removed) {
    m.remove(x.base, x.end);
    for (std::uint64_t p = (x.base - kBase) / kPage; p < (x.end - kBase + kPage - 1) / kPage; ++p) page[p] = false;
  }
  EXPECT_EQ(spans(m), from_bitmap(page, kBase));
  EXPECT_EQ(m.dropped, 0u);
  std::uint64_t bytes = 0;
  for (const bool b : page) bytes += b ? kPage : 0;
  EXPECT_EQ(m.bytes(), bytes);
}

// Past Max ranges the smallest is left out, counted, and the largest of those named.
TEST(RamRanges, PastMaxTheSmallestIsLeftOutAndCounted) {
  RamRanges<3> m;
  m.add(1 * kMiB, 5 * kMiB);                // 4 MiB
  m.add(10 * kMiB, 10 * kMiB + 2 * kPage);  // 2 pages
  m.add(20 * kMiB, 22 * kMiB);              // 2 MiB
  m.add(30 * kMiB, 30 * kMiB + 5 * kPage);  // 5 pages: [10 MiB, +2 pages) goes
  EXPECT_EQ(spans(m),
            (std::vector<Span>{{1 * kMiB, 5 * kMiB}, {20 * kMiB, 22 * kMiB}, {30 * kMiB, 30 * kMiB + 5 * kPage}}));
  m.remove(2 * kMiB, 3 * kMiB);  // a split: now four, [30 MiB, +5 pages) goes
  EXPECT_EQ(spans(m), (std::vector<Span>{{1 * kMiB, 2 * kMiB}, {3 * kMiB, 5 * kMiB}, {20 * kMiB, 22 * kMiB}}));
  EXPECT_EQ(m.dropped, 2u);
  EXPECT_EQ(m.dropped_bytes, 7 * kPage);
  EXPECT_EQ(m.dropped_largest_base, 30 * kMiB);
  EXPECT_EQ(m.dropped_largest_size, 5 * kPage);
}

// The boot's path end to end over simulated memory: a fragmented map collected, then handed
// whole to a FrameAllocator (env::memory_ranges -> FrameAllocator::init_from_env): every page
// the map calls usable is one the allocator hands out or holds its descriptors in.
TEST(RamRanges, CollectedFragmentedMapGoesWholeToTheAllocator) {
  constexpr std::size_t kFrames = 600;
  std::vector<FrameDesc*> got;
  for (std::size_t i = 0; i < kFrames + 64; ++i)
    if (FrameDesc* d = frames().alloc(FrameKind::Page)) got.push_back(d);
  std::vector<std::uint64_t> pfns;
  for (FrameDesc* d : got) pfns.push_back(d->pfn);
  std::sort(pfns.begin(), pfns.end());
  std::uint64_t first = 0;
  for (std::size_t i = 0, run = 1; i + 1 < pfns.size() && first == 0; ++i) {
    run = pfns[i + 1] == pfns[i] + 1 ? run + 1 : 1;
    if (run == kFrames) first = pfns[i + 1] - (kFrames - 1);
  }
  ASSERT_NE(first, 0u) << "no " << kFrames << " contiguous simulated frames";
  const std::uint64_t base = first * kPage;
  // 100 two-page fragments with one-page holes, then 300 pages for the descriptors.
  RamRanges<FrameAllocator::kMaxEnvRanges> m;
  std::set<std::uint64_t> usable;
  for (std::uint64_t i = 0; i < 100; ++i) {
    m.add(base + 3 * i * kPage, base + (3 * i + 2) * kPage);
    usable.insert(first + 3 * i);
    usable.insert(first + 3 * i + 1);
  }
  m.add(base + 300 * kPage, base + 600 * kPage);
  for (std::uint64_t p = 300; p < 600; ++p) usable.insert(first + p);
  ASSERT_EQ(m.n, 101u);
  FrameAllocator fa;
  ASSERT_TRUE(fa.init(m.r, m.n).ok());
  EXPECT_EQ(fa.stats().total * kPage + (600 * sizeof(FrameDesc) + kPage - 1) / kPage * kPage, m.bytes());
  std::set<std::uint64_t> seen;
  std::vector<FrameDesc*> mine;
  while (FrameDesc* d = fa.alloc(FrameKind::Page)) {
    EXPECT_EQ(usable.count(d->pfn), 1u) << "frame " << d->pfn - first << " is in a hole";
    seen.insert(d->pfn);
    mine.push_back(d);
  }
  EXPECT_EQ(seen.size() + 1, fa.stats().total);  // all but the zero frame
  for (FrameDesc* d : mine) fa.free(d);
  for (FrameDesc* d : got) frames().free(d);
}

// Boot modules (check_module, as memory_init applies it to each module the loader passed): a
// module is kept only when it has bytes, lies wholly inside one firmware RAM range below the
// direct map's end, and overlaps nothing the boot path uses, the first overlap named.
namespace {
using capmem::kernel::BootSpan;
using capmem::kernel::check_module;
using capmem::kernel::ModuleProblem;

// The firmware map of the cases below: RAM [0, 640 KiB) and [1 MiB, 128 MiB).
bool test_ram(std::uint64_t base, std::uint64_t end) {
  return (end <= 640 * 1024) || (base >= 1 * kMiB && end <= 128 * kMiB);
}
constexpr std::uint64_t kDirectEnd = 64 * kMiB;  // the direct map stops short of the RAM here
const BootSpan kUsed[] = {
    {.base = 1 * kMiB, .end = 3 * kMiB, .name = "the kernel image"},
    {.base = 0x9000, .end = 0x9038, .name = "the PVH start_info"},
    {.base = 8 * kMiB + 100, .end = 8 * kMiB + 200, .name = "module 0"},
};
}  // namespace

TEST(BootModules, KeptWhenInRamAndOverlappingNothing) {
  for (const auto& [base, size] : {std::pair<std::uint64_t, std::uint64_t>{3 * kMiB, kPage},  // touches the image
                                   {8 * kMiB + 200, 1},               // touches module 0 at its end
                                   {8 * kMiB, 100},                   // ends where module 0 starts
                                   {0x9038, 1},                       // just after start_info
                                   {kDirectEnd - kPage, kPage},       // up to the direct map's end
                                   {4 * kMiB + 1, 3 * kPage + 5}}) {  // unaligned at both ends
    const auto c = check_module(base, size, kUsed, std::size(kUsed), kDirectEnd, test_ram);
    EXPECT_EQ(c.problem, ModuleProblem::None) << std::hex << base << "+" << size;
  }
}

TEST(BootModules, ZeroSizeComesFirst) {
  // Size 0 is named even where the address is nonsense or inside the image.
  EXPECT_EQ(check_module(2 * kMiB, 0, kUsed, std::size(kUsed), kDirectEnd, test_ram).problem, ModuleProblem::ZeroSize);
  EXPECT_EQ(check_module(~0ull, 0, kUsed, std::size(kUsed), kDirectEnd, test_ram).problem, ModuleProblem::ZeroSize);
}

TEST(BootModules, OutsideRamOrPastTheDirectMap) {
  const std::pair<std::uint64_t, std::uint64_t> cases[] = {
      {640 * 1024 - 10, 20},            // runs off the end of low RAM into the hole
      {700 * 1024, kPage},              // inside the hole
      {1 * kMiB - kPage, 2 * kPage},    // straddles the hole and the next RAM range
      {kDirectEnd - kPage, kPage + 1},  // one byte past the direct map
      {200 * kMiB, kPage},              // past the end of RAM
      {~0ull - kPage, 2 * kPage},       // wraps around 2^64
  };
  for (const auto& [base, size] : cases) {
    const auto c = check_module(base, size, kUsed, std::size(kUsed), kDirectEnd, test_ram);
    EXPECT_EQ(c.problem, ModuleProblem::OutsideRam) << std::hex << base << "+" << size;
  }
}

TEST(BootModules, OverlapNamesTheFirstRangeInUse) {
  struct Case {
    std::uint64_t base, size;
    std::size_t want;
  };
  const Case cases[] = {
      {3 * kMiB - 1, kPage, 0},  // the image's last byte
      {0x8fff, 2, 1},            // start_info's first byte
      {0x9037, 1, 1},            // start_info's last byte
      {8 * kMiB + 199, 10, 2},   // module 0's last byte
      {1 * kMiB, 10 * kMiB, 0},  // covers the image and module 0: the image named
  };
  for (const Case& k : cases) {
    const auto c = check_module(k.base, k.size, kUsed, std::size(kUsed), kDirectEnd, test_ram);
    EXPECT_EQ(c.problem, ModuleProblem::Overlaps) << std::hex << k.base << "+" << k.size;
    EXPECT_EQ(c.overlapped, k.want) << std::hex << k.base << "+" << k.size;
  }
}

// A module both outside RAM and over a range in use is named outside RAM (the order stated).
TEST(BootModules, OutsideRamIsNamedBeforeAnOverlap) {
  // [0x8000, 1 MiB + 4 KiB) covers start_info, the hole and the image's first page.
  EXPECT_EQ(check_module(0x8000, 1 * kMiB - 0x8000 + kPage, kUsed, std::size(kUsed), kDirectEnd, test_ram).problem,
            ModuleProblem::OutsideRam);
}
