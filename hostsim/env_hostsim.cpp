// The seam (include/capmem/env.h) for hosted builds: simulated RAM, simulated TLB,
// stderr. See hostsim/env_hostsim.h and hostsim/mmu.h; cpu_id, cpu_count and tlb_shootdown
// live in hostsim/cpus.cpp.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>

#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "hostsim/env_hostsim.h"
#include "hostsim/mmu.h"

namespace capmem::hostsim {
void bind_boot_thread();  // hostsim/cpus.cpp

namespace {
std::uint8_t* g_ram = nullptr;
std::uint64_t g_ram_size = 0;
}  // namespace

std::uint8_t* ram_base() { return g_ram; }
std::uint64_t ram_size() { return g_ram_size; }
bool booted() { return g_ram != nullptr; }

bool try_boot(std::uint64_t mem_bytes) {
  if (g_ram != nullptr) shutdown();
  mem_bytes &= ~std::uint64_t{4095};
  void* p = mmap(nullptr, mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return false;
  bind_boot_thread();
  g_ram = static_cast<std::uint8_t*>(p);
  g_ram_size = mem_bytes;
  // The allocator is a constinit global; re-create it in place for a fresh machine.
  FrameAllocator* fa = &frames();
  fa->~FrameAllocator();
  new (fa) FrameAllocator();
  if (!fa->init_from_env().ok()) {
    munmap(g_ram, g_ram_size);
    g_ram = nullptr;
    g_ram_size = 0;
    return false;
  }
  hash::init();
  return true;
}

void boot(std::uint64_t mem_bytes) {
  if (!try_boot(mem_bytes)) {
    std::fprintf(stderr, "hostsim: cannot make %llu bytes of simulated RAM\n",
                 static_cast<unsigned long long>(mem_bytes));
    std::abort();
  }
}

FrameStats quiescent_frame_stats() {
  for (unsigned cpu = 0; cpu < env::kMaxCpus; ++cpu) drain_slab_caches(cpu);
  return frames().stats();
}

void shutdown() {
  if (g_ram == nullptr) return;
  const FrameStats s = quiescent_frame_stats();
  if (s.in_use != 1) {  // only the zero frame may remain
    std::fprintf(stderr, "hostsim: shutdown with %llu frames still in use\n",
                 static_cast<unsigned long long>(s.in_use - 1));
    std::abort();
  }
  munmap(g_ram, g_ram_size);
  g_ram = nullptr;
  g_ram_size = 0;
}

}  // namespace capmem::hostsim

namespace capmem::env {

std::size_t memory_ranges(PhysRange* out, std::size_t max) {
  if (max == 0 || hostsim::g_ram == nullptr) return 0;
  out[0] = PhysRange{.base = PhysAddr{4096}, .size = hostsim::g_ram_size - 4096};
  return 1;
}

// Bounds checked as the kernel's direct map checks them (kernel/image/env_kernel.cpp): an
// address past the simulated RAM is a bug in capmem, never a pointer into host memory.
void* phys_to_virt(PhysAddr pa) {
  CAPMEM_ASSERT(hostsim::g_ram != nullptr && pa.value() < hostsim::g_ram_size);
  return hostsim::g_ram + pa.value();
}
PhysAddr virt_to_phys(const void* va) {
  return PhysAddr{static_cast<std::uint64_t>(static_cast<const std::uint8_t*>(va) - hostsim::g_ram)};
}

void tlb_invalidate_page(VirtAddr va) { hostsim::current_mmu_invlpg(va); }

bool simd_begin() { return true; }
void simd_end() {}

void log_write(const char* s, std::size_t n) { (void)!::write(2, s, n); }

[[noreturn]] void panic(const char* msg) {
  std::fprintf(stderr, "capmem panic: %s\n", msg);
  std::fflush(stderr);
  std::abort();
}

}  // namespace capmem::env
