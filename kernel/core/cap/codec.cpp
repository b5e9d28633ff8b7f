// The wire codecs (include/capmem/codec.h): the page slot (rules 2.4, 2.5) and the cap
// container (section 5, DataCap::encoded_size / encode / decode), which parses and writes
// its slots through the slot codec.
#include "capmem/codec.h"

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

// --- Slot codec (rules 2.4, 2.5) ----------------------------------------------------------

namespace codec {

std::size_t slot_encoded_size(const Slot& s) {
  switch (s.kind()) {
    case SlotKind::Loaded: return kLoadedLen;
    case SlotKind::Missing: return kMissingLen;
    case SlotKind::Empty: break;
  }
  return kEmptyLen;
}

std::size_t slot_encode_head(const Slot& s, std::uint8_t* out) {
  out[0] = static_cast<std::uint8_t>(s.kind());
  if (s.empty()) return kEmptyLen;
  __builtin_memcpy(out + 1, s.root().b.data(), 32);
  if (s.kind() == SlotKind::Missing) return kMissingLen;
  CAPMEM_ASSERT(!s.root().is_zero());  // an unhashed copy must be flushed before encoding
  put_u32(out + 33, kPageBytesOffset);
  return kSlotHeadMax;
}

void slot_encode(const Slot& s, std::uint8_t* out) {
  if (slot_encode_head(s, out) == kSlotHeadMax) __builtin_memcpy(out + kSlotHeadMax, s.frame()->virt(), PAGE_SIZE);
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

// --- Cap container codec (section 5) ---------------------------------------------------------

namespace {

using codec::get_u32;
using codec::get_u64;
using codec::put_u32;
using codec::put_u64;

class Writer {
 public:
  Writer(ByteSink sink, void* ctx) : sink_(sink), ctx_(ctx) {}
  void put(const void* p, std::size_t n) {
    if (st_ != Status::Ok) return;
    if (n > sizeof(buf_) / 2) {
      flush();
      if (st_ == Status::Ok) st_ = sink_(ctx_, static_cast<const std::uint8_t*>(p), n);
      return;
    }
    if (n_ + n > sizeof(buf_)) flush();
    __builtin_memcpy(buf_ + n_, p, n);
    n_ += n;
  }
  Status finish() {
    flush();
    return st_;
  }

 private:
  void flush() {
    if (st_ == Status::Ok && n_ != 0) st_ = sink_(ctx_, buf_, n_);
    n_ = 0;
  }
  ByteSink sink_;
  void* ctx_;
  std::uint8_t buf_[1024];
  std::size_t n_ = 0;
  Status st_ = Status::Ok;
};

struct MemSink {
  std::uint8_t* out;
  std::size_t cap;
  std::size_t n;
};
Status mem_sink(void* ctx, const std::uint8_t* data, std::size_t len) {
  auto* m = static_cast<MemSink*>(ctx);
  if (len > m->cap - m->n) return Status::InvalidArgument;
  __builtin_memcpy(m->out + m->n, data, len);
  m->n += len;
  return Status::Ok;
}
}  // namespace

Result<std::uint64_t> DataCap::encoded_size() const {
  if (overlay_.count() != 0) return Status::OverlayNotEmpty;
  const std::uint32_t n = backing_->extent;
  std::uint64_t list = std::uint64_t{4} * n;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (list > 0xffffffffull) return Status::TooLarge;  // slot i's offset must fit a u32
    const Slot* s = tree::lookup(backing_->root, i);
    if (s != nullptr && s->kind() == SlotKind::Missing) return Status::MissingPage;
    list += s != nullptr ? codec::slot_encoded_size(*s) : codec::kEmptyLen;
  }
  return 12 + list;
}

Result<void> DataCap::encode(ByteSink sink, void* ctx) const {
  TRY(encoded_size());  // checks overlay, Missing slots and offset range
  const std::uint32_t n = backing_->extent;
  Writer w(sink, ctx);
  std::uint8_t hdr[12];
  put_u64(hdr, backing_->size);
  put_u32(hdr + 8, 12);
  w.put(hdr, sizeof hdr);
  std::uint64_t off = std::uint64_t{4} * n;
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint8_t b[4];
    put_u32(b, static_cast<std::uint32_t>(off));
    w.put(b, 4);
    const Slot* s = tree::lookup(backing_->root, i);
    off += s != nullptr ? codec::slot_encoded_size(*s) : codec::kEmptyLen;
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    const Slot* s = tree::lookup(backing_->root, i);
    if (s == nullptr) {
      const std::uint8_t z = 0;
      w.put(&z, 1);
      continue;
    }
    std::uint8_t head[codec::kSlotHeadMax];
    w.put(head, codec::slot_encode_head(*s, head));
    w.put(s->frame()->virt(), PAGE_SIZE);  // Loaded: encoded_size() refused Missing
  }
  return w.finish();
}

Result<void> DataCap::encode(std::uint8_t* out, std::size_t cap) const {
  const std::uint64_t need = TRY(encoded_size());
  if (cap < need) return Status::InvalidArgument;
  MemSink m{.out = out, .cap = cap, .n = 0};
  return encode(mem_sink, &m);
}

