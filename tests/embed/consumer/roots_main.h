// The fixed inputs' roots, one "<hex>  <name>" line each (inputs.h), written through
// embed_write(): the body of E2's and E3's main, and of E1's without arguments.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/status.h"
#include "inputs.h"

// Provided by each consumer: its console, and its way to stop.
extern "C" void embed_write(const char* s, std::size_t n);
extern "C" [[noreturn]] void embed_exit(int code);

namespace embed {

// Start-up (docs/embedding.md): the frame allocator over env::memory_ranges(), then the hash
// back end. Returns 0, or 1 after writing why it failed.
inline int start_capmem() {
  if (auto r = capmem::frames().init_from_env(); !r.ok()) {
    const char* what = capmem::status_name(r.status());
    std::size_t n = 0;
    while (what[n] != '\0') ++n;
    embed_write("frames init failed: ", 20);
    embed_write(what, n);
    embed_write("\n", 1);
    return 1;
  }
  capmem::hash::init();
  return 0;
}

inline int print_fixed_roots() {
  alignas(64) static std::uint8_t buf[kMaxInput];
  char line[128];
  for (unsigned i = 0; i < kInputs; ++i) {
    const std::size_t len = make_input(i, buf);
    auto root = root_of(buf, len);
    if (!root.ok()) {
      const char* what = capmem::status_name(root.status());
      std::size_t n = 0;
      while (what[n] != '\0') ++n;
      embed_write("root failed: ", 13);
      embed_write(what, n);
      embed_write("\n", 1);
      return 1;
    }
    embed_write(line, format_line(line, root.value(), kNames[i].name));
  }
  return 0;
}

}  // namespace embed
