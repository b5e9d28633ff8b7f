// Internal to the `capmem` host tool.
//
// The tool runs as root on people's machines, so files are handled the way coreutils
// handles them (tools/io.cpp):
//   - input is read with read(2), never mapped: a file truncated while it is read just
//     ends early (no SIGBUS), /proc files give their real content, and a non-regular input
//     (FIFO, device, pipe, `-` for standard input) is read as a stream; a FIFO is opened
//     as sha256sum opens it (blocking: the tool waits for its writer);
//   - OUT is written the way `cp` does (see OutFile).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/types.h"

namespace capmem::tool {

inline constexpr std::uint64_t kProgressThreshold = 64ull << 20;  // progress bar above 64 MiB

// An input file read with read(2).
class InFile {
 public:
  InFile() = default;
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;
  ~InFile();
  // `-` is standard input. A directory is refused here (EISDIR).
  bool open(const char* path, std::string* err);
  // Reads up to n bytes; fewer only at end of input. -1 on a read error (*err set).
  std::int64_t read_full(void* dst, std::size_t n, std::string* err);
  // st_size for a regular file (progress bars only; never trusted for sizing), else 0.
  [[nodiscard]] std::uint64_t size_hint() const { return size_hint_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  // A regular file with content (st_size > 0: a /proc file, size 0, is a stream) or a
  // block device, at a position lseek reports: it can be read twice (rewind()).
  [[nodiscard]] bool seekable() const { return seekable_; }
  // Back to where reading started (the position standard input had, for `-`).
  bool rewind(std::string* err);
  // The descriptor and where reading started (for pread of a seekable input).
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] std::uint64_t start() const { return static_cast<std::uint64_t>(start_); }
  // `path` (symlinks followed) is this input's regular file: writing it as OUT would
  // destroy the input while it is read, so commands refuse, as `cp` does.
  [[nodiscard]] bool same_file(const char* path) const;

 private:
  std::string path_;
  int fd_ = -1;
  bool owned_ = false;
  bool seekable_ = false;
  std::int64_t start_ = 0;
  std::uint64_t size_hint_ = 0;
};

// What the tool keeps of an input it cannot read twice (a pipe, FIFO, terminal): an
// unlinked temporary file in $TMPDIR (default /tmp), created at the first write (O_TMPFILE,
// else a named file unlinked at once), so even SIGKILL leaves nothing. Errors name the
// input, the directory and the reason (ENOSPC included). tools/encode.cpp.
class Spool {
 public:
  explicit Spool(const std::string& input);
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;
  ~Spool();
  bool write(const std::uint8_t* p, std::size_t n, std::string* err);
  bool rewind(std::string* err);
  // Exactly n bytes at the current position, else an error.
  bool read(std::uint8_t* p, std::size_t n, std::string* err);
  [[nodiscard]] int fd() const { return fd_; }  // -1 before the first write
  [[nodiscard]] std::uint64_t size() const { return size_; }

 private:
  bool create(std::string* err);
  bool error(const char* what, std::string* err) const;
  std::string input_;
  std::string dir_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// An input read at random positions (a ByteSource of known length) in bounded memory: a
// seekable InFile is read where it is (pread, each byte once: rule 5.3 holds for a file
// that changes meanwhile); any other is copied to a Spool, only as far as fill() asks, and
// read from there. A read that ends early or fails gives zeros and is reported by failed()
// (a caller does not use a result computed from such a read). tools/io.cpp.
class FileSource {
 public:
  explicit FileSource(InFile& in) : in_(in), spool_(in.path()) {}
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  // A seekable input: its length (st_size from where reading started) and its first bytes
  // (head()). A stream: nothing is read yet.
  bool open(std::string* err);
  // A stream: reads on until len() >= n or its end (ended()). Nothing for a seekable input.
  bool fill(std::uint64_t n, std::string* err);
  [[nodiscard]] ByteSource source() const { return ByteSource{.copy_in = copy_in, .ctx = this, .len = len_}; }
  [[nodiscard]] std::uint64_t len() const { return len_; }
  // The source ends at n (if it is longer).
  void cut(std::uint64_t n) {
    if (len_ > n) len_ = n;
  }
  [[nodiscard]] bool ended() const { return ended_; }
  // The first bytes (up to 16): of the file, or those a stream gave so far.
  [[nodiscard]] const std::uint8_t* head() const { return head_; }
  [[nodiscard]] std::size_t head_len() const { return head_len_; }
  [[nodiscard]] InFile& in() const { return in_; }
  // A read ended early or failed (*err set, naming the input).
  bool failed(std::string* err) const;

