#include "capmem/slot.h"

#include "capmem/codec.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/mem.h"
#include "capmem/internal/slab.h"

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

namespace codec {

namespace {
void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint32_t get_u32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
}
}  // namespace

std::size_t slot_encoded_size(const Slot& s) {
  switch (s.kind()) {
    case SlotKind::Loaded: return kLoadedLen;
    case SlotKind::Missing: return kMissingLen;
    case SlotKind::Empty: break;
  }
  return kEmptyLen;
}

void slot_encode(const Slot& s, std::uint8_t* out) {
  out[0] = static_cast<std::uint8_t>(s.kind());
  if (s.empty()) return;
  __builtin_memcpy(out + 1, s.root().b.data(), 32);
  if (s.kind() == SlotKind::Missing) return;
  CAPMEM_ASSERT(!s.root().is_zero());  // an unhashed copy must be flushed before encoding
  put_u32(out + 33, kPageBytesOffset);
  __builtin_memcpy(out + 37, s.frame()->virt(), PAGE_SIZE);
}

Status slot_parse(const std::uint8_t* in, std::size_t len, SlotKind* kind, const std::uint8_t** hash,
                  const std::uint8_t** page_bytes, std::uint64_t* err_offset) {
  *err_offset = 0;
  if (len == 0) return Status::DecodeEmptyBuffer;
  switch (in[0]) {
    case 0:
      *kind = SlotKind::Empty;
      if (len != kEmptyLen) {
        *err_offset = kEmptyLen;
        return Status::DecodeTrailingBytes;
      }
      return Status::Ok;
    case 2:
      *kind = SlotKind::Missing;
      *err_offset = len < kMissingLen ? len : kMissingLen;
      if (len < kMissingLen) return Status::DecodeMissingBytes;
      if (len > kMissingLen) return Status::DecodeTrailingBytes;
      *err_offset = 0;
      *hash = in + 1;
      return Status::Ok;
    case 1: {
      *kind = SlotKind::Loaded;
      if (len < 37) {
        *err_offset = len;
        return Status::DecodeMissingBytes;
      }
      if (get_u32(in + 33) != kPageBytesOffset) {
        *err_offset = 33;
        return Status::DecodeBadPageOffset;
      }
      if (len - 37 != PAGE_SIZE) {
        *err_offset = 37;
        return Status::DecodeBadPayloadLength;
      }
      *hash = in + 1;
      *page_bytes = in + 37;
      return Status::Ok;
    }
    default: return Status::DecodeUnknownSelector;
  }
}

Result<Slot> slot_decode(const std::uint8_t* in, std::size_t len, DecodeError* err) {
  SlotKind kind{};
  const std::uint8_t* h = nullptr;
  const std::uint8_t* bytes = nullptr;
  std::uint64_t off = 0;
  auto fail = [&](Status s, std::uint64_t o) -> Result<Slot> {
    if (err != nullptr) *err = DecodeError{.status = s, .offset = o};
    return s;
  };
  const Status st = slot_parse(in, len, &kind, &h, &bytes, &off);
  if (st != Status::Ok) return fail(st, off);
  Hash32 claimed;
  if (kind != SlotKind::Empty) __builtin_memcpy(claimed.b.data(), h, 32);
  switch (kind) {
    case SlotKind::Empty: return Slot{};
    case SlotKind::Missing: {
      auto s = Slot::missing(claimed);
      if (!s.ok()) return fail(s.status(), 0);
      return s;
    }
    case SlotKind::Loaded: {
      if (!(hash::page_content_hash(bytes) == claimed)) return fail(Status::DecodeForgedHash, 1);
      auto p = PageRef::from_verified(bytes, claimed);
      if (!p.ok()) return fail(p.status(), 0);
      return Slot::loaded(p.release_value());
    }
  }
  return fail(Status::DecodeUnknownSelector, 0);
}

}  // namespace codec
}  // namespace capmem
