// Page slots (rule 2.1): Empty | Loaded(page) | Missing(hash), as an 8-byte value type.
//
// Representation: one tagged word.
//   word == 0                -> Empty
//   word == FrameDesc* | 1   -> Loaded: the slot owns one counted reference on the frame
//                               (the same count PageRef uses, rule 1.4)
//   word == MissingBox* | 2  -> Missing: the slot owns one reference on a small refcounted
//                               box (slab-allocated) holding the 32-byte hash
// FrameDesc and MissingBox are at least 8-byte aligned, so the low 3 bits are free.
// Copy = increment, destroy = decrement; a zero-initialized Slot is Empty, so arrays of
// slots in freshly zeroed slab memory are all Empty.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "capmem/page.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem {

enum class SlotKind : std::uint8_t { Empty = 0, Loaded = 1, Missing = 2 };

// Non-owning view of a slot (the fault path's cheap lookup): no refcount is touched.
// `frame` is set for Loaded; `hash` points at the slot root (rule 2.2) for every kind
// (a static zero chunk for Empty). Valid while the cap it came from is not changed.
struct SlotView {
  SlotKind kind;
  FrameDesc* frame;
  const Hash32* hash;
};

class Slot {
 public:
  constexpr Slot() = default;  // Empty
  Slot(const Slot& o) : w_(o.w_) { acquire(); }
  Slot(Slot&& o) noexcept : w_(std::exchange(o.w_, 0)) {}
  Slot& operator=(const Slot& o) {
    Slot t(o);
    swap(t);
    return *this;
  }
  Slot& operator=(Slot&& o) noexcept {
    Slot t(std::move(o));
    swap(t);
    return *this;
  }
  ~Slot() { reset(); }

  // Loaded(page): takes over the caller's reference. `p` must be non-null.
  static Slot loaded(PageRef p);
  // Missing(h): allocates the hash box; OutOfFrames if the box slab cannot grow.
  static Result<Slot> missing(const Hash32& h);

  [[nodiscard]] SlotKind kind() const { return w_ == 0 ? SlotKind::Empty : static_cast<SlotKind>(w_ & kTagMask); }
  [[nodiscard]] bool empty() const { return w_ == 0; }
  // Loaded only.
  [[nodiscard]] FrameDesc* frame() const { return reinterpret_cast<FrameDesc*>(w_ & ~kTagMask); }
  [[nodiscard]] PageRef page() const { return PageRef::ref_existing(frame()); }
  // Rule 2.2: Empty -> 32 zero bytes, Loaded(p) -> p.hash, Missing(h) -> h.
  [[nodiscard]] const Hash32& root() const;
  [[nodiscard]] SlotView view() const;

  // Same representation (same frame / same box / both Empty).
  [[nodiscard]] bool same(const Slot& o) const { return w_ == o.w_; }
  void reset();
  void swap(Slot& o) noexcept { std::swap(w_, o.w_); }

  // A Missing box (exposed for the slot tests' refcount checks).
  struct MissingBox {
    std::atomic<std::uint32_t> refs;
    std::uint32_t unused;
    Hash32 hash;
  };
  // Live Missing boxes (for leak tests).
  static std::uint64_t missing_boxes();

 private:
  static constexpr std::uintptr_t kTagMask = 7;
  static constexpr std::uintptr_t kLoaded = 1;
  static constexpr std::uintptr_t kMissing = 2;
  [[nodiscard]] MissingBox* box() const { return reinterpret_cast<MissingBox*>(w_ & ~kTagMask); }
  void acquire();
  std::uintptr_t w_ = 0;
};
static_assert(sizeof(Slot) == 8);

}  // namespace capmem
