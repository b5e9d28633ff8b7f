// ACPI: RSDP -> RSDT/XSDT -> MADT, every step validated (see acpi.h).
#include "acpi.h"

#include "capmem/env.h"
#include "capmem/log.h"
#include "kernel.h"

namespace capmem::kernel::acpi {
namespace {

constexpr std::size_t kHeaderLen = 36;  // System Description Table Header (ACPI 5.2.6)

std::uint32_t le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
}
std::uint64_t le64(const std::uint8_t* p) { return le32(p) | std::uint64_t{le32(p + 4)} << 32; }

bool same(const std::uint8_t* p, const char* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != static_cast<std::uint8_t>(s[i])) return false;
  return true;
}

// [pa, pa + len) lies inside the direct map (and does not wrap).
bool mapped(std::uint64_t pa, std::uint64_t len) {
  return pa != 0 && len <= direct_map_end() && pa <= direct_map_end() - len;
}
const std::uint8_t* bytes_at(std::uint64_t pa) {
  return static_cast<const std::uint8_t*>(env::phys_to_virt(PhysAddr{pa}));
}

// A system description table at `pa` with signature `sig`: header readable, length in
// [36, kMaxTableLen], whole table mapped, checksum 0. Returns the bytes or nullptr + why.
const std::uint8_t* table_at(std::uint64_t pa, const char* sig, std::uint32_t& len, const char*& why) {
  if (!mapped(pa, kHeaderLen)) {
    why = "table address outside RAM";
    return nullptr;
  }
  const std::uint8_t* t = bytes_at(pa);
  if (sig != nullptr && !same(t, sig, 4)) {
    why = "wrong table signature";
    return nullptr;
  }
  len = le32(t + 4);
  if (len < kHeaderLen || len > kMaxTableLen) {
    why = "table length out of range";
    return nullptr;
  }
  if (!mapped(pa, len)) {
    why = "table extends outside RAM";
    return nullptr;
  }
  if (!checksum_ok(t, len)) {
    why = "table checksum mismatch";
    return nullptr;
  }
  return t;
}

// RSDT (4-byte entries) or XSDT (8-byte entries) -> the MADT ("APIC").
const char* madt_from_rsdp(const Rsdp& r, CpuList& out) {
  const bool x = r.xsdt != 0;
  const char* why = nullptr;
  std::uint32_t len = 0;
  const std::uint8_t* sdt = table_at(x ? r.xsdt : r.rsdt, x ? "XSDT" : "RSDT", len, why);
  if (sdt == nullptr) return why;
  const std::size_t esz = x ? 8 : 4;
  if ((len - kHeaderLen) % esz != 0) return "RSDT/XSDT length not a whole number of entries";
  const std::size_t n = (len - kHeaderLen) / esz;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* e = sdt + kHeaderLen + i * esz;
    const std::uint64_t pa = x ? le64(e) : le32(e);
    if (!mapped(pa, kHeaderLen) || !same(bytes_at(pa), "APIC", 4)) continue;
    std::uint32_t mlen = 0;
    const std::uint8_t* m = table_at(pa, "APIC", mlen, why);
    if (m == nullptr) return why;
    return parse_madt(m, mlen, out);
  }
  return "no MADT (\"APIC\") in the RSDT/XSDT";
}

const char* try_rsdp_at(std::uint64_t pa, CpuList& out) {
  if (!mapped(pa, 20)) return "RSDP address outside RAM";
  const std::size_t avail = mapped(pa, 36) ? 36 : 20;
  Rsdp r{};
  if (const char* why = parse_rsdp(bytes_at(pa), avail, r)) return why;
  return madt_from_rsdp(r, out);
}

void say_rejected(const char* what, std::uint64_t pa, const char* why) {
  log::str("acpi: ");
  log::str(what);
  log::str(" at 0x");
  log::hex(pa);
  log::str(" rejected: ");
  log::str(why);
  log::nl();
}

}  // namespace

bool checksum_ok(const std::uint8_t* p, std::size_t n) {
  std::uint8_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum = static_cast<std::uint8_t>(sum + p[i]);
  return sum == 0;
}

