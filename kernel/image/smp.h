// Many CPUs in the kernel image (docs/smp.md): starting the application processors, work
// handed to them, IPIs (TLB shootdown, wake-up), and stopping every CPU on a panic.
//
// Interrupt rule of the image: ring-0 code runs with interrupts off, always, except while
// it waits for another CPU (shootdown acknowledgements, work done, an idle AP): those waits
// enable interrupts and hold no lock. Ring-3 guests run with interrupts on. So every capmem
// lock is held with interrupts off, and no CPU waits for another with interrupts off.
#pragma once

#include <cstdint>

#include "capmem/types.h"
#include "percpu.h"

namespace capmem::kernel::smp {

// Boot CPU, after memory_init, the frame allocator and hash::init (whose dispatch table is
// then read-only): finds the CPUs (acpi.h), programs the local APIC, starts every other CPU
// and waits until each is online or has failed to start. Prints one line per CPU and the
// total. Command line: `smp=off` (boot CPU alone), `acpi=scan`, `acpi=off` (see acpi.h).
void init();

// CPUs online (running kernel code, able to take work); 1 before init.
unsigned online_count();

// Runs fn(arg) on CPU `cpu` (its idle loop picks it up, interrupts off, as any ring-0 code).
// The CPU must be online and idle (no work pending). On this CPU: runs it right here.
void run_on(unsigned cpu, CpuWork fn, void* arg);
// Waits (interrupts enabled, hlt) until the work posted with run_on to `cpu` has returned.
void wait_done(unsigned cpu);
// Runs fn(arg[i]) on every CPU i < n at once (this CPU takes index 0) and waits for all.
void run_on_all(unsigned n, CpuWork fn, void* const* args);

// TLB shootdown (env::tlb_shootdown; rule 7.2): see docs/smp.md "Shootdown".
void shootdown(PhysAddr root, VirtAddr va, std::uint64_t pages);
// Counters for tests: shootdown IPIs this CPU answered.
std::uint64_t shootdowns_answered(unsigned cpu);

// Switch this CPU's CR3, publishing it for shootdown targeting (interrupts off).
void load_cr3(std::uint64_t cr3);

// Called by trap.cpp for interrupt vectors (trap.h kIrqVectors).
void on_interrupt(unsigned vector);

// --- Panic --------------------------------------------------------------------------------
// Claims the panic for this CPU: true for the first CPU to panic, which then owns the console
// and must report and exit; every other CPU gets stopped (NMI) and never returns from here.
// A second panic on the claiming CPU itself returns true again (nested: the caller exits).
bool begin_panic();
// After begin_panic: stops every other online CPU (NMI) and waits a bounded time for each to
// confirm. Returns how many confirmed.
unsigned stop_others();
// NMI handler: if a panic is in progress, confirm and halt forever; false otherwise.
bool on_nmi();
bool panicking();
// True on the CPU that claimed the panic (it writes the console without the lock).
bool panic_owner_here();

}  // namespace capmem::kernel::smp
