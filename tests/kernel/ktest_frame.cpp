// Frame allocator accounting on real RAM from the boot memory map.
#include <cstdint>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/types.h"
#include "kernel.h"
#include "ktest.h"

namespace {
using namespace capmem;

bool same(const FrameStats& a, const FrameStats& b) {
  return a.total == b.total && a.free == b.free && a.in_use == b.in_use;
}
}  // namespace

KTEST(frame_alloc_free_accounting) {
  FrameAllocator& fa = frames();
  const FrameStats s0 = fa.stats();
  KASSERT(s0.total == s0.free + s0.in_use);
  constexpr int kN = 64;
  FrameDesc* d[kN];
  for (int i = 0; i < kN; ++i) {
    d[i] = fa.alloc(FrameKind::Page, i % 2 ? AllocFlags::Zero : AllocFlags::None);
    KASSERT(d[i] != nullptr);
    KEXPECT(d[i]->refs.load() == 1 && d[i]->kind == FrameKind::Page);
    KEXPECT(d[i]->phys().page_aligned());
    KEXPECT(fa.desc_of(d[i]->phys()) == d[i]);
    KEXPECT(env::virt_to_phys(d[i]->virt()) == d[i]->phys());
    for (int j = 0; j < i; ++j) KEXPECT(d[j] != d[i]);
  }
  const FrameStats s1 = fa.stats();
  KEXPECT_EQ(s1.free, s0.free - kN);
  KEXPECT_EQ(s1.in_use, s0.in_use + kN);
  KEXPECT_EQ(s1.total, s0.total);
  // Write every frame through the direct map, free, reallocate zeroed: all zero again.
  for (int i = 0; i < kN; ++i) {
    auto* p = static_cast<std::uint8_t*>(d[i]->virt());
    for (int k = 0; k < 4096; k += 64) p[k] = 0x5a;
  }
  for (int i = 0; i < kN; ++i) fa.free(d[i]);
  KEXPECT(same(fa.stats(), s0));
  FrameDesc* z = fa.alloc(FrameKind::Page, AllocFlags::Zero);
  KASSERT(z != nullptr);
  const auto* zp = static_cast<const std::uint8_t*>(z->virt());
  bool zero = true;
  for (int k = 0; k < 4096; ++k) zero &= zp[k] == 0;
  KEXPECT(zero);
  // Reference counting: the last unref frees.
  fa.ref(z);
  KEXPECT(!fa.unref(z));
  KEXPECT(fa.unref(z));
  KEXPECT(same(fa.stats(), s0));
}

KTEST(frame_exhaustion_returns_null_and_recovers) {
  FrameAllocator& fa = frames();
  const FrameStats s0 = fa.stats();
  // Limited on purpose: nothing is handed out, nothing changes.
  fa.set_exhausted(true);
  KEXPECT(fa.alloc(FrameKind::Page) == nullptr);
  fa.set_exhausted(false);
  KEXPECT(same(fa.stats(), s0));
  // One-shot injected failure: the 3rd allocation from now fails, the 4th works.
  fa.inject_failure_at(3);
  FrameDesc* a = fa.alloc(FrameKind::Page);
  FrameDesc* b = fa.alloc(FrameKind::Page);
  FrameDesc* c = fa.alloc(FrameKind::Page);
  FrameDesc* e = fa.alloc(FrameKind::Page);
  KEXPECT(a != nullptr && b != nullptr && c == nullptr && e != nullptr);
  if (a) fa.free(a);
  if (b) fa.free(b);
  if (e) fa.free(e);
  KEXPECT(same(fa.stats(), s0));

  // Really run out: take every free frame (threaded through their own first word), check
  // the count equals what stats() promised, then give them all back. Poisoning is off for
  // the sweep only to keep it fast under emulation (it would fill ~all of RAM twice).
  fa.set_poison(false);
  FrameDesc* head = nullptr;
  std::uint64_t got = 0;
  for (;;) {
    FrameDesc* d = fa.alloc(FrameKind::Page);
    if (d == nullptr) break;
    *static_cast<FrameDesc**>(d->virt()) = head;
    head = d;
    ++got;
  }
  KEXPECT_EQ(got, s0.free);
  KEXPECT_EQ(fa.stats().free, 0);
  KEXPECT(fa.alloc(FrameKind::Page, AllocFlags::Zero) == nullptr);
  while (head != nullptr) {
    FrameDesc* next = *static_cast<FrameDesc**>(head->virt());
    fa.free(head);
    head = next;
  }
  fa.set_poison(true);
  KEXPECT(same(fa.stats(), s0));
}
