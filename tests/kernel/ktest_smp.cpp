// Many CPUs at once (docs/rules.md section 7; docs/smp.md): every CPU up with the boot CPU's state,
// ring-3 runs on every CPU over shared caps with caps handed between CPUs, the TLB shootdown
// of a shared subtree, a run migrating between CPUs, and a paused run checkpointed from
// another CPU while its table is still loaded (rule 3.8). With one CPU online (the -smp 1
// boots) the cases run their work on that CPU and say which cross-CPU parts they skipped;
// tests/qemu's smp-* boots run them with -smp 4 and check the per-CPU lines they print.
#include <cstdint>
#include <span>

#include "apic.h"
#include "arch.h"
#include "capmem/datacap.h"
#include "capmem/env.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/pt.h"
#include "demo.h"
#include "guest_run.h"
#include "kernel.h"
#include "ktest.h"
#include "ktest_ring3_progs.h"
#include "percpu.h"
#include "smp.h"
#include "user.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint64_t kErrP = 1;  // #PF error code: present (SDM Vol. 3A 4.7)

// ---------------------------------------------------------------------------------------------
// Every CPU reports its id, with the boot CPU's control registers and hash back end.

constexpr unsigned kHashPages = 8;  // one AVX2 8-lane batch (or 16-lane AVX-512 with padding)
alignas(4096) std::uint8_t g_hash_pages[kHashPages][PAGE_SIZE];

struct CpuReport {
  unsigned id;
  std::uint32_t apic;
  std::uint64_t cr0, cr4, xcr0, efer;
  Hash32 pages_hash;
};

void report_work(void* arg) {
  auto* r = static_cast<CpuReport*>(arg);
  r->id = env::cpu_id();
  r->apic = apic::id();
  r->cr0 = arch::read_cr0();
  r->cr4 = arch::read_cr4();
  r->xcr0 = cpu_features().xsave ? arch::xgetbv(0) : 0;
  r->efer = arch::rdmsr(arch::MSR_EFER);
  // The active (SIMD) back end, on this CPU: #UD here if its XCR0 were narrower.
  const std::uint8_t* pages[kHashPages];
  Hash32 out[kHashPages];
  for (unsigned i = 0; i < kHashPages; ++i) pages[i] = g_hash_pages[i];
  hash::page_content_hashes(pages, out, kHashPages);
  r->pages_hash = hash::sha256(out, sizeof out);
}

KTEST(smp_every_cpu_reports_its_id) {
  const unsigned n = smp::online_count();
  KEXPECT_EQ(env::cpu_count(), n);
  KASSERT(n <= kMaxKernelCpus);
  for (unsigned p = 0; p < kHashPages; ++p)
    for (unsigned i = 0; i < PAGE_SIZE; ++i) g_hash_pages[p][i] = static_cast<std::uint8_t>(p * 31 + i * 7);
  // The expected hash, by the portable code alone (independent of the back end under test).
  const hash::Impl active = hash::active();
  hash::force(hash::Impl::Portable);
  CpuReport portable{};
  report_work(&portable);
  hash::force(active);

  CpuReport rep[kMaxKernelCpus] = {};
  void* args[kMaxKernelCpus];
  for (unsigned i = 0; i < n; ++i) args[i] = &rep[i];
  smp::run_on_all(n, report_work, args);
  for (unsigned i = 0; i < n; ++i) {
    KEXPECT_EQ(rep[i].id, i);
    KEXPECT_EQ(rep[i].apic, g_cpus[i].apic_id);
    KEXPECT_EQ(rep[i].cr0, rep[0].cr0);
    KEXPECT_EQ(rep[i].cr4, rep[0].cr4);
    KEXPECT_EQ(rep[i].xcr0, cpu_features().xcr0);
    KEXPECT_EQ(rep[i].efer, rep[0].efer);
    KEXPECT(rep[i].pages_hash == portable.pages_hash);
    log::str("smp: cpu ");
    log::dec(i);
    log::str(" reports id ");
    log::dec(rep[i].id);
    log::str(", apic id ");
    log::dec(rep[i].apic);
    log::str(", xcr0 0x");
    log::hex(rep[i].xcr0);
    log::str(", hash ");
    log::str(hash::impl_name(active));
    log::nl();
  }
}

