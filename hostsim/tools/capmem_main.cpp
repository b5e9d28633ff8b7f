// `capmem`: the host tool. Roots, encodings and inspection of DataCaps built from files,
// and the deterministic demo in the hosted simulation. Every command runs the same core
// code as the kernel image: `root` and `encode` stream the file through the core's hash
// API; `decode` and `inspect` stream an encoding through the core's decoder
// (codec::decode_pages) on a small hostsim machine; `demo` runs on hostsim.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "capmem/datacap.h"
#include "capmem/log.h"
#include "tools/store.h"
#include "tools/tool.h"

namespace capmem::tool {

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
    "  root FILE...               print the DataCap root of each file's bytes (rule 3.6), like sha256sum\n"
    "  encode [--thin [--keep-first N] [--store DIR]] FILE OUT\n"
    "                             write the section 5 wire encoding of FILE's cap to OUT (--thin: rule 8.6,\n"
    "                             pages as Missing(hash), those into the page store DIR)\n"
    "  decode [--store DIR|PACK] IN OUT\n"
    "                             check the encoding IN (rules 2.5, 5.2) and write the cap's bytes to OUT\n"
    "                             (--store: a thin IN, its Missing pages from the store, each verified)\n"
    "  inspect [--raw|--encoded] IN  size, page counts by slot kind and root of an encoding or a file;\n"
    "                             every page of a pack checked\n"
    "  pack DIR OUT               the page store DIR (DIR/<2 hex>/<62 hex>) as one pack file (rule 8.7)\n"
    "  unpack PACK DIR            the pack's pages, each verified, into the page store DIR\n"
    "  demo [--gas N] [--quiet]   run the deterministic demo in hostsim with both engines\n"
    "  demo --thin [--store DIR|PACK]  the demo over a thin mem cap, pages resolved on demand\n"
    "  demo --pack OUT            the demo's pages as a pack (a kernel boot module)\n"
    "\n"
    "FILE and IN are read as streams (`-` is standard input; a FIFO, device or /proc file\n"
    "works). OUT `-` (or /dev/stdout, /dev/fd/N) is that descriptor; a symlink is followed;\n"
    "a new or plain file is replaced atomically (owner and mode kept); a file that cannot be\n"
    "replaced without losing something (hard links, ACLs, attributes, a bind mount, an\n"
    "unwritable directory), a device or a FIFO is written in place, like cp. Nothing reaches\n"
    "OUT unless the whole result is good.\n"
    "Options come before the operands; `--` ends them (`capmem root -- -h` hashes a file\n"
    "named -h, as does `capmem root a -h`).\n"
    "`capmem COMMAND --help` describes one command.\n";

// An option a command takes (long form; `value`: takes an argument, `--gas N` or `--gas=N`).
struct OptSpec {
  const char* name;
  bool value;
};

struct Command {
  const char* name;
  const char* help;
  int (*run)(const Args& a);
  const OptSpec* opts = nullptr;  // terminated by {nullptr, false}
};

constexpr OptSpec kNoOpts[] = {{nullptr, false}};
constexpr OptSpec kInspectOpts[] = {{"--raw", false}, {"--encoded", false}, {nullptr, false}};
constexpr OptSpec kDemoOpts[] = {{"--gas", true},   {"--quiet", false}, {"--thin", false},
                                 {"--store", true}, {"--pack", true},   {nullptr, false}};
constexpr OptSpec kEncodeOpts[] = {{"--thin", false}, {"--keep-first", true}, {"--store", true}, {nullptr, false}};
constexpr OptSpec kDecodeOpts[] = {{"--store", true}, {nullptr, false}};

const Command kCommands[] = {
    {"root",
     "usage: capmem root FILE...\n  Prints `<64 hex digits>  FILE` per file: the root of the DataCap built from the\n"
     "  file's bytes (size rounded up to a page, at least one page; zero pages are Empty).\n"
     "  Streams each file (memory: a fixed buffer plus 32 bytes per page). `-` is standard input.\n"
     "  A name holding a backslash, newline or carriage return is printed as sha256sum prints\n"
     "  it: the line starts with `\\` and those characters are written `\\\\`, `\\n`, `\\r`.\n",
     cmd_root, kNoOpts},
    {"encode",
     "usage: capmem encode [--thin [--keep-first N] [--store DIR]] FILE OUT\n"
     "  Builds the cap from FILE's bytes and writes its section 5 encoding to OUT\n"
     "  (`-`: standard output). Memory: a 1 MiB buffer plus 32 bytes per non-zero page. A\n"
     "  regular file is read twice (a page that changed in between is an error); a pipe's\n"
     "  non-zero pages are kept in an unlinked temporary file in $TMPDIR (default /tmp).\n"
     "  --thin: the thin encoding of rule 8.6, same root: every non-zero page travels as\n"
     "  Missing(its hash), 33 bytes, except pages 0..N-1 with --keep-first N (N = 0 keeps none;\n"
     "  N at or past the page count keeps all: the full encoding, byte for byte). Zero pages\n"
     "  stay Empty. --store DIR writes each page that travels as Missing into the page store\n"
     "  DIR (DIR/<2 hex>/<62 hex>, made if missing; kept and Empty pages are not stored), each\n"
     "  entry atomically, before OUT is committed.\n",
     cmd_encode, kEncodeOpts},
    {"decode",
     "usage: capmem decode [--store DIR|PACK] IN OUT\n"
     "  Checks the encoding IN (every rule of 2.5 and 5.2) and writes the cap's bytes (its\n"
     "  whole size) to OUT (`-`: standard output). Empty pages become holes in a regular OUT,\n"
     "  zeros in a stream. On bad input names the rule and byte offset; OUT is not created.\n"
     "  Streams (a batch of 16 pages in memory); a pipe's encoding is first copied to $TMPDIR.\n"
     "  --store: IN may be thin (rule 8.6); each Missing page is taken from the page store\n"
     "  (a directory DIR/<2 hex>/<62 hex> or a pack file) and verified by DataCap::resolve\n"
     "  (rule 8.7). A page the store lacks or holds wrong: exit 1 naming the page and its root;\n"
     "  OUT is then not created (an existing OUT is left as it was).\n",
     cmd_decode, kDecodeOpts},
    {"inspect",
     "usage: capmem inspect [--raw|--encoded] IN\n  Prints size, page counts by slot kind and the root. IN is decoded when its header\n"
     "  is an encoding's (a valid size and first offset 12): if it then fails a check, the\n"
     "  rule and byte offset are reported and the exit status is 1. A thin encoding (rule 8.6)\n"
     "  adds `thin: N missing`. A page pack (starts with CAPMPAK1) is checked whole: header,\n"
     "  index order, length, and every page hashed against its index root (exit 1 naming the\n"
     "  first bad one). Any other input is read as raw bytes. --raw reads any input as raw\n"
     "  bytes; --encoded decodes any input.\n",
     cmd_inspect, kInspectOpts},
    {"pack",
     "usage: capmem pack DIR OUT\n  Writes the page store DIR (DIR/<2 hex>/<62 hex>, 4096 bytes each) as one pack file\n"
     "  (rule 8.7, docs/page-store.md): roots sorted, every entry read and verified as it is\n"
     "  written. An entry with a wrong name (names starting with `.` are skipped), of the wrong\n"
     "  size, or whose bytes do not hash to its name is an error naming it; OUT is then not\n"
     "  created. Memory: 32 bytes per page plus a page.\n",
     cmd_pack, kNoOpts},
    {"unpack",
     "usage: capmem unpack PACK DIR\n  Checks the pack (header, index, length) and writes each page, verified against its\n"
     "  index root, into the page store DIR (made if missing), each entry atomically; an entry\n"
     "  that already holds the page is left alone. A corrupt page stops it with an error naming\n"
     "  its index entry, root and offset (the pages before it stay in DIR, all verified).\n",
     cmd_unpack, kNoOpts},
    {"demo",
     "usage: capmem demo [--gas N] [--quiet]\n  Runs the deterministic demo scenario in the hosted simulation twice: through the\n"
     "  simulated MMU and the fault handler, and through the interpreter path. Prints what\n"
     "  happens and ends with `root=... gas=... cow=... page_in=...`; fails if the engines differ.\n"
     "  N is a plain decimal from 0 to 18446744073709551615.\n"
     "usage: capmem demo --thin [--store DIR|PACK] [--gas N] [--quiet]\n"
     "  The same guest over a thin `mem` cap (rule 8): each access to a Missing page ends the\n"
     "  run step with NeedPage, the host resolves the page (DataCap::resolve, verified) and\n"
     "  the access runs again. Pages come from a second build of the demo, or with --store\n"
     "  from a page store (e.g. `capmem demo --pack`'s). The line is `capmem demo`'s plus\n"
     "  ` need_page=N`; fails if it differs from a run with every page present (rule 8.3) or\n"
     "  a request is not answered.\n"
     "usage: capmem demo --pack OUT\n  Writes every distinct non-zero page of the demo's code and mem caps to OUT as one\n"
     "  page pack (rule 8.7), the page store a kernel takes as a boot module to resolve a\n"
     "  thin demo from; runs nothing.\n",
     cmd_demo, kDemoOpts},
};

// Like coreutils' close_stdout: output that did not reach standard output (a full disk,
// /dev/full, a closed pipe) is an error, reported once.
int close_stdout(int rc) {
  const bool bad = std::fflush(stdout) != 0 || std::ferror(stdout) != 0;
  const int e = errno;
  if (std::fclose(stdout) != 0 || bad) {
    std::fprintf(stderr, "capmem: write error: %s\n", std::strerror(bad ? e : errno));
    return rc != 0 ? rc : 1;
  }
  return rc;
}

enum class Parse : std::uint8_t { Run, Help, Error };

// Splits argv (after the command name) into Args (tool.h): options only before the first
// operand, `--` ends them, `-h`/`--help` among them asks for the command's help.
Parse parse_args(const Command& c, int argc, char** argv, Args* out) {
  int i = 0;
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;  // the first operand (`-` is standard input)
    if (arg == "-h" || arg == "--help") return Parse::Help;
    const std::size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const OptSpec* spec = nullptr;
    for (const OptSpec* o = c.opts; o->name != nullptr; ++o)
      if (name == o->name) spec = o;
    if (spec == nullptr) {
      std::fprintf(stderr, "capmem: %s: unknown option '%s' (a file whose name starts with '-': `capmem %s -- %s`)\n",
                   c.name, argv[i], c.name, argv[i]);
      return Parse::Error;
    }
    const char* value = nullptr;
    if (spec->value) {
      if (eq != std::string_view::npos) {
        value = argv[i] + eq + 1;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        std::fprintf(stderr, "capmem: %s: %s needs a value (`capmem %s --help`)\n", c.name, spec->name, c.name);
        return Parse::Error;
      }
    } else if (eq != std::string_view::npos) {
      std::fprintf(stderr, "capmem: %s: %s takes no value, not '%s'\n", c.name, spec->name, argv[i]);
      return Parse::Error;
    }
    out->opts.push_back(Args::Opt{.name = spec->name, .value = value});
  }
  for (; i < argc; ++i) out->operands.push_back(argv[i]);
  return Parse::Run;
}

}  // namespace

int main(int argc, char** argv) {
  // First of all: a descriptor 0, 1 or 2 closed by whoever started us must not become a
  // file we open (an error message would land in OUT, or OUT be read as input).
  if (!ensure_std_fds()) return 2;
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h" ||
      std::string_view(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return close_stdout(argc < 2 ? 2 : 0);
  }
  install_signal_cleanup();
  for (const Command& c : kCommands) {
    if (std::string_view(argv[1]) != c.name) continue;
    Args a;
    switch (parse_args(c, argc - 2, argv + 2, &a)) {
      case Parse::Help: std::fputs(c.help, stdout); return close_stdout(0);
      case Parse::Error: return 1;
      case Parse::Run: break;
    }
    return close_stdout(c.run(a));
  }
  std::fprintf(stderr, "capmem: unknown command '%s' (try `capmem --help`)\n", argv[1]);
  return 2;
}
