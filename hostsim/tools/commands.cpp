// The `capmem` tool's commands (see capmem_main.cpp for the entry point and help).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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
#include "capmem/pack.h"
#include "engines.h"
#include "hostsim/env_hostsim.h"
#include "tools/store.h"
#include "tools/tool.h"

namespace capmem::tool {

namespace {

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

// An encoding as a ByteSource of known length, in bounded memory. A seekable input is read
// where it is (pread, each byte once: rule 5.3 holds for a file that changes meanwhile, and
// a file that shrinks is reported); any other is first copied to a Spool (tool.h). Either
// way no more is read than its checked header allows: 12 bytes first; if size and first
// offset pass the decoder's header checks, the first list offset bounds the slot count,
// and the input may be at most 12 + 4 * count + 4133 * count bytes (each slot at most one
// Loaded page; count at most size / 4096). A longer input is rejected without reading it
// (a 256 GiB sparse file costs 12 bytes).
class EncInput {
 public:
  explicit EncInput(FileSource& f) : f_(f) {}
  enum class Open : std::uint8_t { Read, TooLong, Error };
  // *header_ok: the header is an encoding's. Not an encoding's, a stream's first bytes
  // (at most 12) are in prefix() for a raw read.
  Open open(bool* header_ok, std::string* err);
  [[nodiscard]] ByteSource source() const { return f_.source(); }
  [[nodiscard]] const std::uint8_t* prefix() const { return f_.head(); }
  [[nodiscard]] std::size_t prefix_len() const { return f_.in().seekable() ? 0 : f_.head_len(); }
  // After a decode: the input ended early or failed while it was read (*err set).
  bool failed(std::string* err) const { return f_.failed(err); }

