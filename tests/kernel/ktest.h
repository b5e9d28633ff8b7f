// In-kernel test cases. To add one, write in any tests/kernel/ktest_<area>.cpp:
//
//   #include "ktest.h"
//   KTEST(area_what_it_checks) {
//     KEXPECT(cond);          // records a failure and continues
//     KASSERT(cond);          // records a failure and ends the case
//     KEXPECT_EQ(a, b);       // integers; prints both values on failure
//     if (...) return t.fail("reason");  // explicit failure with a reason
//   }
//
// and add the file to `kernel_test_srcs` in tests/kernel/meson.build. Cases register
// themselves in the `.ktests` section (an array of `const Case*` that linker/kernel.ld
// collects between __ktests_start and __ktests_end); the runner sorts them by name and
// prints `[ RUN ] name`, `[ OK ] name` or `[ FAIL ] name: reason`, then `N passed, N failed`.
//
// A case must leave the machine as it found it (frames returned, CR3 restored, no hook
// installed): the runner checks the frame allocator's in-use count around every case.
#pragma once

#include <cstdint>

#include "kernel.h"

namespace capmem::ktest {

class Ctx {
 public:
  // Records a failure (the first reason is the one printed on the FAIL line).
  void fail(const char* reason);
  void fail_at(const char* what, const char* file, int line);
  void fail_eq(const char* what, std::uint64_t a, std::uint64_t b, const char* file, int line);
  [[nodiscard]] bool failed() const { return failures_ != 0; }
  [[nodiscard]] const char* reason() const { return reason_; }
  [[nodiscard]] unsigned failures() const { return failures_; }

 private:
  unsigned failures_ = 0;
  const char* reason_ = "";
  char buf_[160] = {};
};

struct Case {
  const char* name;
  void (*fn)(Ctx&);
};

// What the runner prints (the test image's `ktest.out=`, docs/boot.md).
enum class Output : std::uint8_t {
  Full,     // every case's `[ RUN ]` line, its output and verdict as it runs (the lanes parse it)
  Summary,  // the cases' notes (ktest::note), then the summary; a failing case's whole output
  List,     // Summary, then every case's verdict, one line each
};

// Runs the registered cases whose names start with one of the comma-separated prefixes in
// `filter` (every case if `filter` is nullptr); returns the number that failed. Every prefix
// must select at least one case: an empty prefix or one that selects none fails the run
// before any case runs, each named (a renamed case must never leave a lane green). The
// summary line `N passed, N failed` comes last in every output.
// The kernel takes the filter from the command line, `ktest=PREFIX[,PREFIX...]` (QEMU
// `-append`, GRUB `multiboot2 /boot/capmem-kernel ktest=...`; docs/boot.md).
unsigned run_all(const char* filter, Output out = Output::Full);
// Whether `name` is selected by `filter` (as run_all uses it; nullptr selects every name).
bool selected(const char* name, const char* filter);

// The `ktest.out=` key every image that runs cases takes (kernel.h CmdlineKey; put it in the
// image's image_cmdline_keys()), and the Output it asks for (Full when absent).
inline constexpr kernel::CmdlineKey kOutputKey{
    .key = "ktest.out",
    .kind = kernel::CmdlineKind::Choice,
    .choices = "full|summary|list",
    .help = "every case's output (default) / the cases' notes and a summary / and each verdict"};
Output output_from_cmdline();

// A line of a case's account worth showing in every output (the demo's, per CPU): printed at
// once with Output::Full, right after the case (before the summary) otherwise. Boot CPU.
void note(const char* line);

}  // namespace capmem::ktest

#define KTEST(name)                                                                                   \
  static void ktest_fn_##name(::capmem::ktest::Ctx& t);                                               \
  static const ::capmem::ktest::Case ktest_case_##name{#name, ktest_fn_##name};                       \
  [[gnu::used, gnu::section(".ktests")]] static const ::capmem::ktest::Case* const ktest_ptr_##name = \
      &ktest_case_##name;                                                                             \
  static void ktest_fn_##name([[maybe_unused]] ::capmem::ktest::Ctx& t)

#define KEXPECT(cond)                                              \
  do {                                                             \
    if (!(cond)) t.fail_at("expected " #cond, __FILE__, __LINE__); \
  } while (0)
#define KASSERT(cond)                                   \
  do {                                                  \
    if (!(cond)) {                                      \
      t.fail_at("required " #cond, __FILE__, __LINE__); \
      return;                                           \
    }                                                   \
  } while (0)
#define KEXPECT_EQ(a, b)                                                                       \
  do {                                                                                         \
    const auto ktest_a_ = static_cast<std::uint64_t>(a);                                       \
    const auto ktest_b_ = static_cast<std::uint64_t>(b);                                       \
    if (ktest_a_ != ktest_b_) t.fail_eq(#a " == " #b, ktest_a_, ktest_b_, __FILE__, __LINE__); \
  } while (0)
#define KASSERT_EQ(a, b)                                               \
  do {                                                                 \
    const auto ktest_a_ = static_cast<std::uint64_t>(a);               \
    const auto ktest_b_ = static_cast<std::uint64_t>(b);               \
    if (ktest_a_ != ktest_b_) {                                        \
      t.fail_eq(#a " == " #b, ktest_a_, ktest_b_, __FILE__, __LINE__); \
      return;                                                          \
    }                                                                  \
  } while (0)
