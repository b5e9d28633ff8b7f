// main() for every hosted GoogleTest binary: boots the simulated machine, runs the
// tests, and finally asserts that the frame allocator is back to all-free (only the
// pinned zero frame in use), so no test can leak a frame unnoticed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "capmem/frame.h"
#include "hostsim/env_hostsim.h"

namespace {
class LeakCheck : public ::testing::Environment {
 public:
  void TearDown() override {
    const auto s = capmem::hostsim::quiescent_frame_stats();
    EXPECT_EQ(s.in_use, 1u) << "frames leaked by the test run (only the zero frame may remain)";
  }
};
}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::uint64_t mb = capmem::hostsim::kDefaultMemBytes >> 20;
  if (const char* e = std::getenv("CAPMEM_SIM_MB")) mb = std::strtoull(e, nullptr, 10);
  capmem::hostsim::boot(mb << 20);
  capmem::frames().set_poison(true);
  ::testing::AddGlobalTestEnvironment(new LeakCheck);
  return RUN_ALL_TESTS();
}