// ---------------------------------------------------------------------------------------------
// Rule 7.4: a CPU that goes idle gives its cached frames back (smp::idle_loop drains), so
// the frames an application processor freed are in every CPU's reach once its work is done.

void cache_some_frames_work(void*) {
  FrameDesc* d[5];
  for (FrameDesc*& f : d) f = frames().alloc(FrameKind::Page);
  for (FrameDesc* f : d)
    if (f != nullptr) frames().free(f);  // into this CPU's cache
}

KTEST(smp_idle_cpu_keeps_no_cached_frames) {
  if (smp::online_count() < 2) {
    log::str("smp_idle_cpu_keeps_no_cached_frames: one CPU, nothing to check\n");
    return;
  }
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const std::uint64_t free_before = frames().stats().free;
  smp::run_on(1, cache_some_frames_work, nullptr);
  smp::wait_done(1);
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  KEXPECT_EQ(frames().stats().free, free_before);
  KEXPECT_EQ(frames().cached_on(1), 0u);  // drained to CPU 1's depot list when it went idle
  log::str("smp idle: cpu 1 freed frames and went idle with ");
  log::dec(frames().cached_on(1));
  log::str(" cached\n");
}

// ---------------------------------------------------------------------------------------------
// Console: every CPU logs at once, each line in many pieces; tests/qemu smp-boot checks that
// every line arrives whole (one lock, per-CPU line buffers: env_kernel.cpp).

constexpr unsigned kConsoleLines = 40;

void console_work(void*) {
  const unsigned me = env::cpu_id();
  for (unsigned k = 0; k < kConsoleLines; ++k) {
    log::str("smp console: cpu ");
    log::dec(me);
    log::str(" line ");
    log::dec(k);
    for (unsigned piece = 0; piece < 8; ++piece) {
      log::str(" ");
      log::dec(me);
      log::str("-");
      log::dec(piece);
    }
    log::nl();
  }
}

KTEST(smp_console_lines_from_every_cpu_stay_whole) {
  const unsigned n = smp::online_count();
  void* args[kMaxKernelCpus] = {};
  smp::run_on_all(n, console_work, args);
}

// ---------------------------------------------------------------------------------------------
// Concurrent runs over shared caps.

struct GuestOutcome {
  bool ran = false;
  Status setup = Status::Ok;  // why it did not run
  RunResult r;
  std::uint64_t gas = 0;
  fault::Counters counters;

  // The run, or its set-up, ran out of frames (a small -m: tests/qemu/lowmem.sh).
  [[nodiscard]] bool out_of_frames() const {
    return ran ? r.exit == RunExit::PageFault && r.code == static_cast<std::uint64_t>(fault::Outcome::OutOfFrames)
               : setup == Status::OutOfFrames;
  }
};

// One ring-3 run of [prog, prog_end) over `code` and `mem` through the kernel's run glue
// (guest_run.h: a fresh per-run table, #PF routed to the core's handler, torn down at the
// end), on the calling CPU.
GuestOutcome guest_on_this_cpu(const DataCap& code, DataCap& mem, const char* prog, const char* prog_end,
                               UserRegs regs) {
  GuestOutcome out;
  regs.rip = fault::JIT_BASE;
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;
  auto g = capmem::kernel::run_guest(GuestSpec{.code = &code,
                                               .mem = &mem,
                                               .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                               .gas = demo::kDefaultGas,
                                               .program = prog,
                                               .program_end = prog_end},
                                     regs);
  if (!g.ok()) {
    out.setup = g.status();
    return out;
  }
  out.r = g->result;
  out.gas = g->gas_used;
  out.counters = g->counters;
  out.ran = true;
  return out;
}

