// The in-kernel test runner (see ktest.h).
#include "ktest.h"

#include <cstddef>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "kernel.h"

// The linker script (linker/kernel.ld) collects the cases' `.ktests` entries between these.
// NOLINTNEXTLINE(bugprone-dynamic-static-initializers): defined by the linker, never initialized
extern "C" char __ktests_start[], __ktests_end[];

namespace capmem::ktest {
namespace {

std::size_t append(char* buf, std::size_t cap, std::size_t at, const char* s) {
  while (*s != '\0' && at + 1 < cap) buf[at++] = *s++;
  buf[at] = '\0';
  return at;
}
std::size_t append_dec(char* buf, std::size_t cap, std::size_t at, std::uint64_t v) {
  char tmp[24];
  std::size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0 && at + 1 < cap) buf[at++] = tmp[--n];
  buf[at] = '\0';
  return at;
}
std::size_t append_hex(char* buf, std::size_t cap, std::size_t at, std::uint64_t v) {
  at = append(buf, cap, at, "0x");
  char tmp[16];
  std::size_t n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  while (n > 0 && at + 1 < cap) buf[at++] = tmp[--n];
  buf[at] = '\0';
  return at;
}
const char* basename(const char* path) {
  const char* b = path;
  for (const char* p = path; *p != '\0'; ++p)
    if (*p == '/') b = p + 1;
  return b;
}

int compare(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return static_cast<unsigned char>(*a) - static_cast<unsigned char>(*b);
}

}  // namespace

bool selected(const char* name, const char* filter) {
  if (filter == nullptr) return true;
  const char* p = filter;
  while (true) {
    const char* n = name;
    while (*p != '\0' && *p != ',' && *p == *n) ++p, ++n;
    if (*p == '\0' || *p == ',') {
      // The whole prefix matched (an empty prefix, from "a,,b" or a trailing comma, selects
      // nothing).
      if (n != name) return true;
    }
    while (*p != '\0' && *p != ',') ++p;
    if (*p == '\0') return false;
    ++p;
  }
}

namespace {

Output g_out = Output::Full;
char g_notes[4096];
std::size_t g_notes_len = 0;

// Each prefix of `filter` selects at least one of `cases`; prints every one that does not.
// Returns how many do not.
unsigned check_prefixes(const char* filter, const Case* const* begin, const Case* const* end) {
  unsigned bad = 0;
  for (const char* p = filter;;) {
    const char* const q = p;
    while (*p != '\0' && *p != ',') ++p;
    const auto len = static_cast<std::size_t>(p - q);
    bool any = false;
    for (const auto* c = begin; c != end && !any && len != 0; ++c) {
      std::size_t i = 0;
      while (i < len && (*c)->name[i] == q[i]) ++i;
      any = i == len;
    }
    if (!any) {
      ++bad;
      log::str("[ FAIL ] ktest filter: ");
      if (len == 0) {
        log::str("an empty prefix");
      } else {
        log::str("prefix \"");
        char b[64];
        const std::size_t k = len < sizeof b - 1 ? len : sizeof b - 1;
        for (std::size_t i = 0; i < k; ++i) b[i] = q[i];
        b[k] = '\0';
        log::str(b);
        if (k < len) log::str("...");
        log::str("\" matches no case");
      }
      log::str(" (ktest=");
      log::str(filter);
      log::str(")\n");
    }
    if (*p == '\0') break;
    ++p;
  }
  return bad;
}

}  // namespace

Output output_from_cmdline() {
  if (kernel::cmdline_is("ktest.out", "summary")) return Output::Summary;
  if (kernel::cmdline_is("ktest.out", "list")) return Output::List;
  return Output::Full;
}

void note(const char* line) {
  if (g_out == Output::Full) {
    log::str(line);
    log::nl();
    return;
  }
  g_notes_len = append(g_notes, sizeof g_notes, g_notes_len, line);
  g_notes_len = append(g_notes, sizeof g_notes, g_notes_len, "\n");
}

void Ctx::fail(const char* reason) {
  log::str("    failure: ");
  log::str(reason);
  log::nl();
  if (failures_++ == 0) {
    append(buf_, sizeof buf_, 0, reason);
    reason_ = buf_;
  }
}

void Ctx::fail_at(const char* what, const char* file, int line) {
  char b[sizeof buf_];
  std::size_t n = append(b, sizeof b, 0, what);
  n = append(b, sizeof b, n, " (");
  n = append(b, sizeof b, n, basename(file));
  n = append(b, sizeof b, n, ":");
  n = append_dec(b, sizeof b, n, static_cast<std::uint64_t>(line));
  append(b, sizeof b, n, ")");
  fail(b);
}

