// The `capmem` tool's commands (see capmem_main.cpp for the entry point and help).
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "capmem/codec.h"
#include "capmem/datacap.h"
#include "capmem/frame.h"
#include "hostsim/engines.h"
#include "hostsim/env_hostsim.h"
#include "tools/tool.h"

namespace capmem::tool {

namespace {

std::string decode_error(const char* path, const DecodeError& e) {
  std::string rule = status_rule(e.status);
  return std::string(path) + ": invalid encoding at byte offset " + std::to_string(e.offset) + ": " +
         status_name(e.status) + (rule.empty() ? "" : " (rule " + rule + ")");
}

Result<DataCap> cap_of_file(const MappedFile& f) {
  Progress bar("hashing", f.size());
  return DataCap::from_bytes(f.data(), f.size(), 0, bar.sink());
}

// `inspect` input: an encoding if it decodes (or --encoded), else raw bytes (or --raw).
Result<DataCap> open_for_inspect(const MappedFile& f, const char* path, bool force_raw, bool force_enc,
                                 const char** kind, std::string* err) {
  if (!force_raw) {
    DecodeError de{Status::Ok, 0};
    Progress bar("verifying", f.size());
    auto d = DataCap::decode(f.data(), f.size(), &de, bar.sink());
    if (d.ok() || force_enc) {
      if (!d.ok()) {
        if (de.status == Status::Ok) de.status = d.status();
        *err = decode_error(path, de);
      }
      *kind = "encoding";
      return d;
    }
  }
  *kind = "raw bytes";
  if (f.size() > kMaxCapSize) {
    *err = std::string(path) + ": larger than 4 GiB (rule 5.1)";
    return Status::TooLarge;
  }
  auto cap = cap_of_file(f);
  if (!cap.ok()) *err = std::string(path) + ": " + status_name(cap.status());
  return cap;
}

}  // namespace

int cmd_root(int argc, char** argv) {
  if (argc < 1) return fail("root: no FILE given (usage: capmem root FILE...)");
  int rc = 0;
  for (int i = 0; i < argc; ++i) {
    MappedFile f;
    std::string err;
    if (!f.open(argv[i], &err)) {
      fail(err);
      rc = 1;
      continue;
    }
    if (f.size() > kMaxCapSize) {
      fail(std::string(argv[i]) + ": larger than 4 GiB, the largest cap (rule 5.1)");
      rc = 1;
      continue;
    }
    boot_for(f.size());
    {
      auto cap = cap_of_file(f);
      if (!cap.ok()) {
        fail(std::string(argv[i]) + ": " + status_name(cap.status()));
        rc = 1;
        continue;
      }
      std::printf("%s  %s\n", hex(cap->root().value()).c_str(), argv[i]);
    }
    hostsim::shutdown();
  }
  return rc;
}

int cmd_encode(int argc, char** argv) {
  if (argc != 2) return fail("encode: expected FILE OUT (usage: capmem encode FILE OUT)");
  MappedFile f;
  std::string err;
  if (!f.open(argv[0], &err)) return fail(err);
  if (f.size() > kMaxCapSize) return fail(std::string(argv[0]) + ": larger than 4 GiB (rule 5.1)");
  boot_for(f.size());
  auto cap = cap_of_file(f);
  if (!cap.ok()) return fail(std::string(argv[0]) + ": " + status_name(cap.status()));
  OutFile out(argv[1]);
  if (!out.open(&err)) return fail(err);
  struct Ctx {
    OutFile* out;
    std::string* err;
  } ctx{&out, &err};
  auto r = cap->encode(
      [](void* c, const std::uint8_t* d, std::size_t n) {
        auto* x = static_cast<Ctx*>(c);
        return x->out->write(d, n, x->err) ? Status::Ok : Status::InvalidArgument;
      },
      &ctx);
  if (!r.ok()) return fail(err.empty() ? std::string("encode: ") + status_name(r.status()) : err);
  if (!out.commit(&err)) return fail(err);
  return 0;
}

int cmd_decode(int argc, char** argv) {
  if (argc != 2) return fail("decode: expected IN OUT (usage: capmem decode IN OUT)");
  MappedFile f;
  std::string err;
  if (!f.open(argv[0], &err)) return fail(err);
  boot_for(f.size());
  DecodeError de{Status::Ok, 0};
  auto cap = [&] {
    Progress bar("verifying", f.size());  // cleared before any message below
    return DataCap::decode(f.data(), f.size(), &de, bar.sink());
  }();
  if (!cap.ok()) {
    if (de.status == Status::Ok) de.status = cap.status();
    return fail(decode_error(argv[0], de));
  }
  OutFile out(argv[1]);
  if (!out.open(&err)) return fail(err);
  static std::uint8_t buf[1 << 20];
  for (std::uint64_t off = 0; off < cap->size(); off += sizeof buf) {
    const std::size_t n = static_cast<std::size_t>(cap->size() - off < sizeof buf ? cap->size() - off : sizeof buf);
    if (auto r = cap->read(off, buf, n); !r.ok()) return fail(std::string("decode: ") + status_name(r.status()));
    if (!out.write(buf, n, &err)) return fail(err);
  }
  if (!out.commit(&err)) return fail(err);
  return 0;
}

int cmd_inspect(int argc, char** argv) {
  bool force_raw = false, force_enc = false;
  const char* path = nullptr;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--raw") force_raw = true;
    else if (std::string_view(argv[i]) == "--encoded") force_enc = true;
    else if (path == nullptr) path = argv[i];
    else return fail("inspect: more than one input (usage: capmem inspect [--raw|--encoded] IN)");
  }
  if (path == nullptr) return fail("inspect: no input given (usage: capmem inspect IN)");
  MappedFile f;
  std::string err;
  if (!f.open(path, &err)) return fail(err);
  boot_for(f.size());
  const char* kind = "encoding";
  Result<DataCap> cap = open_for_inspect(f, path, force_raw, force_enc, &kind, &err);
  if (!cap.ok()) return fail(err);
  std::uint64_t counts[3] = {0, 0, 0};
  for (std::uint32_t i = 0; i < cap->page_count(); ++i) ++counts[static_cast<int>(cap->effective(i).kind)];
  std::printf("input:   %s (%s)\n", path, kind);
  std::printf("size:    %llu bytes (%u pages)\n", static_cast<unsigned long long>(cap->size()), cap->page_count());
  std::printf("pages:   %llu empty, %llu loaded, %llu missing\n", static_cast<unsigned long long>(counts[0]),
              static_cast<unsigned long long>(counts[1]), static_cast<unsigned long long>(counts[2]));
  std::printf("root:    %s\n", hex(cap->root().value()).c_str());
  return 0;
}