constexpr unsigned kRounds = 2;
constexpr unsigned kCapsPerRound = 2;  // the demo run's copy, the fill runs' copy
constexpr unsigned kCaps = kRounds * kCapsPerRound;

// One CPU's share: kRounds x (the demo guest on a copy of the shared mem cap; two fill runs
// writing every page outside the pinned range of another copy: ~1250 CoW faults a round).
// The caps it leaves are flushed and dropped by another CPU (flush_work).
struct Job {
  const demo::Image* shared;
  unsigned variant;
  const char* error;
  unsigned ran_on;
  DataCap caps[kCaps];
  std::uint64_t gas[kCaps];
  std::uint64_t cow;
  fault::Counters demo_counters;
  unsigned flushed_on;
  Hash32 roots[kCaps];
};

std::uint64_t fill_value(unsigned variant, unsigned round) {
  return (0x0101010101010101ull * (variant + 1)) ^ (std::uint64_t{round + 1} << 56);
}

void run_work(void* arg) {
  auto* j = static_cast<Job*>(arg);
  j->ran_on = env::cpu_id();
  j->cow = 0;
  for (unsigned round = 0; round < kRounds; ++round) {
    auto demo_copy = j->shared->mem.copy();
    auto fill_copy = j->shared->mem.copy();
    if (!demo_copy.ok() || !fill_copy.ok()) {
      const Status st = demo_copy.ok() ? fill_copy.status() : demo_copy.status();
      j->error = st == Status::OutOfFrames ? "copy of the shared mem cap: out of frames" : "copy of the shared mem cap";
      return;
    }
    const GuestOutcome d =
        guest_on_this_cpu(j->shared->code, demo_copy.value(), ring3_demo_prog, ring3_demo_prog_end, {});
    if (!d.ran || d.r.exit != RunExit::ExitGate || d.r.regs.r9 != demo::kOps - 1) {
      j->error = d.out_of_frames() ? "demo run: out of frames" : "demo run did not reach its end";
      return;
    }
    j->demo_counters = d.counters;
    j->cow += d.counters.cow;
    // Pages [0, 512) then [576, 1024): all of mem but the pinned range.
    const std::uint32_t ranges[2][2] = {{0, demo::kPinned.first_page},
                                        {demo::kPinned.first_page + demo::kPinned.pages, demo::kMemPages}};
    std::uint64_t fill_gas = 0;
    for (const auto& rg : ranges) {
      const std::uint32_t pages = rg[1] - rg[0];
      const GuestOutcome f = guest_on_this_cpu(j->shared->code, fill_copy.value(), ring3_prog_fill, ring3_prog_fill_end,
                                               UserRegs{.rcx = pages,
                                                        .rdx = fill_value(j->variant, round),
                                                        .rdi = fault::DATA_BASE + std::uint64_t{rg[0]} * PAGE_SIZE});
      if (!f.ran || f.r.exit != RunExit::ExitGate || f.r.regs.rax != pages) {
        j->error = f.out_of_frames() ? "fill run: out of frames" : "fill run did not reach its end";
        return;
      }
      fill_gas += f.gas;
      j->cow += f.counters.cow;
    }
    j->gas[round * kCapsPerRound] = d.gas;
    j->gas[round * kCapsPerRound + 1] = fill_gas;
    j->caps[round * kCapsPerRound] = demo_copy.release_value();
    j->caps[round * kCapsPerRound + 1] = fill_copy.release_value();
  }
}

// Flushes (hashes) the caps another CPU left, takes their roots and drops them here. A job
// whose run_work failed (out of frames under a small -m: tests/qemu lowmem lanes) is left
// alone: its caps may be empty, and its error is run_work's.
void flush_work(void* arg) {
  auto* j = static_cast<Job*>(arg);
  j->flushed_on = env::cpu_id();
  if (j->error != nullptr) return;
  for (unsigned k = 0; k < kCaps; ++k) {
    const Result<void> flushed = j->caps[k].flush();
    if (!flushed.ok()) {
      j->error = flushed.status() == Status::OutOfFrames ? "flush of a handed-over cap: out of frames"
                                                         : "flush of a handed-over cap";
      return;
    }
    auto root = j->caps[k].root();
    if (!root.ok()) {
      j->error = "root of a handed-over cap";
      return;
    }
    j->roots[k] = root.value();
    j->caps[k] = DataCap{};  // the last reference to its overlay pages drops on this CPU
  }
}

