// Internal to the core (include/capmem/internal/): a layout the public headers need to see,
// not an API an embedder calls. The public API is datacap.h, fault.h, pt.h, frame.h, page.h,
// slot.h, codec.h, hash.h, status.h and the seam env.h.
// A DataCap's copy-on-write overlay (rule 3.3): page index -> Slot, written since the
// backing settled. Structure: a fixed 4-level radix tree with the backing's fan-out of 32
// (20 bits of page index, 5 per level), nodes from a slab. Lookup is 4 dependent loads;
// insert allocates at most the 4 path nodes. Leaves keep a presence bitmap, so an entry
// holding Empty is distinct from no entry.
#pragma once

#include <cstdint>
#include <utility>

#include "capmem/slot.h"
#include "capmem/status.h"

namespace capmem {

namespace overlay_detail {
inline constexpr unsigned kBits = 5;
inline constexpr unsigned kFan = 32;
inline constexpr unsigned kLevels = 4;
struct ONode {
  // Invariants: level 0 holds slots (present bit i <=> slots[i] is an entry; a slot
  // whose bit is clear is Empty); level >= 1 holds kids (present bit i <=> kids[i]).
  // A node exists only if it has at least one entry below it, or a reservation put it there.
  std::uint32_t present;
  std::uint8_t level;
  union U {
    U() {}
    ~U() {}
    Slot slots[kFan];
    ONode* kids[kFan];
  } u;
};
}  // namespace overlay_detail

// Nodes obtained ahead of an insert (the fault path's prepare step, rule 4.4). Holds
// exactly the nodes the insert of `page` needs given the overlay at reserve time; the
// overlay must not be flushed or cleared before publish. Dropping it frees them.
class OverlayReservation {
 public:
  OverlayReservation() = default;
  OverlayReservation(OverlayReservation&& o) noexcept : page_(o.page_), n_(std::exchange(o.n_, 0)) {
    for (unsigned i = 0; i < n_; ++i) spare_[i] = o.spare_[i];
  }
  OverlayReservation& operator=(OverlayReservation&& o) noexcept {
    if (this != &o) {
      release();
      page_ = o.page_;
      n_ = std::exchange(o.n_, 0);
      for (unsigned i = 0; i < n_; ++i) spare_[i] = o.spare_[i];
    }
    return *this;
  }
  OverlayReservation(const OverlayReservation&) = delete;
  OverlayReservation& operator=(const OverlayReservation&) = delete;
  ~OverlayReservation() {
    if (n_ != 0) release();  // inline: the fault path drops moved-from reservations
  }
  [[nodiscard]] std::uint32_t page() const { return page_; }

 private:
  friend class Overlay;
  void release();
  std::uint32_t page_ = 0;
  unsigned n_ = 0;
  overlay_detail::ONode* spare_[overlay_detail::kLevels] = {};
};

class Overlay {
 public:
  Overlay() = default;
  Overlay(Overlay&& o) noexcept : root_(std::exchange(o.root_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  Overlay& operator=(Overlay&& o) noexcept {
    if (this != &o) {
      clear();
      root_ = std::exchange(o.root_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  Overlay(const Overlay&) = delete;
  Overlay& operator=(const Overlay&) = delete;
  ~Overlay() { clear(); }

  // The entry for `page`, or nullptr when there is none. O(4), no refcounts.
  [[nodiscard]] const Slot* find(std::uint32_t page) const;
  [[nodiscard]] std::uint32_t count() const { return count_; }

  // Prepare: may fail with OutOfFrames, the overlay unchanged.
  Result<OverlayReservation> reserve(std::uint32_t page);
  // Commit: inserts or replaces the entry for r.page(); cannot fail.
  void publish(OverlayReservation&& r, Slot s);
  Result<void> put(std::uint32_t page, Slot s);
  // Replaces the existing entry for `page` in place (traps if there is none): no node is
  // allocated, so it cannot fail (DataCap::resolve's commit step, rule 8.4).
  void replace(std::uint32_t page, Slot s);

  // A deep copy (slots shared by reference). OutOfFrames leaves nothing behind.
  Result<Overlay> clone() const;
  void clear();

  // Calls f(page, const Slot&) for every entry in ascending page order; stops and returns
  // the first non-Ok status f returns.
  template <typename F>
  Status for_each(F&& f) const {
    return root_ == nullptr ? Status::Ok : walk(root_, 0, f);
  }

 private:
  template <typename F>
  static Status walk(const overlay_detail::ONode* n, std::uint32_t base, F& f) {
    const unsigned shift = overlay_detail::kBits * n->level;
    for (std::uint32_t m = n->present; m != 0; m &= m - 1) {
      const unsigned i = static_cast<unsigned>(__builtin_ctz(m));
      const std::uint32_t page = base | (i << shift);
      const Status s = n->level == 0 ? f(page, n->u.slots[i]) : walk(n->u.kids[i], page, f);
      if (s != Status::Ok) return s;
    }
    return Status::Ok;
  }

  overlay_detail::ONode* root_ = nullptr;
  std::uint32_t count_ = 0;  // entries (present bits over all leaves)
};

}  // namespace capmem