 private:
  FileSource& f_;
};

// The FileSource is opened by the caller (and a stream's first bytes may already be read).
EncInput::Open EncInput::open(bool* header_ok, std::string* err) {
  *header_ok = false;
  const bool seekable = f_.in().seekable();
  if (!f_.fill(12, err)) return Open::Error;
  if (f_.head_len() < 12) return Open::Read;  // the decoder reports empty / missing bytes
  // Where the header alone decides, the decoder sees the bytes read so far, from a file as
  // from a stream (the same error for both).
  const auto cut = [this](std::uint64_t n) {
    f_.cut(n);
    return Open::Read;
  };
  const std::uint8_t* head = f_.head();
  const std::uint64_t size = codec::get_u64(head);
  if (size % PAGE_SIZE != 0 || size > kMaxCapSize || codec::get_u32(head + 8) != 12) return cut(12);
  *header_ok = true;
  const std::uint64_t n = size / PAGE_SIZE;
  std::uint64_t bound = 12 + n * (4 + codec::kLoadedLen);
  if (n != 0) {
    if (!f_.fill(16, err)) return Open::Error;
    if (f_.head_len() >= 16) {
      const std::uint64_t o0 = codec::get_u32(head + 12);
      // A bad first slot offset is reported by the decoder from these 16 bytes.
      if (o0 == 0 || o0 % 4 != 0 || o0 / 4 > n) return cut(16);
      bound = 12 + o0 + (o0 / 4) * codec::kLoadedLen;
    }
  }
  if (!seekable && !f_.fill(bound + 1, err)) return Open::Error;
  if (f_.len() > bound) {
    *err = f_.in().path() + ": invalid encoding at byte offset " + std::to_string(bound) + ": " +
           status_name(Status::DecodeTrailingBytes) + " (rule 5.2: longer than the " + std::to_string(bound) +
           " bytes an encoding of this size and slot count can have)";
    return Open::TooLong;
  }
  return Open::Read;
}

// Checks the encoding (codec::decode_pages: every check of DataCap::decode) with a small
// simulated machine (a batch of frames at a time), handing each verified page to `fn`.
// With `missing`, in thin mode (codec::decode_pages_thin, rule 8.6): each Missing slot goes
// to `missing`, in page order with the Loaded pages.
bool decode_stream(EncInput& e, const std::string& path, codec::VerifiedPage fn, codec::MissingSlot missing, void* ctx,
                   std::uint64_t* size, std::string* err) {
  if (!boot_for(0, err)) return false;
  DecodeError de{Status::Ok, 0};
  const std::uint64_t len = e.source().len;
  const Status st = [&] {
    Progress bar("verifying", len);  // cleared before any message below
    return missing != nullptr ? codec::decode_pages_thin(e.source(), fn, missing, ctx, size, &de, bar.sink())
                              : codec::decode_pages(e.source(), fn, ctx, size, &de, bar.sink());
  }();
  if (e.failed(err)) return false;
  if (st == Status::Ok) return true;
  if (err->empty()) {  // not the callback's own error
    if (de.status == Status::Ok) de.status = st;
    *err = decode_error(path, de);
    if (de.status == Status::DecodeMissingSlot) *err += "; a thin encoding (rule 8.6) decodes with --store DIR|PACK";
  }
  return false;
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

// The name as sha256sum prints it (coreutils' digest.c): a name holding `\`, newline or
// carriage return gets a leading `\` on its line and those characters escaped, so no
// name can forge a second line or a line of another file.
std::string escaped_name(std::string_view name, bool* escaped) {
  *escaped = name.find_first_of("\\\n\r") != std::string_view::npos;
  if (!*escaped) return std::string(name);
  std::string s;
  for (const char ch : name) {
    if (ch == '\\') s += "\\\\";
    else if (ch == '\n') s += "\\n";
    else if (ch == '\r') s += "\\r";
    else s += ch;
  }
  return s;
}

}  // namespace

int cmd_root(const Args& a) {
  if (a.operands.empty()) return fail("root: no FILE given (usage: capmem root FILE...)");
  hash::init();
  int rc = 0;
  for (const char* path : a.operands) {
    InFile f;
    std::string err;
    RawSummary s;
    if (!f.open(path, &err) || !stream_raw(f, nullptr, 0, &s, &err)) {
      std::fflush(stdout);  // keep stdout and stderr in file order
      fail(err);
      rc = 1;
      continue;
    }
    bool escaped = false;
    const std::string name = escaped_name(path, &escaped);
    std::printf("%s%s  %s\n", escaped ? "\\" : "", hex(s.root).c_str(), name.c_str());
  }
  return rc;
}

int cmd_decode(const Args& a) {
  const char* store_path = nullptr;
  for (const Args::Opt& o : a.opts)
    if (o.name == "--store") store_path = o.value;
  if (a.operands.size() != 2) return fail("decode: expected IN OUT (usage: capmem decode [--store DIR|PACK] IN OUT)");
  const char* const* argv = a.operands.data();
  std::string err;
  if (store_path != nullptr && std::string_view(store_path) == "-" && std::string_view(argv[0]) == "-")
    return fail("decode: the store and IN cannot both be standard input");
  OutFile out(argv[1]);
  if (!out.open(&err)) return fail(err);
  PageStore store;
  if (store_path != nullptr && !store.open(store_path, &err)) return fail(err);
  InFile f;
  if (!f.open(argv[0], &err)) return fail(err);
  if (f.same_file(argv[1]))
    return fail(std::string("decode: '") + argv[0] + "' and '" + argv[1] + "' are the same file");
  hash::init();
  FileSource fs(f);
  if (!fs.open(&err)) return fail(err);
  EncInput e(fs);
  bool header_ok = false;
  if (e.open(&header_ok, &err) != EncInput::Open::Read) return fail(err);
  // Each verified page goes to OUT as it comes (Empty pages between them: holes in a
  // regular OUT, zeros in a stream); OUT is committed only once the whole input passed.
  // With --store, a Missing page (thin mode) is taken from the store and verified there
  // (PageStore::fetch: DataCap::resolve, rule 8.7) before it is written.
  struct Ctx {
    OutFile* out;
    std::string* err;
    const PageStore* store;
    const std::string* path;
    std::uint64_t next = 0;  // the page after the last one written
  } ctx{.out = &out, .err = &err, .store = &store, .path = &f.path()};
  auto put = [](void* c, std::uint32_t page, const std::uint8_t* bytes, const Hash32&) {
    auto* x = static_cast<Ctx*>(c);
    const bool ok = x->out->skip((page - x->next) * PAGE_SIZE, x->err) && x->out->write(bytes, PAGE_SIZE, x->err);
    x->next = std::uint64_t{page} + 1;
    return ok ? Status::Ok : Status::InvalidArgument;
  };
  auto missing = [](void* c, std::uint32_t page, const Hash32& h) {
    auto* x = static_cast<Ctx*>(c);
    alignas(64) static std::uint8_t bytes[PAGE_SIZE];
    std::string why;
    if (!x->store->fetch(page, h, bytes, &why)) {
      *x->err = *x->path + ": " + why;
      return Status::NotInStore;
    }
    const bool ok = x->out->skip((page - x->next) * PAGE_SIZE, x->err) && x->out->write(bytes, PAGE_SIZE, x->err);
    x->next = std::uint64_t{page} + 1;
    return ok ? Status::Ok : Status::InvalidArgument;
  };
  std::uint64_t size = 0;
  if (!decode_stream(e, f.path(), put, store_path != nullptr ? +missing : nullptr, &ctx, &size, &err)) return fail(err);
  if (!out.skip(size - ctx.next * PAGE_SIZE, &err)) return fail(err);
  if (!out.commit(&err)) return fail(err);
  return 0;
}

int cmd_inspect(const Args& a) {
  bool force_raw = false, force_enc = false;
  for (const Args::Opt& o : a.opts) {
    if (o.name == "--raw") force_raw = true;
    else if (o.name == "--encoded") force_enc = true;
  }
  if (a.operands.size() > 1) return fail("inspect: more than one input (usage: capmem inspect [--raw|--encoded] IN)");
  if (a.operands.empty()) return fail("inspect: no input given (usage: capmem inspect [--raw|--encoded] IN)");
  const char* path = a.operands[0];
  if (force_raw && force_enc) return fail("inspect: --raw and --encoded exclude each other");
  InFile f;
  std::string err;
  if (!f.open(path, &err)) return fail(err);
  hash::init();
  FileSource fs(f);
  if (!fs.open(&err)) return fail(err);
  if (!force_raw && !force_enc) {  // a page pack (rule 8.7): verified page by page
    if (!fs.fill(sizeof store::kPackMagic, &err)) return fail(err);
    if (fs.head_len() >= sizeof store::kPackMagic &&
        std::memcmp(fs.head(), store::kPackMagic, sizeof store::kPackMagic) == 0)
      return inspect_pack(fs);
  }
  EncInput e(fs);
  if (!force_raw) {
    bool header_ok = false;
    const EncInput::Open r = e.open(&header_ok, &err);
    if (r == EncInput::Open::Error) return fail(err);
    if (header_ok || force_enc) {
      // Structurally an encoding: a failed check is an error, not a reason to call it raw.
      if (r == EncInput::Open::TooLong) return fail(err + " (--raw reads it as bytes)");
      // The leaf of every page up to the last Loaded one (32 bytes each: grows with the
      // slots the input holds, never with the size it claims); the rest are zero leaves.
      // Decoded in thin mode (rule 8.6): a Missing(h) slot's leaf is h (rule 2.2).
      struct Leaves {
        std::vector<Hash32> leaves;
        std::uint64_t missing = 0;
      } l;
      auto put = [](void* c, std::uint32_t page, const std::uint8_t*, const Hash32& h) {
        auto* x = static_cast<Leaves*>(c);
        x->leaves.resize(std::size_t{page} + 1);
        x->leaves[page] = h;
        return Status::Ok;
      };
      auto missing = [](void* c, std::uint32_t page, const Hash32& h) {
        auto* x = static_cast<Leaves*>(c);
        x->missing++;
        x->leaves.resize(std::size_t{page} + 1);
        x->leaves[page] = h;
        return Status::Ok;
      };
      std::uint64_t size = 0;
      if (!decode_stream(e, f.path(), put, missing, &l, &size, &err))
        return fail(err + (force_enc ? "" : " (--raw reads it as bytes)"));
      std::uint64_t nonzero = 0;
      for (const Hash32& h : l.leaves) nonzero += h.is_zero() ? 0 : 1;
      const std::uint64_t pages = size / PAGE_SIZE;
      const Hash32 root =
          hash::node(hash::uint64_root(size), hash::merkleize(l.leaves.data(), l.leaves.size(), pages));  // rule 3.4
      print_summary(path, "encoding", size, pages - nonzero, nonzero - l.missing, l.missing, root);
      if (l.missing != 0) std::printf("thin:    %llu missing\n", static_cast<unsigned long long>(l.missing));
      return 0;
    }
  }
  RawSummary s;
  if (!stream_raw(f, e.prefix(), e.prefix_len(), &s, &err)) return fail(err);
  print_summary(path, "raw bytes", s.size, s.empty, s.loaded, 0, s.root);
  return 0;
}

// `demo --pack OUT`: every distinct non-zero page of the demo's code and mem caps (demo::build),
// as one pack (rule 8.7) sorted by root: the page store the kernel takes as a boot module to
// resolve a thin demo from.
int demo_pack(const char* path) {
  std::string err;
  OutFile out(path);
  if (!out.open(&err)) return fail(err);
  hostsim::boot(256ull << 20);
  int rc = 0;
  {
    auto img = demo::build();
    if (!img.ok()) return fail(std::string("demo: building the scenario: ") + status_name(img.status()));
    std::vector<store::PackEntry> entries;
    for (const DataCap* c : {&img->code, &img->mem}) {
      for (std::uint32_t p = 0; p < c->page_count(); ++p) {
        const SlotView v = c->effective(p);
        if (v.kind == SlotKind::Loaded)
          entries.push_back(
              store::PackEntry{.root = *v.hash, .bytes = static_cast<const std::uint8_t*>(v.frame->virt())});
      }
    }
    std::sort(entries.begin(), entries.end(), [](const store::PackEntry& x, const store::PackEntry& y) {
      return store::root_compare(x.root, y.root) < 0;
    });
    entries.erase(std::unique(entries.begin(), entries.end(),
                              [](const store::PackEntry& x, const store::PackEntry& y) {
                                return store::root_compare(x.root, y.root) == 0;
                              }),
                  entries.end());
    struct Ctx {
      OutFile* out;
      std::string* err;
    } ctx{.out = &out, .err = &err};
    auto sink = [](void* c, const std::uint8_t* d, std::size_t n) {
      auto* x = static_cast<Ctx*>(c);
      return x->out->write(d, n, x->err) ? Status::Ok : Status::InvalidArgument;
    };
    if (!store::pack_write(entries.data(), static_cast<std::uint32_t>(entries.size()), sink, &ctx).ok() ||
        !out.commit(&err))
      rc = fail(err);
  }
  hostsim::shutdown();
  return rc;
}

int cmd_demo(const Args& a) {
  std::uint64_t gas = demo::kDefaultGas;
  bool quiet = false;
  bool thin = false;
  const char* pack = nullptr;
  const char* store_path = nullptr;
  for (const Args::Opt& o : a.opts) {
    if (o.name == "--thin") {
      thin = true;
    } else if (o.name == "--store") {
      store_path = o.value;
    } else if (o.name == "--pack") {
      pack = o.value;
    } else if (o.name == "--quiet") {
      quiet = true;
    } else if (o.name == "--gas" && !parse_u64(o.value, &gas)) {
      return fail(std::string("demo: --gas takes a plain decimal number from 0 to 18446744073709551615, not '") +
                  o.value + "'");
    }
  }
  if (!a.operands.empty())
    return fail(std::string("demo: unknown argument '") + a.operands[0] +
                "' (usage: capmem demo [--gas N] [--quiet] | capmem demo --pack OUT)");
  if (pack != nullptr && (thin || store_path != nullptr))
    return fail("demo: --pack writes the pages and runs nothing: it takes no --thin or --store");
  if (pack != nullptr) return demo_pack(pack);
  if (store_path != nullptr && !thin) return fail("demo: --store answers a thin run's requests (add --thin)");
  // --thin --store: NeedPage answered from the tool's page store (unverified here: the demo's
  // host verifies every page through DataCap::resolve, rule 8.7).
  PageStore tool_store;
  std::string err;
  if (store_path != nullptr && !tool_store.open(store_path, &err)) return fail(err);
  const demo::PageStore demo_store{.ctx = &tool_store, .find = [](void* ctx, const Hash32& h, ByteSource* out) {
                                     std::string why;
                                     switch (static_cast<PageStore*>(ctx)->raw(h, out, &why)) {
                                       case DirStore::Get::Found: return Status::Ok;
                                       case DirStore::Get::Absent: return Status::NotInStore;
                                       case DirStore::Get::Error: break;
                                     }
                                     std::fprintf(stderr, "capmem: demo: %s\n", why.c_str());
                                     return Status::InvalidArgument;
                                   }};
  const hostsim::DemoOptions opt{.thin = thin, .store = store_path != nullptr ? &demo_store : nullptr};
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
    if (thin)
      std::printf(
          "  thin: mem's non-Empty pages are Missing(hash) (rule 8.1), each resolved on its first access from %s\n",
          store_path != nullptr ? store_path : "a second build of the demo");
  }
  std::string lines[2];
  for (int e = 0; e < 2; ++e) {
    const auto kind = e == 0 ? hostsim::EngineKind::Mmu : hostsim::EngineKind::Interpreter;
    auto rep = hostsim::run_demo(kind, gas, opt);
    if (!rep.ok) return fail("demo: " + rep.error);
    if (rep.resolve_error != Status::Ok)
      return fail(std::string("demo: ") + hostsim::engine_name(kind) + " engine: a page request was not answered (" +
                  status_name(rep.resolve_error) + "): the guest took a page fault");
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
  std::string full_line;
  if (thin) {  // rule 8.3: root, gas, cow and page_in as with every page present
    auto rep = hostsim::run_demo(hostsim::EngineKind::Interpreter, gas);
    if (!rep.ok) return fail("demo: " + rep.error);
    full_line = rep.line;
  }
  hostsim::shutdown();
  if (lines[0] != lines[1])
    return fail("demo: the engines disagree:\n  mmu:         " + lines[0] + "\n  interpreter: " + lines[1]);
  if (thin && lines[0].rfind(full_line + " need_page=", 0) != 0)
    return fail("demo: the thin run differs from the run with every page present (rule 8.3):\n  thin: " + lines[0] +
                "\n  full: " + full_line);
  std::printf("%s\n", lines[0].c_str());
  return 0;
}

}  // namespace capmem::tool