KTEST(smp_concurrent_runs_over_shared_caps_match_one_cpu) {
  const unsigned n = smp::online_count();
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const std::uint64_t free0 = frames().stats().free;
  {
    auto image = demo::build();
    KASSERT(image.ok());
    Job ref[kMaxKernelCpus]{}, job[kMaxKernelCpus]{};
    // Reference: every CPU's share, one after the other on this CPU.
    for (unsigned i = 0; i < n; ++i) {
      ref[i] = Job{};
      ref[i].shared = &image.value();
      ref[i].variant = i;
      run_work(&ref[i]);
      if (ref[i].error != nullptr) return t.fail(ref[i].error);
      flush_work(&ref[i]);
      if (ref[i].error != nullptr) return t.fail(ref[i].error);
    }
    // The same shares on every CPU at once; then CPU i flushes and drops CPU i-1's caps.
    void* args[kMaxKernelCpus];
    for (unsigned i = 0; i < n; ++i) {
      job[i] = Job{};
      job[i].shared = &image.value();
      job[i].variant = i;
      args[i] = &job[i];
    }
    smp::run_on_all(n, run_work, args);
    for (unsigned i = 0; i < n; ++i) args[i] = &job[(i + n - 1) % n];
    smp::run_on_all(n, flush_work, args);

    for (unsigned i = 0; i < n; ++i) {
      if (job[i].error != nullptr) {
        t.fail(job[i].error);
        continue;
      }
      KEXPECT_EQ(job[i].ran_on, i);
      KEXPECT_EQ(job[i].flushed_on, (i + 1) % n);
      KEXPECT(job[i].cow >= 2000);
      KEXPECT_EQ(job[i].cow, ref[i].cow);
      for (unsigned k = 0; k < kCaps; ++k) {
        KEXPECT(job[i].roots[k] == ref[i].roots[k]);
        KEXPECT_EQ(job[i].gas[k], ref[i].gas[k]);
      }
      // Every CPU's demo run gives the line `capmem demo` prints (tests/qemu smp-boot).
      char line[160];
      demo::format_line(line, sizeof line, job[i].roots[0], job[i].gas[0], job[i].demo_counters);
      log::str("smp demo cpu ");
      log::dec(i);
      log::str(": ");
      log::str(line);
      log::nl();
      log::str("smp runs cpu ");
      log::dec(i);
      log::str(": ");
      log::dec(job[i].cow);
      log::str(" CoW faults, caps flushed and dropped on cpu ");
      log::dec(job[i].flushed_on);
      log::nl();
    }
  }
  drain_slab_caches(env::cpu_id());          // cached slab objects hold their frames
  KEXPECT_EQ(frames().stats().free, free0);  // every frame back once all runs and caps are gone
}

// ---------------------------------------------------------------------------------------------
// Shootdown of a read-only subtree shared with link_shared.

constexpr std::uint64_t kShared = fault::DATA_BASE;                // 2 MiB aligned: one linked PT
constexpr std::uint64_t kCounter = fault::DATA_BASE + (4u << 20);  // per-reader, owned
constexpr std::uint64_t kBefore = 0x5eed5eed5eed5eedull, kNext = 0xbadbadbadbadbad0ull;

// One reader run, on its own CPU in its own table (built and torn down there): the donor's
// PT linked at kShared, its own writable counter page at kCounter.
struct Reader {
  const pt::PageTable* donor;
  FrameDesc* counter;
  const char* error;
  RunResult r;
};

