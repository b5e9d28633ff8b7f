// The fixed inputs' roots on capmem's simulated environment (dependency('capmem-hostsim')):
// what a consumer's own hosted tests link. Prints what E1 prints.
#include <unistd.h>

#include <cstdlib>

#include "hostsim/env_hostsim.h"
#include "roots_main.h"

extern "C" void embed_write(const char* s, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(1, s, n);
    if (w <= 0) std::_Exit(4);
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

int main() {
  capmem::hostsim::boot(16u << 20);  // the frame allocator and the hash back end
  const int rc = embed::print_fixed_roots();
  capmem::hostsim::shutdown();  // aborts if a frame leaked
  return rc;
}