 private:
  static void copy_in(const void* ctx, std::uint64_t offset, std::uint8_t* out, std::size_t n);
  InFile& in_;
  Spool spool_;
  std::uint64_t len_ = 0;
  std::uint8_t head_[16] = {};
  std::size_t head_len_ = 0;
  bool ended_ = false;
  mutable std::uint64_t short_at_ = UINT64_MAX;
  mutable int read_errno_ = 0;
};

// Where the tool's output goes, decided when it is opened (before any input is read):
//   - `-`, and any path that reaches one of our own descriptors (`/dev/stdout`, `/dev/stderr`,
//     `/dev/fd/N`, `/proc/self/fd/N`, a symlink to one of them): that descriptor, written at
//     its offset (appending if it was opened to append), never reopened or replaced;
//   - a symlink: followed to its target, as `cp` does (a dangling one is an error), and the
//     target is then treated as below;
//   - a device, FIFO or other non-regular file: written in place (opened without O_CREAT or
//     O_TRUNC);
//   - an existing regular file: opened for writing first, so a file the user may not write
//     is refused as `cp` refuses it (nothing is changed). It is then replaced (below) only
//     when the replacement loses nothing: a single link, not a mount point, a temp file
//     could be made in its directory and given the file's owner and group, and then has
//     the same extended attributes (ACLs, SELinux label, user.*, ...) and inode flags.
//     Otherwise (several hard links, a bind mount, an unwritable directory, an owner we
//     cannot give, attributes a new file would not have) it is written in place, as `cp`
//     writes it: truncated, then written. Set-id bits and file capabilities never survive
//     new content (the kernel drops them for `cp` too);
//   - a new file, or a regular file that can be replaced: the bytes go to a temp file in
//     OUT's directory, made with O_TMPFILE where the filesystem has it (no name until
//     complete, so even SIGKILL leaves nothing behind; CAPMEM_NO_TMPFILE=1 in the
//     environment turns it off, for filesystems that mishandle it and for tests), else named
//     `.<name>.capmem-<16 random hex>` and created O_CREAT|O_EXCL|O_NOFOLLOW (a symlink
//     planted at any name is never followed). It gets an existing OUT's owner, group and
//     mode (set-id bits dropped), or 0666 less the umask / default ACL for a new OUT; it is
//     fsync'd, then linked in (a new OUT) or renamed over OUT, and the directory fsync'd.
//     A failure removes it, so OUT is either the old file or the new one.
// Whatever is written in place (a descriptor, device, FIFO or in-place file) is first
// collected (in memory up to 1 MiB, then in an unlinked spool file in $TMPDIR, default
// /tmp) and only copied to OUT by commit(), once the whole result is known good: output
// abandoned before commit() (a rejected input, a signal, a write error) leaves OUT as it
// was. Every catchable terminating signal (install_signal_cleanup) removes a named temp.
// skip(n) leaves n zero bytes: a hole where the output is a regular file, real zeros in a
// stream.
class OutFile {
 public:
  explicit OutFile(const char* path);
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile();
  bool open(std::string* err);
  bool write(const void* p, std::size_t n, std::string* err);
  bool skip(std::uint64_t n, std::string* err);
  bool commit(std::string* err);
  // No fsync of the file or its directory at commit: the caller makes many OutFiles durable
  // at once (DirStore::sync: one syncfs for a page store's entries, before the OUT that
  // needs them is committed). Atomicity is unchanged.
  void defer_sync() { sync_ = false; }

