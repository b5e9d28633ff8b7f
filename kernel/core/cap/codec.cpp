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

bool missing_resolvable(const Hash32& h) { return !h.is_zero() && !(h == hash::zero_hash(7)); }

std::size_t slot_encoded_size(const Slot& s, bool as_missing) {
  switch (s.kind()) {
    case SlotKind::Loaded: return as_missing ? kMissingLen : kLoadedLen;
    case SlotKind::Missing: return kMissingLen;
    case SlotKind::Empty: break;
  }
  return kEmptyLen;
}

std::size_t slot_encode_head(const Slot& s, std::uint8_t* out, bool as_missing) {
  if (s.empty()) {
    out[0] = static_cast<std::uint8_t>(SlotKind::Empty);
    return kEmptyLen;
  }
  // A Loaded page must be hashed: an unhashed copy must be flushed before encoding.
  CAPMEM_ASSERT(s.kind() == SlotKind::Missing || !s.root().is_zero());
  __builtin_memcpy(out + 1, s.root().b.data(), 32);
  if (s.kind() == SlotKind::Missing || as_missing) {
    out[0] = static_cast<std::uint8_t>(SlotKind::Missing);  // rule 8.6: Missing(p.hash) for Loaded(p)
    return kMissingLen;
  }
  out[0] = static_cast<std::uint8_t>(SlotKind::Loaded);
  put_u32(out + 33, kPageBytesOffset);
  return kSlotHeadMax;
}

void slot_encode(const Slot& s, std::uint8_t* out, bool as_missing) {
  if (slot_encode_head(s, out, as_missing) == kSlotHeadMax)
    __builtin_memcpy(out + kSlotHeadMax, s.frame()->virt(), PAGE_SIZE);
}

namespace {

// The structure of the slot of `n` bytes at input offset `at` (rule 2.5): reads the
// selector and, for Missing and Loaded, the claimed hash (and Loaded's page offset) into
// locals, each byte once; never a page byte. On failure *rel is the offset of the
// violation relative to `at`.
struct SlotHead {
  SlotKind kind = SlotKind::Empty;
  Hash32 claimed;
};

Status read_slot_head(const ByteSource& src, std::uint64_t at, std::uint64_t n, SlotHead* head, std::uint64_t* rel) {
  *rel = 0;
  if (n == 0) return Status::DecodeEmptyBuffer;
  std::uint8_t b[kSlotHeadMax];
  src.copy_in(src.ctx, at, b, 1);
  switch (b[0]) {
    case 0:
      head->kind = SlotKind::Empty;
      if (n != kEmptyLen) {
        *rel = kEmptyLen;
        return Status::DecodeTrailingBytes;
      }
      return Status::Ok;
    case 2:
      head->kind = SlotKind::Missing;
      if (n != kMissingLen) {
        *rel = n < kMissingLen ? n : kMissingLen;
        return n < kMissingLen ? Status::DecodeMissingBytes : Status::DecodeTrailingBytes;
      }
      src.copy_in(src.ctx, at + 1, head->claimed.b.data(), 32);
      return Status::Ok;
    case 1:
      head->kind = SlotKind::Loaded;
      if (n < kSlotHeadMax) {
        *rel = n;
        return Status::DecodeMissingBytes;
      }
      src.copy_in(src.ctx, at + 1, b + 1, kSlotHeadMax - 1);
      if (get_u32(b + 33) != kPageBytesOffset) {
        *rel = 33;
        return Status::DecodeBadPageOffset;
      }
      if (n - kSlotHeadMax != PAGE_SIZE) {
        *rel = kSlotHeadMax;
        return Status::DecodeBadPayloadLength;
      }
      __builtin_memcpy(head->claimed.b.data(), b + 1, 32);
      return Status::Ok;
    default: return Status::DecodeUnknownSelector;
  }
}

// A Loaded page's 4096 bytes at input offset `at`, copied into a fresh aligned frame
// (rule 1.1) that nobody else sees yet; its hash is still the sentinel (the caller hashes
// the copy).
Result<PageRef> read_page(const ByteSource& src, std::uint64_t at) {
  PageRef p = CAPMEM_TRY(PageRef::unhashed_copy(nullptr));
  src.copy_in(src.ctx, at, p.mutable_bytes(), PAGE_SIZE);
  return p;
}

void copy_from_memory(const void* ctx, std::uint64_t offset, std::uint8_t* out, std::size_t n) {
  __builtin_memcpy(out, static_cast<const std::uint8_t*>(ctx) + offset, n);
}

}  // namespace

