// The `capmem` tool's files: input read with read(2), output written the way `cp` does
// (tool.h describes both), and the signal handlers that remove a temp file.
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "hostsim/env_hostsim.h"
#include "tools/tool.h"

namespace capmem::tool {

namespace {

constexpr std::size_t kOutBuf = 1u << 20;

// The temp file an OutFile has created and not yet renamed: what the signal handler
// removes. Set and cleared with the three signals blocked, so the handler never sees a
// half-written name and never removes a name that is not (or no longer) ours.
volatile std::sig_atomic_t g_tmp_dir_fd = -1;
char g_tmp_name[320];

void on_fatal_signal(int sig) {
  if (g_tmp_dir_fd >= 0) ::unlinkat(g_tmp_dir_fd, g_tmp_name, 0);
  ::signal(sig, SIG_DFL);
  ::raise(sig);  // delivered when the handler returns: the exit status says "killed by sig"
}

class BlockSignals {
 public:
  BlockSignals() {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGHUP);
    sigprocmask(SIG_BLOCK, &s, &old_);
  }
  BlockSignals(const BlockSignals&) = delete;
  BlockSignals& operator=(const BlockSignals&) = delete;
  ~BlockSignals() { sigprocmask(SIG_SETMASK, &old_, nullptr); }

 private:
  sigset_t old_{};
};

std::string random_hex16() {
  std::uint8_t b[8];
  std::size_t got = 0;
  while (got < sizeof b) {
    const ssize_t r = ::getrandom(b + got, sizeof b - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      std::abort();  // getrandom(2) cannot fail on a supported kernel with a valid buffer
    }
    got += static_cast<std::size_t>(r);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (const std::uint8_t x : b) {
    s += kHex[x >> 4];
    s += kHex[x & 15];
  }
  return s;
}

}  // namespace

void install_signal_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGHUP);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    // A signal ignored by whoever started us stays ignored (as nohup expects).
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaction(sig, &sa, nullptr);
  }
}

// --- Input ------------------------------------------------------------------------------

InFile::~InFile() {
  if (owned_ && fd_ >= 0) ::close(fd_);
}

bool InFile::open(const char* path, std::string* err) {
  path_ = path;
  if (path_ == "-") {
    fd_ = 0;
    owned_ = false;
  } else {
    // A plain blocking open, as sha256sum and cat do: a FIFO waits here for its writer
    // (opened non-blocking it would read as empty, the root of nothing, whenever the tool
    // won the race with a writer started at the same time).
    fd_ = ::open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd_ < 0) {
      *err = path_ + ": " + std::strerror(errno);
      return false;
    }
    owned_ = true;
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    *err = path_ + ": " + std::strerror(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    *err = path_ + ": " + std::strerror(EISDIR);
    return false;
  }
  if (S_ISREG(st.st_mode)) {
    size_hint_ = static_cast<std::uint64_t>(st.st_size);
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  if ((S_ISREG(st.st_mode) && st.st_size > 0) || S_ISBLK(st.st_mode)) {
    start_ = ::lseek(fd_, 0, SEEK_CUR);
    seekable_ = start_ >= 0;
  }
  return true;
}

bool InFile::same_file(const char* path) const {
  struct stat in {
  }, out{};
  return ::fstat(fd_, &in) == 0 && S_ISREG(in.st_mode) && ::stat(path, &out) == 0 && in.st_dev == out.st_dev &&
         in.st_ino == out.st_ino;
}

bool InFile::rewind(std::string* err) {
  if (::lseek(fd_, start_, SEEK_SET) == start_) return true;
  *err = path_ + ": cannot read it a second time: " + std::strerror(errno);
  return false;
}

std::int64_t InFile::read_full(void* dst, std::size_t n, std::string* err) {
  auto* p = static_cast<std::uint8_t*>(dst);
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd_, p + got, n - got);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {  // a non-blocking standard input: wait for it
        pollfd pfd{.fd = fd_, .events = POLLIN, .revents = 0};
        ::poll(&pfd, 1, -1);
        continue;
      }
      *err = path_ + ": " + std::strerror(errno);
      return -1;
    }
    got += static_cast<std::size_t>(r);
  }
  return static_cast<std::int64_t>(got);
}

