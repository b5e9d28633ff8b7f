// `capmem`: the host tool. Roots, encodings and inspection of DataCaps built from files,
// and the deterministic demo in the hosted simulation. Every command runs the same core
// code as the kernel image, on hostsim's simulated physical memory.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "capmem/codec.h"
#include "capmem/datacap.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "hostsim/env_hostsim.h"
#include "tools/tool.h"

namespace capmem::tool {

// --- Files ------------------------------------------------------------------------------

MappedFile::~MappedFile() {
  if (data_ != nullptr && size_ != 0) munmap(const_cast<std::uint8_t*>(data_), size_);
}

bool MappedFile::open(const char* path, std::string* err) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = std::string(path) + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *err = std::string(path) + ": not a regular file";
    ::close(fd);
    return false;
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ != 0) {
    void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      *err = std::string(path) + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    data_ = static_cast<const std::uint8_t*>(p);
  }
  ::close(fd);
  return true;
}

// Output goes to OUT.tmp.<pid> and is renamed over OUT only once complete, so a failure
// never leaves a partial OUT behind.
OutFile::OutFile(const char* path) : path_(path), tmp_(std::string(path) + ".tmp." + std::to_string(getpid())) {}
OutFile::~OutFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}
bool OutFile::open(std::string* err) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) *err = path_ + ": " + std::strerror(errno);
  return fd_ >= 0;
}
bool OutFile::write(const void* p, std::size_t n, std::string* err) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  while (n != 0) {
    const ssize_t w = ::write(fd_, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      *err = path_ + ": " + std::strerror(errno);
      return false;
    }
    b += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
bool OutFile::commit(std::string* err) {
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    *err = path_ + ": " + std::strerror(errno);
    return false;
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    *err = path_ + ": " + std::strerror(errno);
    return false;
  }
  committed_ = true;
  return true;
}

// --- Progress ---------------------------------------------------------------------------

Progress::Progress(const char* what, std::uint64_t total)
    : what_(what), total_(total), on_(total > kProgressThreshold && isatty(2) != 0) {}
Progress::~Progress() {
  if (on_ && shown_) std::fputs("\r\033[K", stderr);
}
void Progress::update(std::uint64_t done) {
  if (!on_) return;
  const int pct = total_ ? static_cast<int>(done * 100 / total_) : 100;
  if (pct == last_) return;
  last_ = pct;
  shown_ = true;
  char bar[41];
  const int fill = pct * 40 / 100;
  for (int i = 0; i < 40; ++i) bar[i] = i < fill ? '#' : '.';
  bar[40] = '\0';
  std::fprintf(stderr, "\r%s [%s] %3d%% (%llu/%llu MiB)", what_, bar, pct, static_cast<unsigned long long>(done >> 20),
               static_cast<unsigned long long>(total_ >> 20));
  std::fflush(stderr);
}

void boot_for(std::uint64_t bytes) {
  // Enough simulated RAM for every page of the input (sparse: only touched pages cost).
  const std::uint64_t want = bytes + bytes / 16 + (64ull << 20);
  hostsim::boot(want);
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "capmem: %s\n", msg.c_str());
  return 1;
}

std::string hex(const Hash32& h) {
  char buf[65];
  log::fmt_hex32(buf, h.b.data());
  return buf;
}

}  // namespace capmem::tool

namespace {

using namespace capmem;
using namespace capmem::tool;

constexpr const char* kUsage =
    "usage: capmem <command> [args]\n"
    "\n"
    "commands:\n"
    "  root FILE...       print the DataCap root of each file's bytes (rule 3.6), like sha256sum\n"
    "  encode FILE OUT    write the section 5 wire encoding of FILE's cap to OUT\n"
    "  decode IN OUT      check the encoding IN (rules 2.5, 5.2) and write the cap's bytes to OUT\n"
    "  inspect IN         size, page counts by slot kind and root of a file or an encoding\n"
    "  demo [--gas N]     run the deterministic demo in hostsim with both engines\n"
    "\n"
    "`capmem COMMAND --help` describes one command.\n";

struct Command {
  const char* name;
  const char* help;
  int (*run)(int argc, char** argv);
};

const Command kCommands[] = {
    {"root",
     "usage: capmem root FILE...\n  Prints `<64 hex digits>  FILE` per file: the root of the DataCap built from the\n  file's bytes (size rounded up to a page, at least one page; zero pages are Empty).\n",
     cmd_root},
    {"encode",
     "usage: capmem encode FILE OUT\n  Builds the cap from FILE's bytes and writes its section 5 encoding to OUT.\n",
     cmd_encode},
    {"decode",
     "usage: capmem decode IN OUT\n  Checks the encoding IN (every rule of 2.5 and 5.2) and writes the cap's bytes (its\n  whole size) to OUT. On bad input names the rule and byte offset; OUT is not created.\n",
     cmd_decode},
    {"inspect",
     "usage: capmem inspect IN\n  Prints size, page counts by slot kind and the root. IN is decoded if it is a valid\n  encoding, otherwise treated as raw bytes (use --raw or --encoded to force).\n",
     cmd_inspect},
    {"demo",
     "usage: capmem demo [--gas N] [--quiet]\n  Runs the deterministic demo scenario in the hosted simulation twice: through the\n  simulated MMU and the fault handler, and through the interpreter path. Prints what\n  happens and ends with `root=... gas=... cow=... page_in=...`; fails if the engines differ.\n",
     cmd_demo},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h" ||
      std::string_view(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (std::string_view(argv[1]) != c.name) continue;
    for (int i = 2; i < argc; ++i) {
      if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
        std::fputs(c.help, stdout);
        return 0;
      }
    }
    return c.run(argc - 2, argv + 2);
  }
  std::fprintf(stderr, "capmem: unknown command '%s' (try `capmem --help`)\n", argv[1]);
  return 2;
}
