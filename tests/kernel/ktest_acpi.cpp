// ACPI input checks (acpi.h): crafted RSDPs and MADTs, good and bad, through the same
// parsers the boot path uses, plus the firmware's real tables.
#include <cstdint>

#include "acpi.h"
#include "ktest.h"
#include "smp.h"

namespace {
using namespace capmem::kernel;

void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put64(std::uint8_t* p, std::uint64_t v) {
  put32(p, static_cast<std::uint32_t>(v));
  put32(p + 4, static_cast<std::uint32_t>(v >> 32));
}
// Sets byte `at` so that the bytes [0, n) sum to 0 mod 256.
void fix_sum(std::uint8_t* p, std::size_t n, std::size_t at) {
  p[at] = 0;
  std::uint8_t s = 0;
  for (std::size_t i = 0; i < n; ++i) s = static_cast<std::uint8_t>(s + p[i]);
  p[at] = static_cast<std::uint8_t>(-s);
}

// A revision-0 RSDP (20 bytes) naming RSDT 0x1234000, or revision 2 (36 bytes) with an XSDT.
void make_rsdp(std::uint8_t* p, std::uint8_t rev) {
  const char sig[] = "RSD PTR ";
  for (int i = 0; i < 36; ++i) p[i] = 0;
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(sig[i]);
  p[15] = rev;
  put32(p + 16, 0x1234000);
  if (rev >= 2) {
    put32(p + 20, 36);
    put64(p + 24, 0x5678000);
  }
  fix_sum(p, 20, 8);
  if (rev >= 2) fix_sum(p, 36, 32);
}

// A MADT with the header, the local APIC address and the given entries appended.
struct Madt {
  std::uint8_t b[256];
  std::size_t len = 44;
  Madt() {
    for (auto& x : b) x = 0;
    b[0] = 'A', b[1] = 'P', b[2] = 'I', b[3] = 'C';
    put32(b + 36, 0xfee00000);
  }
  void lapic(std::uint8_t apic_id, std::uint32_t flags) {
    std::uint8_t* e = b + len;
    e[0] = 0, e[1] = 8, e[2] = apic_id, e[3] = apic_id;
    put32(e + 4, flags);
    len += 8;
  }
  void x2apic(std::uint32_t id, std::uint32_t flags) {
    std::uint8_t* e = b + len;
    e[0] = 9, e[1] = 16;
    put32(e + 4, id);
    put32(e + 8, flags);
    len += 16;
  }
  void raw(std::uint8_t type, std::uint8_t elen) {
    b[len] = type, b[len + 1] = elen;
    len += elen < 2 ? 2 : elen;
  }
  const std::uint8_t* done() {
    put32(b + 4, static_cast<std::uint32_t>(len));
    fix_sum(b, len, 9);
    return b;
  }
};

KTEST(acpi_rsdp_checks) {
  std::uint8_t p[36];
  acpi::Rsdp r{};
  make_rsdp(p, 0);
  KEXPECT(acpi::parse_rsdp(p, 20, r) == nullptr);
  KEXPECT_EQ(r.rsdt, 0x1234000);
  KEXPECT_EQ(r.xsdt, 0);
  make_rsdp(p, 2);
  KEXPECT(acpi::parse_rsdp(p, 36, r) == nullptr);
  KEXPECT_EQ(r.xsdt, 0x5678000);
  KEXPECT(acpi::parse_rsdp(p, 20, r) != nullptr);  // revision 2 needs 36 readable bytes
  make_rsdp(p, 0);
  p[16] ^= 1;  // RSDT address changed, checksum not
  KEXPECT(acpi::parse_rsdp(p, 20, r) != nullptr);
  make_rsdp(p, 0);
  p[0] = 'X';
  KEXPECT(acpi::parse_rsdp(p, 20, r) != nullptr);
  make_rsdp(p, 2);
  put32(p + 20, 4000);  // length past what is readable
  p[8] = 0, p[32] = 0;
  KEXPECT(acpi::parse_rsdp(p, 36, r) != nullptr);
  KEXPECT(acpi::parse_rsdp(p, 10, r) != nullptr);
}

KTEST(acpi_madt_lists_enabled_cpus) {
  Madt m;
  m.lapic(0, 1);
  m.lapic(1, 1);
  m.lapic(2, 0);  // disabled, not online capable
  m.lapic(3, 2);  // online capable only: hot-pluggable, not present at boot
  m.lapic(4, 3);  // enabled (and online capable)
  m.x2apic(300, 1);
  m.raw(1, 12);  // an I/O APIC entry: skipped
  acpi::CpuList l;
  const std::uint8_t* tb = m.done();
  KEXPECT(acpi::parse_madt(tb, m.len, l) == nullptr);
  KASSERT_EQ(l.count, 4);
  KEXPECT_EQ(l.apic_id[0], 0);
  KEXPECT_EQ(l.apic_id[1], 1);
  KEXPECT_EQ(l.apic_id[2], 4);
  KEXPECT_EQ(l.apic_id[3], 300);
  KEXPECT_EQ(l.skipped_disabled, 2);
  KEXPECT_EQ(l.lapic_base, 0xfee00000);
}

KTEST(acpi_madt_rejects_bad_entries) {
  acpi::CpuList l;
  {
    Madt m;
    m.lapic(0, 1);
    m.raw(0, 6);  // local APIC entry shorter than 8
    KEXPECT(acpi::parse_madt(m.done(), m.len, l) != nullptr);
  }
  {
    Madt m;
    m.lapic(0, 1);
    m.raw(4, 1);  // length below 2 (would loop forever if trusted)
    KEXPECT(acpi::parse_madt(m.done(), m.len, l) != nullptr);
  }
  {
    Madt m;
    m.lapic(0, 1);
    m.b[m.len] = 0, m.b[m.len + 1] = 200;  // entry running past the table
    m.len += 2;
    KEXPECT(acpi::parse_madt(m.done(), m.len, l) != nullptr);
  }
  {
    Madt m;
    m.lapic(5, 1);
    m.lapic(5, 1);  // one id twice
    KEXPECT(acpi::parse_madt(m.done(), m.len, l) != nullptr);
  }
  {
    Madt m;
    m.lapic(0, 0);  // nothing enabled
    KEXPECT(acpi::parse_madt(m.done(), m.len, l) != nullptr);
  }
  {
    Madt m;
    m.lapic(0, 1);
    const std::uint8_t* tb = m.done();
    KEXPECT(acpi::parse_madt(tb, m.len - 1, l) != nullptr);  // length field disagrees
    KEXPECT(acpi::parse_madt(tb, 40, l) != nullptr);         // shorter than the fixed fields
  }
  {
    Madt m;
    m.lapic(0, 1);
    m.raw(5, 12);  // 64-bit local APIC address override
    put64(m.b + m.len - 8, 0xfed00000);
    KEXPECT(acpi::parse_madt(m.done(), m.len, l) == nullptr);
    KEXPECT_EQ(l.lapic_base, 0xfed00000);
  }
  std::uint8_t z[8] = {1, 2, 3, 4, 5, 6, 7, 0};
  z[7] = static_cast<std::uint8_t>(-(1 + 2 + 3 + 4 + 5 + 6 + 7));
  KEXPECT(acpi::checksum_ok(z, 8));
  z[0] = 2;
  KEXPECT(!acpi::checksum_ok(z, 8));
}

// The firmware's own tables: both sources find the same CPUs, and every CPU found is online.
KTEST(acpi_firmware_tables_match_online_cpus) {
  acpi::CpuList boot, scan;
  const acpi::Source a = acpi::find_cpus(boot, true, false);
  const acpi::Source b = acpi::find_cpus(scan, false, true);
  if (a == acpi::Source::None && b == acpi::Source::None) return;  // firmware without ACPI
  if (a != acpi::Source::None && b != acpi::Source::None) {
    KEXPECT_EQ(boot.count, scan.count);
    for (unsigned i = 0; i < boot.count && i < scan.count; ++i) KEXPECT_EQ(boot.apic_id[i], scan.apic_id[i]);
  }
  const acpi::CpuList& l = a != acpi::Source::None ? boot : scan;
  if (!smp::panicking() && smp::online_count() > 1) KEXPECT_EQ(smp::online_count(), l.count);
}

}  // namespace