// --- Output -----------------------------------------------------------------------------

OutFile::OutFile(const char* path) : path_(path) {}

OutFile::~OutFile() {
  if (fd_ >= 0 && mode_ != Mode::Stdout) ::close(fd_);
  if (mode_ == Mode::Replace && !tmp_name_.empty() && !committed_) {
    BlockSignals b;
    ::unlinkat(dir_fd_, tmp_name_.c_str(), 0);
    g_tmp_dir_fd = -1;
  }
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

std::string OutFile::errmsg(const char* what) const {
  return path_ + ": " + (what != nullptr ? std::string(what) + ": " : std::string()) + std::strerror(errno);
}

bool OutFile::open(std::string* err) {
  buf_.reserve(kOutBuf);
  if (path_ == "-") {
    mode_ = Mode::Stdout;
    fd_ = 1;
    struct stat st {};
    const int fl = ::fcntl(1, F_GETFL);
    const off_t pos = ::lseek(1, 0, SEEK_CUR);
    // Holes only past the end of a regular file we write at the end of (`> f`), never over
    // existing bytes and never with O_APPEND (where a seek does not move the write).
    holes_ =
        ::fstat(1, &st) == 0 && S_ISREG(st.st_mode) && fl >= 0 && (fl & O_APPEND) == 0 && pos >= 0 && pos >= st.st_size;
    return true;
  }
  target_ = path_;
  struct stat lst {};
  if (::lstat(path_.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    char* real = ::realpath(path_.c_str(), nullptr);
    if (real == nullptr) {
      if (errno == ENOENT) {
        *err = path_ + ": not writing through dangling symlink";
      } else {
        *err = errmsg(nullptr);
      }
      return false;
    }
    target_ = real;
    std::free(real);
  }
  struct stat st {};
  const bool exists = ::stat(target_.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) {
    *err = errmsg(nullptr);
    return false;
  }
  if (exists && S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    *err = errmsg(nullptr);
    return false;
  }
  if (exists && (!S_ISREG(st.st_mode) || st.st_nlink > 1)) {
    mode_ = Mode::InPlace;
    fd_ = ::open(target_.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd_ < 0) {
      *err = errmsg(nullptr);
      return false;
    }
    struct stat now {};
    if (::fstat(fd_, &now) != 0) {
      *err = errmsg(nullptr);
      return false;
    }
    holes_ = S_ISREG(now.st_mode);
    truncate_first_ = holes_;
    return true;
  }
  mode_ = Mode::Replace;
  const std::size_t slash = target_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : target_.substr(0, slash);
  const std::string base = slash == std::string::npos ? target_ : target_.substr(slash + 1);
  dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) {
    *err = path_ + ": " + dir + ": " + std::strerror(errno);
    return false;
  }
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    // The name is unpredictable and O_EXCL|O_NOFOLLOW never opens anything planted there.
    std::string name = "." + base.substr(0, 64) + ".capmem-" + random_hex16();
    BlockSignals b;
    fd_ = ::openat(dir_fd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ >= 0) {
      tmp_name_ = name;
      std::snprintf(g_tmp_name, sizeof g_tmp_name, "%s", name.c_str());
      g_tmp_dir_fd = dir_fd_;
    } else if (errno != EEXIST) {
      *err = path_ + ": cannot create a temporary file in " + dir + ": " + std::strerror(errno);
      return false;
    }
  }
  if (fd_ < 0) {
    *err = path_ + ": cannot create a temporary file in " + dir;
    return false;
  }
  // Mode (and owner, where allowed: owner first, since chown clears set-id bits): an
  // existing OUT's, else what a plain create would give.
  if (exists) {
    if (st.st_uid != ::geteuid() || st.st_gid != ::getegid()) (void)!::fchown(fd_, st.st_uid, st.st_gid);
    ::fchmod(fd_, st.st_mode & 07777);
  } else {
    const mode_t um = ::umask(0);
    ::umask(um);
    ::fchmod(fd_, 0666 & ~um);
  }
  holes_ = true;
  return true;
}

