// The `capmem` tool's files: input read with read(2), output written the way `cp` does
// (tool.h describes both), and the signal handlers that remove a temp file.
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "hostsim/env_hostsim.h"
#include "tools/tool.h"

namespace capmem::tool {

namespace {

constexpr std::size_t kOutBuf = 1u << 20;
constexpr std::size_t kPage = 4096;

// The named temp file an OutFile has created and not yet renamed: what the signal handler
// removes. Set and cleared with the cleanup signals blocked, so the handler never sees a
// half-written name and never removes a name that is not (or no longer) ours.
// Up to kTempSlots at once: OUT and a page store entry (tools/store.cpp) can both be made.
constexpr int kTempSlots = 4;
volatile std::sig_atomic_t g_tmp_dir_fd[kTempSlots] = {-1, -1, -1, -1};
char g_tmp_name[kTempSlots][320];

// Every signal whose default action ends the process and that a handler can catch (not
// the ones a fault raises: ILL, TRAP, ABRT, BUS, FPE, SEGV, SYS).
sigset_t cleanup_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (const int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2, SIGXFSZ, SIGXCPU,
                        SIGVTALRM, SIGPROF, SIGPOLL, SIGPWR, SIGSTKFLT})
    sigaddset(&s, sig);
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) sigaddset(&s, sig);
  return s;
}

void on_fatal_signal(int sig) {
  const int saved = errno;  // (the process dies below; kept for tools that check handlers)
  for (int i = 0; i < kTempSlots; ++i)
    if (g_tmp_dir_fd[i] >= 0) ::unlinkat(g_tmp_dir_fd[i], g_tmp_name[i], 0);
  errno = saved;
  ::signal(sig, SIG_DFL);
  ::raise(sig);  // delivered when the handler returns: the exit status says "killed by sig"
}

class BlockSignals {
 public:
  BlockSignals() {
    const sigset_t s = cleanup_signals();
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
  sa.sa_mask = cleanup_signals();
  for (int sig = 1; sig <= SIGRTMAX; ++sig) {
    if (sigismember(&sa.sa_mask, sig) != 1) continue;
    struct sigaction old {};
    // A signal ignored by whoever started us stays ignored (as nohup expects).
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaction(sig, &sa, nullptr);
  }
}

bool ensure_std_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    // A mode that fails if used: reading standard input or writing standard output is then
    // an error (EBADF) instead of reading or writing some file the tool opened.
    int got = fd == 0 ? ::open("/dev/full", O_WRONLY | O_NOCTTY) : -1;
    if (got < 0) got = ::open("/dev/null", (fd == 0 ? O_WRONLY : O_RDONLY) | O_NOCTTY);
    if (got != fd) {
      if (got >= 0) ::close(got);
      return false;
    }
  }
  return true;
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

// --- FileSource -------------------------------------------------------------------------

bool FileSource::open(std::string* err) {
  if (!in_.seekable()) return true;
  len_ = in_.size_hint() > in_.start() ? in_.size_hint() - in_.start() : 0;
  head_len_ = len_ < sizeof head_ ? static_cast<std::size_t>(len_) : sizeof head_;
  copy_in(this, 0, head_, head_len_);
  return !failed(err);
}

bool FileSource::fill(std::uint64_t n, std::string* err) {
  alignas(64) static std::uint8_t buf[1u << 20];
  while (len_ < n && !ended_ && !in_.seekable()) {
    const std::uint64_t want = n - len_;
    const std::size_t ask = want < sizeof buf ? static_cast<std::size_t>(want) : sizeof buf;
    const std::int64_t got = in_.read_full(buf, ask, err);
    if (got < 0) return false;
    const auto g = static_cast<std::size_t>(got);
    for (std::size_t i = 0; i < g && head_len_ < sizeof head_; ++i) head_[head_len_++] = buf[i];
    if (!spool_.write(buf, g, err)) return false;
    len_ += g;
    if (g < ask) ended_ = true;
  }
  return true;
}

