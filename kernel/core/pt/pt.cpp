// The one instantiation of the page-table walker the kernel and the fault path use
// (include/capmem/pt.h). Tests instantiate BasicPageTable with their own policies.
#include "capmem/pt.h"

namespace capmem::pt {

template class BasicPageTable<FramePolicy>;

}  // namespace capmem::pt
