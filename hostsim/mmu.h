// Simulated MMU and TLB (see docs/architecture.md, "hostsim").
#pragma once

#include "capmem/types.h"

namespace capmem::hostsim {

// invlpg on the simulated CPU that is current (no-op when none is active).
void current_mmu_invlpg(VirtAddr va);

}  // namespace capmem::hostsim
