// Finding the CPUs: the ACPI MADT (ACPI 6.5 section 5.2.12 "Multiple APIC Description
// Table") through the RSDP (5.2.5) the boot protocol handed over, or through the BIOS-area
// scan of [0xE0000, 0xFFFFF] (5.2.5.1) when it handed over none. See docs/smp.md "AP start".
//
// ACPI tables are input bytes written by firmware: every structure is checked before it is
// used (signature, checksum, lengths inside the table, tables inside the direct map); a bad
// one is rejected with a reason naming what is wrong, never trusted and never a crash.
#pragma once

#include <cstddef>
#include <cstdint>

namespace capmem::kernel::acpi {

inline constexpr unsigned kMaxListedCpus = 64;
inline constexpr std::uint64_t kBiosAreaBase = 0xe0000, kBiosAreaEnd = 0x100000;
inline constexpr std::size_t kMaxTableLen = 1u << 20;  // larger tables are rejected as corrupt

struct CpuList {
  std::uint32_t apic_id[kMaxListedCpus];  // enabled (or online-capable) processors, MADT order
  unsigned count = 0;
  unsigned skipped_disabled = 0;  // entries with neither Enabled nor Online Capable
  bool truncated = false;         // more than kMaxListedCpus usable entries
  std::uint64_t lapic_base = 0;   // MADT local APIC address (or its 64-bit override)
};

// --- Pure checks over bytes (tested with crafted tables in ktest_acpi.cpp) ------------------
// Sum of the bytes mod 256 == 0 (ACPI 5.2.5.3, 5.2.6).
bool checksum_ok(const std::uint8_t* p, std::size_t n);

struct Rsdp {
  std::uint8_t revision;
  std::uint64_t rsdt;  // 32-bit RSDT address (every revision)
  std::uint64_t xsdt;  // revision >= 2 and a valid extended checksum; else 0
};
// Checks an RSDP of which `avail` bytes are readable at `p`: signature "RSD PTR ", the
// ACPI 1.0 checksum over 20 bytes and, for revision >= 2, the length (36..avail) and the
// extended checksum. Returns nullptr and fills `out`, or the reason it was rejected.
const char* parse_rsdp(const std::uint8_t* p, std::size_t avail, Rsdp& out);

// Checks a MADT already validated as a table (header length == len, checksum) and lists its
// processors: Processor Local APIC (type 0) and Processor Local x2APIC (type 9) entries
// with the Enabled flag (Online Capable alone: not present at boot); a Local APIC Address Override (type 5) replaces
// the base. Every entry must have a length >= 2 that fits in the table and at least its
// type's size. Returns nullptr or the reason.
const char* parse_madt(const std::uint8_t* t, std::size_t len, CpuList& out);

// --- Through physical memory ----------------------------------------------------------------
enum class Source : std::uint8_t { BootRsdp, BiosScan, None };
const char* source_name(Source s);

// Finds the MADT and lists the CPUs. `use_boot_rsdp` / `use_scan` let the command line
// (`acpi=scan`, `acpi=off`) exercise the fallbacks. Logs why a source was rejected; returns
// Source::None (and an empty list) when no valid MADT was found.
Source find_cpus(CpuList& out, bool use_boot_rsdp, bool use_scan);

}  // namespace capmem::kernel::acpi
