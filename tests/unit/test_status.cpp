// Result<T> (include/capmem/status.h): a failed Result holds no value, so reading one traps
// instead of handing out uninitialized memory, and a failure must name what failed.
#include <gtest/gtest.h>

#include <cstdint>
#include <type_traits>

#include "capmem/status.h"

using namespace capmem;

namespace {

Result<std::uint64_t> fails() { return Status::OutOfFrames; }
Result<std::uint64_t> succeeds() { return std::uint64_t{42}; }

Result<std::uint64_t> via_try(bool ok) {
  const std::uint64_t v = TRY(ok ? succeeds() : fails());
  return v + 1;
}

TEST(ResultT, OkValueAndFailedStatus) {
  auto a = succeeds();
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.status(), Status::Ok);
  EXPECT_EQ(a.value(), 42u);
  EXPECT_EQ(*a, 42u);
  EXPECT_EQ(a.release_value(), 42u);
  auto b = fails();
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.status(), Status::OutOfFrames);
  EXPECT_EQ(via_try(true).value(), 43u);
  EXPECT_EQ(via_try(false).status(), Status::OutOfFrames);
}

// Reading the value of a failed Result used to return whatever bytes the union held.
TEST(ResultTDeath, ValueOfAFailedResultTraps) {
  EXPECT_DEATH({ (void)fails().value(); }, "value of a failed Result");
  EXPECT_DEATH(
      {
        auto r = fails();
        (void)*r;
      },
      "value of a failed Result");
  EXPECT_DEATH(
      {
        const auto r = fails();
        (void)r.value();
      },
      "value of a failed Result");
  EXPECT_DEATH({ (void)fails().release_value(); }, "value of a failed Result");
  struct Pair {
    int a, b;
  };
  EXPECT_DEATH(
      {
        Result<Pair> r = Status::InvalidArgument;
        (void)r->a;
      },
      "value of a failed Result");
}

// Result<T>(Status::Ok) used to build a failed Result whose status() said Ok.
TEST(ResultTDeath, BuildingAFailedResultFromOkTraps) {
  EXPECT_DEATH({ Result<int> r = Status::Ok; }, "built from Status::Ok");
  // Result<void> from Ok is success, not misuse.
  Result<void> v = Status::Ok;
  EXPECT_TRUE(v.ok());
}

// Copying a Result is not allowed (it would duplicate the value's ownership).
static_assert(!std::is_copy_constructible_v<Result<int>>);
static_assert(std::is_move_constructible_v<Result<int>>);

TEST(Status, BusyNamesRule3_8) {
  EXPECT_STREQ(status_rule(Status::Busy), "3.8");
  EXPECT_STRNE(status_name(Status::Busy), "unknown status");
}

}  // namespace
