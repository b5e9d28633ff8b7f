// capmem core vocabulary: page size, physical vs. virtual addresses, 32-byte hashes.
//
// Freestanding: only header-only facilities with no runtime.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace capmem {

inline constexpr std::size_t PAGE_SHIFT = 12;
inline constexpr std::size_t PAGE_SIZE = std::size_t{1} << PAGE_SHIFT;  // rule 1.1

// Distinct types for physical and virtual addresses (after Hafnium inc/hf/addr.h):
// a PhysAddr can never be dereferenced or passed where a VirtAddr is wanted by accident.
// Conversion between the two goes through the seam (env::phys_to_virt) or the page tables.
class PhysAddr {
 public:
  constexpr PhysAddr() = default;
  constexpr explicit PhysAddr(std::uint64_t v) : v_(v) {}
  [[nodiscard]] constexpr std::uint64_t value() const { return v_; }
  [[nodiscard]] constexpr bool page_aligned() const { return (v_ & (PAGE_SIZE - 1)) == 0; }
  [[nodiscard]] constexpr std::uint64_t pfn() const { return v_ >> PAGE_SHIFT; }
  [[nodiscard]] static constexpr PhysAddr from_pfn(std::uint64_t pfn) { return PhysAddr{pfn << PAGE_SHIFT}; }
  constexpr PhysAddr operator+(std::uint64_t off) const { return PhysAddr{v_ + off}; }
  constexpr std::uint64_t operator-(PhysAddr o) const { return v_ - o.v_; }
  constexpr auto operator<=>(const PhysAddr&) const = default;

 private:
  std::uint64_t v_ = 0;
};

class VirtAddr {
 public:
  constexpr VirtAddr() = default;
  constexpr explicit VirtAddr(std::uint64_t v) : v_(v) {}
  [[nodiscard]] constexpr std::uint64_t value() const { return v_; }
  [[nodiscard]] constexpr bool page_aligned() const { return (v_ & (PAGE_SIZE - 1)) == 0; }
  [[nodiscard]] constexpr VirtAddr page_base() const { return VirtAddr{v_ & ~std::uint64_t{PAGE_SIZE - 1}}; }
  // x86-64 with 4-level paging: bits 63..47 must all equal bit 47 (Intel SDM Vol. 3A 4.5).
  [[nodiscard]] constexpr bool canonical() const {
    const auto top = static_cast<std::int64_t>(v_) >> 47;
    return top == 0 || top == -1;
  }
  constexpr VirtAddr operator+(std::uint64_t off) const { return VirtAddr{v_ + off}; }
  constexpr std::uint64_t operator-(VirtAddr o) const { return v_ - o.v_; }
  constexpr auto operator<=>(const VirtAddr&) const = default;

 private:
  std::uint64_t v_ = 0;
};

// A 32-byte SHA-256 digest / SSZ chunk.
struct Hash32 {
  std::array<std::uint8_t, 32> b;  // trivially constructible: `Hash32{}` is zero, `Hash32 h;` is not initialized
  [[nodiscard]] constexpr bool is_zero() const {
    for (auto x : b)
      if (x != 0) return false;
    return true;
  }
  constexpr bool operator==(const Hash32&) const = default;
};
static_assert(sizeof(Hash32) == 32);

}  // namespace capmem
