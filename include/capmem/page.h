// PageRef: an intrusive reference to a page frame (rule 1.4). Copy = increment,
// destroy = decrement, the last reference returns the frame to the allocator.
// A page's bytes are exactly one aligned 4 KiB frame by construction (rule 1.1).
#pragma once

#include <cstdint>
#include <utility>

#include "capmem/frame.h"
#include "capmem/status.h"

namespace capmem {

class PageRef {
 public:
  constexpr PageRef() = default;
  PageRef(const PageRef& o) : d_(o.d_) {
    if (d_) frames().ref(d_);
  }
  PageRef(PageRef&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  PageRef& operator=(const PageRef& o) {
    PageRef tmp(o);
    swap(tmp);
    return *this;
  }
  PageRef& operator=(PageRef&& o) noexcept {
    PageRef tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~PageRef() { reset(); }

  // --- Rule 1.3 constructors ---------------------------------------------------------
  // From content: up to 4096 bytes (zero-padded tail), hashed (rule 1.2).
  static Result<PageRef> from_content(const std::uint8_t* content, std::size_t len);
  // Unhashed copy of a source page (nullptr = zeros): sentinel hash, no SHA-256.
  // The copy-on-write fault path's constructor.
  static Result<PageRef> unhashed_copy(const std::uint8_t* src);
  // The same in two steps, for the fault path's prepare-then-commit order: a fresh frame
  // whose bytes are not written yet, its cache lines requested for writing and the source's
  // for reading (so the misses overlap the caller's other preparation), then
  // unhashed_fill(src) writes all 4096 bytes (nullptr = zeros). Until the fill the page must
  // not be read, mapped or shared.
  static Result<PageRef> unhashed_frame(const std::uint8_t* src);
  void unhashed_fill(const std::uint8_t* src);
  // A page whose bytes and hash the caller already knows match (the decoder, after it
  // verified the hash): no rehash.
  static Result<PageRef> from_verified(const std::uint8_t* bytes4096, const Hash32& hash);
  // Hash a page built in place (its bytes written through mutable_bytes()) and store the
  // rule 1.2 hash. Only for a page nobody else references yet (traps otherwise).
  void seal();
  // Clone: a new aligned frame with the same bytes and hash.
  [[nodiscard]] Result<PageRef> clone() const;

  // --- Adoption (after fbl::AdoptRef) -------------------------------------------------
  // Take over the single reference of a freshly allocated Page frame; traps if the frame
  // was adopted before or is not a fresh Page frame.
  static PageRef adopt(FrameDesc* d);
  // Give up ownership without dropping the count. Every caller must document where the
  // matching release (PageRef::from_leaked) happens.
  [[nodiscard]] FrameDesc* leak_ref() { return std::exchange(d_, nullptr); }
  // Re-take a reference previously given up by leak_ref().
  static PageRef from_leaked(FrameDesc* d) { return PageRef(d); }
  // A new counted reference to a frame that is already live (e.g. found in a PTE).
  static PageRef ref_existing(FrameDesc* d) {
    frames().ref(d);
    return PageRef(d);
  }

  [[nodiscard]] explicit operator bool() const { return d_ != nullptr; }
  [[nodiscard]] FrameDesc* desc() const { return d_; }
  [[nodiscard]] PhysAddr phys() const { return d_->phys(); }
  [[nodiscard]] const std::uint8_t* bytes() const { return static_cast<const std::uint8_t*>(d_->virt()); }
  // Writable view: only for a page nobody else can see yet (a fresh private copy).
  [[nodiscard]] std::uint8_t* mutable_bytes() const { return static_cast<std::uint8_t*>(d_->virt()); }
  [[nodiscard]] const Hash32& hash() const { return d_->hash; }
  // True for an unhashed copy (rule 1.3): the sentinel hash is 32 zero bytes.
  [[nodiscard]] bool unhashed() const { return d_->hash.is_zero(); }
  [[nodiscard]] std::uint32_t ref_count() const { return d_->refs.load(std::memory_order_relaxed); }

  void reset() {
    if (d_) frames().unref(std::exchange(d_, nullptr));
  }
  void swap(PageRef& o) noexcept { std::swap(d_, o.d_); }
  bool operator==(const PageRef& o) const { return d_ == o.d_; }

 private:
  explicit PageRef(FrameDesc* d) : d_(d) {}
  FrameDesc* d_ = nullptr;
};

}  // namespace capmem
