// Page stores for the `capmem` tool (rule 8.7; docs/page-store.md "Page stores and the tool"):
// a directory of pages, DIR/<2 hex>/<62 hex> (the 64 hex digits of the page's rule 1.2 root,
// the first two naming a subdirectory), each file exactly 4096 bytes; and a pack (one file,
// include/capmem/pack.h), parsed by the core's Pack. Nothing read from either is trusted:
// every page goes through DataCap::resolve (verify_page) before the tool uses its bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "capmem/codec.h"
#include "capmem/pack.h"
#include "capmem/status.h"
#include "capmem/types.h"
#include "tools/tool.h"

namespace capmem::tool {

// "<2 hex>/<62 hex>": the entry of the page whose root is `h`, relative to DIR.
std::string entry_name(const Hash32& h);

// Rule 8.7: `src` offered as the page whose root is `h`, checked by DataCap::resolve (rule
// 8.4): a one-page cap holding Missing(h) is resolved with it, which reads the bytes once
// into a fresh frame, hashes them there and compares. Once they pass they are copied to
// out[4096]. The status is resolve's: HashMismatch, BadLength, UnresolvableMissing (h is
// zero(32) or the all-zero page's root, never stored), OutOfFrames.
Status verify_page(const Hash32& h, const ByteSource& src, std::uint8_t* out);
// verify_page's refusal for a message, e.g. "its bytes hash to another root (HashMismatch,
// rule 8.4)"; `len`: the bytes offered.
std::string refusal(Status st, std::uint64_t len);

// A directory store. An entry is read with a non-blocking open (a FIFO planted in the store
// cannot hang the tool) and must be a regular file.
class DirStore {
 public:
  DirStore() = default;
  DirStore(const DirStore&) = delete;
  DirStore& operator=(const DirStore&) = delete;
  // DIR must be a directory (a symlink to one is followed); with `create`, a missing DIR is
  // made (mode 0777 less the umask; its parent must exist).
  bool open(const std::string& dir, bool create, std::string* err);
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] std::string path(const Hash32& h) const { return dir_ + "/" + entry_name(h); }
  enum class Get : std::uint8_t { Found, Absent, Error };
  // Reads h's entry, not verified: up to kPageBuf bytes into buf (one byte more than a page,
  // so a long entry shows), *len the bytes read.
  static constexpr std::size_t kPageBuf = PAGE_SIZE + 1;
  Get get(const Hash32& h, std::uint8_t* buf, std::size_t* len, std::string* err) const;
  // Makes h's entry hold `bytes` (4096, which the caller has checked hash to h): an entry
  // already holding exactly these bytes is left alone; otherwise (new, or a damaged entry)
  // it is written as the tool writes OUT (OutFile: a temp file in DIR/<2 hex>, fsync'd and
  // renamed in), so no reader ever sees part of a page. Not fsync'd one by one: sync()
  // makes every entry put so far durable at once.
  bool put(const Hash32& h, const std::uint8_t* bytes, std::string* err);
  // syncfs(2) of the store's filesystem if put() wrote anything: called before an OUT that
  // needs the entries is committed (so a crash never leaves that OUT without its pages; an
  // entry a crash cut short is refused by verify_page when read, and put() rewrites it).
  bool sync(std::string* err);
  // Every entry's root (directory order). Names starting with `.` are skipped (an interrupted
  // write's temp file); anything else that is not DIR/<2 hex>/<62 hex>, in lowercase hex,
  // a directory and a file, is an error naming it. Sizes and bytes are not checked here.
  bool list(std::vector<Hash32>* roots, std::string* err) const;

 private:
  std::string dir_;
  bool dirty_ = false;
};

// A pack opened for lookups: parsed once by the core (store::Pack::parse: header, index
// order, pad, exact length), pages read where they are (a stream is spooled first).
class PackFile {
 public:
  PackFile() = default;
  PackFile(const PackFile&) = delete;
  PackFile& operator=(const PackFile&) = delete;
  // Opens PACK (`-`: standard input; a stream is spooled to $TMPDIR as far as its header
  // says it reaches, plus a byte to see trailing bytes).
  bool open(const char* path, std::string* err);
  // The same over an input the caller opened (whose first bytes a stream may have given).
  bool open(FileSource& src, std::string* err);
  [[nodiscard]] const store::Pack& pack() const { return pack_; }
  [[nodiscard]] const std::string& path() const { return src_->in().path(); }
  // After reads through pack(): one ended early or failed (*err set).
  bool failed(std::string* err) const { return src_->failed(err); }
  // Page i of the index, verified against the root the index gives for it (verify_page).
  // false: *err names the entry, its root, where its bytes are and why.
  bool page(std::uint32_t i, Hash32* root, std::uint8_t* out, std::string* err) const;
  // The page whose root is `h`, looked up in the index (a hint) and verified against h.
  // Absent when the index holds no such root.
  DirStore::Get get(const Hash32& h, std::uint8_t* out, std::string* err) const;

 private:
  bool check(const store::PackPage& p, const Hash32& h, std::uint8_t* out, std::string* err) const;
  InFile own_in_;
  std::unique_ptr<FileSource> own_src_;  // over own_in_, when open(path) made it
  FileSource* src_ = nullptr;
  store::Pack pack_;
};

// Where `decode --store` takes Missing pages from: a directory store or a pack.
class PageStore {
 public:
  bool open(const char* path, std::string* err);
  // The bytes of Missing(h) at page `page`, verified (verify_page), into out[4096]. false:
  // *err names the page, its root and what is wrong (absent, or the entry and its refusal).
  bool fetch(std::uint32_t page, const Hash32& h, std::uint8_t* out, std::string* err) const;
  // The page whose root is `h`, unverified, as a ByteSource valid until the next call (for a
  // caller that resolves it itself: `demo --thin --store`, demo::PageStore).
  DirStore::Get raw(const Hash32& h, ByteSource* out, std::string* err);

 private:
  alignas(64) std::uint8_t raw_buf_[DirStore::kPageBuf] = {};
  store::PackPageSource raw_page_{};
  bool is_pack_ = false;
  std::string path_;
  DirStore dir_;
  PackFile pack_;
};

int cmd_pack(const Args& a);
int cmd_unpack(const Args& a);
// `capmem inspect` of a pack (tools/commands.cpp, when IN starts with the pack magic): every
// page verified against its index root; prints count, pages_offset and size.
int inspect_pack(FileSource& src);

}  // namespace capmem::tool