Result<Slot> slot_decode(const ByteSource& src, DecodeError* err) {
  auto fail = [&](Status s, std::uint64_t o) -> Result<Slot> {
    if (err != nullptr) *err = DecodeError{.status = s, .offset = o};
    return s;
  };
  SlotHead head;
  std::uint64_t rel = 0;
  const Status st = read_slot_head(src, 0, src.len, &head, &rel);
  if (st != Status::Ok) return fail(st, rel);
  switch (head.kind) {
    case SlotKind::Empty: return Slot{};
    case SlotKind::Missing: {
      auto s = Slot::missing(head.claimed);
      if (!s.ok()) return fail(s.status(), 0);
      return s;
    }
    case SlotKind::Loaded: {
      auto p = read_page(src, kSlotHeadMax);
      if (!p.ok()) return fail(p.status(), 0);
      p->seal();  // the hash of the copy, never of the input
      if (!(p->hash() == head.claimed)) return fail(Status::DecodeForgedHash, 1);
      return Slot::loaded(p.release_value());
    }
  }
  return fail(Status::DecodeUnknownSelector, 0);
}

Result<Slot> slot_decode(const std::uint8_t* in, std::size_t len, DecodeError* err) {
  return slot_decode(ByteSource::memory(in, len), err);
}

}  // namespace codec

ByteSource ByteSource::memory(const std::uint8_t* in, std::size_t len) {
  return ByteSource{.copy_in = codec::copy_from_memory, .ctx = in, .len = len};
}

// --- Cap container codec (section 5) ---------------------------------------------------------

namespace {

using codec::get_u32;
using codec::get_u64;
using codec::kSlotHeadMax;
using codec::put_u32;
using codec::put_u64;
using codec::read_page;
using codec::read_slot_head;
using codec::SlotHead;

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

namespace {

// Rule 8.6: whether the Loaded page at `page` travels with its bytes.
bool keeps_bytes(const EncodeOptions& opt, std::uint32_t page) {
  return !opt.thin || page < opt.keep_first || (opt.keep != nullptr && opt.keep(opt.keep_ctx, page));
}

// The wire length of slot `s` (nullptr: Empty) at `page` under `opt`.
std::uint64_t wire_len(const Slot* s, const EncodeOptions& opt, std::uint32_t page) {
  if (s == nullptr) return codec::kEmptyLen;
  return codec::slot_encoded_size(*s, s->kind() == SlotKind::Loaded && !keeps_bytes(opt, page));
}

}  // namespace

Result<std::uint64_t> DataCap::encoded_size() const { return encoded_size(EncodeOptions{}); }

Result<std::uint64_t> DataCap::encoded_size(const EncodeOptions& opt) const {
  if (backing_ == nullptr) return Status::EmptyCap;  // rule 3.10
  if (overlay_.count() != 0) return Status::OverlayNotEmpty;
  const std::uint32_t n = backing_->extent;
  std::uint64_t list = std::uint64_t{4} * n;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (list > 0xffffffffull) return Status::TooLarge;  // slot i's offset must fit a u32
    const Slot* s = tree::lookup(backing_->root, i);
    if (s != nullptr && s->kind() == SlotKind::Missing) {
      if (!opt.thin) return Status::MissingPage;                                      // rule 5.2
      if (!codec::missing_resolvable(s->root())) return Status::UnresolvableMissing;  // rule 8.6
    }
    list += wire_len(s, opt, i);
  }
  return 12 + list;
}

Result<void> DataCap::encode(ByteSink sink, void* ctx) const { return encode(sink, ctx, EncodeOptions{}); }

Result<void> DataCap::encode(ByteSink sink, void* ctx, const EncodeOptions& opt) const {
  CAPMEM_TRY(encoded_size(opt));  // checks overlay, Missing slots and offset range
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
    off += wire_len(tree::lookup(backing_->root, i), opt, i);
  }
  std::uint64_t written = std::uint64_t{4} * n;  // the slots' offsets as written below
  for (std::uint32_t i = 0; i < n; ++i) {
    const Slot* s = tree::lookup(backing_->root, i);
    if (s == nullptr) {
      const std::uint8_t z = 0;
      w.put(&z, 1);
      ++written;
      continue;
    }
    std::uint8_t head[codec::kSlotHeadMax];
    const bool thin = s->kind() == SlotKind::Loaded && !keeps_bytes(opt, i);
    const std::size_t h = codec::slot_encode_head(*s, head, thin);
    w.put(head, h);
    written += h;
    if (h == codec::kSlotHeadMax) {
      w.put(s->frame()->virt(), PAGE_SIZE);  // Loaded and kept
      written += PAGE_SIZE;
    }
  }
  const Status st = w.finish();
  if (st != Status::Ok) return st;
  // A keep predicate that changed its answers between the passes: the offset table does
  // not describe the slots written.
  if (written != off) return Status::InvalidArgument;
  return {};
}

