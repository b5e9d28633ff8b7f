// capmem-demo-pack OUT: the page pack (rule 8.7, include/capmem/pack.h) of the demo scenario:
// every distinct Loaded page of the demo's code and mem caps (demo::build()), by its rule 1.2
// root, written with store::pack_write. The kernel image takes it as a boot module (QEMU
// `-initrd`, GRUB `module2`; docs/boot.md "Boot modules") and resolves a thin demo's Missing
// pages from it. Test content, like the demo itself: built for tests/qemu and tests/bochs.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "capmem/frame.h"
#include "capmem/pack.h"
#include "capmem/page.h"
#include "capmem/slot.h"
#include "demo.h"
#include "hostsim/env_hostsim.h"

using namespace capmem;

namespace {

Status write_file(void* ctx, const std::uint8_t* data, std::size_t len) {
  return std::fwrite(data, 1, len, static_cast<std::FILE*>(ctx)) == len ? Status::Ok : Status::InvalidArgument;
}

void collect(const DataCap& cap, std::vector<store::PackEntry>& out) {
  for (std::uint32_t p = 0; p < cap.page_count(); ++p) {
    const SlotView v = cap.effective(p);
    if (v.kind != SlotKind::Loaded) continue;
    out.push_back(store::PackEntry{.root = *v.hash, .bytes = static_cast<const std::uint8_t*>(v.frame->virt())});
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  hostsim::boot();
  auto image = demo::build();
  if (!image.ok()) {
    std::fprintf(stderr, "capmem-demo-pack: demo::build: %s\n", status_name(image.status()));
    return 1;
  }
  if (!image->code.flush().ok() || !image->mem.flush().ok()) {
    std::fprintf(stderr, "capmem-demo-pack: flush failed\n");
    return 1;
  }
  std::vector<store::PackEntry> entries;
  collect(image->code, entries);
  collect(image->mem, entries);
  std::sort(entries.begin(), entries.end(), [](const store::PackEntry& a, const store::PackEntry& b) {
    return store::root_compare(a.root, b.root) < 0;
  });
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const store::PackEntry& a, const store::PackEntry& b) {
                              return store::root_compare(a.root, b.root) == 0;
                            }),
                entries.end());
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr) {
    std::perror(argv[1]);
    return 1;
  }
  const auto w = store::pack_write(entries.data(), static_cast<std::uint32_t>(entries.size()), write_file, f);
  if (std::fclose(f) != 0 || !w.ok()) {
    std::fprintf(stderr, "capmem-demo-pack: writing %s failed\n", argv[1]);
    std::remove(argv[1]);
    return 1;
  }
  std::printf("capmem-demo-pack: %s: %zu pages\n", argv[1], entries.size());
  return 0;
}