void FileSource::copy_in(const void* ctx, std::uint64_t offset, std::uint8_t* out, std::size_t n) {
  const auto* self = static_cast<const FileSource*>(ctx);
  const int fd = self->in_.seekable() ? self->in_.fd() : self->spool_.fd();
  const std::uint64_t base = self->in_.seekable() ? self->in_.start() : 0;
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, out + got, n - got, static_cast<off_t>(base + offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {  // ended early or failed: zeros, and the result is not used
      if (self->short_at_ == UINT64_MAX) {
        self->short_at_ = offset + got;
        self->read_errno_ = r < 0 ? errno : 0;
      }
      std::memset(out + got, 0, n - got);
      return;
    }
    got += static_cast<std::size_t>(r);
  }
}

bool FileSource::failed(std::string* err) const {
  if (short_at_ == UINT64_MAX) return false;
  *err = in_.path() + (read_errno_ != 0 ? ": " + std::string(std::strerror(read_errno_))
                                        : ": changed while it was read: it ends at byte " + std::to_string(short_at_) +
                                              " now, not " + std::to_string(len_));
  return true;
}

// --- Output -----------------------------------------------------------------------------

namespace {

bool is_zero_page(const std::uint8_t* p) {
  static const std::uint8_t kZero[kPage] = {};
  return std::memcmp(p, kZero, kPage) == 0;
}

// The descriptor N when `path` is /proc/<our pid>/fd/N (or our thread's), which
// /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N all reach; else -1.
int own_fd_number(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return -1;
  const std::string base = path.substr(slash + 1);
  if (base.empty() || base.size() > 9 || base.find_first_not_of("0123456789") != std::string::npos) return -1;
  char* dir = ::realpath(slash == 0 ? "/" : path.substr(0, slash).c_str(), nullptr);
  if (dir == nullptr) return -1;
  const std::string d = dir;
  std::free(dir);
  const std::string proc = "/proc/" + std::to_string(::getpid());
  if (d != proc + "/fd" && d != proc + "/task/" + std::to_string(::gettid()) + "/fd") return -1;
  return std::atoi(base.c_str());
}

// A directory descriptor for making and renaming files in it: read-only where it may be
// read (fsync works on it), else O_PATH (a directory we may write but not list).
int open_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd >= 0 ? fd : ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
}

// The mode new content keeps: set-user-ID always dropped, set-group-ID when group execute is
// set (without it the bit means mandatory locking, not set-id), as the kernel drops them
// when anyone writes the file.
mode_t kept_mode(mode_t m) {
  m &= 07777;
  m &= ~static_cast<mode_t>(S_ISUID);
  if ((m & S_IXGRP) != 0) m &= ~static_cast<mode_t>(S_ISGID);
  return m;
}

bool is_mount_root(int fd) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, 0, &stx) != 0) return false;
  return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

using Xattrs = std::vector<std::pair<std::string, std::string>>;

// Every extended attribute of `fd`, sorted (none where the filesystem has none). false if
// they cannot all be read.
bool read_xattrs(int fd, Xattrs* out) {
  std::string names;
  for (;;) {
    const ssize_t n = ::flistxattr(fd, nullptr, 0);
    if (n < 0) return errno == ENOTSUP;
    if (n == 0) return true;
    names.resize(static_cast<std::size_t>(n));
    const ssize_t m = ::flistxattr(fd, names.data(), names.size());
    if (m >= 0) {
      names.resize(static_cast<std::size_t>(m));
      break;
    }
    if (errno != ERANGE) return false;
  }
  for (std::size_t i = 0; i < names.size();) {
    std::string name(names.c_str() + i);
    i += name.size() + 1;
    std::string value;
    for (;;) {
      const ssize_t n = ::fgetxattr(fd, name.c_str(), nullptr, 0);
      if (n < 0) return false;
      value.resize(static_cast<std::size_t>(n));
      const ssize_t m = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
      if (m >= 0) {
        value.resize(static_cast<std::size_t>(m));
        break;
      }
      if (errno != ERANGE) return false;
    }
    out->emplace_back(std::move(name), std::move(value));
  }
  std::sort(out->begin(), out->end());
  return true;
}