Result<void> DataCap::encode(std::uint8_t* out, std::size_t cap) const { return encode(out, cap, EncodeOptions{}); }

Result<void> DataCap::encode(std::uint8_t* out, std::size_t cap, const EncodeOptions& opt) const {
  const std::uint64_t need = CAPMEM_TRY(encoded_size(opt));
  if (cap < need) return Status::InvalidArgument;
  MemSink m{.out = out, .cap = cap, .n = 0};
  return encode(mem_sink, &m, opt);
}

namespace {

// Offsets 1..count-1 of a cap's offset table (input bytes [16, 12 + 4 * count)), streamed
// in chunks: each read once, in order, into a local buffer.
class OffsetStream {
 public:
  OffsetStream(const ByteSource& src, std::uint64_t count) : src_(src), count_(count) {}
  // The next offset: slot 1's start on the first call, then slot 2's, ... (< count).
  std::uint32_t next() {
    if (pos_ == n_) {
      const std::uint64_t left = count_ - index_;
      n_ = left < kChunk ? static_cast<std::size_t>(left) : kChunk;
      src_.copy_in(src_.ctx, 12 + 4 * index_, buf_, 4 * n_);
      index_ += n_;
      pos_ = 0;
    }
    return get_u32(buf_ + 4 * pos_++);
  }

 private:
  static constexpr std::size_t kChunk = 64;
  const ByteSource& src_;
  std::uint64_t count_;
  std::uint64_t index_ = 1;  // the table index of the next chunk's first offset
  std::size_t n_ = 0;
  std::size_t pos_ = 0;
  std::uint8_t buf_[4 * kChunk];
};

// Where a decode's verified Loaded pages go: DataCap::decode puts them into its tree::Txn,
// codec::decode_pages hands them to its caller. The page's hash is set; a status other
// than Ok stops the decode (named at the page's slot).
struct PageSink {
  Status (*put)(void* ctx, std::uint32_t page, PageRef&& p);
  void* ctx;
  // Thin mode (rule 8.6): a Missing(h) slot with a resolvable hash, in page order.
  Status (*missing)(void* ctx, std::uint32_t page, const Hash32& h) = nullptr;
};

// Loaded pages copied in but not yet verified: hashed in batches of kBatch through
// hash::page_content_hashes (multi-buffer), each compared with the hash its slot claimed
// (both copies, rule 5.3), then handed to the sink.
class VerifyBatch {
 public:
  static constexpr std::size_t kBatch = 16;
  explicit VerifyBatch(PageSink sink) : sink_(sink) {}
  // `at`: input offset of the slot (errors name its hash at at + 1, or the slot).
  Status add(std::uint32_t page, PageRef p, const Hash32& claimed, std::uint64_t at, std::uint64_t* bad_at) {
    pages_[n_] = static_cast<PageRef&&>(p);
    claimed_[n_] = claimed;
    index_[n_] = page;
    at_[n_++] = at;
    return n_ == kBatch ? drain(bad_at) : Status::Ok;
  }
  Status drain(std::uint64_t* bad_at) {
    if (n_ == 0) return Status::Ok;
    const std::uint8_t* ptrs[kBatch];
    Hash32 got[kBatch];
    for (std::size_t i = 0; i < n_; ++i) ptrs[i] = pages_[i].bytes();
    hash::page_content_hashes(ptrs, got, n_);
    Status st = Status::Ok;
    for (std::size_t i = 0; i < n_; ++i) {
      if (st == Status::Ok && !(got[i] == claimed_[i])) {
        st = Status::DecodeForgedHash;
        *bad_at = at_[i] + 1;
      }
      if (st == Status::Ok) {
        pages_[i].desc()->hash = got[i];
        st = sink_.put(sink_.ctx, index_[i], static_cast<PageRef&&>(pages_[i]));
        if (st != Status::Ok) *bad_at = at_[i];
      }
      pages_[i].reset();
    }
    n_ = 0;
    return st;
  }

