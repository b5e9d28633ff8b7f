// The demo scenario and the fault handler's outcomes at real ring 3: every page-in and
// copy-on-write below is a hardware #PF that the IDT's vector 14 hands to
// fault::Run::handle_page_fault (guest_run.h routes it).
#include <cstddef>
#include <cstdint>
#include <span>

#include "capmem/env.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/pack.h"
#include "capmem/page.h"
#include "capmem/slot.h"
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

struct Ring3Result {
  bool ran = false;
  RunResult r;
  fault::Counters counters;
  std::uint64_t gas_used = 0;
};

// One guest run of the demo program over `image`, with `gas` (guest_run.h); the page table
// is torn down.
Ring3Result run_demo_ring3(ktest::Ctx& t, demo::Image& image, std::uint64_t gas, const char* prog = ring3_demo_prog,
                           const char* prog_end = ring3_demo_prog_end, std::uint64_t rdi = 0, std::uint64_t rsi = 0,
                           std::uint64_t rcx = 0, std::uint64_t rdx = 0) {
  Ring3Result out;
  UserRegs regs{};
  regs.rip = fault::JIT_BASE;
  regs.rdi = rdi;
  regs.rsi = rsi;
  regs.rcx = rcx;
  regs.rdx = rdx;
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;  // unused by the program; never touched
  auto g = run_guest(GuestSpec{.code = &image.code,
                               .mem = &image.mem,
                               .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                               .gas = gas,
                               .program = prog,
                               .program_end = prog_end},
                     regs);
  if (!g.ok()) {
    t.fail("setting up the guest run (page table, ring-3 program)");
    return out;
  }
  out.r = g->result;
  out.counters = g->counters;
  out.gas_used = g->gas_used;
  out.ran = true;
  return out;
}

// guest_run.h: a set-up that runs out of frames (the PML4, the program's frame, the tables
// of its mapping) returns OutOfFrames with nothing left allocated and no run current; once
// the set-up gets through, the guest runs.
KTEST(guest_run_setup_out_of_frames_leaves_nothing_allocated) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  UserRegs regs{};
  regs.rip = fault::JIT_BASE;
  regs.rdi = 0;  // the load program reads the null guard: a guest fault, nothing allocated
  const GuestSpec spec{.code = &image->code,
                       .mem = &image->mem,
                       .pinned = {},
                       .gas = demo::kDefaultGas,
                       .program = ring3_prog_load,
                       .program_end = ring3_prog_load_end};
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const auto free0 = frames().stats().free;
  unsigned failed_setups = 0;
  for (std::uint64_t n = 1; n <= 16; ++n) {
    frames().inject_failure_at(n);
    auto g = run_guest(spec, regs);
    frames().inject_failure_at(0);
    KEXPECT(active_user_run() == nullptr);  // no run left in progress on this CPU
    drain_slab_caches(env::cpu_id());       // cached slab objects hold their frames
    KEXPECT_EQ(frames().stats().free, free0);
    if (g.ok()) {
      KEXPECT(g->result.exit == RunExit::PageFault);
      KEXPECT_EQ(g->result.code, static_cast<std::uint64_t>(fault::Outcome::GuestFault));
      KEXPECT_EQ(g->result.cr2, std::uint64_t{0});
      break;
    }
    KEXPECT(g.status() == Status::OutOfFrames);
    ++failed_setups;
  }
  KEXPECT(failed_setups >= 2);  // the PML4 and the program's frame at least
  KEXPECT(failed_setups < 16);  // and the set-up got through in the end
}

