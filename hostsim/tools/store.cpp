// Page stores for the `capmem` tool (tools/store.h) and the commands that work on them:
// `pack DIR OUT`, `unpack PACK DIR` and `inspect` of a pack.
#include "tools/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/slot.h"

namespace capmem::tool {

namespace {

bool is_lower_hex(const char* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return s[n] == '\0';
}

int hex_digit(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// `hi` (2 hex digits) and `lo` (62) as a root; both already checked by is_lower_hex.
Hash32 root_of(const char* hi, const char* lo) {
  char all[65];
  std::memcpy(all, hi, 2);
  std::memcpy(all + 2, lo, 62);
  Hash32 h;
  for (std::size_t i = 0; i < 32; ++i)
    h.b[i] = static_cast<std::uint8_t>(hex_digit(all[2 * i]) << 4 | hex_digit(all[2 * i + 1]));
  return h;
}

bool make_dir(const std::string& path, std::string* err) {
  if (::mkdir(path.c_str(), 0777) == 0 || errno == EEXIST) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;
    if (errno == EEXIST) errno = ENOTDIR;
  }
  *err = path + ": " + std::strerror(errno);
  return false;
}

std::string decode_error(const std::string& path, const DecodeError& e) {
  std::string rule = status_rule(e.status);
  return path + ": invalid pack at byte offset " + std::to_string(e.offset) + ": " + status_name(e.status) +
         (rule.empty() ? "" : " (rule " + rule + ")");
}

}  // namespace

std::string entry_name(const Hash32& h) {
  const std::string x = hex(h);
  return x.substr(0, 2) + "/" + x.substr(2);
}

Status verify_page(const Hash32& h, const ByteSource& src, std::uint8_t* out) {
  auto cap = DataCap::create(PAGE_SIZE);
  if (!cap.ok()) return cap.status();
  auto slot = Slot::missing(h);
  if (!slot.ok()) return slot.status();
  if (auto w = cap->write_slot(0, slot.release_value()); !w.ok()) return w.status();
  if (auto r = cap->resolve(0, src); !r.ok()) return r.status();
  if (auto r = cap->read(0, out, PAGE_SIZE); !r.ok()) return r.status();
  return Status::Ok;
}

std::string refusal(Status st, std::uint64_t len) {
  switch (st) {
    case Status::HashMismatch: return "its bytes do not hash to that root (HashMismatch, rule 8.4)";
    case Status::BadLength: return std::to_string(len) + " bytes, not 4096 (BadLength, rule 8.4)";
    case Status::UnresolvableMissing:
      return "the all-zero page's root or zero(32), which no store holds: an all-zero page is Empty (rule 2.2)";
    default: {
      const std::string rule = status_rule(st);
      return std::string(status_name(st)) + (rule.empty() ? "" : " (rule " + rule + ")");
    }
  }
}

// --- DirStore ---------------------------------------------------------------------------

bool DirStore::open(const std::string& dir, bool create, std::string* err) {
  dir_ = dir;
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  struct stat st {};
  if (::stat(dir_.c_str(), &st) != 0) {
    if (errno == ENOENT && create) return make_dir(dir_, err);
    *err = dir_ + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    *err = dir_ + ": " + std::strerror(ENOTDIR) + " (a page store directory)";
    return false;
  }
  return true;
}

DirStore::Get DirStore::get(const Hash32& h, std::uint8_t* buf, std::size_t* len, std::string* err) const {
  const std::string p = path(h);
  const int fd = ::open(p.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Get::Absent;
    *err = p + ": " + std::strerror(errno);
    return Get::Error;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *err = p + ": " + (S_ISREG(st.st_mode) ? std::strerror(errno) : "not a regular file");
    ::close(fd);
    return Get::Error;
  }
  std::size_t got = 0;
  while (got < kPageBuf) {
    const ssize_t r = ::read(fd, buf + got, kPageBuf - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      *err = p + ": " + std::strerror(errno);
      ::close(fd);
      return Get::Error;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  *len = got;
  return Get::Found;
}

bool DirStore::put(const Hash32& h, const std::uint8_t* bytes, std::string* err) {
  alignas(64) static std::uint8_t have[kPageBuf];
  std::size_t len = 0;
  std::string ignored;
  if (get(h, have, &len, &ignored) == Get::Found && len == PAGE_SIZE && std::memcmp(have, bytes, PAGE_SIZE) == 0)
    return true;
  const std::string name = entry_name(h);
  if (!make_dir(dir_ + "/" + name.substr(0, 2), err)) return false;
  const std::string p = dir_ + "/" + name;
  OutFile out(p.c_str());
  out.defer_sync();
  dirty_ = true;
  return out.open(err) && out.write(bytes, PAGE_SIZE, err) && out.commit(err);
}

bool DirStore::sync(std::string* err) {
  if (!dirty_) return true;
  const int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::syncfs(fd) != 0) {
    *err = dir_ + ": making the page store's new entries durable (syncfs): " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  dirty_ = false;
  return true;
}

bool DirStore::list(std::vector<Hash32>* roots, std::string* err) const {
  const auto bad = [&](const std::string& p, const char* why) {
    *err = p + ": " + why;
    return false;
  };
  DIR* top = ::opendir(dir_.c_str());
  if (top == nullptr) return bad(dir_, std::strerror(errno));
  std::vector<std::string> subs;
  bool ok = true;
  for (errno = 0; const dirent* d = ::readdir(top); errno = 0) {
    if (d->d_name[0] == '.') continue;
    const std::string p = dir_ + "/" + d->d_name;
    struct stat st {};
    if (!is_lower_hex(d->d_name, 2)) {
      ok = bad(p, "not a page store entry (DIR/<2 hex>/<62 hex>, lowercase)");
      break;
    }
    if (::stat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      ok = bad(p, "not a directory (a page store holds DIR/<2 hex>/<62 hex>)");
      break;
    }
    subs.emplace_back(d->d_name);
  }
  if (ok && errno != 0) ok = bad(dir_, std::strerror(errno));
  ::closedir(top);
  if (!ok) return false;
  std::sort(subs.begin(), subs.end());
  for (const std::string& s : subs) {
    const std::string sp = dir_ + "/" + s;
    DIR* sub = ::opendir(sp.c_str());
    if (sub == nullptr) return bad(sp, std::strerror(errno));
    for (errno = 0; const dirent* d = ::readdir(sub); errno = 0) {
      if (d->d_name[0] == '.') continue;
      const std::string p = sp + "/" + d->d_name;
      if (!is_lower_hex(d->d_name, 62)) {
        ok = bad(p, "not a page store entry (DIR/<2 hex>/<62 hex>, lowercase)");
        break;
      }
      struct stat st {};
      if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        ok = bad(p, "not a regular file");
        break;
      }
      roots->push_back(root_of(s.c_str(), d->d_name));
    }
    if (ok && errno != 0) ok = bad(sp, std::strerror(errno));
    ::closedir(sub);
    if (!ok) return false;
  }
  return true;
}

// --- PackFile ---------------------------------------------------------------------------

bool PackFile::open(const char* path, std::string* err) {
  if (!own_in_.open(path, err)) return false;
  own_src_ = std::make_unique<FileSource>(own_in_);
  return own_src_->open(err) && open(*own_src_, err);
}

bool PackFile::open(FileSource& src, std::string* err) {
  src_ = &src;
  if (!src.in().seekable()) {
    // A stream: as far as the header says the pack reaches, and one byte more.
    if (!src.fill(store::kPackHeaderSize, err)) return false;
    if (src.len() >= store::kPackHeaderSize) {
      std::uint8_t hdr[store::kPackHeaderSize];
      src.source().copy_in(src.source().ctx, 0, hdr, sizeof hdr);
      const std::uint64_t count = codec::get_u32(hdr + 8);
      const std::uint64_t pages_offset = codec::get_u64(hdr + 16);
      const std::uint64_t end = pages_offset < (1ull << 62) ? pages_offset + PAGE_SIZE * count : (1ull << 62);
      if (!src.fill(end + 1, err)) return false;
    }
  }
  DecodeError de{Status::Ok, 0};
  auto p = store::Pack::parse(src.source(), &de);
  if (src.failed(err)) return false;
  if (!p.ok()) {
    if (de.status == Status::Ok) de = DecodeError{.status = p.status(), .offset = 0};
    *err = decode_error(path(), de);
    return false;
  }
  pack_ = p.value();
  return true;
}

bool PackFile::check(const store::PackPage& p, const Hash32& h, std::uint8_t* out, std::string* err) const {
  const store::PackPageSource ps = pack_.page_source(p);
  const Status st = verify_page(h, ps.source(), out);
  if (src_->failed(err)) return false;
  if (st == Status::Ok) return true;
  *err = path() + ": index entry " + std::to_string(p.index) + " (root " + hex(h) + ", bytes at offset " +
         std::to_string(p.offset) + "): " + refusal(st, PAGE_SIZE);
  return false;
}

bool PackFile::page(std::uint32_t i, Hash32* root, std::uint8_t* out, std::string* err) const {
  auto r = pack_.root_at(i);
  auto p = pack_.page(i);
  if (!r.ok() || !p.ok()) {
    *err = path() + ": no index entry " + std::to_string(i);
    return false;
  }
  *root = r.value();
  return check(p.value(), *root, out, err);
}

DirStore::Get PackFile::get(const Hash32& h, std::uint8_t* out, std::string* err) const {
  auto p = pack_.find(h);
  if (src_->failed(err)) return DirStore::Get::Error;
  if (!p.ok()) return DirStore::Get::Absent;
  return check(p.value(), h, out, err) ? DirStore::Get::Found : DirStore::Get::Error;
}

// --- PageStore --------------------------------------------------------------------------

bool PageStore::open(const char* path, std::string* err) {
  path_ = path;
  struct stat st {};
  if (::stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return dir_.open(path_, false, err);
  is_pack_ = true;
  return pack_.open(path, err);
}

bool PageStore::fetch(std::uint32_t page, const Hash32& h, std::uint8_t* out, std::string* err) const {
  const std::string what = "page " + std::to_string(page) + " (root " + hex(h) + "): ";
  DirStore::Get g = DirStore::Get::Absent;
  std::string why;
  if (is_pack_) {
    g = pack_.get(h, out, &why);
  } else {
    alignas(64) static std::uint8_t buf[DirStore::kPageBuf];
    std::size_t len = 0;
    g = dir_.get(h, buf, &len, &why);
    if (g == DirStore::Get::Found) {
      const Status st = verify_page(h, ByteSource::memory(buf, len), out);
      if (st != Status::Ok) {
        why = dir_.path(h) + ": " + refusal(st, len);
        g = DirStore::Get::Error;
      }
    }
  }
  if (g == DirStore::Get::Found) return true;
  *err = what + (g == DirStore::Get::Absent ? "not in the store " + path_ : why);
  return false;
}

DirStore::Get PageStore::raw(const Hash32& h, ByteSource* out, std::string* err) {
  if (is_pack_) {
    auto p = pack_.pack().find(h);
    if (pack_.failed(err)) return DirStore::Get::Error;
    if (!p.ok()) return DirStore::Get::Absent;
    raw_page_ = pack_.pack().page_source(p.value());
    *out = raw_page_.source();
    return DirStore::Get::Found;
  }
  std::size_t len = 0;
  const DirStore::Get g = dir_.get(h, raw_buf_, &len, err);
  if (g == DirStore::Get::Found) *out = ByteSource::memory(raw_buf_, len);
  return g;
}

// --- Commands ---------------------------------------------------------------------------

int cmd_pack(const Args& a) {
  if (a.operands.size() != 2) return fail("pack: expected DIR OUT (usage: capmem pack DIR OUT)");
  std::string err;
  DirStore dir;
  if (!dir.open(a.operands[0], false, &err)) return fail(err);
  OutFile out(a.operands[1]);
  if (!out.open(&err)) return fail(err);
  std::vector<Hash32> roots;
  if (!dir.list(&roots, &err)) return fail(err);
  if (roots.size() > UINT32_MAX) return fail(dir.dir() + ": more pages than a pack's u32 count holds");
  std::sort(roots.begin(), roots.end(), [](const Hash32& x, const Hash32& y) { return store::root_compare(x, y) < 0; });
  hash::init();
  if (!boot_for(0, &err)) return fail(err);
  struct Ctx {
    DirStore* dir;
    const std::vector<Hash32>* roots;
    OutFile* out;
    std::string* err;
    alignas(64) std::uint8_t buf[DirStore::kPageBuf];
    alignas(64) std::uint8_t page[PAGE_SIZE];
  };
  static Ctx ctx;  // 8 KiB of buffers: not on the stack
  ctx.dir = &dir;
  ctx.roots = &roots;
  ctx.out = &out;
  ctx.err = &err;
  // Each entry is read and verified (verify_page) as the pack is written; a bad one stops
  // the write before OUT is committed.
  const auto page = [](void* c, std::uint32_t i, const std::uint8_t** bytes) {
    auto* x = static_cast<Ctx*>(c);
    const Hash32& h = (*x->roots)[i];
    std::size_t len = 0;
    const DirStore::Get g = x->dir->get(h, x->buf, &len, x->err);
    if (g == DirStore::Get::Absent) *x->err = x->dir->path(h) + ": " + std::strerror(ENOENT);
    if (g != DirStore::Get::Found) return Status::InvalidArgument;
    const Status st = verify_page(h, ByteSource::memory(x->buf, len), x->page);
    if (st != Status::Ok) {
      *x->err = x->dir->path(h) + ": " + refusal(st, len);
      return st;
    }
    *bytes = x->page;
    return Status::Ok;
  };
  const auto sink = [](void* c, const std::uint8_t* data, std::size_t len) {
    auto* x = static_cast<Ctx*>(c);
    return x->out->write(data, len, x->err) ? Status::Ok : Status::InvalidArgument;
  };
  if (!store::pack_write(roots.data(), static_cast<std::uint32_t>(roots.size()), page, &ctx, sink, &ctx).ok())
    return fail(err);
  if (!out.commit(&err)) return fail(err);
  return 0;
}

int cmd_unpack(const Args& a) {
  if (a.operands.size() != 2) return fail("unpack: expected PACK DIR (usage: capmem unpack PACK DIR)");
  std::string err;
  hash::init();
  if (!boot_for(0, &err)) return fail(err);
  PackFile pack;
  if (!pack.open(a.operands[0], &err)) return fail(err);
  DirStore dir;
  if (!dir.open(a.operands[1], true, &err)) return fail(err);
  alignas(64) static std::uint8_t page[PAGE_SIZE];
  for (std::uint32_t i = 0; i < pack.pack().count(); ++i) {
    Hash32 root;
    if (!pack.page(i, &root, page, &err) || !dir.put(root, page, &err)) return fail(err);
  }
  if (!dir.sync(&err)) return fail(err);
  return 0;
}

int inspect_pack(FileSource& src) {
  std::string err;
  if (!boot_for(0, &err)) return fail(err);
  PackFile pack;
  if (!pack.open(src, &err)) return fail(err);
  alignas(64) static std::uint8_t page[PAGE_SIZE];
  const store::Pack& p = pack.pack();
  {
    Progress bar("verifying", p.size());
    for (std::uint32_t i = 0; i < p.count(); ++i) {
      Hash32 root;
      if (!pack.page(i, &root, page, &err)) return fail(err);
      bar.update(p.pages_offset() + std::uint64_t{PAGE_SIZE} * (i + 1));
    }
  }
  std::printf("input:   %s (page pack)\n", pack.path().c_str());
  std::printf("size:    %llu bytes\n", static_cast<unsigned long long>(p.size()));
  std::printf("pages:   %u, index strictly increasing, pages from byte offset %llu\n", p.count(),
              static_cast<unsigned long long>(p.pages_offset()));
  std::printf("check:   every page hashes to its index root (rule 8.7)\n");
  return 0;
}

}  // namespace capmem::tool