 private:
  PageSink sink_;
  PageRef pages_[kBatch];
  Hash32 claimed_[kBatch];
  std::uint32_t index_[kBatch] = {};
  std::uint64_t at_[kBatch] = {};
  std::size_t n_ = 0;
};

Status fail_at(DecodeError* err, Status s, std::uint64_t at) {
  if (err != nullptr) *err = DecodeError{.status = s, .offset = at};
  return s;
}

// A cap encoding's header and the start of its list (section 5.2), read and checked.
struct CapHeader {
  std::uint64_t len = 0;    // input bytes
  std::uint64_t size = 0;   // the cap's size
  std::uint64_t count = 0;  // slots
  std::uint64_t start = 0;  // slot 0's offset in the list
};

Status decode_header(const ByteSource& src, CapHeader* h, DecodeError* err) {
  const std::uint64_t len = src.len;
  if (len == 0) return fail_at(err, Status::DecodeEmptyBuffer, 0);
  if (len < 12) return fail_at(err, Status::DecodeMissingBytes, len);
  std::uint8_t b[12];
  src.copy_in(src.ctx, 0, b, 12);
  const std::uint64_t size = get_u64(b);
  if (size == 0 || size % PAGE_SIZE != 0 || size > kMaxCapSize) return fail_at(err, Status::DecodeBadSize, 0);
  if (get_u32(b + 8) != 12) return fail_at(err, Status::DecodeBadFirstOffset, 8);
  const std::uint64_t L = len - 12;  // the list: offsets, then slots
  std::uint64_t count = 0;
  std::uint64_t start = 0;
  if (L != 0) {
    if (L < 4) return fail_at(err, Status::DecodeBadListLength, 12);
    src.copy_in(src.ctx, 12, b, 4);
    start = get_u32(b);
    if (start == 0 || start % 4 != 0 || start > L) return fail_at(err, Status::DecodeBadOffsetTable, 12);
    count = start / 4;
  }
  if (count > size / PAGE_SIZE) return fail_at(err, Status::DecodeTooManySlots, 12);
  *h = CapHeader{.len = len, .size = size, .count = count, .start = start};
  return Status::Ok;
}

// The slots, front to back, every input byte read once through `src` (rule 5.3): each
// offset into a local (checked there and kept), each slot's head into a local, each Loaded
// page's bytes into the fresh frame it lands in, where they are checked for zero and
// hashed, then handed to `sink` (in page order). Allocation follows the input actually
// read (a batch of frames), never the size or count claims.
Status decode_slots(const ByteSource& src, const CapHeader& h, PageSink sink, const DecodeOptions& opt,
                    BuildProgress progress, DecodeError* err) {
  const std::uint64_t L = h.len - 12;
  std::uint64_t start = h.start;  // slot i spans [start, end) of the list
  std::uint64_t bad_at = 0;
  Status st = Status::Ok;
  VerifyBatch batch(sink);
  OffsetStream offsets(src, h.count);
  std::uint64_t next_report = BuildProgress::kProgressStep;
  for (std::uint64_t i = 0; i < h.count && st == Status::Ok; ++i) {
    std::uint64_t end = L;
    if (i + 1 < h.count) {
      end = offsets.next();
      if (end < start || end > L) return fail_at(err, Status::DecodeBadOffsetTable, 12 + 4 * (i + 1));
    }
    SlotHead head;
    std::uint64_t rel = 0;
    st = read_slot_head(src, 12 + start, end - start, &head, &rel);
    if (st != Status::Ok) {
      fail_at(err, st, 12 + start + rel);
    } else if (head.kind == SlotKind::Missing) {
      if (!opt.thin || sink.missing == nullptr) {
        st = fail_at(err, Status::DecodeMissingSlot, 12 + start);  // rule 5.2
      } else if (st = batch.drain(&bad_at); st != Status::Ok) {
        // The Loaded pages before this slot first: the sink sees every page in page order.
        fail_at(err, st, bad_at);
      } else if (!codec::missing_resolvable(head.claimed)) {
        st = fail_at(err, Status::DecodeUnresolvableMissing, 12 + start + 1);  // rule 8.6, at the hash
      } else {
        st = sink.missing(sink.ctx, static_cast<std::uint32_t>(i), head.claimed);
        if (st != Status::Ok) fail_at(err, st, 12 + start);
      }
    } else if (head.kind == SlotKind::Empty) {
      if (i + 1 == h.count) st = fail_at(err, Status::DecodeTrailingEmpty, 12 + start);
    } else {
      auto p = read_page(src, 12 + start + kSlotHeadMax);
      if (!p.ok()) {
        st = fail_at(err, p.status(), 12 + start);
      } else if (mem::page_is_zero(p->bytes())) {
        st = fail_at(err, Status::DecodeZeroLoaded, 12 + start + kSlotHeadMax);
      } else {
        st = batch.add(static_cast<std::uint32_t>(i), p.release_value(), head.claimed, 12 + start, &bad_at);
        if (st != Status::Ok) fail_at(err, st, bad_at);
      }
    }
    start = end;
    if (st == Status::Ok && 12 + start >= next_report && i + 1 < h.count) {
      if (progress.cancelled()) st = fail_at(err, Status::Cancelled, 12 + start);
      else progress(12 + start);
      next_report = 12 + start + BuildProgress::kProgressStep;
    }
  }
  if (st == Status::Ok) {
    st = batch.drain(&bad_at);
    if (st != Status::Ok) fail_at(err, st, bad_at);
  }
  if (st == Status::Ok) progress(h.len);
  return st;
}

Status txn_put(void* ctx, std::uint32_t page, PageRef&& p) {
  return static_cast<tree::Txn*>(ctx)->set(page, Slot::loaded(static_cast<PageRef&&>(p))).status();
}
Status txn_missing(void* ctx, std::uint32_t page, const Hash32& h) {
  auto m = Slot::missing(h);
  if (!m.ok()) return m.status();
  return static_cast<tree::Txn*>(ctx)->set(page, m.release_value()).status();
}

struct PagesCtx {
  codec::VerifiedPage fn;
  void* ctx;
  codec::MissingSlot missing = nullptr;
};
Status pages_put(void* ctx, std::uint32_t page, PageRef&& p) {
  auto* c = static_cast<PagesCtx*>(ctx);
  const PageRef held = static_cast<PageRef&&>(p);  // released when the caller is done with it
  return c->fn(c->ctx, page, held.bytes(), held.hash());
}
Status pages_missing(void* ctx, std::uint32_t page, const Hash32& h) {
  auto* c = static_cast<PagesCtx*>(ctx);
  return c->missing(c->ctx, page, h);
}

}  // namespace