void reader_work(void* arg) {
  auto* rd = static_cast<Reader*>(arg);
  auto tb = pt::PageTable::create();
  if (!tb.ok()) {
    rd->error = "PageTable::create";
    return;
  }
  pt::PageTable& table = tb.value();
  link_kernel_half(table);
  const bool built =
      map_ring3_program(table, VirtAddr{fault::JIT_BASE}, ring3_prog_reader, ring3_prog_reader_end) == Status::Ok &&
      table.link_from(*rd->donor, VirtAddr{kShared}, pt::Level::Pt, {.user = true}).ok() &&
      table
          .map_leaf(VirtAddr{kCounter}, rd->counter->phys(),
                    {.writable = true, .user = true, .no_execute = true, .holds_ref = true})
          .ok();
  if (!built) {
    rd->error = "building a reader's table";
  } else {
    rd->r = run_user(RunSpec{
        .cr3 = table.root(),
        .regs = {.rdx = kBefore, .rsi = kCounter, .rdi = kShared, .rip = fault::JIT_BASE, .rsp = fault::JIT_BASE}});
  }
  table.teardown();  // drops its link to the donor's PT (switched away already)
}

std::uint64_t counter_of(const Reader& rd) { return *static_cast<volatile const std::uint64_t*>(rd.counter->virt()); }

void fill_frame(FrameDesc* f, std::uint64_t v) {
  auto* p = static_cast<volatile std::uint64_t*>(f->virt());
  for (unsigned i = 0; i < PAGE_SIZE / 8; ++i) p[i] = v;
}

KTEST(smp_shootdown_of_shared_subtree_reaches_every_reader) {
  const unsigned n = smp::online_count();
  if (n < 2) {
    log::str("smp: one CPU online: the shootdown case needs two (skipped)\n");
    return;
  }
  // The owner of the shared subtree maps one read-only user page at kShared.
  auto donor = pt::PageTable::create();
  KASSERT(donor.ok());
  FrameDesc* page = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  KASSERT(page != nullptr);
  fill_frame(page, kBefore);
  KASSERT(donor->map_leaf(VirtAddr{kShared}, page->phys(), {.user = true}).ok());

  Reader readers[kMaxKernelCpus] = {};
  std::uint64_t answered0[kMaxKernelCpus] = {};
  bool have_counters = true;
  for (unsigned i = 1; i < n; ++i) {
    readers[i].donor = &donor.value();
    readers[i].counter = frames().alloc(FrameKind::Page, AllocFlags::Zero);
    have_counters = have_counters && readers[i].counter != nullptr;
  }
  if (have_counters) {
    for (unsigned i = 1; i < n; ++i) {
      answered0[i] = smp::shootdowns_answered(i);
      smp::run_on(i, reader_work, &readers[i]);
    }
    // Every reader has read through its TLB entry many times before the narrowing.
    const std::uint64_t deadline = arch::rdtsc() + 60'000'000 * apic::tsc_per_us();
    bool all_reading = false;
    while (!all_reading && arch::rdtsc() < deadline) {
      all_reading = true;
      for (unsigned i = 1; i < n; ++i) all_reading = all_reading && counter_of(readers[i]) >= 1000;
      arch::pause();
    }
    KEXPECT(all_reading);
    // Narrow: unmap in the owner, shoot down every CPU that may hold it, then reuse the frame.
    KEXPECT(donor->unmap(VirtAddr{kShared}).ok());
    env::tlb_shootdown(PhysAddr{}, VirtAddr{kShared}, 1);
    fill_frame(page, kNext);
    for (unsigned i = 1; i < n; ++i) {
      smp::wait_done(i);
      const Reader& rd = readers[i];
      if (rd.error != nullptr) {
        t.fail(rd.error);
        continue;
      }
      // A read of the new contents would leave through the gate with rax = kNext.
      KEXPECT(rd.r.exit == RunExit::PageFault);
      KEXPECT_EQ(rd.r.cr2, kShared);
      KEXPECT_EQ(rd.r.error_code & kErrP, 0);
      KEXPECT(rd.r.regs.rax != kNext);
      KEXPECT(smp::shootdowns_answered(i) > answered0[i]);
      log::str("smp shootdown: cpu ");
      log::dec(i);
      log::str(" read the shared page ");
      log::dec(counter_of(rd));
      log::str(" times, then faulted at 0x");
      log::hex(rd.r.cr2);
      log::str(" (");
      log::dec(smp::shootdowns_answered(i) - answered0[i]);
      log::str(" shootdown answered)\n");
    }
  } else {
    t.fail("no frame for a reader's counter");
  }
  for (unsigned i = 1; i < n; ++i)
    if (readers[i].counter != nullptr) frames().unref(readers[i].counter);
  donor->teardown();
  frames().unref(page);
}

