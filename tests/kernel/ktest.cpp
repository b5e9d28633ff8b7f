// The in-kernel test runner (see ktest.h).
#include "ktest.h"

#include <cstddef>

#include "capmem/frame.h"
#include "capmem/log.h"
#include "kernel.h"

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
  if (*filter == '\0') return true;
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

unsigned run_all(const char* filter) {
  const auto* begin = reinterpret_cast<const Case* const*>(kernel::__ktests_start);
  const auto* end = reinterpret_cast<const Case* const*>(kernel::__ktests_end);
  constexpr std::size_t kMax = 512;
  const Case* cases[kMax];
  std::size_t n = 0, registered = 0;
  for (const auto* p = begin; p != end && n < kMax; ++p, ++registered)
    if (selected((*p)->name, filter)) cases[n++] = *p;
  if (*filter != '\0') {
    log::str("ktest: filter \"");
    log::str(filter);
    log::str("\" selects ");
    log::dec(n);
    log::str(" of ");
    log::dec(registered);
    log::str(" cases\n");
    if (n == 0) {
      log::str("[ FAIL ] ktest filter: no case name starts with any of its prefixes\n0 passed, 1 failed\n");
      return 1;
    }
  }
  // Insertion sort by name: a stable, readable order independent of link order.
  for (std::size_t i = 1; i < n; ++i)
    for (std::size_t j = i; j > 0 && compare(cases[j - 1]->name, cases[j]->name) > 0; --j) {
      const Case* tmp = cases[j];
      cases[j] = cases[j - 1];
      cases[j - 1] = tmp;
    }

  unsigned passed = 0, failed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    log::str("[ RUN ] ");
    log::str(cases[i]->name);
    log::nl();
    const std::uint64_t in_use = frames().stats().in_use;
    Ctx ctx;
    cases[i]->fn(ctx);
    const std::uint64_t after = frames().stats().in_use;
    if (after != in_use) {
      char b[96];
      std::size_t k = append(b, sizeof b, 0, "frames in use changed across the case: ");
      k = append_dec(b, sizeof b, k, in_use);
      k = append(b, sizeof b, k, " -> ");
      append_dec(b, sizeof b, k, after);
      ctx.fail(b);
    }
    if (ctx.failed()) {
      ++failed;
      log::str("[ FAIL ] ");
      log::str(cases[i]->name);
      log::str(": ");
      log::str(ctx.reason());
      log::nl();
    } else {
      ++passed;
      log::str("[ OK ] ");
      log::str(cases[i]->name);
      log::nl();
    }
  }
  log::dec(passed);
  log::str(" passed, ");
  log::dec(failed);
  log::str(" failed\n");
  return failed;
}

}  // namespace capmem::ktest