KTEST(demo_ring3_same_line_as_interpreter) {
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const auto free0 = frames().stats().free;
  {
    auto image = demo::build();
    KEXPECT(image.ok());
    if (!image.ok()) return;
    auto res = run_demo_ring3(t, image.value(), demo::kDefaultGas);
    if (!res.ran) return;
    KEXPECT(res.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(res.r.regs.r9, std::uint64_t{demo::kOps - 1});
    KEXPECT(image->mem.flush().ok());
    auto root = image->mem.root();
    KEXPECT(root.ok());
    if (!root.ok()) return;
    // A readable account (the one `capmem demo` gives per engine), then the closing line.
    log::str("kernel demo: code cap at 0x400000 (op table), mem cap at 0x10000000, ");
    log::dec(demo::kMemPages);
    log::str(" pages, pinned pages ");
    log::dec(demo::kPinned.first_page);
    log::str("..");
    log::dec(demo::kPinned.first_page + demo::kPinned.pages - 1);
    log::str("\nkernel demo: ring-3 program ran ");
    log::dec(res.r.regs.r9);
    log::str(" ops; real #PFs handled: ");
    log::dec(res.counters.page_in);
    log::str(" CoW page-ins, ");
    log::dec(res.counters.clusters);
    log::str(" read-only clusters (");
    log::dec(res.counters.cluster_pages);
    log::str(" pages), ");
    log::dec(res.counters.cow);
    log::str(" copies, ");
    log::dec(res.counters.spurious);
    log::str(" spurious; resumed ");
    log::dec(res.r.faults_resumed);
    log::str(" faults\n");
    // The same line the hosted engines print (tests/qemu checks it against `capmem demo`).
    char line[160];
    demo::format_line(line, sizeof line, root.value(), res.gas_used, res.counters);
    log::str("kernel demo: ");
    log::str(line);
    log::nl();

    // And against the interpreter engine run in this same kernel.
    auto image2 = demo::build();
    KEXPECT(image2.ok());
    if (!image2.ok()) return;
    auto table = pt::PageTable::create();
    KEXPECT(table.ok());
    if (!table.ok()) return;
    fault::Run run(fault::RunConfig{.table = &table.value(),
                                    .code = &image2->code,
                                    .mem = &image2->mem,
                                    .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                    .gas = demo::kDefaultGas});
    const demo::Engine e{
        .ctx = &run,
        .load = [](void* c, std::uint32_t a,
                   unsigned w) { return fault::interp_load(*static_cast<fault::Run*>(c), a, w); },
        .store = [](void* c, std::uint32_t a, unsigned w,
                    std::uint64_t v) { return fault::interp_store(*static_cast<fault::Run*>(c), a, w, v); },
    };
    const demo::Progress p = demo::run_ops(e);
    table->teardown();
    KEXPECT(p.stop == fault::Outcome::Retry);
    KEXPECT_EQ(p.checksum, res.r.regs.r8);
    KEXPECT_EQ(run.gas_used(), res.gas_used);
    KEXPECT_EQ(run.counters().cow, res.counters.cow);
    KEXPECT(image2->mem.flush().ok());
    KEXPECT(image2->mem.root().ok() && image2->mem.root().value() == root.value());
  }
  drain_slab_caches(env::cpu_id());          // cached slab objects hold their frames
  KEXPECT_EQ(frames().stats().free, free0);  // teardown and dropping the caps return every frame
}

KTEST(demo_ring3_out_of_gas_mid_run) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  auto res = run_demo_ring3(t, image.value(), 1000);
  if (!res.ran) return;
  KEXPECT(res.r.exit == RunExit::PageFault);
  KEXPECT_EQ(res.r.code, static_cast<std::uint64_t>(fault::Outcome::OutOfGas));
  KEXPECT(res.gas_used <= 1000);
  KEXPECT(res.r.regs.r9 < demo::kOps - 1);
}

KTEST(demo_ring3_out_of_frames_leaves_overlay_untouched) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  // Let the run start, then make the allocator fail: the first CoW that needs a frame
  // ends the run with OutOfFrames, and the overlay holds only the earlier copies.
  frames().inject_failure_at(40);
  auto res = run_demo_ring3(t, image.value(), demo::kDefaultGas);
  frames().inject_failure_at(0);
  if (!res.ran) return;
  KEXPECT(res.r.exit == RunExit::PageFault);
  KEXPECT_EQ(res.r.code, static_cast<std::uint64_t>(fault::Outcome::OutOfFrames));
  KEXPECT_EQ(std::uint64_t{image->mem.overlay_count()}, res.counters.cow);
}
}  // namespace