bool OutFile::prepare_first_write(std::string* err) {
  if (started_) return true;
  started_ = true;
  if (truncate_first_ && ::ftruncate(fd_, 0) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  return true;
}

bool OutFile::raw_write(const void* p, std::size_t n, std::string* err) {
  if (!prepare_first_write(err)) return false;
  if (pending_hole_ != 0) {
    if (::lseek(fd_, static_cast<off_t>(pending_hole_), SEEK_CUR) < 0) {
      *err = errmsg(nullptr);
      return false;
    }
    pending_hole_ = 0;
  }
  const auto* b = static_cast<const std::uint8_t*>(p);
  while (n != 0) {
    const ssize_t w = ::write(fd_, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      *err = errmsg(nullptr);
      return false;
    }
    if (w == 0) {
      errno = EIO;
      *err = errmsg(nullptr);
      return false;
    }
    b += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool OutFile::flush(std::string* err) {
  if (buf_.empty()) return true;
  const bool ok = raw_write(buf_.data(), buf_.size(), err);
  buf_.clear();
  return ok;
}

bool OutFile::write(const void* p, std::size_t n, std::string* err) {
  written_ += n;
  if (buf_.size() + n > kOutBuf && !flush(err)) return false;
  if (n >= kOutBuf) return raw_write(p, n, err);
  buf_.append(static_cast<const char*>(p), n);
  return true;
}

bool OutFile::skip(std::uint64_t n, std::string* err) {
  if (holes_) {
    if (!flush(err)) return false;
    pending_hole_ += n;
    written_ += n;
    return true;
  }
  static const std::uint8_t kZeros[64 << 10] = {};
  while (n != 0) {
    const std::size_t k = n < sizeof kZeros ? static_cast<std::size_t>(n) : sizeof kZeros;
    if (!write(kZeros, k, err)) return false;
    n -= k;
  }
  return true;
}

bool OutFile::commit(std::string* err) {
  if (!flush(err)) return false;
  if (!prepare_first_write(err)) return false;
  if (pending_hole_ != 0) {  // a trailing hole: its last byte is written to set the length
    pending_hole_ -= 1;
    const std::uint8_t z = 0;
    if (!raw_write(&z, 1, err)) return false;
  }
  if (mode_ == Mode::Stdout) {
    committed_ = true;  // main() checks that closing standard output succeeds
    return true;
  }
  struct stat st {};
  const bool regular = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
  if (regular && ::fsync(fd_) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  if (mode_ == Mode::Replace) {
    const std::size_t slash = target_.rfind('/');
    const std::string base = slash == std::string::npos ? target_ : target_.substr(slash + 1);
    BlockSignals b;
    if (::renameat(dir_fd_, tmp_name_.c_str(), dir_fd_, base.c_str()) != 0) {
      *err = errmsg(nullptr);
      return false;
    }
    committed_ = true;
    g_tmp_dir_fd = -1;
    ::fsync(dir_fd_);  // the rename itself reaches the disk (best effort, as in coreutils)
  }
  committed_ = true;
  return true;
}

// --- Misc -------------------------------------------------------------------------------

bool boot_for(std::uint64_t bytes, std::string* err) {
  // Enough simulated RAM for every page of the content plus the tree and descriptors
  // (sparse: only touched pages cost).
  const std::uint64_t want = bytes + bytes / 16 + (64ull << 20);
  if (hostsim::try_boot(want)) return true;
  *err = "out of memory: cannot make " + std::to_string(want >> 20) + " MiB of simulated RAM";
  return false;
}

bool parse_u64(const char* s, std::uint64_t* out) {
  if (s == nullptr || *s == '\0') return false;
  std::uint64_t v = 0;
  for (const char* p = s; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return false;
    const std::uint64_t d = static_cast<std::uint64_t>(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace capmem::tool
