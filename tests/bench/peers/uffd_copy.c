// capmem benchmark peer: Linux userfaultfd answering a missing page with UFFDIO_COPY, the
// unverified counterpart of capmem's resolve (issue 22: a NeedPage answered by a page whose
// hash is checked against the cap's Missing slot before it is installed). Printed by
// tests/bench/run-bench.sh beside BM_Resolve.
//
//   gcc -O2 -pthread -o uffd_copy uffd_copy.c && ./uffd_copy [PAGES [REPS]]   defaults: 4096, 10
//
// Each repetition maps PAGES fresh anonymous pages, registers them with a userfaultfd
// (UFFDIO_REGISTER_MODE_MISSING) and times, per page:
//   fault_round_trip_ns  the fault round trip: this thread loads one byte of each missing
//                        page in turn; a handler thread blocked in read(2) on the
//                        userfaultfd gets the UFFD_EVENT_PAGEFAULT message, fills a 4 KiB
//                        source page and answers with UFFDIO_COPY (mode 0: copy, map and
//                        wake the faulting thread); the load then completes. Trap, kernel
//                        entry/exit, two thread wake-ups, the event read and the copy ioctl
//                        are all in the figure.
//   copy_ns              a bare UFFDIO_COPY of one 4 KiB page into a registered missing page
//                        (mode 0), one ioctl per page, no fault pending: the ioctl's own cost
//                        (sources prepared before the clock starts).
// Nothing checks the bytes against anything (that is the point of the comparison): the
// harness only checks afterwards that every page holds what the handler copied there, so a
// figure is never for the wrong work. The best repetition of each is printed as one line:
//   {"peer":"uffd_copy","pages":..,"reps":..,"fault_round_trip_ns":..,"copy_ns":..}
// Where userfaultfd is unavailable (not built in, not permitted: neither root/CAP_SYS_PTRACE
// nor vm.unprivileged_userfaultfd nor UFFD_USER_MODE_ONLY nor /dev/userfaultfd) it prints one
// line "skipped: <reason>" and exits 0. It opens no network socket.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PEER_NAME "uffd_copy"
#include "peer_util.h"

enum { kPage = 4096 };

// The byte the handler writes at offset `at` of page `page` (rep mixes in so that a page
// left from an earlier repetition would not pass the check).
static uint8_t pattern(size_t rep, size_t page, size_t at) { return (uint8_t)(rep * 131u + page * 37u + at + 11u); }

// A userfaultfd, trying in turn: the syscall for user-mode faults only (allowed to
// unprivileged users since Linux 5.11 even with vm.unprivileged_userfaultfd = 0), the plain
// syscall (older kernels reject UFFD_USER_MODE_ONLY with EINVAL), /dev/userfaultfd (Linux
// 6.1+, by its file permissions). On failure returns -1 with `why` set.
static int open_uffd(char* why, size_t why_len) {
  int err_sys = 0, err_dev = 0;
#ifdef SYS_userfaultfd
#ifdef UFFD_USER_MODE_ONLY
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
  if (fd >= 0) return fd;
#endif
  fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
  if (fd >= 0) return fd;
  err_sys = errno;
#else
  err_sys = ENOSYS;
#endif
#ifdef USERFAULTFD_IOC_NEW
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    int fd2 = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
    err_dev = errno;
    close(dev);
    if (fd2 >= 0) return fd2;
  } else {
    err_dev = errno;
  }
#else
  err_dev = ENOENT;
#endif
  snprintf(why, why_len, "userfaultfd unavailable (userfaultfd(2): %s; /dev/userfaultfd: %s)", strerror(err_sys),
           strerror(err_dev));
  return -1;
}

struct handler {
  int uffd;
  size_t pages, rep;
  uint8_t* src;  // one page, the handler's own
  int error;     // errno of a failed read/ioctl, 0 if none
};

// Answers exactly `pages` missing-page faults (each page of the region faults once).
static void* handle_faults(void* arg) {
  struct handler* h = arg;
  size_t done = 0;
  while (done < h->pages) {
    struct uffd_msg msg;
    ssize_t n = read(h->uffd, &msg, sizeof msg);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n != (ssize_t)sizeof msg) {
      h->error = n < 0 ? errno : EIO;
      return NULL;
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    const uint64_t addr = msg.arg.pagefault.address & ~(uint64_t)(kPage - 1);
    const size_t page = (size_t)(addr / kPage);  // any per-page value will do
    for (size_t at = 0; at < kPage; at += 64) h->src[at] = pattern(h->rep, page, at);
    struct uffdio_copy c = {.dst = addr, .src = (uint64_t)(uintptr_t)h->src, .len = kPage, .mode = 0};
    if (ioctl(h->uffd, UFFDIO_COPY, &c) != 0 && errno != EEXIST) {
      h->error = errno;
      return NULL;
    }
    ++done;
  }
  return NULL;
}

