// Helpers shared by the peer harnesses (linux_cow.c, uffd_copy.c), each a single C file that
// run-bench.sh builds with gcc: a monotonic clock, a fatal error naming the call, and a
// checked count argument. PEER_NAME (the harness's name) is defined before the include.
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void die(const char* what) {
  fprintf(stderr, PEER_NAME ": %s: %s\n", what, strerror(errno));
  exit(1);
}

static size_t parse_count(const char* text, const char* what, size_t max) {
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 || v > max) {
    fprintf(stderr, PEER_NAME ": %s must be an integer from 1 to %zu, not \"%s\"\n", what, max, text);
    exit(2);
  }
  return (size_t)v;
}
