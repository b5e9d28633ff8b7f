// Typed errors (status.h): every Status has a distinct human-readable name, each wire
// decoding status names the rule (docs/rules.md) it enforces (2.5, 3.8 or 5.2), Result<T> / CAPMEM_TRY carry
// values and statuses through exactly as documented, and a failed Result holds no value, so
// reading one traps instead of handing out uninitialized memory.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "capmem/status.h"

// capmem exports only CAPMEM_TRY: a consumer's own TRY (below, a different one) must not
// collide with a definition of ours (issue 21).
#ifdef TRY
#error "capmem/status.h defines a bare TRY macro"
#endif
#define TRY(expr) ((expr) + 1)

using namespace capmem;

namespace {

// Every enumerator, found by walking the enum until status_name() no longer knows it
// (so a status added later is covered without editing this test).
std::vector<Status> all_statuses() {
  std::vector<Status> out;
  for (unsigned i = 0;; ++i) {
    const auto s = static_cast<Status>(i);
    if (std::strcmp(status_name(s), "unknown status") == 0) break;
    out.push_back(s);
  }
  return out;
}

Result<int> half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument;
  return x / 2;
}

// CAPMEM_TRY propagates the first failure's status and yields the value otherwise.
Result<int> quarter(int x) {
  const int h = CAPMEM_TRY(half(x));
  return CAPMEM_TRY(half(h));
}

Result<void> check_even(int x) {
  CAPMEM_TRY(half(x));
  return {};
}

}  // namespace

TEST(Status, ConsumersOwnTryMacroIsUntouched) {
  EXPECT_EQ(TRY(41), 42);  // the consumer's TRY, not a Result propagation
}

TEST(Status, EveryStatusHasADistinctName) {
  const auto all = all_statuses();
  // The enum's last enumerator today is NotInStore; every one before it is named.
  ASSERT_GT(all.size(), static_cast<std::size_t>(Status::NotInStore));
  std::set<std::string> names;
  for (Status s : all) {
    const std::string n = status_name(s);
    EXPECT_FALSE(n.empty()) << static_cast<unsigned>(s);
    EXPECT_TRUE(names.insert(n).second) << "duplicate name: " << n;
  }
  EXPECT_STREQ(status_name(Status::Ok), "ok");
}

TEST(Status, DecodeStatusesNameTheirRule) {
  // Each wire-decoding status enforces rule 2.5 (a slot), 5.2 (a container) or 8.6 (a thin
  // container); the tool prints this rule number, so a decode status without one would leave
  // the user guessing.
  for (Status s = Status::DecodeEmptyBuffer; s <= Status::DecodeMissingSlot;
       s = static_cast<Status>(static_cast<unsigned>(s) + 1)) {
    const std::string r = status_rule(s);
    EXPECT_TRUE(r == "2.5" || r == "5.2" || r == "8.6") << status_name(s) << " -> '" << r << "'";
  }
  EXPECT_STREQ(status_rule(Status::DecodeUnresolvableMissing), "8.6");
  EXPECT_STREQ(status_rule(Status::DecodeForgedHash), "2.5");
  EXPECT_STREQ(status_rule(Status::DecodeTrailingEmpty), "5.2");
  EXPECT_STREQ(status_rule(Status::OverlayNotEmpty), "3.4");
  EXPECT_STREQ(status_rule(Status::OutOfFrames), "");
}

TEST(Status, ResultCarriesValueOrStatus) {
  Result<int> good = half(8);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(static_cast<bool>(good));
  EXPECT_EQ(good.status(), Status::Ok);
  EXPECT_EQ(*good, 4);
  EXPECT_EQ(good.value(), 4);

  Result<int> bad = half(7);
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(static_cast<bool>(bad));
  EXPECT_EQ(bad.status(), Status::InvalidArgument);
}

TEST(Status, ResultMovesOwningValues) {
  auto make = []() -> Result<std::unique_ptr<int>> { return std::make_unique<int>(42); };
  Result<std::unique_ptr<int>> r = make();
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = r.release_value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 42);
}

TEST(Status, TryPropagatesTheFirstFailure) {
  EXPECT_EQ(quarter(8).value(), 2);
  EXPECT_EQ(quarter(6).status(), Status::InvalidArgument);  // 6 -> 3, then odd
  EXPECT_EQ(quarter(5).status(), Status::InvalidArgument);  // fails at the first step
  EXPECT_TRUE(check_even(4).ok());
  EXPECT_EQ(check_even(3).status(), Status::InvalidArgument);
}

namespace {

Result<std::uint64_t> fails() { return Status::OutOfFrames; }
Result<std::uint64_t> succeeds() { return std::uint64_t{42}; }

Result<std::uint64_t> via_try(bool ok) {
  const std::uint64_t v = CAPMEM_TRY(ok ? succeeds() : fails());
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