void Ctx::fail_eq(const char* what, std::uint64_t a, std::uint64_t b_val, const char* file, int line) {
  char b[sizeof buf_];
  std::size_t n = append(b, sizeof b, 0, what);
  n = append(b, sizeof b, n, ": ");
  n = append_hex(b, sizeof b, n, a);
  n = append(b, sizeof b, n, " != ");
  n = append_hex(b, sizeof b, n, b_val);
  n = append(b, sizeof b, n, " (");
  n = append(b, sizeof b, n, basename(file));
  n = append(b, sizeof b, n, ":");
  n = append_dec(b, sizeof b, n, static_cast<std::uint64_t>(line));
  append(b, sizeof b, n, ")");
  fail(b);
}

unsigned run_all(const char* filter, Output out) {
  g_out = out;
  const auto* begin = reinterpret_cast<const Case* const*>(__ktests_start);
  const auto* end = reinterpret_cast<const Case* const*>(__ktests_end);
  constexpr std::size_t kMax = 512;
  const Case* cases[kMax];
  bool failed_case[kMax] = {};
  const auto registered = static_cast<std::size_t>(end - begin);
  CAPMEM_ASSERT(registered <= kMax);
  std::size_t n = 0;
  for (const auto* p = begin; p != end; ++p)
    if (selected((*p)->name, filter)) cases[n++] = *p;
  if (filter != nullptr) {
    log::str("ktest: filter \"");
    log::str(filter);
    log::str("\" selects ");
    log::dec(n);
    log::str(" of ");
    log::dec(registered);
    log::str(" cases\n");
    // A prefix that selects nothing (a typo, a renamed case) fails the run before any case
    // runs, whatever the other prefixes select.
    const unsigned bad = check_prefixes(filter, begin, end);
    if (bad != 0) {
      log::str("0 passed, ");
      log::dec(bad);
      log::str(" failed\n");
      return bad;
    }
  }
  // Insertion sort by name: a stable, readable order independent of link order.
  for (std::size_t i = 1; i < n; ++i)
    for (std::size_t j = i; j > 0 && compare(cases[j - 1]->name, cases[j]->name) > 0; --j) {
      const Case* tmp = cases[j];
      cases[j] = cases[j - 1];
      cases[j - 1] = tmp;
    }

  const bool full = out == Output::Full;
  unsigned passed = 0, failed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    // Summary and list: the case's output is held and written out only if it fails.
    if (!full) kernel::console_hold_begin();
    log::str("[ RUN ] ");
    log::str(cases[i]->name);
    log::nl();
    drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
    const std::uint64_t in_use = frames().stats().in_use;
    Ctx ctx;
    g_notes_len = 0;
    g_notes[0] = '\0';
    cases[i]->fn(ctx);
    drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
    const std::uint64_t after = frames().stats().in_use;
    if (after != in_use) {
      char b[96];
      std::size_t k = append(b, sizeof b, 0, "frames in use changed across the case: ");
      k = append_dec(b, sizeof b, k, in_use);
      k = append(b, sizeof b, k, " -> ");
      append_dec(b, sizeof b, k, after);
      ctx.fail(b);
    }
    if (!full) {
      kernel::console_hold_end(ctx.failed());
      if (g_notes_len != 0) log::str(g_notes);
    }
    failed_case[i] = ctx.failed();
    if (ctx.failed()) {
      ++failed;
      log::str("[ FAIL ] ");
      log::str(cases[i]->name);
      log::str(": ");
      log::str(ctx.reason());
      log::nl();
    } else {
      ++passed;
      if (full) {
        log::str("[ OK ] ");
        log::str(cases[i]->name);
        log::nl();
      }
    }
  }
  if (out == Output::List) {
    log::str("ktest: every case, in the order run:\n");
    for (std::size_t i = 0; i < n; ++i) {
      log::str(failed_case[i] ? "  FAIL " : "  ok   ");
      log::str(cases[i]->name);
      log::nl();
    }
  } else if (out == Output::Summary) {
    log::str("ktest: ");
    log::dec(n);
    log::str(" cases on ");
    log::dec(env::cpu_count());
    log::str(env::cpu_count() == 1 ? " CPU" : " CPUs");
    log::str("; each verdict: ktest.out=list (./dev run --list), every output: ktest.out=full (--full)\n");
  }
  log::dec(passed);
  log::str(" passed, ");
  log::dec(failed);
  log::str(" failed\n");
  return failed;
}

}  // namespace capmem::ktest