const char* parse_rsdp(const std::uint8_t* p, std::size_t avail, Rsdp& out) {
  if (avail < 20) return "RSDP truncated";
  if (!same(p, "RSD PTR ", 8)) return "no \"RSD PTR \" signature";
  if (!checksum_ok(p, 20)) return "RSDP checksum mismatch";
  out = Rsdp{.revision = p[15], .rsdt = le32(p + 16), .xsdt = 0};
  if (out.revision >= 2) {
    if (avail < 36) return "RSDP revision >= 2 truncated";
    const std::uint32_t len = le32(p + 20);
    if (len < 36 || len > avail) return "RSDP length out of range";
    if (!checksum_ok(p, len)) return "RSDP extended checksum mismatch";
    out.xsdt = le64(p + 24);
  }
  if (out.rsdt == 0 && out.xsdt == 0) return "RSDP names no RSDT or XSDT";
  return nullptr;
}

const char* parse_madt(const std::uint8_t* t, std::size_t len, CpuList& out) {
  out = CpuList{};
  if (len < kHeaderLen + 8) return "MADT shorter than its fixed fields";
  if (le32(t + 4) != len) return "MADT length field differs from the table";
  out.lapic_base = le32(t + kHeaderLen);
  std::size_t off = kHeaderLen + 8;
  while (off < len) {
    if (len - off < 2) return "MADT entry header truncated";
    const std::uint8_t type = t[off], elen = t[off + 1];
    if (elen < 2 || elen > len - off) return "MADT entry length out of range";
    const std::uint8_t* e = t + off;
    std::uint32_t id = 0, flags = 0;
    bool cpu = false;
    if (type == 0) {  // Processor Local APIC: uid u8, apic id u8, flags u32
      if (elen < 8) return "MADT local APIC entry too short";
      id = e[3];
      flags = le32(e + 4);
      cpu = true;
    } else if (type == 9) {  // Processor Local x2APIC: reserved u16, x2apic id u32, flags u32, uid u32
      if (elen < 16) return "MADT x2APIC entry too short";
      id = le32(e + 4);
      flags = le32(e + 8);
      cpu = true;
    } else if (type == 5) {  // Local APIC Address Override: reserved u16, address u64
      if (elen < 12) return "MADT local APIC address override too short";
      out.lapic_base = le64(e + 4);
    }
    if (cpu) {
      // Bit 0 Enabled: present and usable now. Without it (Online Capable, bit 1, or
      // nothing) the processor is not there at boot: starting it would only time out.
      if ((flags & 1) == 0) {  // ACPI 6.5 5.2.12.2, Table 5.47
        ++out.skipped_disabled;
      } else {
        bool dup = false;
        for (unsigned i = 0; i < out.count; ++i) dup |= out.apic_id[i] == id;
        if (dup) return "MADT lists one APIC id twice";
        if (out.count == kMaxListedCpus) out.truncated = true;
        else out.apic_id[out.count++] = id;
      }
    }
    off += elen;
  }
  if (out.count == 0) return "MADT lists no enabled processor";
  return nullptr;
}

const char* source_name(Source s) {
  switch (s) {
    case Source::BootRsdp: return "the boot protocol's RSDP";
    case Source::BiosScan: return "the BIOS-area RSDP scan";
    case Source::None: break;
  }
  return "nothing";
}

Source find_cpus(CpuList& out, bool use_boot_rsdp, bool use_scan) {
  out = CpuList{};
  if (use_boot_rsdp) {
    const std::uint64_t pa = boot_info().rsdp_paddr;
    if (pa != 0) {
      const char* why = try_rsdp_at(pa, out);
      if (why == nullptr) return Source::BootRsdp;
      say_rejected("boot RSDP", pa, why);
    }
  }
  if (use_scan) {
    for (std::uint64_t pa = kBiosAreaBase; pa + 20 <= kBiosAreaEnd; pa += 16) {
      if (!same(bytes_at(pa), "RSD PTR ", 8)) continue;
      const char* why = try_rsdp_at(pa, out);
      if (why == nullptr) return Source::BiosScan;
      say_rejected("RSDP found by the BIOS-area scan", pa, why);
    }
  }
  out = CpuList{};
  return Source::None;
}

}  // namespace capmem::kernel::acpi
