// Usable RAM collected from a firmware memory map (env_kernel.cpp memory_init): the pure part,
// with no hardware access, so hosted tests drive it with any map (tests/unit/test_ram_ranges.cpp).
//
// Invariants between calls: r[0..n) ascending, disjoint, not adjacent (touching ranges are
// merged), page-aligned, non-empty; n <= Max. When a range would make n exceed Max (a map
// with more separate RAM ranges than the environment keeps: FrameAllocator::kMaxEnvRanges,
// far more than any real firmware reports), the smallest range is left out and counted in
// `dropped` / `dropped_bytes`, so the caller can say so and the total it prints is exact.
//
// check_module() is the pure part of the boot modules' check (env_kernel.cpp
// memory_init, docs/boot.md "Boot modules"): whether a module the loader handed over may be
// kept, given what the boot path already uses and what the firmware calls RAM.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/env.h"
#include "capmem/types.h"

namespace capmem::kernel {

template <std::size_t Max>
struct RamRanges {
  static_assert(Max >= 1);
  env::PhysRange r[Max + 1]{};  // one spare slot: an insert or a split first, then trim to Max
  std::size_t n = 0;
  std::size_t dropped = 0;                                           // ranges left out because Max were kept
  std::uint64_t dropped_bytes = 0;                                   // their size
  std::uint64_t dropped_largest_base = 0, dropped_largest_size = 0;  // the largest left out

  static constexpr std::uint64_t align_up(std::uint64_t v) { return (v + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1); }
  static constexpr std::uint64_t align_down(std::uint64_t v) { return v & ~(PAGE_SIZE - 1); }
  static constexpr std::uint64_t end_of(const env::PhysRange& x) { return x.base.value() + x.size; }

  // Adds RAM [base, end), page-aligned inward; merges it with whatever it overlaps or touches
  // (a sloppy firmware map may list RAM twice or in adjacent pieces).
  void add(std::uint64_t base, std::uint64_t end) {
    base = align_up(base);
    end = align_down(end);
    if (end <= base) return;
    std::size_t i = n;
    while (i > 0 && r[i - 1].base.value() > base) {
      r[i] = r[i - 1];
      --i;
    }
    r[i] = env::PhysRange{.base = PhysAddr{base}, .size = end - base};
    ++n;
    std::size_t out = 0;
    for (std::size_t k = 1; k < n; ++k) {
      const std::uint64_t cur_end = end_of(r[out]);
      if (r[k].base.value() <= cur_end) {
        if (end_of(r[k]) > cur_end) r[out].size = end_of(r[k]) - r[out].base.value();
      } else {
        r[++out] = r[k];
      }
    }
    n = out + 1;
    trim();
  }

  // Removes [base, end), page-aligned outward, from every range; splits the one range that
  // strictly contains it.
  void remove(std::uint64_t base, std::uint64_t end) {
    base = align_down(base);
    end = align_up(end);
    if (end <= base) return;
    for (std::size_t i = 0; i < n;) {
      const std::uint64_t rb = r[i].base.value(), re = end_of(r[i]);
      if (re <= base || rb >= end) {
        ++i;
      } else if (rb >= base && re <= end) {  // wholly removed
        for (std::size_t k = i; k + 1 < n; ++k) r[k] = r[k + 1];
        --n;
      } else if (rb < base && re > end) {  // split in two: at most one range per call
        for (std::size_t k = n; k > i + 1; --k) r[k] = r[k - 1];
        r[i].size = base - rb;
        r[i + 1] = env::PhysRange{.base = PhysAddr{end}, .size = re - end};
        ++n;
        break;
      } else if (rb < base) {  // its tail removed
        r[i].size = base - rb;
        ++i;
      } else {  // its head removed
        r[i] = env::PhysRange{.base = PhysAddr{end}, .size = re - end};
        ++i;
      }
    }
    trim();
  }

  [[nodiscard]] std::uint64_t bytes() const {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < n; ++i) total += r[i].size;
    return total;
  }

 private:
  // n <= Max + 1 here: leaves out the smallest range (the least RAM lost) if n == Max + 1.
  void trim() {
    if (n <= Max) return;
    std::size_t s = 0;
    for (std::size_t k = 1; k < n; ++k)
      if (r[k].size < r[s].size) s = k;
    ++dropped;
    dropped_bytes += r[s].size;
    if (r[s].size > dropped_largest_size) {
      dropped_largest_base = r[s].base.value();
      dropped_largest_size = r[s].size;
    }
    for (std::size_t k = s; k + 1 < n; ++k) r[k] = r[k + 1];
    --n;
  }
};

// A physical range the boot path uses, [base, end), with its name for the boot log.
struct BootSpan {
  std::uint64_t base = 0;
  std::uint64_t end = 0;
  const char* name = nullptr;
};

enum class ModuleProblem : std::uint8_t {
  None,        // the module may be kept: [base, base + size) is RAM and overlaps nothing in use
  ZeroSize,    // size 0: nothing was loaded (a loader's or a file's mistake)
  OutsideRam,  // not wholly inside one firmware RAM range, past `addressable_end` (the direct
               // map), or base + size wraps around 2^64
  Overlaps,    // overlaps `used[overlapped]` (the image, a boot structure, an earlier module)
};
struct ModuleCheck {
  ModuleProblem problem = ModuleProblem::None;
  std::size_t overlapped = 0;  // Overlaps: the index into `used`
};

// Checks one module [base, base + size) in this order: its size, then RAM (`in_ram(base,
// end)`: true when one firmware RAM range holds [base, end) whole; and end <=
// addressable_end), then every range of used[0..n_used) in order, the first overlap named.
// Byte-exact: a module may share a page with a neighbour that it does not overlap (the
// caller reserves whole pages, RamRanges::remove aligns outward).
template <typename InRam>
constexpr ModuleCheck check_module(std::uint64_t base, std::uint64_t size, const BootSpan* used, std::size_t n_used,
                                   std::uint64_t addressable_end, InRam in_ram) {
  if (size == 0) return {.problem = ModuleProblem::ZeroSize};
  const std::uint64_t end = base + size;
  if (end < base || end > addressable_end || !in_ram(base, end)) return {.problem = ModuleProblem::OutsideRam};
  for (std::size_t i = 0; i < n_used; ++i)
    if (base < used[i].end && used[i].base < end) return {.problem = ModuleProblem::Overlaps, .overlapped = i};
  return {};
}

}  // namespace capmem::kernel