// The inode flags a user can set (chattr): no-dump, no-CoW, compression, sync, ...
unsigned inode_flags(int fd) {
  int f = 0;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &f) != 0) return 0;
  constexpr unsigned kUser =
      FS_FL_USER_MODIFIABLE | FS_NOCOW_FL | FS_NOCOMP_FL | FS_PROJINHERIT_FL | FS_DAX_FL | FS_JOURNAL_DATA_FL;
  return static_cast<unsigned>(f) & kUser;
}

// Registers `name` in `dir_fd` as a temp file the signal handler removes; returns its slot
// (for unregister_temp), -1 if every slot is taken (never: the tool makes at most two at
// once). Called with the cleanup signals blocked.
int register_temp(int dir_fd, const std::string& name) {
  for (int i = 0; i < kTempSlots; ++i) {
    if (g_tmp_dir_fd[i] >= 0) continue;
    std::snprintf(g_tmp_name[i], sizeof g_tmp_name[i], "%s", name.c_str());
    g_tmp_dir_fd[i] = dir_fd;
    return i;
  }
  return -1;
}
void unregister_temp(int* slot) {
  if (*slot >= 0) g_tmp_dir_fd[*slot] = -1;
  *slot = -1;
}

}  // namespace

OutFile::OutFile(const char* path) : path_(path) {}