Result<DataCap> DataCap::decode(const std::uint8_t* in, std::size_t len, DecodeError* err, BuildProgress progress) {
  auto fail = [err](Status s, std::uint64_t at) {
    if (err != nullptr) *err = DecodeError{.status = s, .offset = at};
    return s;
  };
  if (len == 0) return fail(Status::DecodeEmptyBuffer, 0);
  if (len < 12) return fail(Status::DecodeMissingBytes, len);
  const std::uint64_t size = get_u64(in);
  if (size % PAGE_SIZE != 0 || size > kMaxCapSize) return fail(Status::DecodeBadSize, 0);
  if (get_u32(in + 8) != 12) return fail(Status::DecodeBadFirstOffset, 8);
  const std::uint8_t* list = in + 12;
  const std::size_t L = len - 12;
  std::uint64_t count = 0;
  if (L != 0) {
    if (L < 4) return fail(Status::DecodeBadListLength, 12);
    const std::uint32_t o0 = get_u32(list);
    if (o0 == 0 || o0 % 4 != 0 || o0 > L) return fail(Status::DecodeBadOffsetTable, 12);
    count = o0 / 4;
  }
  if (count > size / PAGE_SIZE) return fail(Status::DecodeTooManySlots, 12);
  // Slot i spans [start, end) of the list.
  auto bounds = [&](std::uint64_t i, std::uint64_t* start, std::uint64_t* end) {
    *start = get_u32(list + 4 * i);
    *end = i + 1 < count ? get_u32(list + 4 * (i + 1)) : L;
  };

  // Pass 1: structure and canonical form; no allocation, no hashing.
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    bounds(i, &start, &end);
    if (i + 1 < count) {
      if (end < start) return fail(Status::DecodeBadOffsetTable, 12 + 4 * (i + 1));
      if (end > L) return fail(Status::DecodeBadOffsetTable, 12 + 4 * (i + 1));
    }
    SlotKind kind{};
    const std::uint8_t* h = nullptr;
    const std::uint8_t* bytes = nullptr;
    std::uint64_t rel = 0;
    const Status st = codec::slot_parse(list + start, end - start, &kind, &h, &bytes, &rel);
    if (st != Status::Ok) return fail(st, 12 + start + rel);
    if (kind == SlotKind::Missing) return fail(Status::DecodeMissingSlot, 12 + start);
    if (kind == SlotKind::Empty && i + 1 == count) return fail(Status::DecodeTrailingEmpty, 12 + start);
    if (kind == SlotKind::Loaded && mem::page_is_zero(bytes)) return fail(Status::DecodeZeroLoaded, 12 + start + 37);
  }

  // Pass 2: verify hashes in batches, copy pages into fresh frames, build the tree.
  auto nb_r = tree::backing_alloc();
  if (!nb_r.ok()) return fail(nb_r.status(), 0);
  tree::Backing* nb = nb_r.value();
  Status st = Status::Ok;
  {
    tree::Txn txn(nullptr);
    constexpr std::size_t kBatch = 16;
    const std::uint8_t* ptrs[kBatch];
    Hash32 got[kBatch];
    std::uint64_t starts[kBatch];
    std::uint32_t pages[kBatch];
    std::size_t n = 0;
    std::uint64_t next_report = 0;
    auto drain = [&]() -> Status {
      hash::page_content_hashes(ptrs, got, n);
      for (std::size_t j = 0; j < n; ++j) {
        if (__builtin_memcmp(got[j].b.data(), list + starts[j] + 1, 32) != 0)
          return fail(Status::DecodeForgedHash, 12 + starts[j] + 1);
        auto p = PageRef::from_verified(ptrs[j], got[j]);
        if (!p.ok()) return fail(p.status(), 12 + starts[j]);
        const Status s = txn.set(pages[j], Slot::loaded(p.release_value())).status();
        if (s != Status::Ok) return fail(s, 12 + starts[j]);
      }
      n = 0;
      return Status::Ok;
    };
    for (std::uint64_t i = 0; i < count && st == Status::Ok; ++i) {
      std::uint64_t start = 0;
      std::uint64_t end = 0;
      bounds(i, &start, &end);
      if (list[start] != static_cast<std::uint8_t>(SlotKind::Loaded)) continue;
      ptrs[n] = list + start + 37;
      starts[n] = start;
      pages[n++] = static_cast<std::uint32_t>(i);
      if (n == kBatch) {
        st = drain();
        if (start >= next_report) {
          progress(12 + start);
          next_report = start + BuildProgress::kProgressStep;
        }
      }
    }
    if (st == Status::Ok && n != 0) st = drain();
    if (st == Status::Ok) {
      progress(len);
      tree::backing_init(nb, txn.commit(), size);
    }
  }
  if (st != Status::Ok) {
    tree::backing_free_unused(nb);
    return st;
  }
  return DataCap(nb, Overlay{});
}

}  // namespace capmem
