// Ring 3 (see user.cpp). Placeholder interface for trap.cpp until runs exist.
#pragma once

#include "trap.h"

namespace capmem::kernel {
// A trap taken at CPL 3: handled by the run in progress. Returns true to resume the frame.
bool user_trap(TrapFrame* f);
}  // namespace capmem::kernel
