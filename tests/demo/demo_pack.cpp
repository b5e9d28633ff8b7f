// capmem-demo-pack OUT: the demo's page pack (rule 8.7), hostsim::write_demo_pack's bytes
// (every distinct Loaded page of the demo's code and mem caps; the same file `capmem demo
// --pack OUT` writes). The kernel lanes pass it as a boot module (QEMU `-initrd`, GRUB
// `module2`; docs/boot.md "Boot modules") and the thin demo resolves its Missing pages from it.
// Built for tests/qemu and tests/bochs without depending on the tool.
#include <cstdio>

#include "capmem/status.h"
#include "engines.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  hostsim::boot();
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr) {
    std::perror(argv[1]);
    return 1;
  }
  const auto w = hostsim::write_demo_pack(
      [](void* ctx, const std::uint8_t* data, std::size_t len) {
        return std::fwrite(data, 1, len, static_cast<std::FILE*>(ctx)) == len ? Status::Ok : Status::InvalidArgument;
      },
      f);
  if (std::fclose(f) != 0 || !w.ok()) {
    std::fprintf(stderr, "capmem-demo-pack: writing %s failed: %s\n", argv[1],
                 w.ok() ? "close failed" : status_name(w.status()));
    std::remove(argv[1]);
    return 1;
  }
  return 0;
}
