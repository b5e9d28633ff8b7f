// capmem benchmark peer: Linux's own page faults, measured from user space, for the ratio
// lines of tests/bench/run-bench.sh ("kernel:cow_write_fault_ns" against
// "peer:linux_cow:cow_write_fault_ns", and the read fault likewise).
//
//   gcc -O2 -o linux_cow linux_cow.c && ./linux_cow [PAGES [REPS]]   defaults: 16384, 10
//
// Source: a memfd of PAGES pages, filled through a shared mapping. Each repetition maps it
// again MAP_PRIVATE and times, per page touched:
//   read_fault_ns           one load from each page (the page-cache page is mapped
//                           read-only; Linux's fault-around maps up to 16 pages per read
//                           fault, so this is per page, not per fault);
//   cow_write_fault_ns      then one store to each page: the first store to a page mapped
//                           read-only from the file copies it (the CoW write fault);
//   anon_zero_fill_fault_ns one store to each page of a fresh anonymous mapping (a zeroed
//                           frame, no copy), for comparison.
// The whole fault is in the figure: trap, kernel entry and exit, and the handler. The best
// repetition of each is printed as one JSON line:
//   {"peer":"linux","pages":16384,"reps":10,"read_fault_ns":..,"cow_write_fault_ns":..,
//    "anon_zero_fill_fault_ns":..}
// After each repetition the harness checks that the loads saw the file's bytes and that the
// stores stayed private (the file is unchanged), so a figure is never for the wrong work.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PEER_NAME "linux_cow"
#include "peer_util.h"

enum { kPage = 4096 };

static uint8_t pattern(size_t page) { return (uint8_t)(page * 37u + 11u); }

static void* map(size_t bytes, int flags, int fd) {
  void* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

int main(int argc, char** argv) {
  if (argc > 3) {
    fprintf(stderr, "usage: %s [PAGES [REPS]]\n", argv[0]);
    return 2;
  }
  const size_t pages = argc > 1 ? parse_count(argv[1], "PAGES", (size_t)1 << 22) : 16384;
  const size_t reps = argc > 2 ? parse_count(argv[2], "REPS", 1000) : 10;
  const size_t bytes = pages * kPage;

  int fd = memfd_create("capmem-linux-cow-peer", MFD_CLOEXEC);
  if (fd < 0) die("memfd_create");
  if (ftruncate(fd, (off_t)bytes) != 0) die("ftruncate");
  uint8_t* file = map(bytes, MAP_SHARED, fd);
  for (size_t i = 0; i < pages; i++) memset(file + i * kPage, pattern(i), kPage);

  double best_read = 1e300, best_cow = 1e300, best_anon = 1e300;
  for (size_t r = 0; r < reps; r++) {
    volatile uint8_t* priv = map(bytes, MAP_PRIVATE, fd);
    unsigned sum = 0, want = 0;
    const double t0 = now_ns();
    for (size_t i = 0; i < pages; i++) sum += priv[i * kPage];
    const double t1 = now_ns();
    for (size_t i = 0; i < pages; i++) priv[i * kPage + 1] = (uint8_t)(i ^ 0x5a);
    const double t2 = now_ns();
    for (size_t i = 0; i < pages; i++) want += pattern(i);
    if (sum != want) {
      fprintf(stderr, "linux_cow: the private mapping did not read the file's bytes\n");
      return 1;
    }
    for (size_t i = 0; i < pages; i++) {
      if (priv[i * kPage + 1] != (uint8_t)(i ^ 0x5a) || file[i * kPage + 1] != pattern(i)) {
        fprintf(stderr, "linux_cow: page %zu: a private store was lost or reached the file\n", i);
        return 1;
      }
    }
    if (munmap((void*)priv, bytes) != 0) die("munmap");

    volatile uint8_t* anon = map(bytes, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    const double t3 = now_ns();
    for (size_t i = 0; i < pages; i++) anon[i * kPage] = 1;
    const double t4 = now_ns();
    if (munmap((void*)anon, bytes) != 0) die("munmap");

    const double n = (double)pages;
    if ((t1 - t0) / n < best_read) best_read = (t1 - t0) / n;
    if ((t2 - t1) / n < best_cow) best_cow = (t2 - t1) / n;
    if ((t4 - t3) / n < best_anon) best_anon = (t4 - t3) / n;
  }
  printf(
      "{\"peer\":\"linux\",\"pages\":%zu,\"reps\":%zu,\"read_fault_ns\":%.0f,\"cow_write_fault_ns\":%.0f,"
      "\"anon_zero_fill_fault_ns\":%.0f}\n",
      pages, reps, best_read, best_cow, best_anon);
  return 0;
}
