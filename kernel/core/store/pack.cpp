// Page pack parser and writer (rule 8.7; the layout and the trust model are in
// include/capmem/pack.h). Freestanding, no allocation: a few hundred bytes of stack.
#include "capmem/pack.h"

namespace capmem::store {

namespace {

using codec::get_u32;
using codec::get_u64;
using codec::put_u32;
using codec::put_u64;

constexpr std::uint32_t kRootChunk = 32;  // index roots read per copy_in (1 KiB of stack)
constexpr std::uint32_t kPadChunk = 512;  // pad bytes read per copy_in
constexpr std::uint8_t kZeros[512] = {};  // the pad pack_write() streams

void copy_slice(const void* ctx, std::uint64_t offset, std::uint8_t* out, std::size_t n) {
  const auto* s = static_cast<const PackPageSource*>(ctx);
  s->pack.copy_in(s->pack.ctx, s->offset + offset, out, n);
}

}  // namespace

int root_compare(const Hash32& a, const Hash32& b) {
  for (std::size_t i = 0; i < 32; ++i)
    if (a.b[i] != b.b[i]) return a.b[i] < b.b[i] ? -1 : 1;
  return 0;
}

ByteSource PackPageSource::source() const { return ByteSource{.copy_in = copy_slice, .ctx = this, .len = PAGE_SIZE}; }

// Every check reads its bytes once, into locals, in file order: the header (24 bytes), the
// index (in chunks, each root compared with the one before it), the pad (in chunks). The
// geometry checks use only the header locals and the length, in an order that makes every
// later step's arithmetic safe: count against the length first (so 32 x count and 4096 x
// count are known to fit), then pages_offset, then the exact length.
Result<Pack> Pack::parse(const ByteSource& src, DecodeError* err) {
  auto fail = [err](Status s, std::uint64_t at) -> Result<Pack> {
    if (err != nullptr) *err = DecodeError{.status = s, .offset = at};
    return s;
  };
  const std::uint64_t len = src.len;
  std::uint8_t hdr[kPackHeaderSize];
  const std::uint64_t have = len < kPackHeaderSize ? len : kPackHeaderSize;
  if (have != 0) src.copy_in(src.ctx, 0, hdr, static_cast<std::size_t>(have));
  for (std::uint64_t i = 0; i < have && i < sizeof kPackMagic; ++i)
    if (hdr[i] != kPackMagic[i]) return fail(Status::PackBadMagic, 0);
  // Shorter than the header, every byte present matching the magic (an empty input too).
  if (len < kPackHeaderSize) return fail(Status::PackTruncated, len);
  const std::uint32_t count = get_u32(hdr + 8);
  const std::uint32_t flags = get_u32(hdr + 12);
  const std::uint64_t pages_offset = get_u64(hdr + 16);
  if (flags != 0) return fail(Status::PackBadFlags, 12);
  const std::uint64_t index_end = kPackHeaderSize + kPackRootSize * count;  // < 2^38: no overflow
  const std::uint64_t pages_len = std::uint64_t{PAGE_SIZE} * count;         // < 2^44
  if (index_end > len || pages_len > len - index_end) return fail(Status::PackBadCount, 8);
  if (pages_offset % PAGE_SIZE != 0 || pages_offset < index_end || pages_offset > len)
    return fail(Status::PackBadPagesOffset, 16);
  const std::uint64_t room = len - pages_offset;
  if (room < pages_len) return fail(Status::PackBadLength, len);                       // ends inside the pages
  if (room > pages_len) return fail(Status::PackBadLength, pages_offset + pages_len);  // trailing bytes

  Hash32 prev{};
  std::uint8_t buf[kRootChunk * kPackRootSize];
  for (std::uint32_t i = 0; i < count;) {
    const std::uint32_t n = count - i < kRootChunk ? count - i : kRootChunk;
    src.copy_in(src.ctx, kPackHeaderSize + kPackRootSize * i, buf, n * kPackRootSize);
    for (std::uint32_t k = 0; k < n; ++k, ++i) {
      Hash32 r;
      __builtin_memcpy(r.b.data(), buf + kPackRootSize * k, kPackRootSize);
      if (i != 0 && root_compare(prev, r) >= 0)
        return fail(Status::PackUnsortedIndex, kPackHeaderSize + kPackRootSize * i);
      prev = r;
    }
  }
  for (std::uint64_t at = index_end; at < pages_offset;) {
    const std::uint64_t left = pages_offset - at;
    const std::size_t n = left < kPadChunk ? static_cast<std::size_t>(left) : kPadChunk;
    src.copy_in(src.ctx, at, buf, n);
    for (std::size_t k = 0; k < n; ++k)
      if (buf[k] != 0) return fail(Status::PackNonzeroPad, at + k);
    at += n;
  }
  Pack p;
  p.src_ = src;
  p.count_ = count;
  p.pages_offset_ = pages_offset;
  return p;
}

Result<Pack> Pack::parse(const std::uint8_t* data, std::size_t len, DecodeError* err) {
  auto p = parse(ByteSource::memory(data, len), err);
  if (p.ok()) p->base_ = data;
  return p;
}

Result<Hash32> Pack::root_at(std::uint32_t i) const {
  if (i >= count_) return Status::OutOfExtent;
  Hash32 r;
  src_.copy_in(src_.ctx, kPackHeaderSize + kPackRootSize * i, r.b.data(), kPackRootSize);
  return r;
}

Result<PackPage> Pack::page(std::uint32_t i) const {
  if (i >= count_) return Status::OutOfExtent;
  return PackPage{.index = i, .offset = pages_offset_ + std::uint64_t{PAGE_SIZE} * i};
}

// lo and hi come only from count_ (a local of parse) and the comparisons, never from the
// bytes read: whatever the index holds now, each probe is an index position below count_ and
// the loop ends after at most 33 probes.
Result<PackPage> Pack::find(const Hash32& root) const {
  std::uint32_t lo = 0;
  std::uint32_t hi = count_;  // the answer, if any, is in [lo, hi)
  while (lo < hi) {
    const std::uint32_t mid = lo + (hi - lo) / 2;
    Hash32 r;
    src_.copy_in(src_.ctx, kPackHeaderSize + kPackRootSize * mid, r.b.data(), kPackRootSize);
    const int c = root_compare(r, root);
    if (c == 0) return page(mid);
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return Status::NotInStore;
}

namespace {

// Both writers: roots and pages through accessors (an entry array, or a root array and a
// page callback), checked for order before anything is written.
struct WriteFrom {
  const Hash32& (*root)(const void* ctx, std::uint32_t i);
  Status (*page)(const void* ctx, std::uint32_t i, const std::uint8_t** bytes);
  const void* ctx;
};

Result<void> write_pack(const WriteFrom& from, std::uint32_t count, ByteSink sink, void* ctx) {
  for (std::uint32_t i = 1; i < count; ++i)
    if (root_compare(from.root(from.ctx, i - 1), from.root(from.ctx, i)) >= 0) return Status::InvalidArgument;
  const std::uint64_t pages_offset = pack_min_pages_offset(count);
  std::uint8_t hdr[kPackHeaderSize];
  __builtin_memcpy(hdr, kPackMagic, sizeof kPackMagic);
  put_u32(hdr + 8, count);
  put_u32(hdr + 12, 0);
  put_u64(hdr + 16, pages_offset);
  Status st = sink(ctx, hdr, sizeof hdr);
  for (std::uint32_t i = 0; i < count && st == Status::Ok; ++i)
    st = sink(ctx, from.root(from.ctx, i).b.data(), kPackRootSize);
  for (std::uint64_t at = kPackHeaderSize + kPackRootSize * count; at < pages_offset && st == Status::Ok;) {
    const std::uint64_t left = pages_offset - at;
    const std::size_t n = left < sizeof kZeros ? static_cast<std::size_t>(left) : sizeof kZeros;
    st = sink(ctx, kZeros, n);
    at += n;
  }
  for (std::uint32_t i = 0; i < count && st == Status::Ok; ++i) {
    const std::uint8_t* bytes = nullptr;
    st = from.page(from.ctx, i, &bytes);
    if (st == Status::Ok) st = sink(ctx, bytes, PAGE_SIZE);
  }
  if (st != Status::Ok) return st;
  return {};
}

struct PageCallback {
  const Hash32* roots;
  PackPageFn page;
  void* pctx;
};

}  // namespace

Result<void> pack_write(const PackEntry* entries, std::uint32_t count, ByteSink sink, void* ctx) {
  const WriteFrom from{
      .root = [](const void* c, std::uint32_t i) -> const Hash32& { return static_cast<const PackEntry*>(c)[i].root; },
      .page =
          [](const void* c, std::uint32_t i, const std::uint8_t** bytes) {
            *bytes = static_cast<const PackEntry*>(c)[i].bytes;
            return Status::Ok;
          },
      .ctx = entries};
  return write_pack(from, count, sink, ctx);
}

Result<void> pack_write(const Hash32* roots, std::uint32_t count, PackPageFn page, void* pctx, ByteSink sink,
                        void* ctx) {
  const PageCallback cb{.roots = roots, .page = page, .pctx = pctx};
  const WriteFrom from{.root = [](const void* c, std::uint32_t i) -> const Hash32& {
                         return static_cast<const PageCallback*>(c)->roots[i];
                       },
                       .page =
                           [](const void* c, std::uint32_t i, const std::uint8_t** bytes) {
                             const auto* p = static_cast<const PageCallback*>(c);
                             return p->page(p->pctx, i, bytes);
                           },
                       .ctx = &cb};
  return write_pack(from, count, sink, ctx);
}

}  // namespace capmem::store