static uint8_t* map_registered(int uffd, size_t bytes) {
  uint8_t* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)p, .len = bytes},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) die("UFFDIO_REGISTER");
  if ((reg.ioctls & ((uint64_t)1 << _UFFDIO_COPY)) == 0) {
    fprintf(stderr, "uffd_copy: UFFDIO_COPY is not offered for anonymous memory\n");
    exit(1);
  }
  return p;
}

static void check(const uint8_t* p, size_t pages, size_t rep, const char* what) {
  for (size_t i = 0; i < pages; i++) {
    const uint8_t* pg = p + i * kPage;
    const size_t key = (size_t)(((uintptr_t)pg) / kPage);
    for (size_t at = 0; at < kPage; at += 64) {
      if (pg[at] != pattern(rep, key, at)) {
        fprintf(stderr, "uffd_copy: %s: page %zu does not hold the bytes copied into it\n", what, i);
        exit(1);
      }
    }
  }
}

int main(int argc, char** argv) {
  if (argc > 3) {
    fprintf(stderr, "usage: %s [PAGES [REPS]]\n", argv[0]);
    return 2;
  }
  const size_t pages = argc > 1 ? parse_count(argv[1], "PAGES", (size_t)1 << 20) : 4096;
  const size_t reps = argc > 2 ? parse_count(argv[2], "REPS", 1000) : 10;
  const size_t bytes = pages * kPage;

  char why[256];
  int uffd = open_uffd(why, sizeof why);
  if (uffd < 0) {
    printf("skipped: %s\n", why);
    return 0;
  }
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) {
    printf("skipped: userfaultfd: UFFDIO_API failed (%s)\n", strerror(errno));
    return 0;
  }

  uint8_t* src = mmap(NULL, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (src == MAP_FAILED) die("mmap");
  memset(src, 0, kPage);
  uint8_t* srcs = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (srcs == MAP_FAILED) die("mmap");

  double best_fault = 1e300, best_copy = 1e300;
  for (size_t r = 0; r < reps; r++) {
    // (a) the fault round trip.
    volatile uint8_t* region = map_registered(uffd, bytes);
    struct handler h = {.uffd = uffd, .pages = pages, .rep = r, .src = src, .error = 0};
    pthread_t tid;
    if ((errno = pthread_create(&tid, NULL, handle_faults, &h)) != 0) die("pthread_create");
    unsigned sum = 0;
    const double t0 = now_ns();
    for (size_t i = 0; i < pages; i++) sum += region[i * kPage];
    const double t1 = now_ns();
    if ((errno = pthread_join(tid, NULL)) != 0) die("pthread_join");
    if (h.error != 0) {
      errno = h.error;
      die("fault handler (read or UFFDIO_COPY)");
    }
    (void)sum;
    check((const uint8_t*)region, pages, r, "fault round trip");
    if (munmap((void*)region, bytes) != 0) die("munmap");

    // (b) the bare UFFDIO_COPY, one page per ioctl, nothing waiting; the sources are filled
    // before the clock starts.
    uint8_t* dst = map_registered(uffd, bytes);
    for (size_t i = 0; i < pages; i++)
      for (size_t at = 0; at < kPage; at += 64)
        srcs[i * kPage + at] = pattern(r, (size_t)(((uintptr_t)(dst + i * kPage)) / kPage), at);
    const double t2 = now_ns();
    for (size_t i = 0; i < pages; i++) {
      struct uffdio_copy c = {.dst = (uint64_t)(uintptr_t)(dst + i * kPage),
                              .src = (uint64_t)(uintptr_t)(srcs + i * kPage),
                              .len = kPage,
                              .mode = 0};
      if (ioctl(uffd, UFFDIO_COPY, &c) != 0) die("UFFDIO_COPY");
    }
    const double copy_ns = now_ns() - t2;
    check(dst, pages, r, "bare UFFDIO_COPY");
    if (munmap(dst, bytes) != 0) die("munmap");

    const double n = (double)pages;
    if ((t1 - t0) / n < best_fault) best_fault = (t1 - t0) / n;
    if (copy_ns / n < best_copy) best_copy = copy_ns / n;
  }
  printf("{\"peer\":\"uffd_copy\",\"pages\":%zu,\"reps\":%zu,\"fault_round_trip_ns\":%.0f,\"copy_ns\":%.0f}\n", pages,
         reps, best_fault, best_copy);
  return 0;
}