namespace {
// One ring-3 access through the core handler; returns the run's result.
Ring3Result one_access(ktest::Ctx& t, demo::Image& image, bool store, std::uint64_t addr) {
  return store ? run_demo_ring3(t, image, demo::kDefaultGas, ring3_prog_store, ring3_prog_store_end, addr, 0x55)
               : run_demo_ring3(t, image, demo::kDefaultGas, ring3_prog_load, ring3_prog_load_end, addr, 0);
}

void expect_guest_fault(ktest::Ctx& t, const Ring3Result& res, std::uint64_t addr) {
  KEXPECT(res.ran);
  KEXPECT(res.r.exit == RunExit::PageFault);
  KEXPECT_EQ(res.r.code, static_cast<std::uint64_t>(fault::Outcome::GuestFault));
  KEXPECT_EQ(res.r.cr2, addr);
  KEXPECT_EQ(res.gas_used, std::uint64_t{0});
}

KTEST(fault_ring3_write_to_pinned_range_is_guest_fault) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  const std::uint64_t addr = fault::DATA_BASE + std::uint64_t{demo::kPinned.first_page} * PAGE_SIZE + 24;
  expect_guest_fault(t, one_access(t, image.value(), true, addr), addr);
  KEXPECT_EQ(std::uint64_t{image->mem.overlay_count()}, std::uint64_t{0});
}

KTEST(fault_ring3_null_guard_is_guest_fault) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  expect_guest_fault(t, one_access(t, image.value(), false, 0), 0);
  expect_guest_fault(t, one_access(t, image.value(), true, 0x1234), 0x1234);
}

KTEST(fault_ring3_missing_page_is_guest_fault) {
  auto image = demo::build();
  KEXPECT(image.ok());
  if (!image.ok()) return;
  auto missing = Slot::missing(hash::sha256("missing", 7));
  KEXPECT(missing.ok());
  if (!missing.ok()) return;
  KEXPECT(image->mem.write_slot(9, missing.release_value()).ok());
  const std::uint64_t addr = fault::DATA_BASE + 9 * PAGE_SIZE + 8;
  expect_guest_fault(t, one_access(t, image.value(), false, addr), addr);
}
}  // namespace

