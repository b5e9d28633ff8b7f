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

// Where the tool's output goes, decided when it is opened:
//   - `-`: standard output, written in place;
//   - a symlink: followed to its target, as `cp` does (a dangling one is an error), and the
//     target is then treated as below;
//   - a device, FIFO or other non-regular file: written in place (opened without O_CREAT or
//     O_TRUNC), every write error reported;
//   - a regular file with more than one hard link: written in place (truncated on the first
//     write, after the input was read and checked), so every link sees the new content, as
//     `cp` does;
//   - otherwise (a regular file or a new one): replaced atomically. The bytes go to a temp
//     file `.<name>.capmem-<16 random hex>` in OUT's directory, created with
//     O_CREAT|O_EXCL|O_NOFOLLOW (a symlink planted at any name is never followed), given an
//     existing OUT's mode (and owner, where allowed; a new OUT gets 0666 & ~umask), fsync'd,
//     then renamed over OUT and the directory fsync'd. SIGINT, SIGTERM and SIGHUP remove the
//     temp file; a failure removes it too, so OUT is either the old file or the new one.
// skip(n) leaves n zero bytes: a hole (lseek) where the output is a regular file, real
// zeros in a stream.
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

 private:
  enum class Mode : std::uint8_t { Stdout, InPlace, Replace };
  bool flush(std::string* err);
  bool raw_write(const void* p, std::size_t n, std::string* err);
  bool prepare_first_write(std::string* err);
  std::string errmsg(const char* what) const;

  std::string path_;    // as given
  std::string target_;  // after following a symlink
  std::string tmp_name_;
  Mode mode_ = Mode::Replace;
  int fd_ = -1;
  int dir_fd_ = -1;
  bool holes_ = false;           // skip() may lseek
  bool truncate_first_ = false;  // in-place regular file: truncate before the first write
  bool started_ = false;
  bool committed_ = false;
  std::uint64_t pending_hole_ = 0;
  std::uint64_t written_ = 0;  // bytes of output so far, holes included
  std::string buf_;
};

// Installs the SIGINT/SIGTERM/SIGHUP handlers that remove an open OutFile's temp file.
void install_signal_cleanup();

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
