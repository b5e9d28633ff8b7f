// `capmem encode` in bounded memory: a fixed 1 MiB buffer, one bit per page and 32 bytes
// per non-zero page, whatever the input's size (no simulated RAM, no copy of the input).
//
// The section 5 encoding puts the offset of every slot before the first slot, and a slot's
// length depends on whether its page is zero (rule 2.2: Empty, 1 byte) or not (Loaded,
// 4133 bytes), so the layout is known only once every page has been seen. Hence two passes:
//   1. read the input once: which pages are zero, each non-zero page's hash (rule 1.2),
//      the length; from these the size (rule 3.6), the trimmed slot count and the offsets;
//   2. read it again and write the slots, hashing each non-zero page again and checking each
//      zero page is still zero, so an input that changed between the passes is an error
//      naming the first page that differs, never an encoding that mixes two versions.
// A seekable input (a regular file with content, a block device) is read twice. Any other
// (a pipe, FIFO, `-` on a terminal or pipe, a /proc file) cannot be, so pass 1 copies its
// non-zero pages to an unlinked temporary file in $TMPDIR (default /tmp), created at the
// first non-zero page (an all-zero input makes none), and pass 2 reads them back from there.
// The bytes are the bytes DataCap::from_bytes + DataCap::encode produce (rule 3.6, section 5).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "capmem/codec.h"
#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/mem.h"
#include "tools/store.h"
#include "tools/tool.h"

namespace capmem::tool {

namespace {

constexpr std::size_t kChunk = 1u << 20;
constexpr std::size_t kChunkPages = kChunk / PAGE_SIZE;
alignas(64) std::uint8_t g_buf[kChunk];

// 32 bytes per non-zero page, in blocks (no reallocation of the whole list as it grows).
class HashList {
 public:
  HashList() = default;
  HashList(const HashList&) = delete;
  HashList& operator=(const HashList&) = delete;
  ~HashList() {
    for (Hash32* b : blocks_) std::free(b);
  }
  bool push(const Hash32& h) {
    if (n_ == blocks_.size() * kBlock) {
      auto* b = static_cast<Hash32*>(std::malloc(kBlock * sizeof(Hash32)));
      if (b == nullptr) return false;
      blocks_.push_back(b);
    }
    blocks_[n_ / kBlock][n_ % kBlock] = h;
    ++n_;
    return true;
  }
  [[nodiscard]] const Hash32& operator[](std::uint64_t i) const { return blocks_[i / kBlock][i % kBlock]; }
  [[nodiscard]] std::uint64_t size() const { return n_; }

