// Shared set-up for every libFuzzer target: boot a simulated machine once.
#include <cstddef>
#include <cstdint>

#include "capmem/frame.h"
#include "hostsim/env_hostsim.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  capmem::hostsim::boot(256ull << 20);
  capmem::frames().set_poison(true);
  return 0;
}
