// The local APIC (SDM Vol. 3A chapter 11 "Advanced Programmable Interrupt Controller"):
// x2APIC mode (MSRs, 32-bit ids) where CPUID.01H:ECX.x2APIC[21] says so, xAPIC (MMIO at
// IA32_APIC_BASE, mapped uncached) otherwise. Only what the kernel needs: enable, EOI,
// fixed IPIs, NMI to every other CPU, INIT and Start-up IPIs, and a TSC-based delay
// calibrated against the PIT. See docs/smp.md "Interrupts".
#pragma once

#include <cstdint>

namespace capmem::kernel::apic {

// Boot CPU: masks the legacy 8259 PICs (remapped to kVectorPicBase first), enables the
// local APIC (x2APIC if available), masks its timer and LINT0, sets the spurious vector,
// and calibrates the TSC. Returns false (and logs why) if there is no local APIC.
bool init_bsp();
// Application processor: the same mode as the boot CPU.
void init_ap();
bool x2apic();
// This CPU's APIC id (x2APIC: 32 bits; xAPIC: bits 31:24 of the ID register).
std::uint32_t id();

void eoi();
// Fixed-delivery IPI with `vector` to one CPU.
void send_ipi(std::uint32_t apic_id, std::uint8_t vector);
// NMI to every CPU but this one (destination shorthand "all excluding self").
void send_nmi_all_but_self();
// INIT (assert) and Start-up with the trampoline page number (SDM Vol. 3A 9.4.4.1).
void send_init(std::uint32_t apic_id);
void send_startup(std::uint32_t apic_id, std::uint8_t page);

// Busy-wait (TSC), usable on any CPU after init_bsp.
void delay_us(std::uint64_t us);
std::uint64_t tsc_per_us();

}  // namespace capmem::kernel::apic