// ---------------------------------------------------------------------------------------------
// Every CPU shoots down at once (rule 7.2: nobody waits with interrupts off, so every CPU
// answers the others while it waits for its own answers; waiting with interrupts off would
// hang here). Each CPU loads a table of its own (kernel half only), so every other CPU is a
// target of every request; the barriers wait with interrupts on too.

constexpr unsigned kStormRequests = 300;

struct Storm {
  unsigned cpus;
  std::atomic<unsigned> loaded;
  std::atomic<unsigned> issued;
  std::atomic<unsigned> left;
  bool ok[kMaxKernelCpus];
};

void barrier_irq_on(std::atomic<unsigned>& count, unsigned want) {
  count.fetch_add(1, std::memory_order_acq_rel);
  const bool on = arch::irq_save();
  arch::sti();
  while (count.load(std::memory_order_acquire) < want) arch::pause();
  arch::irq_restore(on);
  if (!on) arch::cli();
}

void storm_work(void* arg) {
  auto* s = static_cast<Storm*>(arg);
  const unsigned me = env::cpu_id();
  auto table = pt::PageTable::create();
  if (!table.ok()) {
    s->loaded.fetch_add(1);
    s->issued.fetch_add(1);
    s->left.fetch_add(1);
    return;
  }
  link_kernel_half(table.value());
  smp::load_cr3(table->root().value());
  barrier_irq_on(s->loaded, s->cpus);
  for (unsigned k = 0; k < kStormRequests; ++k) {
    // Mostly single pages; every 16th a range large enough for a full flush on each CPU.
    const std::uint64_t pages = k % 16 == 15 ? 64 : 1;
    env::tlb_shootdown(PhysAddr{}, VirtAddr{kShared + std::uint64_t{k} * PAGE_SIZE}, pages);
  }
  barrier_irq_on(s->issued, s->cpus);  // nobody leaves its table while others may target it
  smp::load_cr3(boot_cr3());
  // teardown() shoots its kernel-half range down on every CPU that may hold this root, and a
  // CPU caught between CR3 loads counts as one that may (shootdown() is conservative). Wait
  // until every CPU is back on the boot table, so that none is asked: the count below stays
  // exactly the storm's requests.
  barrier_irq_on(s->left, s->cpus);
  table->teardown();
  s->ok[me] = true;
}

KTEST(smp_every_cpu_shooting_down_at_once_completes) {
  const unsigned n = smp::online_count();
  Storm s{.cpus = n, .loaded = {0}, .issued = {0}, .left = {0}, .ok = {}};
  std::uint64_t answered0[kMaxKernelCpus];
  void* args[kMaxKernelCpus];
  for (unsigned i = 0; i < n; ++i) {
    answered0[i] = smp::shootdowns_answered(i);
    args[i] = &s;
  }
  smp::run_on_all(n, storm_work, args);
  for (unsigned i = 0; i < n; ++i) {
    KEXPECT(s.ok[i]);
    // Every request of every other CPU reached this one, and only those.
    KEXPECT_EQ(smp::shootdowns_answered(i) - answered0[i], std::uint64_t{kStormRequests} * (n - 1));
  }
  log::str("smp storm: ");
  log::dec(n);
  log::str(" CPUs shot down ");
  log::dec(kStormRequests);
  log::str(" ranges each at once; every CPU answered ");
  log::dec(std::uint64_t{kStormRequests} * (n - 1));
  log::nl();
}

