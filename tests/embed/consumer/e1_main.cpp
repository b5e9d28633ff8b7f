// E1: a hosted program on dependency('capmem') (libcapmem.a) with its own small environment
// (seam.cpp: a static aligned buffer, identity direct map). Built with the consumer's
// -Db_sanitize=address and werror=true.
//   e1                 roots of the fixed inputs (inputs.h), as `capmem root` prints them
//   e1 --write DIR     writes the fixed inputs to DIR/<name>, for `capmem root` to hash
//   e1 --max-cpus      env::kMaxCpus as this program sees it (capmem/config.h)
//   e1 FILE...         roots of the files
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "capmem/env.h"
#include "roots_main.h"

extern "C" void embed_write(const char* s, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(1, s, n);
    if (w <= 0) std::_Exit(4);
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}
extern "C" [[noreturn]] void embed_exit(int code) {
  std::fflush(stdout);
  std::_Exit(code);
}

namespace {

int write_inputs(const char* dir) {
  static std::uint8_t buf[embed::kMaxInput];
  for (unsigned i = 0; i < embed::kInputs; ++i) {
    const std::size_t len = embed::make_input(i, buf);
    const std::string path = std::string(dir) + "/" + embed::kNames[i].name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(buf, 1, len, f) != len || std::fclose(f) != 0) {
      std::fprintf(stderr, "e1: cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}

int roots_of_files(int argc, char** argv) {
  char line[4200];
  for (int i = 1; i < argc; ++i) {
    std::FILE* f = std::fopen(argv[i], "rb");
    if (f == nullptr) {
      std::fprintf(stderr, "e1: cannot open %s\n", argv[i]);
      return 1;
    }
    std::vector<std::uint8_t> bytes;
    std::uint8_t chunk[65536];
    std::size_t got = 0;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + got);
    std::fclose(f);
    auto root = embed::root_of(bytes.data(), bytes.size());
    if (!root.ok()) {
      std::fprintf(stderr, "e1: %s: %s\n", argv[i], capmem::status_name(root.status()));
      return 1;
    }
    if (std::strlen(argv[i]) > 4000) return 1;
    embed_write(line, embed::format_line(line, root.value(), argv[i]));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--max-cpus") == 0) {
    std::printf("%u\n", capmem::env::kMaxCpus);
    return 0;
  }
  if (argc == 3 && std::strcmp(argv[1], "--write") == 0) return write_inputs(argv[2]);
  if (embed::start_capmem() != 0) return 1;
  if (argc == 1) return embed::print_fixed_roots();
  return roots_of_files(argc, argv);
}
