#include <gtest/gtest.h>

#include "capmem/frame.h"
#include "capmem/page.h"

using namespace capmem;

TEST(Frames, AllocFreeAccounting) {
  const auto before = frames().stats();
  FrameDesc* d = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->phys().page_aligned());
  EXPECT_EQ(frames().stats().free, before.free - 1);
  EXPECT_EQ(frames().desc_of(d->phys()), d);
  EXPECT_EQ(frames().desc_of_virt(d->virt()), d);
  frames().free(d);
  EXPECT_EQ(frames().stats().free, before.free);
}

TEST(Frames, ExhaustionIsAStatus) {
  frames().set_exhausted(true);
  EXPECT_EQ(frames().alloc(FrameKind::Page), nullptr);
  auto r = PageRef::unhashed_copy(nullptr);
  EXPECT_EQ(r.status(), Status::OutOfFrames);
  frames().set_exhausted(false);
}