 private:
  // Fd: a descriptor we were given. InPlace: a file we opened, written in place. Both are
  // spooled. Replace: a temp file in OUT's directory.
  enum class Mode : std::uint8_t { Fd, InPlace, Replace };
  bool open_fd(int fd, std::string* err);
  bool open_regular(std::string* err);
  bool make_temp(mode_t mode, std::string* err);
  bool replace_loses_nothing(const struct stat& st);
  void drop_temp();
  bool make_spool(std::string* err);
  bool sink_write(const void* p, std::size_t n, std::string* err);
  bool flush(std::string* err);
  bool link_in(bool* busy, std::string* err);
  bool deliver(std::string* err);
  bool put(const std::uint8_t* p, std::size_t n, std::string* err);
  bool put_data(const std::uint8_t* p, std::size_t n, std::string* err);
  bool put_hole(std::uint64_t n, std::string* err);
  bool spooled() const { return mode_ != Mode::Replace; }
  std::string errmsg(const char* what) const;

  std::string path_;    // as given
  std::string target_;  // after following a symlink
  std::string dir_, base_;
  std::string tmp_name_;  // a named temp in dir_ (Replace), while it exists
  int tmp_slot_ = -1;     // its slot in the signal handler's list (io.cpp)
  Mode mode_ = Mode::Replace;
  int out_fd_ = -1;  // OUT itself (Fd, InPlace; an existing OUT when Replace)
  bool own_out_ = false;
  bool out_regular_ = false;  // InPlace into a regular file: truncated, then written
  bool out_holes_ = false;    // deliver() may lseek over zero pages
  int sink_fd_ = -1;          // the temp file (Replace) or the spool (-1 until needed)
  bool tmpfile_ = false;      // sink_fd_ is an O_TMPFILE in dir_ (Replace)
  bool existed_ = false;      // OUT existed when opened
  int dir_fd_ = -1;
  bool committed_ = false;
  bool sync_ = true;
  std::uint64_t pending_hole_ = 0;  // in the sink
  std::uint64_t out_hole_ = 0;      // in OUT, while delivering
  std::uint64_t written_ = 0;       // bytes of output so far, holes included
  std::string buf_;
};

// Installs the handlers that remove an open OutFile's named temp file on every catchable
// signal whose default action ends the process (HUP, INT, QUIT, TERM, PIPE, ALRM, USR1,
// USR2, XFSZ, XCPU, VTALRM, PROF, POLL, PWR, STKFLT and the real-time signals); a signal
// ignored by whoever started us stays ignored. The process then dies of the signal.
void install_signal_cleanup();

// Makes sure descriptors 0, 1 and 2 are open (as coreutils' stdopen does): a closed one is
// reopened on /dev/null (/dev/full for 0) with a mode that fails if used, so no file the
// tool opens later becomes standard input, output or error. false if that is impossible.
bool ensure_std_fds();

class Progress {
 public:
  Progress(const char* what, std::uint64_t total);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();
  void update(std::uint64_t done);
  // Feeds this bar from a core build (DataCap::from_bytes / decode).
  BuildProgress sink() {
    return BuildProgress{.report = [](void* self, std::uint64_t done) { static_cast<Progress*>(self)->update(done); },
                         .ctx = this};
  }

 private:
  const char* what_;
  std::uint64_t total_;
  bool on_;
  bool shown_ = false;
  int last_ = -1;
};

// Boots hostsim with enough simulated RAM for a cap of `bytes` of content (sparse: only
// touched pages cost). false if the machine cannot be made (out of memory).
bool boot_for(std::uint64_t bytes, std::string* err);
int fail(const std::string& msg);
std::string hex(const Hash32& h);
// `s` as a plain decimal uint64 ("0".."18446744073709551615": digits only, no sign,
// no space, not empty, no overflow).
bool parse_u64(const char* s, std::uint64_t* out);

// A command's arguments, split by main() as POSIX getopt splits them (no permutation):
// options are the arguments before the first operand that start with `-` (but are not
// `-` alone, standard input); `--` ends them and is dropped. Everything after is an
// operand, even `-h` or `--help`, so `capmem root -- *` and `capmem root a -h` hash a
// file named `-h`. Only the options a command declares reach it (others are an error).
struct Args {
  struct Opt {
    std::string_view name;
    const char* value;  // the option's argument (`--gas N` or `--gas=N`); nullptr for a flag
  };
  std::vector<Opt> opts;
  std::vector<const char*> operands;
};

// The streamed root of a file's bytes; `encode` (tools/encode.cpp) streams the same way.
int cmd_root(const Args& a);
int cmd_encode(const Args& a);
int cmd_decode(const Args& a);
int cmd_inspect(const Args& a);
int cmd_demo(const Args& a);

}  // namespace capmem::tool