int cmd_demo(int argc, char** argv) {
  std::uint64_t gas = demo::kDefaultGas;
  bool quiet = false;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--gas" && i + 1 < argc) {
      char* end = nullptr;
      gas = std::strtoull(argv[++i], &end, 10);
      if (end == nullptr || *end != '\0') return fail(std::string("demo: --gas takes a number, not '") + argv[i] + "'");
    } else if (std::string_view(argv[i]) == "--quiet") {
      quiet = true;
    } else {
      return fail(std::string("demo: unknown argument '") + argv[i] + "' (usage: capmem demo [--gas N])");
    }
  }
  hostsim::boot(256ull << 20);
  if (!quiet) {
    const std::uint64_t code_end = fault::CODE_BASE + std::uint64_t{demo::kCodePages} * PAGE_SIZE;
    const std::uint64_t mem_end = fault::DATA_BASE + std::uint64_t{demo::kMemPages} * PAGE_SIZE;
    std::printf("capmem demo: a deterministic guest in the hosted simulation\n");
    std::printf("  code  [0x%08llx, 0x%08llx)  read-only code cap, %u pages, op table of %u ops at its start\n",
                static_cast<unsigned long long>(fault::CODE_BASE), static_cast<unsigned long long>(code_end),
                demo::kCodePages, demo::kOps);
    std::printf("  mem   [0x%08llx, 0x%08llx)  copy-on-write `mem` cap, %u pages (every 7th Empty)\n",
                static_cast<unsigned long long>(fault::DATA_BASE), static_cast<unsigned long long>(mem_end),
                demo::kMemPages);
    std::printf("  pinned pages %u..%u of mem read-only; null guard below 0x%llx; gas %llu (page-in %llu, CoW %llu)\n",
                demo::kPinned.first_page, demo::kPinned.first_page + demo::kPinned.pages - 1,
                static_cast<unsigned long long>(fault::CODE_BASE), static_cast<unsigned long long>(gas),
                static_cast<unsigned long long>(fault::kGasCosts.page_in),
                static_cast<unsigned long long>(fault::kGasCosts.cow));
  }
  std::string lines[2];
  for (int e = 0; e < 2; ++e) {
    const auto kind = e == 0 ? hostsim::EngineKind::Mmu : hostsim::EngineKind::Interpreter;
    auto rep = hostsim::run_demo(kind, gas);
    if (!rep.ok) return fail("demo: " + rep.error);
    const auto& c = rep.counters;
    if (!quiet) {
      std::printf("\nengine: %s\n", hostsim::engine_name(kind));
      std::printf("  ops done %u of %u: %s", rep.progress.ops_done, demo::kOps - 1,
                  rep.progress.stop == fault::Outcome::Retry ? "ran to the end\n" : "stopped: ");
      if (rep.progress.stop != fault::Outcome::Retry)
        std::printf("%s at 0x%llx (op %u)\n", fault::outcome_name(rep.progress.stop),
                    static_cast<unsigned long long>(rep.progress.addr.value()), rep.progress.ops_done);
      std::printf(
          "  faults: %llu CoW page-ins (read-only), %llu read-only clusters (%llu pages), %llu copies, %llu spurious, %llu guest faults\n",
          static_cast<unsigned long long>(c.page_in), static_cast<unsigned long long>(c.clusters),
          static_cast<unsigned long long>(c.cluster_pages), static_cast<unsigned long long>(c.cow),
          static_cast<unsigned long long>(c.spurious), static_cast<unsigned long long>(c.guest_faults));
      std::printf("  gas used %llu; load checksum %016llx\n", static_cast<unsigned long long>(rep.gas_used),
                  static_cast<unsigned long long>(rep.progress.checksum));
      std::printf("  %s\n", rep.line.c_str());
    }
    lines[e] = rep.line;
  }
  hostsim::shutdown();
  if (lines[0] != lines[1])
    return fail("demo: the engines disagree:\n  mmu:         " + lines[0] + "\n  interpreter: " + lines[1]);
  std::printf("%s\n", lines[0].c_str());
  return 0;
}

}  // namespace capmem::tool
