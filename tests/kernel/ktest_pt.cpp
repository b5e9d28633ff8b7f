// The page-table walker (include/capmem/pt.h) against the real MMU: map, translate, replace,
// protect and unmap with the table loaded in CR3, checked by ring-0 accesses through the new
// mapping and by ring-3 accesses that must fault.
#include <cstdint>

#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/pt.h"
#include "kernel.h"
#include "ktest.h"
#include "ktest_ring3_progs.h"
#include "user.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint64_t kCode = 4ull << 20;    // rule 4.1 CODE_BASE
constexpr std::uint64_t kData = 256ull << 20;  // rule 4.1 DATA_BASE

FrameDesc* page_with(std::uint64_t fill) {
  FrameDesc* f = frames().alloc(FrameKind::Page);
  if (f == nullptr) return nullptr;
  auto* w = static_cast<std::uint64_t*>(f->virt());
  for (int i = 0; i < 512; ++i) w[i] = fill + static_cast<std::uint64_t>(i);
  return f;
}

// Map `f` at va (holding a reference) and drop the caller's own reference.
bool map_owned(pt::PageTable& t, std::uint64_t va, FrameDesc* f, pt::LeafFlags flags) {
  flags.holds_ref = true;
  const bool ok = t.map_leaf(VirtAddr{va}, f->phys(), flags).ok();
  frames().unref(f);
  return ok;
}

std::uint64_t load_at(std::uint64_t va) { return *reinterpret_cast<volatile const std::uint64_t*>(va); }

}  // namespace

KTEST(pt_map_translate_replace_unmap_with_real_cr3) {
  pt::PageTable table = pt::PageTable::create().release_value();
  link_kernel_half(table);
  FrameDesc* code = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  KASSERT(code != nullptr);
  {
    auto* dst = static_cast<char*>(code->virt());
    for (const char* p = ring3_prog_load; p != ring3_prog_load_end; ++p) *dst++ = *p;
  }
  KASSERT(map_owned(table, kCode, code, {.user = true}));
  FrameDesc* a = page_with(0xa000);
  FrameDesc* b = page_with(0xb000);
  KASSERT(a != nullptr && b != nullptr);
  const PhysAddr pa_a = a->phys(), pa_b = b->phys();
  // b keeps its allocation reference until the replace step has mapped it.
  KASSERT(map_owned(table, kData, a, {.writable = true, .user = true}));

  auto tr = table.translate(VirtAddr{kData + 24});
  KASSERT(tr.ok());
  KEXPECT(tr->pa == pa_a + 24);
  KEXPECT(tr->effective.user && tr->effective.writable);

  const std::uint64_t saved = arch::read_cr3();
  arch::write_cr3(table.root().value());
  // Ring 0 reads and writes through the new mapping (CR0.WP=1: R/W=1 needed for the write).
  const std::uint64_t first = load_at(kData + 8);
  *reinterpret_cast<volatile std::uint64_t*>(kData + 16) = 0x1234;
  // Replace the leaf while the table is live: map_leaf invalidates the old translation, so
  // the next access must see frame b, not a stale TLB entry for a.
  const std::uint64_t written = static_cast<const std::uint64_t*>(env::phys_to_virt(pa_a))[2];
  const bool replaced = table.map_leaf(VirtAddr{kData}, pa_b, {.writable = true, .user = true, .holds_ref = true}).ok();
  const std::uint64_t after_replace = load_at(kData + 8);
  arch::write_cr3(saved);
  frames().unref(b);  // the mapping holds it now (a was freed by the replace)

  KEXPECT_EQ(first, 0xa000 + 1);
  KEXPECT_EQ(written, 0x1234);  // the ring-0 store went to frame a
  KEXPECT(replaced);
  KEXPECT_EQ(after_replace, 0xb000 + 1);
  auto tr2 = table.translate(VirtAddr{kData});
  KASSERT(tr2.ok());
  KEXPECT(tr2->pa == pa_b);

  // Ring 3 sees what the table says: readable now...
  RunResult r = run_user({.cr3 = table.root(), .regs = {.rdi = kData + 40, .rip = kCode, .rsp = kData}});
  KEXPECT(r.exit == RunExit::ExitGate);
  KEXPECT_EQ(r.regs.rax, 0xb000 + 5);
  // ...a protection fault for writes after protect(read-only)...
  KEXPECT(table.protect(VirtAddr{kData}, {.user = true, .holds_ref = true}).ok());
  {  // a second program page: the store program
    FrameDesc* c2 = frames().alloc(FrameKind::Page, AllocFlags::Zero);
    KASSERT(c2 != nullptr);
    auto* dst = static_cast<char*>(c2->virt());
    for (const char* p = ring3_prog_store; p != ring3_prog_store_end; ++p) *dst++ = *p;
    KASSERT(map_owned(table, kCode + 4096, c2, {.user = true}));
  }
  r = run_user({.cr3 = table.root(), .regs = {.rsi = 7, .rdi = kData, .rip = kCode + 4096, .rsp = kData}});
  KEXPECT(r.exit == RunExit::PageFault);
  KEXPECT_EQ(r.error_code, 1 | 2 | 4);  // P | W/R | U/S (SDM Vol. 3A 4.7)
  KEXPECT_EQ(r.cr2, kData);
  // ...and not present after unmap (unmap invalidated the TLB entry the read above created).
  KEXPECT(table.unmap(VirtAddr{kData}).ok());
  KEXPECT(!table.translate(VirtAddr{kData}).ok());
  r = run_user({.cr3 = table.root(), .regs = {.rdi = kData, .rip = kCode, .rsp = kData}});
  KEXPECT(r.exit == RunExit::PageFault);
  KEXPECT_EQ(r.error_code, 4);  // not present, read, user
  table.teardown();
}
