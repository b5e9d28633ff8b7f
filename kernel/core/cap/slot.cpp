#include "capmem/slot.h"

#include "capmem/internal/slab.h"
#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

namespace {
constinit Slab g_boxes{sizeof(Slot::MissingBox)};
constinit const Hash32 kZeroChunk{};
}  // namespace

std::uint64_t Slot::missing_boxes() { return g_boxes.stats().objects; }

Slot Slot::loaded(PageRef p) {
  CAPMEM_ASSERT(static_cast<bool>(p));
  Slot s;
  s.w_ = reinterpret_cast<std::uintptr_t>(p.leak_ref()) | kLoaded;  // released by Slot::reset
  return s;
}

Result<Slot> Slot::missing(const Hash32& h) {
  void* mem = g_boxes.alloc();
  if (mem == nullptr) return Status::OutOfFrames;
  auto* b = static_cast<MissingBox*>(mem);
  b->refs.store(1, std::memory_order_relaxed);
  b->hash = h;
  Slot s;
  s.w_ = reinterpret_cast<std::uintptr_t>(b) | kMissing;
  return s;
}

void Slot::acquire() {
  switch (kind()) {
    case SlotKind::Empty: break;
    case SlotKind::Loaded: frames().ref(frame()); break;
    case SlotKind::Missing:
      if (box()->refs.fetch_add(1, std::memory_order_relaxed) == 0) env::panic("Slot: Missing box revived");
      break;
  }
}

void Slot::reset() {
  const std::uintptr_t w = std::exchange(w_, 0);
  if (w == 0) return;
  if ((w & kTagMask) == kLoaded) {
    frames().unref(reinterpret_cast<FrameDesc*>(w & ~kTagMask));
  } else {
    auto* b = reinterpret_cast<MissingBox*>(w & ~kTagMask);
    const std::uint32_t old = b->refs.fetch_sub(1, std::memory_order_acq_rel);
    if (old == 0) env::panic("Slot: Missing box released below zero");
    if (old == 1) g_boxes.free(b);
  }
}

const Hash32& Slot::root() const {
  switch (kind()) {
    case SlotKind::Loaded: return frame()->hash;
    case SlotKind::Missing: return box()->hash;
    case SlotKind::Empty: break;
  }
  return kZeroChunk;
}

SlotView Slot::view() const {
  switch (kind()) {
    case SlotKind::Loaded: return SlotView{.kind = SlotKind::Loaded, .frame = frame(), .hash = &frame()->hash};
    case SlotKind::Missing: return SlotView{.kind = SlotKind::Missing, .frame = nullptr, .hash = &box()->hash};
    case SlotKind::Empty: break;
  }
  return SlotView{.kind = SlotKind::Empty, .frame = nullptr, .hash = &kZeroChunk};
}

}  // namespace capmem
