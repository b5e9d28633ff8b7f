#include "capmem/internal/overlay.h"

#include <new>

#include "capmem/internal/slab.h"
#include "capmem/log.h"

namespace capmem {

using overlay_detail::kBits;
using overlay_detail::kFan;
using overlay_detail::kLevels;
using overlay_detail::ONode;

namespace {
constinit Slab g_onodes{sizeof(ONode)};

ONode* onode_new() {
  void* mem = g_onodes.alloc();
  if (mem == nullptr) return nullptr;
  return new (mem) ONode{};  // zeroed: no entries
}

void onode_free(ONode* n) {
  if (n->level == 0) {
    for (std::uint32_t m = n->present; m != 0; m &= m - 1) n->u.slots[__builtin_ctz(m)].~Slot();
  } else {
    for (std::uint32_t m = n->present; m != 0; m &= m - 1) onode_free(n->u.kids[__builtin_ctz(m)]);
  }
  n->~ONode();
  g_onodes.free(n);
}

unsigned index_at(std::uint32_t page, unsigned level) { return (page >> (kBits * level)) & (kFan - 1); }
}  // namespace

void OverlayReservation::release() {
  for (unsigned i = 0; i < n_; ++i) {
    spare_[i]->~ONode();
    g_onodes.free(spare_[i]);
  }
  n_ = 0;
}

const Slot* Overlay::find(std::uint32_t page) const {
  const ONode* n = root_;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    const unsigned i = index_at(page, level);
    if ((n->present & (1u << i)) == 0) return nullptr;
    if (level == 0) return &n->u.slots[i];
    n = n->u.kids[i];
  }
  return nullptr;
}

Result<OverlayReservation> Overlay::reserve(std::uint32_t page) {
  CAPMEM_ASSERT(page < (1u << (kBits * kLevels)));
  unsigned need = kLevels;
  const ONode* n = root_;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    --need;
    if (level == 0) break;
    const unsigned i = index_at(page, level);
    n = (n->present & (1u << i)) != 0 ? n->u.kids[i] : nullptr;
  }
  OverlayReservation r;
  r.page_ = page;
  for (unsigned k = 0; k < need; ++k) {
    ONode* x = onode_new();
    if (x == nullptr) return Status::OutOfFrames;  // r's destructor frees the others
    r.spare_[r.n_++] = x;
  }
  return r;
}

void Overlay::publish(OverlayReservation&& r, Slot s) {
  const std::uint32_t page = r.page_;
  ONode** link = &root_;
  for (unsigned level = kLevels - 1;; --level) {
    if (*link == nullptr) {
      if (r.n_ == 0) env::panic("Overlay::publish: reservation is stale (overlay changed since reserve)");
      ONode* x = r.spare_[--r.n_];
      x->level = static_cast<std::uint8_t>(level);
      if (level == 0)
        for (auto& sl : x->u.slots) new (&sl) Slot();
      *link = x;
    }
    ONode* n = *link;
    const unsigned i = index_at(page, level);
    if (level == 0) {
      if ((n->present & (1u << i)) == 0) {
        n->present |= 1u << i;
        ++count_;
      }
      n->u.slots[i] = static_cast<Slot&&>(s);
      return;  // unused spares go back with r
    }
    if ((n->present & (1u << i)) == 0) {
      n->present |= 1u << i;
      n->u.kids[i] = nullptr;
    }
    link = &n->u.kids[i];
  }
}

Result<void> Overlay::put(std::uint32_t page, Slot s) {
  OverlayReservation r = CAPMEM_TRY(reserve(page));
  publish(static_cast<OverlayReservation&&>(r), static_cast<Slot&&>(s));
  return {};
}

void Overlay::replace(std::uint32_t page, Slot s) {
  ONode* n = root_;
  for (unsigned level = kLevels - 1; n != nullptr; --level) {
    const unsigned i = index_at(page, level);
    if ((n->present & (1u << i)) == 0) break;
    if (level == 0) {
      n->u.slots[i] = static_cast<Slot&&>(s);
      return;
    }
    n = n->u.kids[i];
  }
  env::panic("Overlay::replace: no entry for the page");
}

namespace {
ONode* clone_node(const ONode* src) {
  ONode* n = onode_new();
  if (n == nullptr) return nullptr;
  n->level = src->level;
  if (src->level == 0) {
    for (unsigned i = 0; i < kFan; ++i) new (&n->u.slots[i]) Slot(src->u.slots[i]);
    n->present = src->present;
    return n;
  }
  for (std::uint32_t m = src->present; m != 0; m &= m - 1) {
    const unsigned i = static_cast<unsigned>(__builtin_ctz(m));
    ONode* k = clone_node(src->u.kids[i]);
    if (k == nullptr) {
      onode_free(n);  // frees the kids cloned so far (present bits track them)
      return nullptr;
    }
    n->u.kids[i] = k;
    n->present |= 1u << i;
  }
  return n;
}
}  // namespace

Result<Overlay> Overlay::clone() const {
  Overlay o;
  if (root_ == nullptr) return o;
  o.root_ = clone_node(root_);
  if (o.root_ == nullptr) return Status::OutOfFrames;
  o.count_ = count_;
  return o;
}

void Overlay::clear() {
  if (root_ != nullptr) onode_free(root_);
  root_ = nullptr;
  count_ = 0;
}

}  // namespace capmem
