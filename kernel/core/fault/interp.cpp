// The "interpreter" engine's guest accesses: software checks against the run's page
// table, the same handler on a failed check. See include/capmem/fault.h.
#include "capmem/env.h"
#include "capmem/fault.h"
#include "capmem/log.h"

namespace capmem::fault {

namespace {

// Would the CPU fault on a ring-3 access of this kind to the page at `page_va`?
// Returns 0 if not, otherwise the error code it would push (Intel SDM Vol. 3A 4.7).
std::uint32_t check(const pt::PageTable& table, VirtAddr page_va, bool write) {
  auto t = table.translate(page_va);
  if (!t.ok()) return pt::ErrorCode::kUser | (write ? pt::ErrorCode::kWrite : 0);
  if (!t->flags.user || (write && !t->flags.writable))
    return pt::ErrorCode::kPresent | pt::ErrorCode::kUser | (write ? pt::ErrorCode::kWrite : 0);
  return 0;
}

AccessResult access(Run& run, std::uint32_t addr, unsigned width, bool write, std::uint64_t value) {
  CAPMEM_ASSERT(width == 1 || width == 2 || width == 4 || width == 8);
  // Rules 3.8, 3.9: executing for the access (no checkpoint meanwhile), or refused.
  const Run::Entered entered(run);
  if (!entered.ok()) return {Outcome::Busy, VirtAddr{addr}, 0};
  const std::uint64_t first = addr;
  const std::uint64_t last = first + width - 1;  // may pass 2^32: that page is in no region
  const VirtAddr pages[2] = {VirtAddr{first}.page_base(), VirtAddr{last}.page_base()};
  const unsigned npages = pages[0] == pages[1] ? 1 : 2;

  // Check every page of the access before touching any (the CPU restarts the whole
  // instruction after a fault). A handler that answers Retry has mapped the page, so
  // each page needs at most a read fault and a write fault: 2 * npages rounds, plus 2 of
  // slack, bound a correct handler; more means a handler that lies about Retry.
  for (unsigned round = 0;; ++round) {
    if (round > 2 * npages + 2) env::panic("interpreter: handler answered retry without mapping the page");
    bool all_ok = true;
    for (unsigned i = 0; i < npages && all_ok; ++i) {
      const std::uint32_t err = check(run.table(), pages[i], write);
      if (err == 0) continue;
      all_ok = false;
      const VirtAddr cr2 = i == 0 ? VirtAddr{first} : pages[1];
      const Answer a = run.handle_page_fault(cr2, err);
      if (a.outcome != Outcome::Retry) return {a.outcome, a.addr, 0};
    }
    if (all_ok) break;
  }

  std::uint64_t result = 0;
  for (unsigned b = 0; b < width; ++b) {
    const VirtAddr va{first + b};
    auto t = run.table().translate(va.page_base());
    CAPMEM_ASSERT(t.ok());
    auto* byte = static_cast<std::uint8_t*>(env::phys_to_virt(t->pa + (va.value() & (PAGE_SIZE - 1))));
    if (write) *byte = static_cast<std::uint8_t>(value >> (8 * b));
    else result |= std::uint64_t{*byte} << (8 * b);
  }
  return {Outcome::Retry, VirtAddr{first}, result};
}

}  // namespace

AccessResult interp_load(Run& run, std::uint32_t addr, unsigned width) { return access(run, addr, width, false, 0); }
AccessResult interp_store(Run& run, std::uint32_t addr, unsigned width, std::uint64_t value) {
  return access(run, addr, width, true, value);
}

}  // namespace capmem::fault
