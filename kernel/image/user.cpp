#include "user.h"

namespace capmem::kernel {
// No ring-3 runs exist yet: a trap from CPL 3 is unexpected and gets the kernel dump.
bool user_trap(TrapFrame*) { return false; }
}  // namespace capmem::kernel
