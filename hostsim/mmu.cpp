#include "hostsim/mmu.h"

namespace capmem::hostsim {

void current_mmu_invlpg(VirtAddr) {}

}  // namespace capmem::hostsim