 private:
  static constexpr std::size_t kBlock = 4096;
  std::vector<Hash32*> blocks_;
  std::uint64_t n_ = 0;
};

// What pass 1 learns.
struct Layout {
  std::uint64_t len = 0;            // input bytes
  std::uint64_t pages = 0;          // pages holding them (the last one zero-padded)
  std::uint64_t extent = 0;         // last non-zero page + 1: the slot count (5.1, trimmed)
  std::vector<std::uint64_t> bits;  // bit p: page p is not zero
  HashList hashes;                  // hash of each non-zero page, in page order
  [[nodiscard]] bool nonzero(std::uint64_t p) const { return ((bits[p / 64] >> (p % 64)) & 1) != 0; }
};

// Thin encoding (rule 8.6; `encode --thin`): a non-zero page at or past `keep` travels as
// Missing(its hash), 33 bytes, and goes into `store` (if any); pages below `keep` keep their
// bytes (Loaded, 4133 bytes) and are not stored. Zero pages are Empty in every mode.
struct Thin {
  bool on = false;
  std::uint64_t keep = 0;
  DirStore* store = nullptr;
  [[nodiscard]] bool as_missing(std::uint64_t page) const { return on && page >= keep; }
};

std::string too_large(const std::string& path) { return path + ": larger than 4 GiB, the largest cap (rule 5.1)"; }

// Pass 1: reads `in` to its end, filling `lay`; non-zero pages also go to `spool` (if any).
bool scan(InFile& in, Spool* spool, Layout* lay, std::string* err) {
  Progress bar("hashing", in.size_hint());
  const std::uint8_t* ptrs[kChunkPages];
  Hash32 hashes[kChunkPages];
  for (;;) {
    const std::int64_t got = in.read_full(g_buf, kChunk, err);
    if (got < 0) return false;
    const auto n = static_cast<std::size_t>(got);
    if (lay->len + n > kMaxCapSize) {
      *err = too_large(in.path());
      return false;
    }
    const std::size_t pages = (n + PAGE_SIZE - 1) / PAGE_SIZE;
    if (n % PAGE_SIZE != 0) std::memset(g_buf + n, 0, pages * PAGE_SIZE - n);  // rule 3.6 zero tail
    lay->bits.resize((lay->pages + pages + 63) / 64, 0);
    std::size_t k = 0;
    for (std::size_t i = 0; i < pages; ++i) {
      const std::uint8_t* p = g_buf + i * PAGE_SIZE;
      if (mem::page_is_zero(p)) continue;
      const std::uint64_t page = lay->pages + i;
      lay->bits[page / 64] |= std::uint64_t{1} << (page % 64);
      lay->extent = page + 1;
      ptrs[k++] = p;
    }
    hash::page_content_hashes(ptrs, hashes, k);
    for (std::size_t j = 0; j < k; ++j) {
      if (!lay->hashes.push(hashes[j])) {
        *err = in.path() + ": out of memory for its page hashes";
        return false;
      }
    }
    if (spool != nullptr && k != 0) {
      for (std::size_t j = 0; j < k; ++j) {  // the non-zero pages, packed to the front
        if (ptrs[j] != g_buf + j * PAGE_SIZE) std::memmove(g_buf + j * PAGE_SIZE, ptrs[j], PAGE_SIZE);
      }
      if (!spool->write(g_buf, k * PAGE_SIZE, err)) return false;
    }
    lay->len += n;
    lay->pages += pages;
    bar.update(lay->len);
    if (n < kChunk) return true;
  }
}

// Pass 2's check and output for pages [first, first + n): data[i] is page first + i as read
// again (nullptr: a zero page not read again, from a spool). `loaded` counts the non-zero
// pages before `first`. Every page of the span is checked before any of its slots is written.
bool emit(const Layout& lay, const Thin& thin, const std::string& path, std::uint64_t first, std::size_t n,
          const std::uint8_t* const* data, std::uint64_t* loaded, OutFile& out, std::string* err) {
  const std::uint8_t* ptrs[kChunkPages];
  std::uint64_t pages[kChunkPages];
  Hash32 got[kChunkPages];
  std::size_t k = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t p = first + i;
    const bool was_nonzero = p < lay.pages && lay.nonzero(p);
    if (was_nonzero) {
      ptrs[k] = data[i];
      pages[k++] = p;
    } else if (data[i] != nullptr && !mem::page_is_zero(data[i])) {
      *err = path + ": changed while it was read: page " + std::to_string(p) + " (bytes from " +
             std::to_string(p * PAGE_SIZE) + ") was all zero on the first pass and is not now";
      return false;
    }
  }
  hash::page_content_hashes(ptrs, got, k);
  for (std::size_t j = 0; j < k; ++j) {
    if (!(got[j] == lay.hashes[*loaded + j])) {
      *err = path + ": changed while it was read: page " + std::to_string(pages[j]) + " (bytes from " +
             std::to_string(pages[j] * PAGE_SIZE) + ") differs from the first pass";
      return false;
    }
  }
  std::size_t j = 0;
  for (std::size_t i = 0; i < n && first + i < lay.extent; ++i) {
    if (j < k && pages[j] == first + i && thin.as_missing(pages[j])) {  // Missing (rule 8.6): selector, hash
      std::uint8_t head[codec::kMissingLen];
      head[0] = static_cast<std::uint8_t>(SlotKind::Missing);
      std::memcpy(head + 1, got[j].b.data(), 32);
      if (!out.write(head, sizeof head, err)) return false;
      if (thin.store != nullptr && !thin.store->put(got[j], ptrs[j], err)) return false;
      ++j;
    } else if (j < k && pages[j] == first + i) {  // Loaded (rule 2.4): selector, hash, offset 36, bytes
      std::uint8_t head[codec::kSlotHeadMax];
      head[0] = static_cast<std::uint8_t>(SlotKind::Loaded);
      std::memcpy(head + 1, got[j].b.data(), 32);
      codec::put_u32(head + 33, codec::kPageBytesOffset);
      if (!out.write(head, sizeof head, err) || !out.write(ptrs[j], PAGE_SIZE, err)) return false;
      ++j;
    } else {
      const auto empty = static_cast<std::uint8_t>(SlotKind::Empty);
      if (!out.write(&empty, 1, err)) return false;
    }
  }
  *loaded += k;
  return true;
}

// Section 5.1's header and offset table, from the layout.
bool write_head(const Layout& lay, const Thin& thin, std::uint64_t size, OutFile& out, std::string* err) {
  std::uint8_t b[4096];
  codec::put_u64(b, size);
  codec::put_u32(b + 8, 12);
  if (!out.write(b, 12, err)) return false;
  std::uint64_t off = 4 * lay.extent;
  std::size_t n = 0;
  for (std::uint64_t p = 0; p < lay.extent; ++p) {
    codec::put_u32(b + n, static_cast<std::uint32_t>(off));
    n += 4;
    off += !lay.nonzero(p) ? codec::kEmptyLen : thin.as_missing(p) ? codec::kMissingLen : codec::kLoadedLen;
    if (n == sizeof b) {
      if (!out.write(b, n, err)) return false;
      n = 0;
    }
  }
  return out.write(b, n, err);
}

// Pass 2 over a seekable input: every byte of pass 1 again, and nothing past them.
bool rescan_input(InFile& in, const Layout& lay, const Thin& thin, OutFile& out, std::string* err) {
  if (!in.rewind(err)) return false;
  Progress bar("encoding", lay.len);
  const std::uint8_t* data[kChunkPages];
  std::uint64_t done = 0, page = 0, loaded = 0;
  while (done < lay.len) {
    const std::uint64_t left = lay.len - done;
    const std::size_t want = left < kChunk ? static_cast<std::size_t>(left) : kChunk;
    const std::int64_t got = in.read_full(g_buf, want, err);
    if (got < 0) return false;
    if (static_cast<std::size_t>(got) < want) {
      *err = in.path() + ": changed while it was read: it ends at byte " + std::to_string(done + got) + " now, " +
             std::to_string(lay.len) + " on the first pass";
      return false;
    }
    const std::size_t pages = (want + PAGE_SIZE - 1) / PAGE_SIZE;
    if (want % PAGE_SIZE != 0) std::memset(g_buf + want, 0, pages * PAGE_SIZE - want);
    for (std::size_t i = 0; i < pages; ++i) data[i] = g_buf + i * PAGE_SIZE;
    if (!emit(lay, thin, in.path(), page, pages, data, &loaded, out, err)) return false;
    done += want;
    page += pages;
    bar.update(done);
  }
  std::uint8_t extra = 0;
  const std::int64_t more = in.read_full(&extra, 1, err);
  if (more < 0) return false;
  if (more != 0) {
    *err = in.path() + ": changed while it was read: it grew past the " + std::to_string(lay.len) +
           " bytes of the first pass";
    return false;
  }
  return true;
}

// Pass 2 from the spool: the non-zero pages of the first extent pages, in order.
bool rescan_spool(Spool& spool, const std::string& path, const Layout& lay, const Thin& thin, OutFile& out,
                  std::string* err) {
  if (!spool.rewind(err)) return false;
  const std::uint8_t* data[kChunkPages];
  std::uint64_t page = 0, loaded = 0;
  while (page < lay.extent) {
    const std::uint64_t left = lay.extent - page;
    const std::size_t span = left < kChunkPages ? static_cast<std::size_t>(left) : kChunkPages;
    std::size_t k = 0;
    for (std::size_t i = 0; i < span; ++i) data[i] = lay.nonzero(page + i) ? g_buf + PAGE_SIZE * k++ : nullptr;
    if (!spool.read(g_buf, k * PAGE_SIZE, err)) return false;
    if (!emit(lay, thin, path, page, span, data, &loaded, out, err)) return false;
    page += span;
  }
  return true;
}

}  // namespace