// ---------------------------------------------------------------------------------------------
// A run that migrates between CPUs.

struct MigrantStep {
  pt::PageTable* table;
  RunResult r;
};

void migrant_work(void* arg) {
  auto* s = static_cast<MigrantStep*>(arg);
  s->r = run_user(
      RunSpec{.cr3 = s->table->root(), .regs = {.rdi = kShared, .rip = fault::JIT_BASE, .rsp = fault::JIT_BASE}});
}

KTEST(smp_run_migrating_between_cpus_never_sees_an_old_translation) {
  const unsigned n = smp::online_count();
  // CPU 1, then CPU 2, then CPU 1 again (which cached the first translation before it left).
  const unsigned seq[3] = {1 % n, n > 2 ? 2u : 0u, 1 % n};
  if (n < 3) log::str("smp: fewer than 3 CPUs online: the migrating run visits the ones there are\n");
  auto table = pt::PageTable::create();
  KASSERT(table.ok());
  link_kernel_half(table.value());
  KASSERT(map_ring3_program(table.value(), VirtAddr{fault::JIT_BASE}, ring3_prog_load, ring3_prog_load_end) ==
          Status::Ok);
  FrameDesc* f[3] = {};
  for (unsigned i = 0; i < 3; ++i) {
    f[i] = frames().alloc(FrameKind::Page, AllocFlags::Zero);
    KASSERT(f[i] != nullptr);
    fill_frame(f[i], 0x1111111111111111ull * (i + 1));
  }
  for (unsigned step = 0; step < 3; ++step) {
    if (step > 0) {
      // Off-CPU change of the run's own table (as the core makes it), then the shootdown
      // the core issues for it; then the old frame gets other contents.
      std::uint64_t answered0[kMaxKernelCpus];
      for (unsigned i = 0; i < n; ++i) answered0[i] = smp::shootdowns_answered(i);
      KEXPECT(table->map_leaf(VirtAddr{kShared}, f[step]->phys(), {.user = true}).ok());
      env::tlb_shootdown(table->root(), VirtAddr{kShared}, 1);
      fill_frame(f[step - 1], 0xdeaddeaddeaddeadull);
      // No CPU has this table loaded: nobody was interrupted (each switch away reloaded CR3).
      for (unsigned i = 0; i < n; ++i) KEXPECT_EQ(smp::shootdowns_answered(i), answered0[i]);
    } else {
      KEXPECT(table->map_leaf(VirtAddr{kShared}, f[0]->phys(), {.user = true}).ok());
    }
    MigrantStep s{.table = &table.value(), .r = {}};
    smp::run_on(seq[step], migrant_work, &s);
    smp::wait_done(seq[step]);
    KEXPECT(s.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(s.r.regs.rax, 0x1111111111111111ull * (step + 1));
    log::str("smp migrate: step ");
    log::dec(step);
    log::str(" on cpu ");
    log::dec(seq[step]);
    log::str(" read 0x");
    log::hex(s.r.regs.rax);
    log::nl();
  }
  table->teardown();
  for (auto* d : f) frames().unref(d);
}

// ---------------------------------------------------------------------------------------------
// Rule 3.8 across CPUs: a paused run checkpointed from another CPU while its table is still
// loaded on its own. The flush write-protects the run's private copy through pt protect(),
// whose shootdown (rule 7.2) must reach the run's CPU while the table is loaded there (the
// answered count; with a local-only invalidation it stays 0: checked by hand); the run's
// next store there faults and lands in the cap. (Re-entering reloads CR3, which without
// PCID flushes that CPU's TLB too; with PCID or any access through the loaded table before
// re-entry, the shootdown is the only thing that drops the writable translation.)

struct CheckpointRun {
  fault::Run* run;
  pt::PageTable* table;
  DataCap* mem;
  std::uint64_t addr, value;
  RunResult r;
  Status flushed;
};

// On the run's CPU: its table stays loaded after the entry (run_user restores the CR3 it
// found, which is the run's own), so the translations it used stay cached here.
void checkpoint_store_work(void* arg) {
  auto* c = static_cast<CheckpointRun*>(arg);
  smp::load_cr3(c->table->root().value());
  UserRegs regs{};
  regs.rip = fault::JIT_BASE;
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;
  regs.rdi = c->addr;
  regs.rsi = c->value;
  c->r = enter_guest(*c->run, regs);
}

void checkpoint_flush_work(void* arg) {
  auto* c = static_cast<CheckpointRun*>(arg);
  c->flushed = c->mem->flush().status();
}

void leave_table_work(void*) { smp::load_cr3(boot_cr3()); }

void on_cpu(unsigned cpu, CpuWork fn, void* arg) {
  if (cpu == env::cpu_id()) {
    fn(arg);
    return;
  }
  smp::run_on(cpu, fn, arg);
  smp::wait_done(cpu);
}

std::uint64_t cap_u64(const DataCap& c, std::uint64_t off) {
  std::uint64_t v = ~std::uint64_t{0};
  if (!c.read(off, reinterpret_cast<std::uint8_t*>(&v), 8).ok()) return ~std::uint64_t{0};
  return v;
}

KTEST(smp_checkpoint_from_another_cpu_while_the_table_is_loaded) {
  const unsigned n = smp::online_count();
  const unsigned run_cpu = 1 % n, ckpt_cpu = n > 2 ? 2u : 0u;
  if (n == 1) log::str("smp: one CPU online: the checkpoint runs on the run's own CPU\n");
  auto code = DataCap::create(PAGE_SIZE);
  auto mem = DataCap::create(16 * PAGE_SIZE);
  auto table = guest_table(ring3_prog_store, ring3_prog_store_end);
  KASSERT(code.ok() && mem.ok() && table.ok());
  const std::uint64_t a = fault::DATA_BASE + 3 * PAGE_SIZE + 40;
  const std::uint64_t answered0 = smp::shootdowns_answered(run_cpu);
  {
    fault::Run run(fault::RunConfig{
        .table = &table.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    CheckpointRun c{.run = &run,
                    .table = &table.value(),
                    .mem = &mem.value(),
                    .addr = a,
                    .value = 0x5151515151515151ull,
                    .r = {},
                    .flushed = Status::Ok};
    on_cpu(run_cpu, checkpoint_store_work, &c);  // store (CoW: a writable private copy)
    KEXPECT(c.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(c.r.faults_resumed, 1);
    on_cpu(ckpt_cpu, checkpoint_flush_work, &c);  // checkpoint from another CPU
    KEXPECT(c.flushed == Status::Ok);
    KEXPECT_EQ(cap_u64(mem.value(), a - fault::DATA_BASE), 0x5151515151515151ull);
    if (run_cpu != ckpt_cpu) KEXPECT(smp::shootdowns_answered(run_cpu) > answered0);
    c.value = 0x6262626262626262ull;
    on_cpu(run_cpu, checkpoint_store_work, &c);  // store again: faults on the narrowed leaf
    KEXPECT(c.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(c.r.faults_resumed, 1);
    KEXPECT(mem->flush().ok());
    KEXPECT_EQ(cap_u64(mem.value(), a - fault::DATA_BASE), 0x6262626262626262ull);
    KEXPECT_EQ(run.counters().cow, 1);
    KEXPECT_EQ(run.counters().recopies, 1);
    on_cpu(run_cpu, leave_table_work, nullptr);
    log::str("smp checkpoint: run on cpu ");
    log::dec(run_cpu);
    log::str(", flushed from cpu ");
    log::dec(ckpt_cpu);
    log::str(" (");
    log::dec(smp::shootdowns_answered(run_cpu) - answered0);
    log::str(" shootdown answered), second store read back 0x");
    log::hex(cap_u64(mem.value(), a - fault::DATA_BASE));
    log::nl();
  }
  table->teardown();
}

}  // namespace
