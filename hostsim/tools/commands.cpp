// The `capmem` tool's commands (see capmem_main.cpp for the entry point and help).
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "capmem/codec.h"
#include "capmem/datacap.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/mem.h"
#include "engines.h"
#include "hostsim/env_hostsim.h"
#include "tools/tool.h"

namespace capmem::tool {

namespace {

std::uint64_t get_le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string decode_error(const std::string& path, const DecodeError& e) {
  std::string rule = status_rule(e.status);
  return path + ": invalid encoding at byte offset " + std::to_string(e.offset) + ": " + status_name(e.status) +
         (rule.empty() ? "" : " (rule " + rule + ")");
}

// What `root` and `inspect --raw` report about a file's bytes.
struct RawSummary {
  Hash32 root;
  std::uint64_t size = 0;  // the cap's size: the byte count rounded up to a page, >= 1 page
  std::uint64_t empty = 0, loaded = 0;
};

// The root of the cap DataCap::from_bytes would build from the input's bytes (rules 3.6,
// 3.4, 2.2), computed while streaming: a fixed buffer of kChunk bytes plus one 32-byte leaf
// per page, no simulated RAM. `prefix` holds bytes already read from `in`.
bool stream_raw(InFile& in, const std::uint8_t* prefix, std::size_t prefix_len, RawSummary* out, std::string* err) {
  constexpr std::size_t kChunk = 1u << 20;
  constexpr std::size_t kPages = kChunk / PAGE_SIZE;
  alignas(64) static std::uint8_t buf[kChunk];
  if (in.size_hint() > kMaxCapSize) {  // a regular file over 4 GiB: no need to read it
    *err = in.path() + ": larger than 4 GiB, the largest cap (rule 5.1)";
    return false;
  }
  std::vector<Hash32> leaves;
  const std::uint64_t hint_pages = (in.size_hint() + PAGE_SIZE - 1) / PAGE_SIZE;
  constexpr std::uint64_t kMaxPages = kMaxCapSize / PAGE_SIZE;
  leaves.reserve(static_cast<std::size_t>(hint_pages < kMaxPages ? hint_pages : kMaxPages));
  Progress bar("hashing", in.size_hint());
  std::uint64_t total = 0;
  const std::uint8_t* ptrs[kPages];
  Hash32 hashes[kPages];
  std::size_t idx[kPages];
  for (bool first = true;; first = false) {
    std::size_t n = 0;
    if (first && prefix_len != 0) {
      __builtin_memcpy(buf, prefix, prefix_len);
      n = prefix_len;
    }
    const std::int64_t got = in.read_full(buf + n, kChunk - n, err);
    if (got < 0) return false;
    n += static_cast<std::size_t>(got);
    if (total + n > kMaxCapSize) {
      *err = in.path() + ": larger than 4 GiB, the largest cap (rule 5.1)";
      return false;
    }
    const std::size_t pages = (n + PAGE_SIZE - 1) / PAGE_SIZE;
    if (n % PAGE_SIZE != 0) __builtin_memset(buf + n, 0, pages * PAGE_SIZE - n);  // rule 3.6 zero tail
    const std::size_t base = leaves.size();
    leaves.resize(base + pages);  // value-initialized: the zero leaf of an Empty page (rule 2.2)
    std::size_t k = 0;
    for (std::size_t i = 0; i < pages; ++i) {
      const std::uint8_t* p = buf + i * PAGE_SIZE;
      if (mem::page_is_zero(p)) {
        ++out->empty;
        continue;
      }
      ptrs[k] = p;
      idx[k++] = base + i;
    }
    hash::page_content_hashes(ptrs, hashes, k);
    for (std::size_t j = 0; j < k; ++j) leaves[idx[j]] = hashes[j];
    out->loaded += k;
    total += n;
    bar.update(total);
    if (n < kChunk) break;
  }
  if (leaves.empty()) {  // rule 3.6: at least one page
    leaves.emplace_back();
    ++out->empty;
  }
  out->size = std::uint64_t{leaves.size()} * PAGE_SIZE;
  const Hash32 pages_root = hash::merkleize(leaves.data(), leaves.size(), leaves.size());
  out->root = hash::node(hash::uint64_root(out->size), pages_root);  // rule 3.4
  return true;
}

// Reads what could be an encoding into `buf`, never more than its checked header allows:
// 12 bytes first; if size and first offset pass the decoder's header checks, the first
// list offset bounds the slot count, and the input may be at most
// 12 + 4 * count + 4133 * count bytes (each slot at most one Loaded page; count at most
// size / 4096). A longer input is rejected here without reading it (a 256 GiB sparse
// file costs 12 bytes). Memory grows with the bytes read, never with a claim.
enum class EncRead : std::uint8_t { Read, TooLong, Error };
EncRead read_encoding(InFile& in, ByteBuf* buf, bool* header_ok, std::string* err) {
  *header_ok = false;
  if (!buf->fill(in, 12, err)) return EncRead::Error;
  if (buf->size() < 12) return EncRead::Read;  // the decoder reports empty / missing bytes
  const std::uint64_t size = get_le(buf->data(), 8);
  if (size % PAGE_SIZE != 0 || size > kMaxCapSize || get_le(buf->data() + 8, 4) != 12) return EncRead::Read;
  *header_ok = true;
  const std::uint64_t n = size / PAGE_SIZE;
  std::uint64_t bound = 12 + n * (4 + codec::kLoadedLen);
  if (n != 0) {
    if (!buf->fill(in, 16, err)) return EncRead::Error;
    if (buf->size() >= 16) {
      const std::uint64_t o0 = get_le(buf->data() + 12, 4);
      // A bad first slot offset is reported by the decoder from these 16 bytes.
      if (o0 == 0 || o0 % 4 != 0 || o0 / 4 > n) return EncRead::Read;
      bound = 12 + o0 + (o0 / 4) * codec::kLoadedLen;
    }
  }
  if (!buf->fill(in, bound + 1, err)) return EncRead::Error;
  if (buf->size() > bound) {
    *err = in.path() + ": invalid encoding at byte offset " + std::to_string(bound) + ": " +
           status_name(Status::DecodeTrailingBytes) + " (rule 5.2: longer than the " + std::to_string(bound) +
           " bytes an encoding of this size and slot count can have)";
    return EncRead::TooLong;
  }
  return EncRead::Read;
}

// Decodes `buf` (read by read_encoding) on a machine sized from its length.
Result<DataCap> decode_buf(const ByteBuf& buf, const std::string& path, std::string* err) {
  if (!boot_for(buf.size(), err)) return Status::OutOfFrames;
  DecodeError de{Status::Ok, 0};
  auto cap = [&] {
    Progress bar("verifying", buf.size());  // cleared before any message below
    return DataCap::decode(buf.data(), static_cast<std::size_t>(buf.size()), &de, bar.sink());
  }();
  if (!cap.ok()) {
    if (de.status == Status::Ok) de.status = cap.status();
    *err = decode_error(path, de);
  }
  return cap;
}

void print_summary(const char* path, const char* kind, std::uint64_t size, std::uint64_t empty, std::uint64_t loaded,
                   std::uint64_t missing, const Hash32& root) {
  std::printf("input:   %s (%s)\n", path, kind);
  std::printf("size:    %llu bytes (%llu pages)\n", static_cast<unsigned long long>(size),
              static_cast<unsigned long long>(size / PAGE_SIZE));
  std::printf("pages:   %llu empty, %llu loaded, %llu missing\n", static_cast<unsigned long long>(empty),
              static_cast<unsigned long long>(loaded), static_cast<unsigned long long>(missing));
  std::printf("root:    %s\n", hex(root).c_str());
}

}  // namespace

int cmd_root(int argc, char** argv) {
  if (argc < 1) return fail("root: no FILE given (usage: capmem root FILE...)");
  hash::init();
  int rc = 0;
  for (int i = 0; i < argc; ++i) {
    InFile f;
    std::string err;
    RawSummary s;
    if (!f.open(argv[i], &err) || !stream_raw(f, nullptr, 0, &s, &err)) {
      std::fflush(stdout);  // keep stdout and stderr in file order
      fail(err);
      rc = 1;
      continue;
    }
    std::printf("%s  %s\n", hex(s.root).c_str(), argv[i]);
  }
  return rc;
}

int cmd_encode(int argc, char** argv) {
  if (argc != 2) return fail("encode: expected FILE OUT (usage: capmem encode FILE OUT)");
  std::string err;
  OutFile out(argv[1]);
  if (!out.open(&err)) return fail(err);
  InFile f;
  if (!f.open(argv[0], &err)) return fail(err);
  auto cap = [&]() -> Result<DataCap> {
    if (f.size_hint() > kMaxCapSize) {  // a regular file over 4 GiB: no need to read it
      err = std::string(argv[0]) + ": larger than 4 GiB (rule 5.1)";
      return Status::TooLarge;
    }
    ByteBuf buf;  // the content, read once; freed once the cap holds it
    if (!buf.fill(f, kMaxCapSize + 1, &err)) return Status::InvalidArgument;
    if (buf.size() > kMaxCapSize) {
      err = std::string(argv[0]) + ": larger than 4 GiB (rule 5.1)";
      return Status::TooLarge;
    }
    if (!boot_for(buf.size(), &err)) return Status::OutOfFrames;
    Progress bar("hashing", buf.size());
    auto c = DataCap::from_bytes(buf.data(), static_cast<std::size_t>(buf.size()), 0, bar.sink());
    if (!c.ok()) err = std::string(argv[0]) + ": " + status_name(c.status());
    return c;
  }();
  if (!cap.ok()) return fail(err);
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
  std::string err;
  OutFile out(argv[1]);
  if (!out.open(&err)) return fail(err);
  InFile f;
  if (!f.open(argv[0], &err)) return fail(err);
  auto cap = [&]() -> Result<DataCap> {
    ByteBuf buf;  // the encoding, read once; freed once the cap holds its pages
    bool header_ok = false;
    if (read_encoding(f, &buf, &header_ok, &err) != EncRead::Read) return Status::InvalidArgument;
    return decode_buf(buf, f.path(), &err);
  }();
  if (!cap.ok()) return fail(err);
  // Empty pages: holes in a regular OUT, zeros in a stream (OutFile::skip).
  alignas(64) static std::uint8_t page[PAGE_SIZE];
  for (std::uint32_t i = 0; i < cap->page_count(); ++i) {
    if (cap->effective(i).kind == SlotKind::Empty) {
      if (!out.skip(PAGE_SIZE, &err)) return fail(err);
      continue;
    }
    if (auto r = cap->read(std::uint64_t{i} * PAGE_SIZE, page, PAGE_SIZE); !r.ok())
      return fail(std::string("decode: ") + status_name(r.status()));
    if (!out.write(page, PAGE_SIZE, &err)) return fail(err);
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
  if (path == nullptr) return fail("inspect: no input given (usage: capmem inspect [--raw|--encoded] IN)");
  if (force_raw && force_enc) return fail("inspect: --raw and --encoded exclude each other");
  InFile f;
  std::string err;
  if (!f.open(path, &err)) return fail(err);
  hash::init();
  ByteBuf buf;
  bool header_ok = false;
  if (!force_raw) {
    const EncRead r = read_encoding(f, &buf, &header_ok, &err);
    if (r == EncRead::Error) return fail(err);
    if (header_ok || force_enc) {
      // Structurally an encoding: a failed check is an error, not a reason to call it raw.
      if (r == EncRead::TooLong) return fail(err + " (--raw reads it as bytes)");
      auto cap = decode_buf(buf, f.path(), &err);
      if (!cap.ok()) return fail(err + (force_enc ? "" : " (--raw reads it as bytes)"));
      std::uint64_t counts[3] = {0, 0, 0};
      for (std::uint32_t i = 0; i < cap->page_count(); ++i) ++counts[static_cast<int>(cap->effective(i).kind)];
      print_summary(path, "encoding", cap->size(), counts[0], counts[1], counts[2], cap->root().value());
      return 0;
    }
  }
  RawSummary s;
  if (!stream_raw(f, buf.data(), static_cast<std::size_t>(buf.size()), &s, &err)) return fail(err);
  print_summary(path, "raw bytes", s.size, s.empty, s.loaded, 0, s.root);
  return 0;
}

int cmd_demo(int argc, char** argv) {
  std::uint64_t gas = demo::kDefaultGas;
  bool quiet = false;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--gas" && i + 1 < argc) {
      if (!parse_u64(argv[++i], &gas))
        return fail(std::string("demo: --gas takes a plain decimal number from 0 to 18446744073709551615, not '") +
                    argv[i] + "'");
    } else if (std::string_view(argv[i]) == "--gas") {
      return fail("demo: --gas needs a number (usage: capmem demo [--gas N])");
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