// --- Spool (tool.h) ------------------------------------------------------------------------

Spool::Spool(const std::string& input) : input_(input) {
  const char* t = std::getenv("TMPDIR");
  dir_ = t != nullptr && *t != '\0' ? t : "/tmp";
}

Spool::~Spool() {
  if (fd_ >= 0) ::close(fd_);
}

bool Spool::write(const std::uint8_t* p, std::size_t n, std::string* err) {
  if (n == 0) return true;
  if (fd_ < 0 && !create(err)) return false;
  while (n != 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return error("writing", err);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    size_ += static_cast<std::uint64_t>(w);
  }
  return true;
}

bool Spool::rewind(std::string* err) {
  if (fd_ < 0 || ::lseek(fd_, 0, SEEK_SET) == 0) return true;
  return error("rewinding", err);
}

bool Spool::read(std::uint8_t* p, std::size_t n, std::string* err) {
  while (n != 0) {
    const ssize_t r = ::read(fd_, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO;
      return error("reading back", err);
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool Spool::create(std::string* err) {
  fd_ = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // No O_TMPFILE here: a named file, unlinked at once.
    std::string name = dir_ + "/capmem-spool-XXXXXX";
    fd_ = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd_ >= 0) ::unlink(name.c_str());
  }
  if (fd_ < 0) return error("creating", err);
  return true;
}

bool Spool::error(const char* what, std::string* err) const {
  *err = input_ + ": not seekable, so it is spooled to a temporary file in " + dir_ + " (TMPDIR): " + what +
         " it: " + std::strerror(errno);
  return false;
}

int cmd_encode(const Args& a) {
  Thin thin;
  const char* store_dir = nullptr;
  bool keep_given = false;
  for (const Args::Opt& o : a.opts) {
    if (o.name == "--thin") {
      thin.on = true;
    } else if (o.name == "--keep-first") {
      keep_given = true;
      if (!parse_u64(o.value, &thin.keep))
        return fail(
            std::string("encode: --keep-first takes a plain decimal number from 0 to 18446744073709551615, not '") +
            o.value + "'");
    } else if (o.name == "--store") {
      store_dir = o.value;
    }
  }
  if ((keep_given || store_dir != nullptr) && !thin.on)
    return fail(std::string("encode: ") + (keep_given ? "--keep-first" : "--store") +
                " applies to a thin encoding only (add --thin)");
  if (a.operands.size() != 2)
    return fail("encode: expected FILE OUT (usage: capmem encode [--thin [--keep-first N] [--store DIR]] FILE OUT)");
  const std::string path = a.operands[0];
  std::string err;
  OutFile out(a.operands[1]);
  if (!out.open(&err)) return fail(err);
  DirStore store;
  if (store_dir != nullptr) {
    if (!store.open(store_dir, true, &err)) return fail(err);
    thin.store = &store;
  }
  InFile in;
  if (!in.open(a.operands[0], &err)) return fail(err);
  if (in.same_file(a.operands[1]))
    return fail(std::string("encode: '") + a.operands[0] + "' and '" + a.operands[1] + "' are the same file");
  if (in.size_hint() > kMaxCapSize) return fail(too_large(path));  // a regular file: no need to read it
  hash::init();
  Layout lay;
  Spool spool(path);
  const bool twice = in.seekable();
  if (!scan(in, twice ? nullptr : &spool, &lay, &err)) return fail(err);
  // Rule 3.6: at least one page. Every slot offset must fit 5.1's u32 (the last is largest).
  const std::uint64_t size = (lay.pages != 0 ? lay.pages : 1) * PAGE_SIZE;
  std::uint64_t last = 4 * lay.extent;
  for (std::uint64_t p = 0; p + 1 < lay.extent; ++p)
    last += !lay.nonzero(p) ? codec::kEmptyLen : thin.as_missing(p) ? codec::kMissingLen : codec::kLoadedLen;
  if (lay.extent != 0 && last > 0xffffffffull)
    return fail(path + ": its encoding would be too large for the 32-bit slot offsets of rule 5.1 (TooLarge): " +
                std::to_string(lay.hashes.size()) + " non-zero pages");
  if (!write_head(lay, thin, size, out, &err)) return fail(err);
  if (!(twice ? rescan_input(in, lay, thin, out, &err) : rescan_spool(spool, path, lay, thin, out, &err)))
    return fail(err);
  if (!store.sync(&err)) return fail(err);  // the pages OUT needs are durable before OUT is
  if (!out.commit(&err)) return fail(err);
  return 0;
}

}  // namespace capmem::tool
