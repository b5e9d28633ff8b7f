// Rule 3.8 (checkpoints of a paused run), rule 3.9 (several runs over one cap take turns)
// and rule 4.5 (read-only clusters) at real ring 3:
// every fault below is a hardware #PF that vector 14 hands to fault::Run::handle_page_fault
// through the run's hook, and the write-protection a checkpoint applies is a real PTE
// change plus invlpg.
#include <cstdint>

#include "capmem/datacap.h"
#include "capmem/env.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/log.h"
#include "capmem/page.h"
#include "guest_run.h"
#include "kernel.h"
#include "ktest.h"
#include "ktest_ring3_progs.h"
#include "smp.h"
#include "user.h"

namespace {
using namespace capmem;
using namespace capmem::kernel;

constexpr std::uint64_t kErrP = pt::ErrorCode::kPresent, kErrW = pt::ErrorCode::kWrite, kErrU = pt::ErrorCode::kUser;

struct HookCtx {
  fault::Run* run;
  DataCap* mem;
  bool try_flush = false;  // attempt a checkpoint from inside the fault (must be Busy)
  Status flush_in_fault = Status::Ok;
  std::uint64_t last_error = 0;
  fault::Run* other = nullptr;  // rule 3.9: try to enter this run from inside the fault (Busy)
  Status other_enter = Status::Ok;
  const DataCap* code = nullptr;  // rule 3.9: try a code checkpoint from inside the fault (Busy)
  Status code_in_fault = Status::Ok;
};

FaultVerdict hook(void* ctx, VirtAddr cr2, std::uint64_t error_code, TrapFrame&) {
  auto* h = static_cast<HookCtx*>(ctx);
  h->last_error = error_code;
  if (h->try_flush) {
    h->flush_in_fault = h->mem->flush().status();
    h->try_flush = false;
  }
  if (h->other != nullptr) {
    h->other_enter = h->other->try_enter();
    if (h->other_enter == Status::Ok) h->other->leave();
    h->other = nullptr;
  }
  if (h->code != nullptr) {
    h->code_in_fault = h->code->copy().status();
    h->code = nullptr;
  }
  const fault::Answer a = h->run->handle_page_fault(cr2, static_cast<std::uint32_t>(error_code));
  if (a.outcome == fault::Outcome::Retry) return {.action = FaultAction::Resume};
  return {.action = FaultAction::EndRun, .code = static_cast<std::uint64_t>(a.outcome)};
}

// One entry at ring 3 of `prog` with rdi/rsi, the run executing for its duration. Its own
// hook instead of guest_run.h's enter_guest(): it also tries a checkpoint from inside the
// fault (which must be Busy) and records the error code.
RunResult enter(fault::Run& run, HookCtx& h, PhysAddr cr3, std::uint64_t rdi, std::uint64_t rsi,
                std::uint64_t rip = fault::JIT_BASE) {
  const fault::Run::Executing executing(run);
  UserRegs regs{};
  regs.rip = rip;
  regs.rdi = rdi;
  regs.rsi = rsi;
  regs.rsp = fault::JIT_BASE + PAGE_SIZE;
  return run_user(RunSpec{.cr3 = cr3, .regs = regs, .page_fault_hook = hook, .hook_ctx = &h});
}

std::uint64_t cap_u64(const DataCap& c, std::uint64_t off) {
  std::uint64_t v = ~std::uint64_t{0};
  if (!c.read(off, reinterpret_cast<std::uint8_t*>(&v), 8).ok()) return ~std::uint64_t{0};
  return v;
}

// A mem cap of 16 pages, each page's first byte its index + 1 (no page is Empty).
Result<DataCap> make_mem() {
  static std::uint8_t bytes[16 * PAGE_SIZE];
  for (std::uint32_t p = 0; p < 16; ++p) bytes[p * PAGE_SIZE] = static_cast<std::uint8_t>(p + 1);
  return DataCap::from_bytes(bytes, sizeof bytes);
}

// A run's table for the two-run cases: the kernel half linked, the store program at
// fault::JIT_BASE (stores rsi at [rdi]) and the load program at kLoadAt (rax = [rdi]).
constexpr std::uint64_t kLoadAt = fault::JIT_BASE + 2 * PAGE_SIZE;
Status store_load_table(pt::PageTable& t) {
  link_kernel_half(t);
  const Status s = map_ring3_program(t, VirtAddr{fault::JIT_BASE}, ring3_prog_store, ring3_prog_store_end);
  if (s != Status::Ok) return s;
  return map_ring3_program(t, VirtAddr{kLoadAt}, ring3_prog_load, ring3_prog_load_end);
}

}  // namespace