Result<DataCap> DataCap::decode(const ByteSource& src, DecodeError* err, BuildProgress progress) {
  return decode(src, DecodeOptions{}, err, progress);
}

// One pass, front to back (decode_header, decode_slots); the verified pages (and, in thin
// mode, the Missing slots: one Missing box per 33-byte slot read) go into a new backing's tree.
Result<DataCap> DataCap::decode(const ByteSource& src, const DecodeOptions& opt, DecodeError* err,
                                BuildProgress progress) {
  CapHeader h;
  if (const Status st = decode_header(src, &h, err); st != Status::Ok) return st;
  auto nb_r = tree::backing_alloc();
  if (!nb_r.ok()) return fail_at(err, nb_r.status(), 0);
  tree::Backing* nb = nb_r.value();
  Status st = Status::Ok;
  {
    tree::Txn txn(nullptr);
    st = decode_slots(src, h, PageSink{.put = txn_put, .ctx = &txn, .missing = txn_missing}, opt, progress, err);
    if (st == Status::Ok) tree::backing_init(nb, txn.commit(), h.size);
  }
  if (st != Status::Ok) {
    tree::backing_free_unused(nb);
    return st;
  }
  return DataCap(nb, Overlay{});
}

Status codec::decode_pages(const ByteSource& src, VerifiedPage fn, void* ctx, std::uint64_t* size, DecodeError* err,
                           BuildProgress progress) {
  CapHeader h;
  if (const Status st = decode_header(src, &h, err); st != Status::Ok) return st;
  *size = h.size;
  PagesCtx c{.fn = fn, .ctx = ctx};
  return decode_slots(src, h, PageSink{.put = pages_put, .ctx = &c}, DecodeOptions{}, progress, err);
}

Status codec::decode_pages_thin(const ByteSource& src, VerifiedPage fn, MissingSlot missing, void* ctx,
                                std::uint64_t* size, DecodeError* err, BuildProgress progress) {
  CapHeader h;
  if (const Status st = decode_header(src, &h, err); st != Status::Ok) return st;
  *size = h.size;
  PagesCtx c{.fn = fn, .ctx = ctx, .missing = missing};
  return decode_slots(src, h, PageSink{.put = pages_put, .ctx = &c, .missing = pages_missing},
                      DecodeOptions{.thin = true}, progress, err);
}

Result<DataCap> DataCap::decode(const std::uint8_t* in, std::size_t len, DecodeError* err, BuildProgress progress) {
  return decode(ByteSource::memory(in, len), DecodeOptions{}, err, progress);
}

Result<DataCap> DataCap::decode(const std::uint8_t* in, std::size_t len, const DecodeOptions& opt, DecodeError* err,
                                BuildProgress progress) {
  return decode(ByteSource::memory(in, len), opt, err, progress);
}

}  // namespace capmem