namespace {
KTEST(fault_ring3_run_writes_thousands_of_pages) {
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const auto free0 = frames().stats().free;
  {
    auto image = demo::build();
    KEXPECT(image.ok());
    if (!image.ok()) return;
    constexpr std::uint32_t kPages = 3000, kFirst = 1024;  // past the pinned range
    auto big = DataCap::create(std::uint64_t{kFirst + kPages} * PAGE_SIZE);
    KEXPECT(big.ok());
    if (!big.ok()) return;
    image->mem = big.release_value();
    auto res = run_demo_ring3(t, image.value(), demo::kDefaultGas, ring3_prog_fill, ring3_prog_fill_end,
                              fault::DATA_BASE + std::uint64_t{kFirst} * PAGE_SIZE, 0, kPages, 0x0123456789abcdefull);
    KEXPECT(res.ran);
    KEXPECT(res.r.exit == RunExit::ExitGate);
    KEXPECT_EQ(res.counters.cow, std::uint64_t{kPages});
    KEXPECT_EQ(res.gas_used, std::uint64_t{kPages} * fault::kGasCosts.cow);
    KEXPECT_EQ(std::uint64_t{image->mem.overlay_count()}, std::uint64_t{kPages});
    KEXPECT(image->mem.flush().ok());
    std::uint8_t b[8] = {};
    KEXPECT(image->mem.read(std::uint64_t{kFirst + kPages - 1} * PAGE_SIZE, b, 8).ok());
    KEXPECT_EQ(b[0], std::uint64_t{0xef});
  }
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  KEXPECT_EQ(frames().stats().free, free0);
}

// ---------------------------------------------------------------------------------------------
// The demo on every CPU at once: the account `./dev run` shows first (ktest::note).

// A line built piece by piece (ktest::note takes whole lines).
struct NoteLine {
  char b[192] = {};
  std::size_t n = 0;
  NoteLine& s(const char* p) {
    while (*p != '\0' && n + 1 < sizeof b) b[n++] = *p++;
    b[n] = '\0';
    return *this;
  }
  NoteLine& d(std::uint64_t v) {
    char tmp[24];
    std::size_t k = 0;
    do {
      tmp[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (k > 0 && n + 1 < sizeof b) b[n++] = tmp[--k];
    b[n] = '\0';
    return *this;
  }
};

// One CPU's demo: the ring-3 program over its own copy of the image's mem cap (the code cap
// is shared by every CPU), then that copy flushed and its root taken, all on this CPU.
struct DemoJob {
  const demo::Image* image = nullptr;
  DataCap mem;
  const char* error = nullptr;
  unsigned cpu = 0;
  RunResult r;
  fault::Counters counters;
  std::uint64_t gas = 0;
  Hash32 root{};
};

void demo_job(void* arg) {
  auto* j = static_cast<DemoJob*>(arg);
  j->cpu = env::cpu_id();
  UserRegs regs{};
  regs.rip = fault::JIT_BASE;
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;
  auto g = run_guest(GuestSpec{.code = &j->image->code,
                               .mem = &j->mem,
                               .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                               .gas = demo::kDefaultGas,
                               .program = ring3_demo_prog,
                               .program_end = ring3_demo_prog_end},
                     regs);
  if (!g.ok()) {
    j->error = "setting up the guest run (page table, ring-3 program)";
    return;
  }
  j->r = g->result;
  j->counters = g->counters;
  j->gas = g->gas_used;
  if (!j->mem.flush().ok()) {
    j->error = "flush of the CPU's mem cap";
    return;
  }
  auto root = j->mem.root();
  if (!root.ok()) {
    j->error = "root of the CPU's mem cap";
    return;
  }
  j->root = root.value();
}

// Every online CPU runs the demo at once, each over its own copy of one image's mem cap;
// each CPU's account (ops, faults by kind, gas, root) must equal the boot CPU's run of the
// same copy alone (demo_ring3_same_line_as_interpreter ties that run to the interpreter
// engine, tests/qemu demo-parity to `capmem demo`). With one CPU online it is that run twice.
KTEST(demo_ring3_on_every_cpu_at_once) {
  const unsigned n = smp::online_count();
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const auto free0 = frames().stats().free;
  {
    auto image = demo::build();
    KASSERT(image.ok());
    DemoJob ref;
    ref.image = &image.value();
    auto ref_mem = image->mem.copy();
    KASSERT(ref_mem.ok());
    ref.mem = ref_mem.release_value();
    demo_job(&ref);
    if (ref.error != nullptr) return t.fail(ref.error);
    KASSERT(ref.r.exit == RunExit::ExitGate);
    KASSERT_EQ(ref.r.regs.r9, std::uint64_t{demo::kOps - 1});

    DemoJob jobs[kMaxKernelCpus];
    void* args[kMaxKernelCpus] = {};
    for (unsigned i = 0; i < n; ++i) {
      jobs[i].image = &image.value();
      auto mem = image->mem.copy();
      KASSERT(mem.ok());
      jobs[i].mem = mem.release_value();
      args[i] = &jobs[i];
    }
    smp::run_on_all(n, demo_job, args);

    ktest::note(NoteLine{}
                    .s("demo: one guest on ")
                    .d(n)
                    .s(n == 1 ? " CPU" : " CPUs at once")
                    .s(", each over its own copy of a ")
                    .d(demo::kMemPages)
                    .s("-page mem cap (pinned pages ")
                    .d(demo::kPinned.first_page)
                    .s("..")
                    .d(demo::kPinned.first_page + demo::kPinned.pages - 1)
                    .s("), real ring-3 #PFs")
                    .b);
    for (unsigned i = 0; i < n; ++i) {
      const DemoJob& j = jobs[i];
      if (j.error != nullptr) {
        t.fail(j.error);
        continue;
      }
      KEXPECT_EQ(j.cpu, i);
      KEXPECT(j.r.exit == RunExit::ExitGate);
      KEXPECT_EQ(j.r.regs.r9, ref.r.regs.r9);
      KEXPECT_EQ(j.r.regs.r8, ref.r.regs.r8);  // the checksum of every value loaded
      KEXPECT(j.root == ref.root);
      KEXPECT_EQ(j.gas, ref.gas);
      KEXPECT_EQ(j.counters.page_in, ref.counters.page_in);
      KEXPECT_EQ(j.counters.clusters, ref.counters.clusters);
      KEXPECT_EQ(j.counters.cluster_pages, ref.counters.cluster_pages);
      KEXPECT_EQ(j.counters.cow, ref.counters.cow);
      KEXPECT_EQ(j.r.faults_resumed, ref.r.faults_resumed);
      ktest::note(NoteLine{}
                      .s("demo cpu ")
                      .d(i)
                      .s(": ")
                      .d(j.r.regs.r9)
                      .s(" ops; #PFs resumed ")
                      .d(j.r.faults_resumed)
                      .s(": ")
                      .d(j.counters.page_in)
                      .s(" CoW page-ins, ")
                      .d(j.counters.clusters)
                      .s(" read-only clusters (")
                      .d(j.counters.cluster_pages)
                      .s(" pages), ")
                      .d(j.counters.cow)
                      .s(" copies, ")
                      .d(j.counters.spurious)
                      .s(" spurious")
                      .b);
      char line[160];
      demo::format_line(line, sizeof line, j.root, j.gas, j.counters);
      ktest::note(NoteLine{}.s("demo cpu ").d(i).s(": ").s(line).b);
    }
  }
  drain_slab_caches(env::cpu_id());          // cached slab objects hold their frames
  KEXPECT_EQ(frames().stats().free, free0);  // every copy and table gone
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Missing pages resolved on demand at ring 3 (rule 8.2; guest_run.h RunExit::NeedPage): the
// demo over a thin mem cap (demo::make_thin, as `capmem demo --thin`), each NeedPage exit
// answered from the boot page store (kernel.h boot_pack(): `-initrd demo.pack`, GRUB
// `module2`) through guest_run's PackResolver, and the guest entered again at the access.
namespace {

// Without a boot page store: the demo host's own answer (demo::resolve_request from a store
// over an untouched copy of the full image), the same DataCap::resolve, so every boot runs
// the round trip.
struct DemoResolver {
  demo::Image* image;
  demo::PageStore store;
  static Result<void> resolve(void* ctx, const fault::PageRequest& req) {
    auto& self = *static_cast<DemoResolver*>(ctx);
    const Status s = demo::resolve_request(*self.image, req, self.store);
    if (s != Status::Ok) return s;
    return {};
  }
};

Result<GuestResult> run_demo_thin(demo::Image& image, PageResolver resolver) {
  UserRegs regs{};
  regs.rip = fault::JIT_BASE;
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;
  return run_guest(GuestSpec{.code = &image.code,
                             .mem = &image.mem,
                             .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                             .gas = demo::kDefaultGas,
                             .program = ring3_demo_prog,
                             .program_end = ring3_demo_prog_end,
                             .resolver = resolver},
                   regs);
}

KTEST(demo_ring3_thin_resolves_each_need_page) {
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  const auto free0 = frames().stats().free;
  {
    // One image (memory is tight in the lowmem lanes): the reference run, the byte source and
    // the thin cap share its pages through O(1) copies.
    auto image = demo::build();
    KASSERT(image.ok());
    auto spare_code = image->code.copy();
    auto spare_mem = image->mem.copy();
    auto ref_code = image->code.copy();
    auto ref_mem = image->mem.copy();
    KASSERT(spare_code.ok() && spare_mem.ok() && ref_code.ok() && ref_mem.ok());
    demo::Image spare{.code = spare_code.release_value(), .mem = spare_mem.release_value()};  // untouched
    // The reference: the same demo with every page present (demo_ring3_same_line_as_interpreter
    // ties it to the interpreter engine and `capmem demo`).
    demo::Image full{.code = ref_code.release_value(), .mem = ref_mem.release_value()};
    auto ref = run_demo_ring3(t, full, demo::kDefaultGas);
    KASSERT(ref.ran && ref.r.exit == RunExit::ExitGate);
    KASSERT(full.mem.flush().ok());
    auto ref_root = full.mem.root();
    KASSERT(ref_root.ok());

    KASSERT(demo::make_thin(image.value(), demo::ThinOptions{.mem = true}).ok());
    const std::uint32_t missing0 = image->mem.missing_count();
    KEXPECT(missing0 > 0u);

    const store::Pack* pack = boot_pack();
    PackResolver from_pack{.pack = pack, .code = &image->code, .mem = &image->mem};
    DemoResolver from_image{.image = &image.value(), .store = demo::image_store(spare)};
    log::str("kernel demo thin: ");
    log::dec(missing0);
    log::str(" of ");
    log::dec(demo::kMemPages);
    log::str(" mem pages Missing; page store: ");
    if (pack != nullptr) {
      log::str("boot module ");
      log::dec(static_cast<std::uint64_t>(boot_pack_module()));
      log::str(" (");
      log::dec(pack->count());
      log::str(" pages)\n");
    } else {
      log::str("none (no boot module): pages from the full demo image\n");
    }
    auto res = run_demo_thin(image.value(), pack != nullptr
                                                ? from_pack.resolver()
                                                : PageResolver{.ctx = &from_image, .resolve = DemoResolver::resolve});
    KASSERT(res.ok());
    const GuestResult& g = res.value();
    KEXPECT(g.result.exit == RunExit::ExitGate);
    KEXPECT(g.declined == Status::Ok);
    KEXPECT(g.need_page > 0u);
    KEXPECT_EQ(g.counters.need_page, g.need_page);
    KEXPECT_EQ(g.entries, g.need_page + 1);
    // Every NeedPage resolved one page, once (rule 8.2: nothing else changed the slots).
    KEXPECT_EQ(std::uint64_t{image->mem.missing_count()}, missing0 - g.need_page);
    // Rule 8.3: the guest saw, paid and left exactly what it did with every page present:
    // what it loaded (r8, the checksum), how far it ran (r9), gas, copies and page-in charges.
    KEXPECT_EQ(g.result.regs.r9, ref.r.regs.r9);
    KEXPECT_EQ(g.result.regs.r8, ref.r.regs.r8);
    KEXPECT_EQ(g.gas_used, ref.gas_used);
    KEXPECT_EQ(g.counters.cow, ref.counters.cow);
    KEXPECT_EQ(g.counters.page_in, ref.counters.page_in);
    KEXPECT_EQ(g.counters.clusters, ref.counters.clusters);
    // (Not cluster_pages nor faults_resumed: a read-only cluster maps only its pages present
    // at the time, so its Missing pages fault, ask and map later, free of charge, rule 8.3.)
    KEXPECT(image->mem.flush().ok());
    auto root = image->mem.root();
    KASSERT(root.ok());
    KEXPECT(root.value() == ref_root.value());
    // The line `capmem demo --thin` prints (tests/qemu demo-thin-parity compares them).
    char line[192];
    demo::format_thin_line(line, sizeof line, root.value(), g.gas_used, g.counters);
    log::str("kernel demo thin: ");
    log::str(line);
    log::nl();
  }
  drain_slab_caches(env::cpu_id());  // cached slab objects hold their frames
  KEXPECT_EQ(frames().stats().free, free0);
}

// A request the host declines (rule 8.2): the guest fault of rule 4.3 at that access, nothing
// resolved; a resolver offering another page's bytes is refused by resolve itself
// (HashMismatch, declined): the slot stays Missing(h) and the same access asks again.
KTEST(demo_ring3_thin_declined_is_guest_fault) {
  auto image = demo::build();
  KASSERT(image.ok());
  auto spare = image->mem.copy();  // the full bytes, shared
  KASSERT(spare.ok());
  KASSERT(demo::make_thin(image.value(), demo::ThinOptions{.mem = true}).ok());
  const std::uint32_t missing0 = image->mem.missing_count();

  struct Declines {
    static Result<void> resolve(void*, const fault::PageRequest&) { return Status::NotInStore; }
  };
  auto res = run_demo_thin(image.value(), PageResolver{.ctx = nullptr, .resolve = Declines::resolve});
  KASSERT(res.ok());
  KEXPECT(res->result.exit == RunExit::PageFault);
  KEXPECT_EQ(res->result.code, static_cast<std::uint64_t>(fault::Outcome::GuestFault));
  KEXPECT(res->declined == Status::NotInStore);
  KEXPECT_EQ(res->need_page, 1u);
  KEXPECT_EQ(res->declined_request.region, Region::Mem);
  KEXPECT_EQ(res->result.cr2, res->declined_request.addr.value());
  KEXPECT_EQ(res->result.cr2 >> 12, (fault::DATA_BASE >> 12) + res->declined_request.page);
  KEXPECT_EQ(res->counters.guest_faults, 1u);
  KEXPECT_EQ(image->mem.missing_count(), missing0);
  const SlotView v = image->mem.effective(res->declined_request.page);  // still Missing(h)
  KEXPECT(v.kind == SlotKind::Missing && *v.hash == res->declined_request.hash);

  // Another page's bytes (the requested page's neighbour): HashMismatch, declined.
  struct Wrong {
    const DataCap* full;
    DataCap* mem;
    static Result<void> resolve(void* ctx, const fault::PageRequest& req) {
      const auto& self = *static_cast<const Wrong*>(ctx);
      static std::uint8_t page[PAGE_SIZE];
      if (auto r = self.full->read(std::uint64_t{(req.page + 1) % demo::kMemPages} * PAGE_SIZE, page, PAGE_SIZE);
          !r.ok())
        return r.status();
      return self.mem->resolve(req.page, page, PAGE_SIZE);
    }
  };
  Wrong wrong{.full = &spare.value(), .mem = &image->mem};
  auto res2 = run_demo_thin(image.value(), PageResolver{.ctx = &wrong, .resolve = Wrong::resolve});
  KASSERT(res2.ok());
  KEXPECT(res2->result.exit == RunExit::PageFault);
  KEXPECT_EQ(res2->result.code, static_cast<std::uint64_t>(fault::Outcome::GuestFault));
  KEXPECT(res2->declined == Status::HashMismatch);
  KEXPECT_EQ(res2->need_page, 1u);
  KEXPECT_EQ(res2->declined_request.page, res->declined_request.page);  // the same access asks again
  KEXPECT_EQ(image->mem.missing_count(), missing0);
  const SlotView v2 = image->mem.effective(res2->declined_request.page);
  KEXPECT(v2.kind == SlotKind::Missing && *v2.hash == res2->declined_request.hash);
}

}  // namespace

namespace {
// guest_run.h PackResolver over a pack built here (store::pack_write into a buffer): a page
// the pack holds resolves; a page whose bytes were changed under a true index entry is
// HashMismatch (rule 8.7: the index is a hint, resolve checks the bytes) and stays Missing; a
// root the pack lacks is NotInStore; a request for a cap the resolver was not given declines.
KTEST(guest_run_pack_resolver_checks_every_page) {
  auto image = demo::build();
  KASSERT(image.ok());
  auto spare = image->mem.copy();
  KASSERT(spare.ok());
  KASSERT(demo::make_thin(image.value(), demo::ThinOptions{.mem = true}).ok());
  // Three Missing pages of the thin mem cap: a (in the pack), b (in the pack, bytes changed),
  // c (not in the pack).
  std::uint32_t pick[3] = {};
  for (std::uint32_t p = 0, k = 0; p < demo::kMemPages && k < 3; ++p)
    if (image->mem.effective(p).kind == SlotKind::Missing) pick[k++] = p;
  KASSERT(pick[2] != 0);
  static std::uint8_t bytes[2][PAGE_SIZE];
  store::PackEntry e[2];
  for (int k = 0; k < 2; ++k) {
    const SlotView v = spare->effective(pick[k]);
    KASSERT(v.kind == SlotKind::Loaded);
    const auto* src = static_cast<const std::uint8_t*>(v.frame->virt());
    for (std::size_t i = 0; i < PAGE_SIZE; ++i) bytes[k][i] = src[i];
    e[k] = store::PackEntry{.root = *v.hash, .bytes = bytes[k]};
  }
  bytes[1][100] ^= 0x40;  // b's bytes changed; its index entry still names b's root
  if (store::root_compare(e[0].root, e[1].root) > 0) {
    const store::PackEntry x = e[0];
    e[0] = e[1];
    e[1] = x;
  }
  static std::uint8_t buf[store::pack_size(2)];
  struct Out {
    std::uint8_t* at;
    std::size_t left;
  } out{buf, sizeof buf};
  KASSERT(store::pack_write(
              e, 2,
              [](void* ctx, const std::uint8_t* d, std::size_t n) {
                auto& o = *static_cast<Out*>(ctx);
                if (n > o.left) return Status::InvalidArgument;
                for (std::size_t i = 0; i < n; ++i) o.at[i] = d[i];
                o.at += n;
                o.left -= n;
                return Status::Ok;
              },
              &out)
              .ok());
  auto pack = store::Pack::parse(buf, sizeof buf);
  KASSERT(pack.ok());
  PackResolver r{.pack = &pack.value(), .code = nullptr, .mem = &image->mem};
  const PageResolver pr = r.resolver();
  auto request = [&](std::uint32_t page, Region region) {
    const SlotView v = (region == Region::Mem ? image->mem : image->code).effective(page);
    return fault::PageRequest{.region = region,
                              .page = page,
                              .hash = v.hash != nullptr ? *v.hash : Hash32{},
                              .addr = VirtAddr{fault::DATA_BASE + std::uint64_t{page} * PAGE_SIZE}};
  };
  const std::uint32_t missing0 = image->mem.missing_count();
  const auto ra = pr.resolve(pr.ctx, request(pick[0], Region::Mem));
  KEXPECT(ra.ok());
  KEXPECT(image->mem.effective(pick[0]).kind == SlotKind::Loaded);
  const auto rb = pr.resolve(pr.ctx, request(pick[1], Region::Mem));
  KEXPECT(!rb.ok() && rb.status() == Status::HashMismatch);
  KEXPECT(image->mem.effective(pick[1]).kind == SlotKind::Missing);
  const auto rc = pr.resolve(pr.ctx, request(pick[2], Region::Mem));
  KEXPECT(!rc.ok() && rc.status() == Status::NotInStore);
  KEXPECT(image->mem.effective(pick[2]).kind == SlotKind::Missing);
  const auto rcode = pr.resolve(pr.ctx, request(0, Region::Code));  // no code cap given
  KEXPECT(!rcode.ok() && rcode.status() == Status::NotInStore);
  KEXPECT_EQ(image->mem.missing_count(), missing0 - 1);
  const auto again = pr.resolve(pr.ctx, request(pick[0], Region::Mem));  // a late answer: harmless
  KEXPECT(!again.ok() && again.status() == Status::NotMissing);
}
}  // namespace
