// Wire codecs (SSZ), both implemented in kernel/core/cap/codec.cpp: the page slot
// (rules 2.4, 2.5; declared here) and the cap container (section 5; DataCap::encode /
// encoded_size / decode in datacap.h), which writes and parses its slots with the slot
// codec below. Both share DecodeError, ByteSink, ByteSource and the little-endian helpers.
//
// Thin caps (rule 8.6): the same bytes format, except that a Loaded slot may travel as
// Missing(hash); the root is unchanged (2.3). EncodeOptions / DecodeOptions choose the mode
// (the defaults are the full encoding of section 5 and a full-mode decode, 5.2 exactly).
//
// Decoding reads each input byte once (rule 5.3), the way a kernel reads user memory with
// copy_from_user: through ByteSource::copy_in into memory the decoder owns (a local, or the
// fresh frame a page lands in), and only that copy is checked and hashed; checked offsets
// stay in locals. Whatever the input does meanwhile (guest memory, a DMA buffer, a shared
// mapping that changes under the call), the result is an error or a cap whose every page
// hash is the hash of the bytes in its frame.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/slot.h"
#include "capmem/status.h"

namespace capmem {

// Why and where a decode failed: `status` is one of the Status::Decode* values (or
// OutOfFrames, or Cancelled for a cap decode stopped by its BuildProgress), status_rule(status) names the rule;
// `offset` is the byte offset in the input where the violation was found.
struct DecodeError {
  Status status;
  std::uint64_t offset;
};

// Streaming output: called with consecutive chunks of the encoding; return anything but
// Status::Ok to abort the encode with that status.
using ByteSink = Status (*)(void* ctx, const std::uint8_t* data, std::size_t len);

// A decoder's input (rule 5.3): `len` bytes that the decoder copies in, range by range,
// with copy_in(ctx, offset, out, n) = "copy input bytes [offset, offset + n) to out". The
// decoders ask only for ranges inside [0, len) and never for the same byte twice, so a
// source that answers differently on every read cannot make them accept anything a single
// snapshot of the bytes would not. A plain function pointer and context (no virtual
// dispatch): memory() is the default, tests supply hostile ones.
struct ByteSource {
  void (*copy_in)(const void* ctx, std::uint64_t offset, std::uint8_t* out, std::size_t n) = nullptr;
  const void* ctx = nullptr;
  std::uint64_t len = 0;
  // Plain memory: [in, in + len).
  static ByteSource memory(const std::uint8_t* in, std::size_t len);
};

// How DataCap::encoded_size / encode write a cap (rule 8.6). The default is the full
// encoding of section 5 (every Loaded page with its bytes; a Missing slot is MissingPage).
// Thin (`thin = true`): a Loaded page travels as Missing(its hash) unless it is kept: pages
// [0, keep_first) are kept (keep_first past page_count() keeps every Loaded page), and so is
// every page for which `keep(keep_ctx, page)` answers true. Empty slots stay Empty (1 byte:
// Missing(zero(32)) is refused by 8.6) and Missing slots of the backing travel as they are
// (UnresolvableMissing if one holds zero(32) or the all-zero page's root, which no thin
// decode accepts). `keep` must answer the same for a page every time it is asked: the
// encoder asks it for each Loaded page in each of its passes (encoded_size, the offset
// table, the slots); an encode that sees the answers change fails with InvalidArgument
// (its sink has then received bytes that must be discarded).
struct EncodeOptions {
  bool thin = false;
  std::uint32_t keep_first = 0;
  bool (*keep)(void* ctx, std::uint32_t page) = nullptr;
  void* keep_ctx = nullptr;
};

// How DataCap::decode reads a cap (rule 8.6). The default (full mode, for a published cap)
// applies 5.2 exactly: any Missing slot is DecodeMissingSlot. Thin mode accepts Missing
// slots, except Missing(zero(32)) (the root of Empty) and Missing(root of the all-zero page)
// (canonically Empty): DecodeUnresolvableMissing at the hash's offset. Every other check of
// 2.5 and 5.2 applies in both modes.
struct DecodeOptions {
  bool thin = false;
};

namespace codec {

// Little-endian fixed-width integers (SSZ uint32/uint64, offsets).
constexpr std::uint32_t get_u32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
}
constexpr std::uint64_t get_u64(const std::uint8_t* p) { return get_u32(p) | std::uint64_t{get_u32(p + 4)} << 32; }
constexpr void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
constexpr void put_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline constexpr std::size_t kEmptyLen = 1;
inline constexpr std::size_t kMissingLen = 33;
inline constexpr std::size_t kLoadedLen = 1 + 32 + 4 + PAGE_SIZE;  // 4133
inline constexpr std::uint32_t kPageBytesOffset = 36;              // rule 2.4

// Rule 8.4 / 8.6: false for the two hashes no resolve can satisfy, zero(32) (the root of
// Empty, rule 2.2) and the root of the all-zero page (rule 1.2; such a page is canonically
// Empty). A Missing slot on the wire (thin mode) must hold a resolvable hash.
bool missing_resolvable(const Hash32& h);

// Rule 2.4 lengths: 1, 4133, 33. `as_missing` (thin encoding, rule 8.6): a Loaded slot is
// written as Missing(its hash), 33 bytes; Empty and Missing slots are unaffected.
std::size_t slot_encoded_size(const Slot& s, bool as_missing = false);
// Writes slot_encoded_size(s, as_missing) bytes. A Loaded page must be hashed (not an
// unhashed copy).
void slot_encode(const Slot& s, std::uint8_t* out, bool as_missing = false);
// Everything of the encoding but a Loaded page's 4096 bytes (selector, hash, offset 36):
// writes and returns 1, 33 or 37 bytes (kSlotHeadMax at most). The streaming cap encoder
// follows a 37-byte head with the bytes straight from the frame.
inline constexpr std::size_t kSlotHeadMax = kLoadedLen - PAGE_SIZE;  // 37
std::size_t slot_encode_head(const Slot& s, std::uint8_t* out, bool as_missing = false);
// Rule 2.5. On failure returns the Decode* status and fills *err (if non-null) with it
// and the offending offset (relative to the input); nothing allocated survives the call.
// A Loaded page is copied into a fresh aligned frame and hashed there (rule 5.3); the
// claimed hash (copied into a local first) must equal that hash. Reads each byte once.
Result<Slot> slot_decode(const ByteSource& src, DecodeError* err = nullptr);
Result<Slot> slot_decode(const std::uint8_t* in, std::size_t len, DecodeError* err = nullptr);

}  // namespace codec
}  // namespace capmem
