// Page pack: a one-file, content-addressed page store (rule 8.7), the form a kernel takes as a
// boot module and the tool writes with `capmem pack`. Core code (kernel/core/store/pack.cpp):
// freestanding, no allocation, shared by the tool and the kernel. docs/page-store.md has
// the format and its rejections.
//
// Layout (little-endian; every rejection names its byte offset in a DecodeError):
//
//   offset 0   "CAPMPAK1"          magic, 8 bytes                       PackBadMagic at 0
//   offset 8   u32le count          number of pages                     PackBadCount at 8
//   offset 12  u32le flags = 0                                          PackBadFlags at 12
//   offset 16  u64le pages_offset   4096-aligned, at or after the end   PackBadPagesOffset at 16
//                                   of the index, at most the length
//   offset 24  count x 32-byte roots (rule 1.2 page roots), strictly    PackUnsortedIndex at the root
//              increasing as 32-byte strings (byte 0 most significant)
//   ...        zero pad up to pages_offset                              PackNonzeroPad at the byte
//   pages_offset  count x 4096 bytes: page i holds the bytes of root i
//   length = pages_offset + 4096 x count exactly                        PackBadLength at the end of
//                                                                       the shorter of the two
//   (a file shorter than the 24-byte header whose bytes match the magic as far as they go,
//   the empty file included: PackTruncated at its length)
//
// Rule 5.3: the pack may sit in memory that another party can change (a boot module, a
// shared mapping). parse() reads the header once into locals and keeps them: every location
// it or a lookup hands out (a page's offset, an index position) is computed from those
// locals and lies inside [0, size()). parse() reads the index and the pad once each and never
// reads page bytes. The index is only a hint: lookups read it again, and what they read may
// differ from what parse() checked; a lookup that lands on the wrong entry hands out the
// wrong page's location, never a location outside the pack. That is safe because nothing
// taken from a store is trusted (rule 8.7): every page goes through DataCap::resolve, which
// hashes the bytes it copied (8.4), so a lying index or a page changed under the read gives
// a hash mismatch naming the page, never a wrong page in a cap.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/codec.h"
#include "capmem/status.h"
#include "capmem/types.h"

namespace capmem::store {

inline constexpr std::uint8_t kPackMagic[8] = {'C', 'A', 'P', 'M', 'P', 'A', 'K', '1'};
inline constexpr std::uint64_t kPackHeaderSize = 24;
inline constexpr std::uint64_t kPackRootSize = 32;

// The smallest pages_offset for `count` pages: the end of the index rounded up to 4096 (the
// one pack_write() writes; parse() accepts any aligned offset from there up to the length).
constexpr std::uint64_t pack_min_pages_offset(std::uint32_t count) {
  const std::uint64_t end = kPackHeaderSize + kPackRootSize * count;
  return (end + PAGE_SIZE - 1) & ~std::uint64_t{PAGE_SIZE - 1};
}
// The length of the pack pack_write() makes for `count` pages.
constexpr std::uint64_t pack_size(std::uint32_t count) {
  return pack_min_pages_offset(count) + std::uint64_t{PAGE_SIZE} * count;
}

// Byte order of the index: memcmp order of the 32 bytes (<0, 0, >0).
int root_compare(const Hash32& a, const Hash32& b);

// Where one page of a pack is: its position in the index and the offset of its 4096 bytes.
// Invariant (for a PackPage from a Pack): index < count and offset + 4096 <= size.
struct PackPage {
  std::uint32_t index;
  std::uint64_t offset;
};

// One page of a pack as a 4096-byte ByteSource (for DataCap::resolve(page, ByteSource)):
// reads [offset, offset + 4096) of the pack's source. source() points at this object, which
// must outlive the use of the ByteSource.
struct PackPageSource {
  ByteSource pack;
  std::uint64_t offset = 0;
  [[nodiscard]] ByteSource source() const;
};

// A validated pack: the header fields parse() read, kept (never read again), and the input.
// Trivially copyable; holds no reference count: the input (and a ByteSource's context) must
// outlive it. A default Pack holds no pages.
class Pack {
 public:
  Pack() = default;

  // Validates the whole layout above (header, index order, pad, length) and returns the
  // pack, or the Pack* status with *err (if non-null) naming it and its byte offset.
  static Result<Pack> parse(const ByteSource& src, DecodeError* err = nullptr);
  // A pack in memory, [data, data + len): page_bytes() then gives pointers into it.
  static Result<Pack> parse(const std::uint8_t* data, std::size_t len, DecodeError* err = nullptr);

  [[nodiscard]] std::uint32_t count() const { return count_; }
  [[nodiscard]] std::uint64_t pages_offset() const { return pages_offset_; }
  [[nodiscard]] std::uint64_t size() const { return src_.len; }
  [[nodiscard]] const ByteSource& source() const { return src_; }

  // Index entry i, read now (a hint, see above); OutOfExtent for i >= count().
  [[nodiscard]] Result<Hash32> root_at(std::uint32_t i) const;
  // The location of page i; OutOfExtent for i >= count().
  [[nodiscard]] Result<PackPage> page(std::uint32_t i) const;
  // Binary search of the index for `root`: at most 33 index reads, each inside the index
  // whatever they read. NotInStore when no entry read equals `root`.
  [[nodiscard]] Result<PackPage> find(const Hash32& root) const;
  // A pack parsed from memory: the page's 4096 bytes in place (the caller copies them once,
  // e.g. DataCap::resolve's bytes form). nullptr for a pack parsed from a ByteSource.
  [[nodiscard]] const std::uint8_t* page_bytes(const PackPage& p) const {
    return base_ != nullptr ? base_ + p.offset : nullptr;
  }
  // Any pack: the page as a ByteSource.
  [[nodiscard]] PackPageSource page_source(const PackPage& p) const {
    return PackPageSource{.pack = src_, .offset = p.offset};
  }

 private:
  ByteSource src_;
  const std::uint8_t* base_ = nullptr;
  std::uint32_t count_ = 0;
  std::uint64_t pages_offset_ = 0;
};

// One page to write: its rule 1.2 root and its 4096 bytes.
struct PackEntry {
  Hash32 root;
  const std::uint8_t* bytes;
};

// Streams the pack of `entries` (strictly increasing roots, InvalidArgument otherwise, checked
// before anything is written) to `sink`: header, index, zero pad to pack_min_pages_offset,
// pages; pack_size(count) bytes in all. The roots are written as given, not computed: the
// caller hashes (a pack with a wrong root is well formed, and every page it serves fails
// resolve's hash check, rule 8.7). A sink status other than Ok stops the write and is returned.
Result<void> pack_write(const PackEntry* entries, std::uint32_t count, ByteSink sink, void* ctx);

// The same for a store too large to hold in memory: `roots` (strictly increasing, checked
// first) and each page's bytes asked for as they are written: `page(pctx, i, &bytes)` sets
// bytes to page i's 4096 bytes, valid until the next call (a status other than Ok stops the
// write and is returned). pack_size(count) bytes, the same as pack_write's.
using PackPageFn = Status (*)(void* pctx, std::uint32_t i, const std::uint8_t** bytes);
Result<void> pack_write(const Hash32* roots, std::uint32_t count, PackPageFn page, void* pctx, ByteSink sink,
                        void* ctx);

}  // namespace capmem::store