OutFile::~OutFile() {
  if (sink_fd_ >= 0) ::close(sink_fd_);
  if (out_fd_ >= 0 && own_out_) ::close(out_fd_);
  drop_temp();
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

std::string OutFile::errmsg(const char* what) const {
  return path_ + ": " + (what != nullptr ? std::string(what) + ": " : std::string()) + std::strerror(errno);
}

void OutFile::drop_temp() {
  if (tmp_name_.empty()) return;
  BlockSignals b;
  ::unlinkat(dir_fd_, tmp_name_.c_str(), 0);
  unregister_temp(&tmp_slot_);
  tmp_name_.clear();
}

bool OutFile::open(std::string* err) {
  buf_.reserve(kOutBuf);
  if (path_ == "-") return open_fd(1, err);
  // The symlinks one at a time: /dev/stdout, /dev/fd/N and /proc/self/fd/N reach
  // /proc/<pid>/fd/N, one of our own descriptors, whose target may be a pipe (no path at
  // all) or a file the shell holds open (which must not be renamed over).
  std::string hop = path_;
  for (int i = 0; i < 40; ++i) {
    if (const int fd = own_fd_number(hop); fd >= 0) return open_fd(fd, err);
    struct stat lst {};
    if (::lstat(hop.c_str(), &lst) != 0 || !S_ISLNK(lst.st_mode)) break;
    std::string link(PATH_MAX, '\0');
    const ssize_t n = ::readlink(hop.c_str(), link.data(), link.size());
    if (n <= 0) break;
    link.resize(static_cast<std::size_t>(n));
    const std::size_t slash = hop.rfind('/');
    hop = link[0] == '/' || slash == std::string::npos ? link : hop.substr(0, slash + 1) + link;
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
  const std::size_t slash = target_.rfind('/');
  dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : target_.substr(0, slash);
  base_ = slash == std::string::npos ? target_ : target_.substr(slash + 1);
  struct stat st {};
  if (::stat(target_.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      *err = errmsg(nullptr);
      return false;
    }
    if (base_.empty()) {  // `new/`: as cp, a file is not created under a directory's name
      errno = ENOTDIR;
      *err = errmsg(nullptr);
      return false;
    }
    mode_ = Mode::Replace;  // a new OUT
    dir_fd_ = open_dir(dir_);
    if (dir_fd_ < 0) {
      *err = path_ + ": " + dir_ + ": " + std::strerror(errno);
      return false;
    }
    return make_temp(0666, err);  // the umask or a default ACL applies, as to any new file
  }
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    *err = errmsg(nullptr);
    return false;
  }
  if (S_ISREG(st.st_mode)) return open_regular(err);
  mode_ = Mode::InPlace;
  out_fd_ = ::open(target_.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (out_fd_ < 0) {
    *err = errmsg(nullptr);
    return false;
  }
  own_out_ = true;
  existed_ = true;
  struct stat now {};
  out_regular_ = ::fstat(out_fd_, &now) == 0 && S_ISREG(now.st_mode);
  out_holes_ = out_regular_;
  return true;
}

bool OutFile::open_fd(int fd, std::string* err) {
  mode_ = Mode::Fd;
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY) {  // closed, or not open for writing
    errno = EBADF;
    *err = errmsg(nullptr);
    return false;
  }
  out_fd_ = fd;
  own_out_ = false;
  existed_ = true;
  return true;
}

bool OutFile::open_regular(std::string* err) {
  // Opened for writing first, as cp opens it: a file the user may not write is refused
  // here, before anything is made or changed.
  out_fd_ = ::open(target_.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (out_fd_ < 0) {
    *err = errmsg(nullptr);
    return false;
  }
  own_out_ = true;
  existed_ = true;
  mode_ = Mode::InPlace;
  struct stat st {};
  if (::fstat(out_fd_, &st) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  out_regular_ = S_ISREG(st.st_mode);
  out_holes_ = out_regular_;
  if (!out_regular_ || st.st_nlink > 1 || is_mount_root(out_fd_)) return true;
  dir_fd_ = open_dir(dir_);
  if (dir_fd_ < 0 || !make_temp(0600, nullptr)) return true;  // e.g. an unwritable directory
  if (!replace_loses_nothing(st)) {
    ::close(sink_fd_);
    sink_fd_ = -1;
    tmpfile_ = false;
    drop_temp();
    return true;
  }
  mode_ = Mode::Replace;
  ::close(out_fd_);  // the old file is not held open for writing while we work
  out_fd_ = -1;
  return true;
}

bool OutFile::make_temp(mode_t mode, std::string* err) {
  if (std::getenv("CAPMEM_NO_TMPFILE") == nullptr) {
    const int fd = ::openat(dir_fd_, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, mode);
    if (fd >= 0) {
      // It gets its name by linkat(AT_EMPTY_PATH), which needs CAP_DAC_READ_SEARCH, or
      // else through /proc/self/fd: without /proc, a named temp from the start.
      char proc[64];
      std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
      char target[8];
      if (::readlink(proc, target, sizeof target) >= 0) {
        sink_fd_ = fd;
        tmpfile_ = true;
        return true;
      }
      ::close(fd);
    }
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    // The name is unpredictable and O_EXCL|O_NOFOLLOW never opens anything planted there.
    const std::string name = "." + base_.substr(0, 64) + ".capmem-" + random_hex16();
    BlockSignals b;
    const int fd = ::openat(dir_fd_, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0) {
      sink_fd_ = fd;
      tmp_name_ = name;
      tmp_slot_ = register_temp(dir_fd_, name);
      return true;
    }
    if (errno != EEXIST) break;
  }
  if (err != nullptr) *err = path_ + ": cannot create a temporary file in " + dir_ + ": " + std::strerror(errno);
  return false;
}

bool OutFile::replace_loses_nothing(const struct stat& st) {
  struct stat t {};
  if (::fstat(sink_fd_, &t) != 0) return false;
  // Owner and group first (chown clears set-id bits), then the mode.
  if ((t.st_uid != st.st_uid || t.st_gid != st.st_gid) && ::fchown(sink_fd_, st.st_uid, st.st_gid) != 0) return false;
  if (::fchmod(sink_fd_, kept_mode(st.st_mode)) != 0) return false;
  // Then what the new file has must be what OUT has: ACLs (system.posix_acl_*), the SELinux
  // label, user.*, trusted.*, ... File capabilities are the one attribute new content drops.
  Xattrs have;
  Xattrs fresh;
  if (!read_xattrs(out_fd_, &have) || !read_xattrs(sink_fd_, &fresh)) return false;
  std::erase_if(have, [](const auto& kv) { return kv.first == "security.capability"; });
  return have == fresh && inode_flags(out_fd_) == inode_flags(sink_fd_);
}

bool OutFile::make_spool(std::string* err) {
  const char* env = std::getenv("TMPDIR");
  const std::string dir = env != nullptr && *env != '\0' ? env : "/tmp";
  BlockSignals b;  // a named spool exists only between its creation and its unlink
  int fd = std::getenv("CAPMEM_NO_TMPFILE") != nullptr ? -1 : ::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
  for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
    const std::string name = dir + "/.capmem-spool-" + random_hex16();
    fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::unlink(name.c_str());
    } else if (errno != EEXIST) {
      break;
    }
  }
  if (fd < 0) {
    *err = path_ + ": cannot make a spool file in " + dir + " (TMPDIR): " + std::strerror(errno);
    return false;
  }
  sink_fd_ = fd;
  return true;
}

bool OutFile::sink_write(const void* p, std::size_t n, std::string* err) {
  if (sink_fd_ < 0 && !make_spool(err)) return false;
  const auto fail_with = [&] {
    *err = spooled() ? errmsg("writing the spool file (TMPDIR)") : errmsg(nullptr);
    return false;
  };
  if (pending_hole_ != 0) {
    if (::lseek(sink_fd_, static_cast<off_t>(pending_hole_), SEEK_CUR) < 0) return fail_with();
    pending_hole_ = 0;
  }
  const auto* b = static_cast<const std::uint8_t*>(p);
  while (n != 0) {
    const ssize_t w = ::write(sink_fd_, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return fail_with();
    }
    if (w == 0) {
      errno = EIO;
      return fail_with();
    }
    b += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool OutFile::flush(std::string* err) {
  if (buf_.empty()) return true;
  const bool ok = sink_write(buf_.data(), buf_.size(), err);
  buf_.clear();
  return ok;
}

bool OutFile::write(const void* p, std::size_t n, std::string* err) {
  written_ += n;
  if (buf_.size() + n > kOutBuf && !flush(err)) return false;
  if (n >= kOutBuf) return sink_write(p, n, err);
  buf_.append(static_cast<const char*>(p), n);
  return true;
}

bool OutFile::skip(std::uint64_t n, std::string* err) {
  written_ += n;
  if (spooled() && sink_fd_ < 0 && buf_.size() + n <= kOutBuf) {  // still all in memory
    buf_.append(static_cast<std::size_t>(n), '\0');
    return true;
  }
  if (!flush(err)) return false;
  if (sink_fd_ < 0 && !make_spool(err)) return false;
  pending_hole_ += n;
  return true;
}

bool OutFile::commit(std::string* err) {
  if (spooled() && sink_fd_ < 0) return deliver(err);  // the whole output is in buf_
  if (!flush(err)) return false;
  if (pending_hole_ != 0) {  // a trailing hole: ftruncate sets the length
    if (::ftruncate(sink_fd_, static_cast<off_t>(written_)) != 0) {
      *err = spooled() ? errmsg("writing the spool file (TMPDIR)") : errmsg(nullptr);
      return false;
    }
    pending_hole_ = 0;
  }
  if (spooled()) return deliver(err);
  if (sync_ && ::fsync(sink_fd_) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  bool busy = false;
  if (!link_in(&busy, err)) return false;
  if (!busy) return true;
  // OUT is a mount point (a bind-mounted file) that statx did not report (a kernel before
  // 5.8) or that was mounted after it was opened: rename cannot replace it, so the complete
  // temp file is copied into it in place.
  sink_fd_ = ::openat(dir_fd_, tmp_name_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  drop_temp();
  out_fd_ = ::open(target_.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (sink_fd_ < 0 || out_fd_ < 0) {
    *err = errmsg(nullptr);
    return false;
  }
  own_out_ = true;
  mode_ = Mode::InPlace;
  out_regular_ = true;
  out_holes_ = true;
  return deliver(err);
}

bool OutFile::link_in(bool* busy, std::string* err) {
  BlockSignals b;  // a name made here is removed below or by the destructor, never left
  const auto link_tmpfile = [&](const std::string& name) {
    if (::linkat(sink_fd_, "", dir_fd_, name.c_str(), AT_EMPTY_PATH) == 0) return true;
    if (errno == EEXIST) return false;
    char proc[64];
    std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", sink_fd_);
    return ::linkat(AT_FDCWD, proc, dir_fd_, name.c_str(), AT_SYMLINK_FOLLOW) == 0;
  };
  if (tmpfile_) {
    // A new OUT gets its own name directly: until complete it has none.
    if (!existed_ && link_tmpfile(base_)) {
      const int fd = sink_fd_;
      sink_fd_ = -1;
      if (::close(fd) != 0) {
        *err = errmsg(nullptr);
        ::unlinkat(dir_fd_, base_.c_str(), 0);
        return false;
      }
      committed_ = true;
      if (sync_) ::fsync(dir_fd_);  // the new name reaches the disk (best effort, as in coreutils)
      return true;
    }
    if (existed_ || errno == EEXIST) {  // an existing OUT (or one made meanwhile): renamed over
      for (int attempt = 0; attempt < 100 && tmp_name_.empty(); ++attempt) {
        const std::string name = "." + base_.substr(0, 64) + ".capmem-" + random_hex16();
        if (link_tmpfile(name)) {
          tmp_name_ = name;
          tmp_slot_ = register_temp(dir_fd_, name);
        } else if (errno != EEXIST) {
          break;
        }
      }
    }
    if (tmp_name_.empty()) {
      *err = errmsg("linking the new file in");
      return false;
    }
  }
  const int fd = sink_fd_;
  sink_fd_ = -1;
  if (::close(fd) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  if (::renameat(dir_fd_, tmp_name_.c_str(), dir_fd_, base_.c_str()) != 0) {
    if (errno == EBUSY && existed_) {
      *busy = true;
      return true;
    }
    *err = errmsg(nullptr);
    return false;
  }
  tmp_name_.clear();
  unregister_temp(&tmp_slot_);
  committed_ = true;
  if (sync_) ::fsync(dir_fd_);  // the rename itself reaches the disk (best effort, as in coreutils)
  return true;
}

bool OutFile::put_data(const std::uint8_t* p, std::size_t n, std::string* err) {
  if (out_hole_ != 0) {
    if (::lseek(out_fd_, static_cast<off_t>(out_hole_), SEEK_CUR) < 0) {
      *err = errmsg(nullptr);
      return false;
    }
    out_hole_ = 0;
  }
  while (n != 0) {
    const ssize_t w = ::write(out_fd_, p, n);
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
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool OutFile::put_hole(std::uint64_t n, std::string* err) {
  if (out_holes_) {
    out_hole_ += n;
    return true;
  }
  static const std::uint8_t kZeros[64 << 10] = {};
  while (n != 0) {
    const std::size_t k = n < sizeof kZeros ? static_cast<std::size_t>(n) : sizeof kZeros;
    if (!put_data(kZeros, k, err)) return false;
    n -= k;
  }
  return true;
}

// `p` starts at a page boundary of the output: its zero pages become holes where OUT takes
// them.
bool OutFile::put(const std::uint8_t* p, std::size_t n, std::string* err) {
  if (!out_holes_) return put_data(p, n, err);
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i;
    while (j < n && (n - j < kPage || !is_zero_page(p + j))) j += std::min(kPage, n - j);
    if (j > i && !put_data(p + i, j - i, err)) return false;
    for (; j < n && n - j >= kPage && is_zero_page(p + j); j += kPage) out_hole_ += kPage;
    i = j;
  }
  return true;
}

bool OutFile::deliver(std::string* err) {
  if (mode_ == Mode::Fd) {
    // Holes only past the end of a regular file we write at the end of (`> f`), never over
    // existing bytes and never with O_APPEND (where a seek does not move the write).
    struct stat st {};
    const int fl = ::fcntl(out_fd_, F_GETFL);
    const off_t pos = ::lseek(out_fd_, 0, SEEK_CUR);
    out_holes_ = ::fstat(out_fd_, &st) == 0 && S_ISREG(st.st_mode) && fl >= 0 && (fl & O_APPEND) == 0 && pos >= 0 &&
                 pos >= st.st_size;
  } else if (out_regular_ && ::ftruncate(out_fd_, 0) != 0) {
    *err = errmsg(nullptr);
    return false;
  }
  if (sink_fd_ < 0) {
    if (!put(reinterpret_cast<const std::uint8_t*>(buf_.data()), buf_.size(), err)) return false;
  } else {
    // The spool's holes are skipped, not read (a 4 GiB Empty cap is a 4 GiB hole).
    buf_.resize(kOutBuf);
    auto* chunk = reinterpret_cast<std::uint8_t*>(buf_.data());
    const auto end = static_cast<off_t>(written_);
    off_t pos = 0;
    while (pos < end) {
      off_t data = ::lseek(sink_fd_, pos, SEEK_DATA);
      if (data < 0) data = errno == ENXIO ? end : pos;  // ENXIO: only a hole remains
      data = std::min(data, end);
      if (data > pos && !put_hole(static_cast<std::uint64_t>(data - pos), err)) return false;
      pos = data;
      if (pos >= end) break;
      off_t hole = ::lseek(sink_fd_, pos, SEEK_HOLE);
      if (hole <= pos || hole > end) hole = end;
      while (pos < hole) {
        const auto want = static_cast<std::size_t>(std::min<off_t>(static_cast<off_t>(kOutBuf), hole - pos));
        const ssize_t r = ::pread(sink_fd_, chunk, want, pos);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          if (r == 0) errno = EIO;
          *err = errmsg("reading the spool file back");
          return false;
        }
        if (!put(chunk, static_cast<std::size_t>(r), err)) return false;
        pos += r;
      }
    }
  }
  if (out_hole_ != 0) {  // a trailing hole: its last byte is written to set the length
    out_hole_ -= 1;
    const std::uint8_t z = 0;
    if (!put_data(&z, 1, err)) return false;
  }
  if (mode_ == Mode::Fd) {
    committed_ = true;  // main() checks that closing standard output succeeds
    return true;
  }
  if (out_regular_) {
    if (sync_ && ::fsync(out_fd_) != 0) {
      *err = errmsg(nullptr);
      return false;
    }
    // The kernel drops set-id bits and capabilities when the file is written; said again
    // here for filesystems that do not (best effort: only the owner or root may).
    struct stat st {};
    if (::fstat(out_fd_, &st) == 0 && kept_mode(st.st_mode) != (st.st_mode & 07777))
      (void)!::fchmod(out_fd_, kept_mode(st.st_mode));
    (void)!::fremovexattr(out_fd_, "security.capability");
  }
  const int fd = out_fd_;
  out_fd_ = -1;
  if (::close(fd) != 0) {
    *err = errmsg(nullptr);
    return false;
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