KTEST(checkpoint_ring3_store_flush_store_flush) {
  auto code = DataCap::create(PAGE_SIZE);
  auto mem = make_mem();
  auto table = pt::PageTable::create();
  KASSERT(code.ok() && mem.ok() && table.ok());
  link_kernel_half(table.value());
  KASSERT(map_ring3_program(table.value(), VirtAddr{fault::JIT_BASE}, ring3_prog_store, ring3_prog_store_end) ==
          Status::Ok);
  const std::uint64_t a = fault::DATA_BASE + 2 * PAGE_SIZE + 16;
  {
    fault::Run run(fault::RunConfig{
        .table = &table.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    HookCtx h{.run = &run, .mem = &mem.value(), .try_flush = true};
    RunResult r = enter(run, h, table->root(), a, 0x1111111111111111ull);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(r.regs.rax, 0x1111111111111111ull);
    KEXPECT_EQ(static_cast<unsigned>(h.flush_in_fault), static_cast<unsigned>(Status::Busy));
    KEXPECT_EQ(mem->overlay_count(), 1);  // the Busy flush changed nothing

    KEXPECT(mem->flush().ok());
    KEXPECT_EQ(cap_u64(mem.value(), a - fault::DATA_BASE), 0x1111111111111111ull);
    auto tr = table->translate(VirtAddr{a});
    KEXPECT(tr.ok() && !tr->flags.writable);  // write-protected by the checkpoint

    // The second store faults on the write-protected leaf (present, write, user) and
    // copies again without a charge; before rule 3.8 it did not fault and was lost.
    r = enter(run, h, table->root(), a, 0x2222222222222222ull);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(r.faults_resumed, 1);
    KEXPECT_EQ(h.last_error, kErrP | kErrW | kErrU);
    KEXPECT(mem->flush().ok());
    KEXPECT_EQ(cap_u64(mem.value(), a - fault::DATA_BASE), 0x2222222222222222ull);
    KEXPECT_EQ(run.gas_used(), fault::kGasCosts.cow);
    KEXPECT_EQ(run.counters().cow, 1);
    KEXPECT_EQ(run.counters().recopies, 1);

    // A copy taken between two entries does not see the later store.
    r = enter(run, h, table->root(), a, 0x3333333333333333ull);
    KEXPECT(r.exit == RunExit::ExitGate);
    auto c = mem->copy();
    KASSERT(c.ok());
    r = enter(run, h, table->root(), a, 0x4444444444444444ull);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(cap_u64(c.value(), a - fault::DATA_BASE), 0x3333333333333333ull);
    KEXPECT_EQ(cap_u64(mem.value(), a - fault::DATA_BASE), 0x4444444444444444ull);
    KEXPECT_EQ(run.gas_used(), fault::kGasCosts.cow);
  }
  table->teardown();
}

// Rule 4.5: two pinned ranges in one 2 MiB cluster; the first fault maps both, charged once.
KTEST(checkpoint_ring3_two_pinned_ranges_one_cluster) {
  auto code = DataCap::create(PAGE_SIZE);
  auto mem = make_mem();
  auto table = pt::PageTable::create();
  KASSERT(code.ok() && mem.ok() && table.ok());
  link_kernel_half(table.value());
  KASSERT(map_ring3_program(table.value(), VirtAddr{fault::JIT_BASE}, ring3_prog_load, ring3_prog_load_end) ==
          Status::Ok);
  const fault::PinnedRange ranges[] = {{.first_page = 1, .pages = 2}, {.first_page = 8, .pages = 3}};
  {
    fault::Run run(fault::RunConfig{
        .table = &table.value(), .code = &code.value(), .mem = &mem.value(), .pinned = ranges, .gas = 1000});
    HookCtx h{.run = &run, .mem = &mem.value()};
    RunResult r = enter(run, h, table->root(), fault::DATA_BASE + PAGE_SIZE, 0);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(r.regs.rax & 0xff, 2);  // page 1's first byte
    KEXPECT_EQ(run.counters().clusters, 1);
    KEXPECT_EQ(run.counters().cluster_pages, 5);
    for (std::uint64_t p : {1, 2, 8, 9, 10}) KEXPECT(table->translate(VirtAddr{fault::DATA_BASE + p * PAGE_SIZE}).ok());
    // The second range's first access is no fault at all.
    r = enter(run, h, table->root(), fault::DATA_BASE + 9 * PAGE_SIZE, 0);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(r.faults_resumed, 0);
    KEXPECT_EQ(r.regs.rax & 0xff, 10);
    KEXPECT_EQ(run.gas_used(), fault::kGasCosts.page_in);
  }
  table->teardown();
}

// Rule 3.9 at ring 3: two runs over one mem cap take turns on this CPU. A writes page p, B
// writes p (copies A's page and publishes over it), A writes p again: A's leaf, still
// writable on A's old copy, is re-pointed at A's next entry, so the store faults (present,
// write, user) and lands in the cap, re-copied without a charge. Each run reads the other's
// stores from its next entry; entering B from inside A's fault is Busy, and so is a
// checkpoint of A's code cap; a flush between turns loses nothing.
KTEST(checkpoint_ring3_two_runs_take_turns) {
  auto code = DataCap::create(PAGE_SIZE);
  auto mem = make_mem();
  auto ta = pt::PageTable::create();
  auto tb = pt::PageTable::create();
  KASSERT(code.ok() && mem.ok() && ta.ok() && tb.ok());
  KASSERT(store_load_table(ta.value()) == Status::Ok && store_load_table(tb.value()) == Status::Ok);
  const std::uint64_t p = fault::DATA_BASE + 2 * PAGE_SIZE;
  {
    fault::Run a(
        fault::RunConfig{.table = &ta.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    fault::Run b(
        fault::RunConfig{.table = &tb.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    HookCtx ha{.run = &a, .mem = &mem.value(), .other = &b, .code = &code.value()};
    HookCtx hb{.run = &b, .mem = &mem.value()};
    RunResult r = enter(a, ha, ta->root(), p + 16, 0x1111);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(static_cast<unsigned>(ha.other_enter), static_cast<unsigned>(Status::Busy));
    KEXPECT_EQ(static_cast<unsigned>(ha.code_in_fault), static_cast<unsigned>(Status::Busy));
    r = enter(b, hb, tb->root(), p + 24, 0x2222);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(r.regs.rax, 0x2222);

    r = enter(a, ha, ta->root(), p + 16, 0x3333);  // before rule 3.9: no fault, store lost
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(r.faults_resumed, 1);
    KEXPECT_EQ(ha.last_error, kErrP | kErrW | kErrU);
    KEXPECT_EQ(cap_u64(mem.value(), p + 16 - fault::DATA_BASE), 0x3333);
    KEXPECT_EQ(cap_u64(mem.value(), p + 24 - fault::DATA_BASE), 0x2222);
    r = enter(a, ha, ta->root(), p + 24, 0, kLoadAt);  // A reads B's store
    KEXPECT_EQ(r.regs.rax, 0x2222);
    r = enter(b, hb, tb->root(), p + 16, 0, kLoadAt);  // B reads A's store at its next entry
    KEXPECT_EQ(r.regs.rax, 0x3333);

    KEXPECT(mem->flush().ok());  // a checkpoint between turns
    r = enter(b, hb, tb->root(), p + 24, 0x4444);
    KEXPECT(r.exit == RunExit::ExitGate);
    r = enter(a, ha, ta->root(), p + 24, 0, kLoadAt);
    KEXPECT_EQ(r.regs.rax, 0x4444);
    KEXPECT(mem->flush().ok());
    KEXPECT_EQ(cap_u64(mem.value(), p + 16 - fault::DATA_BASE), 0x3333);
    KEXPECT_EQ(cap_u64(mem.value(), p + 24 - fault::DATA_BASE), 0x4444);
    KEXPECT_EQ(cap_u64(mem.value(), 2 * PAGE_SIZE), 3);  // the page's first byte (make_mem)
    // One CoW per page each run writes, however the turns and the checkpoint fell.
    KEXPECT_EQ(a.gas_used(), fault::kGasCosts.cow);
    KEXPECT_EQ(b.gas_used(), fault::kGasCosts.cow);
    KEXPECT_EQ(a.counters().cow, 1);
    KEXPECT_EQ(b.counters().cow, 1);
  }
  ta->teardown();
  tb->teardown();
}

// Rule 3.9 through the reference glue: enter_guest() does not start a run while another
// run over its mem cap executes (as if on another CPU: here held by an Executing guard),
// answers RunExit::NotEntered with Outcome::Busy and changes nothing; once the other run has
// left, the same call enters and the store lands in the cap.
KTEST(checkpoint_enter_guest_refused_while_another_run_executes) {
  auto code = DataCap::create(PAGE_SIZE);
  auto mem = make_mem();
  auto ta = guest_table(ring3_prog_store, ring3_prog_store_end);
  auto tb = guest_table(ring3_prog_store, ring3_prog_store_end);
  KASSERT(code.ok() && mem.ok() && ta.ok() && tb.ok());
  const std::uint64_t p = fault::DATA_BASE + 3 * PAGE_SIZE;
  {
    fault::Run a(
        fault::RunConfig{.table = &ta.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    fault::Run b(
        fault::RunConfig{.table = &tb.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    UserRegs regs{};
    regs.rip = fault::JIT_BASE;
    regs.rdi = p + 8;
    regs.rsi = 0x5151;
    regs.rsp = fault::JIT_BASE + PAGE_SIZE;
    {
      const fault::Run::Executing other(a);
      const RunResult r = enter_guest(b, regs);
      KEXPECT(r.exit == RunExit::NotEntered);
      KEXPECT_EQ(r.code, static_cast<std::uint64_t>(fault::Outcome::Busy));
      KEXPECT_EQ(r.faults_resumed, 0);
      KEXPECT(!b.executing());
      KEXPECT_EQ(b.gas_used(), 0);
      KEXPECT_EQ(b.counters().cow, 0);
    }
    KEXPECT_EQ(mem->overlay_count(), 0);
    const RunResult r = enter_guest(b, regs);
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(b.gas_used(), fault::kGasCosts.cow);
    KEXPECT(mem->flush().ok());
    KEXPECT_EQ(cap_u64(mem.value(), p + 8 - fault::DATA_BASE), 0x5151);
  }
  ta->teardown();
  tb->teardown();
}

// Rule 3.9 across CPUs (with rule 7.2): two runs over one mem cap take turns on two CPUs
// (CPU 1 and CPU 2 when online; the ones there are otherwise), each entering through
// enter_guest() on its own CPU. Run B's write of the page run A copied publishes over A's
// copy while A's table was last loaded on another CPU: A's next store there must fault and
// land in the cap, each run reads the other's stores at its next entry, a checkpoint between
// turns changes nothing of that, and each run pays exactly one CoW.
namespace {
struct TurnStep {
  fault::Run* run;
  UserRegs regs;
  RunResult r;
};
void turn_work(void* arg) {
  auto* s = static_cast<TurnStep*>(arg);
  s->r = enter_guest(*s->run, s->regs);
}
RunResult turn_on(unsigned cpu, fault::Run& run, std::uint64_t rip, std::uint64_t rdi, std::uint64_t rsi) {
  TurnStep s{.run = &run, .regs = {}, .r = {}};
  s.regs.rip = rip;
  s.regs.rdi = rdi;
  s.regs.rsi = rsi;
  s.regs.rsp = fault::JIT_BASE + PAGE_SIZE;
  if (cpu == env::cpu_id()) {
    turn_work(&s);
  } else {
    smp::run_on(cpu, turn_work, &s);
    smp::wait_done(cpu);
  }
  return s.r;
}
}  // namespace

KTEST(checkpoint_ring3_two_runs_take_turns_across_cpus) {
  const unsigned n = smp::online_count();
  const unsigned cpu_a = 1 % n, cpu_b = n > 2 ? 2u : 0u;
  auto code = DataCap::create(PAGE_SIZE);
  auto mem = make_mem();
  auto ta = pt::PageTable::create();
  auto tb = pt::PageTable::create();
  KASSERT(code.ok() && mem.ok() && ta.ok() && tb.ok());
  KASSERT(store_load_table(ta.value()) == Status::Ok && store_load_table(tb.value()) == Status::Ok);
  const std::uint64_t p = fault::DATA_BASE + 5 * PAGE_SIZE;
  {
    fault::Run a(
        fault::RunConfig{.table = &ta.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    fault::Run b(
        fault::RunConfig{.table = &tb.value(), .code = &code.value(), .mem = &mem.value(), .pinned = {}, .gas = 1000});
    KEXPECT(turn_on(cpu_a, a, fault::JIT_BASE, p + 16, 0x1111).exit == RunExit::ExitGate);
    KEXPECT(turn_on(cpu_b, b, fault::JIT_BASE, p + 24, 0x2222).exit == RunExit::ExitGate);
    RunResult r = turn_on(cpu_a, a, fault::JIT_BASE, p + 16, 0x3333);  // A's leaf is stale now
    KEXPECT(r.exit == RunExit::ExitGate);
    KEXPECT_EQ(cap_u64(mem.value(), p + 16 - fault::DATA_BASE), 0x3333);
    KEXPECT_EQ(cap_u64(mem.value(), p + 24 - fault::DATA_BASE), 0x2222);
    r = turn_on(cpu_b, b, kLoadAt, p + 16, 0);  // B reads A's store at its next entry
    KEXPECT_EQ(r.regs.rax, 0x3333);
    r = turn_on(cpu_a, a, kLoadAt, p + 24, 0);  // A reads B's
    KEXPECT_EQ(r.regs.rax, 0x2222);
    KEXPECT(mem->flush().ok());  // a checkpoint between turns, from this CPU
    KEXPECT(turn_on(cpu_b, b, fault::JIT_BASE, p + 24, 0x4444).exit == RunExit::ExitGate);
    r = turn_on(cpu_a, a, kLoadAt, p + 24, 0);
    KEXPECT_EQ(r.regs.rax, 0x4444);
    KEXPECT(mem->flush().ok());
    KEXPECT_EQ(cap_u64(mem.value(), p + 16 - fault::DATA_BASE), 0x3333);
    KEXPECT_EQ(cap_u64(mem.value(), p + 24 - fault::DATA_BASE), 0x4444);
    KEXPECT_EQ(cap_u64(mem.value(), 5 * PAGE_SIZE), 6);  // the page's first byte (make_mem)
    KEXPECT_EQ(a.gas_used(), fault::kGasCosts.cow);
    KEXPECT_EQ(b.gas_used(), fault::kGasCosts.cow);
    KEXPECT_EQ(a.counters().cow, 1);
    KEXPECT_EQ(b.counters().cow, 1);
    log::str("checkpoint two runs: turns on cpu ");
    log::dec(cpu_a);
    log::str(" and cpu ");
    log::dec(cpu_b);
    log::str(", every store in the cap\n");
  }
  ta->teardown();
  tb->teardown();
}
