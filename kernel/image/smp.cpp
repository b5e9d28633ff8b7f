// Many CPUs: AP start-up, work hand-off, IPIs, shootdown and the panic stop (see smp.h and
// docs/smp.md).
#include "smp.h"

#include <atomic>

#include "acpi.h"
#include "apic.h"
#include "arch.h"
#include "capmem/env.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "kernel.h"
#include "trap.h"

// NOLINTBEGIN(bugprone-dynamic-static-initializers): clang-tidy 14 false positive on
// extern declarations (labels in ap_trampoline.S).
extern "C" const char ap_trampoline[], ap_trampoline_end[];
// NOLINTEND(bugprone-dynamic-static-initializers)
extern "C" [[noreturn]] void ap_main(capmem::kernel::PerCpu* c);

namespace capmem::kernel {

constinit PerCpu g_cpus[kMaxKernelCpus];  // no dynamic initializer: cpu_init runs before .init_array

namespace smp {
namespace {

// The trampoline page (ap_trampoline.S: AP_TRAMPOLINE_PA, AP_PARAMS_OFF). Below 1 MiB, so
// never in the frame allocator's ranges (memory_init drops everything below 1 MiB).
constexpr std::uint64_t kTrampolinePa = 0x8000;
constexpr std::uint64_t kParamsOff = 0xf00;
struct ApParams {
  std::uint32_t cr3;
  std::uint32_t nx;
  std::uint64_t entry;
  std::uint64_t stack;
  std::uint64_t percpu;
};
static_assert(offsetof(ApParams, entry) == 8 && offsetof(ApParams, stack) == 16 && offsetof(ApParams, percpu) == 24,
              "ap_trampoline.S reads these offsets");

// The APs' first page table: the kernel half plus an identity slot 0 (for the instruction
// after CR0.PG), in the image (so below 4 GiB: the 32-bit trampoline loads it into CR3).
alignas(4096) std::uint64_t g_ap_pml4[512];

std::atomic<unsigned> g_online{1};
std::atomic<bool> g_start_closed{false};  // set when AP start-up gave up: late APs halt

// Shootdown requests, one per initiating CPU. Invariant: g_req[i] is written only by CPU i
// while its `pending` is 0; bit j of `pending` is cleared by CPU j after invalidating.
struct Request {
  std::uint64_t va;
  std::uint64_t pages;
  std::atomic<std::uint64_t> pending;
};
Request g_req[kMaxKernelCpus];
std::atomic<std::uint64_t> g_answered[kMaxKernelCpus];
std::atomic<std::uint64_t> g_stray_irqs{0};

constexpr std::uint64_t kCr3Switching = ~std::uint64_t{0};  // cr3_loaded during a switch
constexpr std::uint64_t kFlushAllPages = 32;                // more pages than this: reload CR3 instead

std::atomic<int> g_panic_cpu{-1};
std::atomic<std::uint64_t> g_stopped_mask{0};

unsigned popcount(std::uint64_t m) {  // no libgcc: __builtin_popcountll may call __popcountdi2
  unsigned n = 0;
  for (; m != 0; m &= m - 1) ++n;
  return n;
}

void invalidate_local(std::uint64_t va, std::uint64_t pages) {
  if (pages > kFlushAllPages) {
    arch::write_cr3(arch::read_cr3());  // every non-global entry (SDM Vol. 3A 4.10.4.1)
    return;
  }
  for (std::uint64_t i = 0; i < pages; ++i) arch::invlpg(va + i * PAGE_SIZE);
}

void answer_shootdowns() {
  const unsigned me = percpu_id();
  std::uint64_t bits = percpu()->shootdown_inbox.exchange(0, std::memory_order_acq_rel);
  while (bits != 0) {
    const unsigned i = static_cast<unsigned>(__builtin_ctzll(bits));
    bits &= bits - 1;
    Request& r = g_req[i];
    invalidate_local(r.va, r.pages);
    g_answered[me].fetch_add(1, std::memory_order_relaxed);
    r.pending.fetch_and(~(std::uint64_t{1} << me), std::memory_order_acq_rel);
  }
}

// Waits with interrupts enabled until `done()` holds; `hlt` between checks (every wake-up
// and shootdown IPI ends it). `sti; hlt` is atomic against interrupts (the sti shadow,
// SDM Vol. 2B STI), so a wake-up between the check and the hlt is not lost.
template <typename F>
void wait_hlt(F done) {
  const bool on = (arch::read_rflags() & arch::RFLAGS_IF) != 0;
  for (;;) {
    arch::cli();
    if (done()) break;
    asm volatile("sti; hlt" : : : "memory");
  }
  arch::irq_restore(on);
}

[[noreturn]] void idle_loop(PerCpu* c) {
  for (;;) {
    arch::cli();
    const CpuWork w = c->work.load(std::memory_order_acquire);
    if (w != nullptr) {
      w(c->work_arg);
      // Going idle: this CPU's cached slab objects go to their slabs and its cached frames
      // to its depot list, where every CPU reaches them (rule 7.4: an idle CPU strands
      // nothing; docs/smp.md "Frame allocator", "Slabs"). Slabs first: a slab frame they
      // give back lands in this CPU's frame cache, which the frame drain then empties.
      drain_slab_caches(env::cpu_id());
      frames().drain_local();
      const unsigned waiter = c->work_waiter.load(std::memory_order_relaxed);
      c->work.store(nullptr, std::memory_order_relaxed);
      c->work_done.store(true, std::memory_order_release);
      apic::send_ipi(g_cpus[waiter].apic_id, kVectorWake);
      continue;
    }
    asm volatile("sti; hlt" : : : "memory");
  }
}

bool start_ap(unsigned id, std::uint32_t apic_id) {
  PerCpu& c = g_cpus[id];
  c.id = id;
  c.apic_id = apic_id;
  c.self = &c;
  c.cr3_loaded.store(boot_cr3(), std::memory_order_relaxed);
  auto* p = static_cast<ApParams*>(env::phys_to_virt(PhysAddr{kTrampolinePa + kParamsOff}));
  p->cr3 = static_cast<std::uint32_t>(reinterpret_cast<std::uint64_t>(g_ap_pml4) - kKernelVma);
  p->nx = cpu_features().nx ? 1 : 0;
  p->entry = reinterpret_cast<std::uint64_t>(&ap_main);
  p->stack = kernel_stack_top(id) - 8;  // as if called: the SysV ABI's RSP % 16 == 8 at entry
  p->percpu = reinterpret_cast<std::uint64_t>(&c);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // INIT, 10 ms, Start-up, 200 us, a second Start-up if it is not up yet (SDM Vol. 3A
  // 9.4.4.1 "Typical BSP Initialization Sequence").
  apic::send_init(apic_id);
  apic::delay_us(10'000);
  const auto page = static_cast<std::uint8_t>(kTrampolinePa >> 12);
  apic::send_startup(apic_id, page);
  apic::delay_us(200);
  if (!c.online.load(std::memory_order_acquire)) apic::send_startup(apic_id, page);
  // Generous: under TCG on a loaded host a vCPU thread may wait long for a host CPU.
  const std::uint64_t deadline = arch::rdtsc() + 10'000'000 * apic::tsc_per_us();
  while (!c.online.load(std::memory_order_acquire) && arch::rdtsc() < deadline) arch::pause();
  return c.online.load(std::memory_order_acquire);
}

}  // namespace

void init() {
  PerCpu& bsp = g_cpus[0];
  bsp.cr3_loaded.store(boot_cr3(), std::memory_order_relaxed);
  bsp.online.store(true, std::memory_order_release);
  if (!apic::init_bsp()) {
    log::str("smp: no local APIC: running on the boot CPU alone\n");
    return;
  }
  bsp.apic_id = apic::id();
  if (cmdline_is("smp", "off")) {
    log::str("smp: smp=off on the command line: running on the boot CPU alone\n");
    return;
  }
  acpi::CpuList cpus;
  const bool acpi_off = cmdline_is("acpi", "off");
  const acpi::Source src = acpi::find_cpus(cpus, !acpi_off && !cmdline_is("acpi", "scan"), !acpi_off);
  if (src == acpi::Source::None) {
    log::str(
        "smp: no valid ACPI MADT (no RSDP from the boot protocol, none in the BIOS area): "
        "running on the boot CPU alone\n");
    return;
  }
  log::str("smp: MADT through ");
  log::str(acpi::source_name(src));
  log::str(": ");
  log::dec(cpus.count);
  log::str(" CPUs");
  if (cpus.skipped_disabled != 0) {
    log::str(" (+");
    log::dec(cpus.skipped_disabled);
    log::str(" disabled)");
  }
  log::str(apic::x2apic() ? ", x2APIC\n" : ", xAPIC\n");
  if (!firmware_ram(kTrampolinePa, kTrampolinePa + PAGE_SIZE)) {
    log::str("smp: the trampoline page 0x8000 is not RAM: running on the boot CPU alone\n");
    return;
  }
  auto* dst = static_cast<char*>(env::phys_to_virt(PhysAddr{kTrampolinePa}));
  for (const char* s = ap_trampoline; s != ap_trampoline_end; ++s) *dst++ = *s;
  g_ap_pml4[0] = (reinterpret_cast<std::uint64_t>(boot_pdpt_dm) - kKernelVma) | 0x3;  // P | R/W
  for (unsigned i = kKernelHalfFirstSlot; i < 512; ++i) g_ap_pml4[i] = boot_pml4[i];

  unsigned next = 1;
  const std::uint64_t t0 = arch::rdtsc();
  for (unsigned i = 0; i < cpus.count; ++i) {
    const std::uint32_t a = cpus.apic_id[i];
    if (a == bsp.apic_id) continue;
    if (next == kMaxKernelCpus) {
      log::str("smp: more than ");
      log::dec(kMaxKernelCpus);
      log::str(" CPUs: the others stay stopped\n");
      break;
    }
    if (!start_ap(next, a)) {
      log::str("smp: CPU with APIC id ");
      log::dec(a);
      log::str(" did not start: the others stay stopped\n");
      g_start_closed.store(true, std::memory_order_seq_cst);
      break;
    }
    ++next;
  }
  log::str("smp: application processors started in ");
  log::dec((arch::rdtsc() - t0) / apic::tsc_per_us() / 1000);
  log::str(" ms\n");
  for (unsigned i = 0; i < online_count(); ++i) {
    log::str("smp: cpu ");
    log::dec(i);
    log::str(" online, apic id ");
    log::dec(g_cpus[i].apic_id);
    log::nl();
  }
  log::str("smp: ");
  log::dec(online_count());
  log::str(" CPUs online\n");
}

unsigned online_count() { return g_online.load(std::memory_order_acquire); }

void run_on(unsigned cpu, CpuWork fn, void* arg) {
  PerCpu& c = g_cpus[cpu];
  if (cpu == percpu_id()) {
    fn(arg);
    c.work_done.store(true, std::memory_order_release);
    return;
  }
  CAPMEM_ASSERT(cpu < online_count() && c.work.load(std::memory_order_acquire) == nullptr);
  c.work_arg = arg;
  c.work_waiter.store(percpu_id(), std::memory_order_relaxed);
  c.work_done.store(false, std::memory_order_relaxed);
  c.work.store(fn, std::memory_order_release);
  apic::send_ipi(c.apic_id, kVectorWake);
}

void wait_done(unsigned cpu) {
  wait_hlt([cpu] { return g_cpus[cpu].work_done.load(std::memory_order_acquire); });
}

void run_on_all(unsigned n, CpuWork fn, void* const* args) {
  const unsigned me = percpu_id();
  for (unsigned i = 0; i < n; ++i)
    if (i != me) run_on(i, fn, args[i]);
  fn(args[me]);
  for (unsigned i = 0; i < n; ++i)
    if (i != me) wait_done(i);
}

void load_cr3(std::uint64_t cr3) {
  PerCpu* c = percpu();
  c->cr3_loaded.store(kCr3Switching, std::memory_order_seq_cst);
  arch::write_cr3(cr3);
  c->cr3_loaded.store(cr3, std::memory_order_seq_cst);
}

void shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages) {
  // Rule 7.2: the wait below turns interrupts on, which a capmem lock (irq_save) forbids;
  // and a CPU spinning on that lock may be the one we wait for.
  if (percpu()->capmem_locks != 0) env::panic("TLB shootdown with a capmem lock held (rule 7.2)");
  const unsigned me = percpu_id();
  // Locally: only if this CPU may hold it. Without PCID, a CPU on another table holds
  // nothing of `root` (its CR3 load dropped it), so PageTable::clear() after switching away
  // costs no flush here.
  if (root.value() == 0 || (arch::read_cr3() & ~std::uint64_t{0xfff}) == root.value())
    invalidate_local(va.value(), pages);
  const unsigned n = online_count();
  if (n == 1) return;
  Request& r = g_req[me];
  r.va = va.value();
  r.pages = pages;
  // The caller's page-table stores before the reads of cr3_loaded below; a CPU publishes its
  // CR3 before loading it (load_cr3). So either we see its new CR3 and ask it, or it walks
  // the tables after our stores and never caches the old translation.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint64_t boot = boot_cr3();
  std::uint64_t mask = 0;
  for (unsigned i = 0; i < n; ++i) {
    if (i == me) continue;
    const std::uint64_t cr3 = g_cpus[i].cr3_loaded.load(std::memory_order_seq_cst);
    if (cr3 == boot) continue;                                                       // no guest table loaded
    if (root.value() != 0 && cr3 != kCr3Switching && cr3 != root.value()) continue;  // another table
    mask |= std::uint64_t{1} << i;
  }
  if (mask == 0) return;
  r.pending.store(mask, std::memory_order_seq_cst);
  for (std::uint64_t m = mask; m != 0; m &= m - 1) {
    const unsigned i = static_cast<unsigned>(__builtin_ctzll(m));
    g_cpus[i].shootdown_inbox.fetch_or(std::uint64_t{1} << me, std::memory_order_acq_rel);
    apic::send_ipi(g_cpus[i].apic_id, kVectorShootdown);
  }
  // Rule 7.2: wait with interrupts enabled (another CPU's request to us is answered meanwhile).
  const bool on = (arch::read_rflags() & arch::RFLAGS_IF) != 0;
  arch::sti();
  while (r.pending.load(std::memory_order_acquire) != 0) arch::pause();
  if (!on) arch::cli();
}

std::uint64_t shootdowns_answered(unsigned cpu) { return g_answered[cpu].load(std::memory_order_relaxed); }

void on_interrupt(unsigned vector) {
  if (vector == kVectorSpurious) return;  // no EOI for the spurious vector (SDM Vol. 3A 11.9)
  if (vector >= kVectorPicBase && vector < kVectorPicBase + 16) {
    g_stray_irqs.fetch_add(1, std::memory_order_relaxed);  // masked 8259: spurious, no EOI
    return;
  }
  if (vector == kVectorShootdown) answer_shootdowns();
  apic::eoi();  // kVectorWake: waking the hlt was all it had to do
}

bool begin_panic() {
  arch::cli();
  const int me = static_cast<int>(percpu_id());
  int expected = -1;
  if (g_panic_cpu.compare_exchange_strong(expected, me, std::memory_order_acq_rel)) return true;
  if (expected == me) return true;
  // Another CPU reports: this one stops, confirms and never returns.
  g_stopped_mask.fetch_or(std::uint64_t{1} << me, std::memory_order_acq_rel);
  arch::halt_forever();
}

unsigned stop_others() {
  const unsigned n = online_count();
  if (n <= 1) return 0;
  apic::send_nmi_all_but_self();
  const std::uint64_t want = n - 1;
  // Bounded (a CPU that cannot be stopped must not stop the report); generous, because a
  // TCG vCPU thread on a loaded host may wait seconds for a host CPU.
  const std::uint64_t deadline = arch::rdtsc() + 10'000'000 * apic::tsc_per_us();
  while (popcount(g_stopped_mask.load(std::memory_order_acquire)) < want && arch::rdtsc() < deadline) arch::pause();
  return popcount(g_stopped_mask.load(std::memory_order_acquire));
}

bool on_nmi() {
  const int owner = g_panic_cpu.load(std::memory_order_acquire);
  if (owner < 0 || owner == static_cast<int>(percpu_id())) return false;
  g_stopped_mask.fetch_or(std::uint64_t{1} << percpu_id(), std::memory_order_acq_rel);
  arch::halt_forever();  // NMIs stay blocked: no iret from this handler
}

bool panicking() { return g_panic_cpu.load(std::memory_order_acquire) >= 0; }

bool panic_owner_here() { return g_panic_cpu.load(std::memory_order_acquire) == static_cast<int>(percpu_id()); }

}  // namespace smp
}  // namespace capmem::kernel

// First C++ code of an application processor (ap_trampoline.S jumps here on its own stack,
// with the identity-mapping CR3 of g_ap_pml4 and no GDT/IDT/GS of its own yet).
extern "C" [[noreturn]] void ap_main(capmem::kernel::PerCpu* c) {
  using namespace capmem;
  using namespace capmem::kernel;
  arch::write_cr3(boot_cr3());  // slot 0 is the guests' again
  const bool same = cpu_init_ap(*c);
  if (!same) {
    log::str("smp: cpu ");
    log::dec(c->id);
    log::str(": CPUID/XCR0 differ from the boot CPU's: left stopped\n");
    console_flush();
    arch::halt_forever();
  }
  if (smp::g_start_closed.load(std::memory_order_acquire)) arch::halt_forever();
  apic::init_ap();
  c->apic_id = apic::id();
  c->online_ticks = arch::rdtsc();
  smp::g_online.fetch_add(1, std::memory_order_acq_rel);
  c->online.store(true, std::memory_order_release);
  smp::idle_loop(c);
}
