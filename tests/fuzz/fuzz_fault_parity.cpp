// libFuzzer target: engine parity of the copy-on-write fault handler (include/capmem/fault.h,
// tests/demo/demo.h, tests/demo/engines.h). The input becomes a small world (a `mem` cap
// with Empty pages and an optional pinned range, a code cap whose first page is an op table
// in the demo's 16-byte format, a gas budget, an optional injected frame-allocation
// failure); demo::run_ops() executes the table once through the hostsim MMU + #PF handler
// engine and once through the interpreter engine, each on a fresh copy of the world.
// Both must agree on the stop outcome and address, ops done, load checksum, gas used, every
// handler counter except `spurious` (a TLB artefact of the MMU engine), and the root of
// `mem` after teardown + flush. An independent byte model (original bytes + the first
// ops_done operations of the table, parsed here) must give the same checksum, and its root
// computed here from rules 2.2/3.4 must be the engines' root.
// Every frame comes back (FrameLeakGuard).
//
// Thin (rule 8.3): the same world is also run with some pages Missing (made by the thin wire
// encoding, rule 8.6) and RunConfig::resolve_missing, in both engines, every NeedPage
// answered by demo::ThinHost from the full caps, and before each guest access, at random,
// an early resolve of a Missing page (in a random order), a flush or a copy of `mem`
// (checkpoints, rule 3.8). The Missing set and that schedule come from a hash of the whole
// input (the format above is unchanged). Stop, address, ops done, checksum, gas used, the
// charge counters (page_in, clusters, cow, guest_faults) and the root must equal those of
// the all-present run with no injected failure (the oracle).
//
// Input: header of 7 bytes, then 8-byte op records (at most kMaxOps):
//   h0 mem pages = 1 + h0 % 24           h1 Empty-page mask (page i Empty if bit i % 8)
//   h2, h3 pinned range: none if h3 == 0, else first = h2 % pages, 1 + (h3 - 1) % (pages - first) pages
//   h4 gas = h4 * 10 (255: 1'000'000)    h5 inject_failure_at(h5) for the run (0: none)
//   h6 bits 0-1: extra code pages (0..3); bits 2-6: content seed; bit 7: no kEnd after the
//      ops (the table runs on into pseudo-random code bytes or off the end of the code cap)
//   op record {kind, width, region, page, off_lo, off_hi, v_lo, v_hi}: kind and width are
//   stored raw (0 end, 2 store, else load; width 1/2/4/8, anything else is up to run_ops);
//   region % 8 picks the address: 0,5,6 CoW page of mem; 1 pinned page; 2 code page;
//   3 around a region edge; 4 any 32-bit address; 7 last bytes of a mem page (straddles).
//
// Seeds: tests/fuzz/corpus/fault_parity/ is written by tests/fuzz/gen_corpus_pt_fault.py.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/frame.h"
#include "capmem/hash.h"
#include "capmem/pt.h"
#include "demo.h"
#include "engines.h"
#include "fuzz_common.h"

using namespace capmem;
using hostsim::EngineKind;

// Named (not anonymous) so tests/sim/test_fuzz_regressions_pt.cpp can include this file.
namespace fuzz_fault_parity {

constexpr std::size_t kHeader = 7;
constexpr std::size_t kMaxOps = PAGE_SIZE / sizeof(demo::Op) - 1;  // the table + kEnd fill page 0
constexpr std::uint32_t kCode = static_cast<std::uint32_t>(fault::CODE_BASE);
constexpr std::uint32_t kData = static_cast<std::uint32_t>(fault::DATA_BASE);

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void fill(std::uint8_t* p, std::size_t n, std::uint64_t seed) {
  for (std::size_t k = 0; k < n; k += 8) {
    const std::uint64_t v = mix(seed + k);
    std::memcpy(p + k, &v, n - k < 8 ? n - k : 8);
  }
}

struct Scenario {
  std::uint32_t mem_pages = 1;
  std::uint32_t code_pages = 1;
  bool has_pinned = false;
  fault::PinnedRange pinned{};
  std::uint64_t gas = 0;
  std::uint64_t inject = 0;
  std::vector<std::uint8_t> mem_bytes, code_bytes;
};

std::uint32_t address(const Scenario& s, const std::uint8_t* r) {
  const std::uint32_t page = r[3];
  const std::uint32_t off = r[4] | (std::uint32_t{r[5]} << 8);
  switch (r[2] % 8) {
    case 1:
      if (s.has_pinned) return kData + (s.pinned.first_page + page % s.pinned.pages) * PAGE_SIZE + off % PAGE_SIZE;
      break;
    case 2: return kCode + (page % s.code_pages) * PAGE_SIZE + off % PAGE_SIZE;
    case 3: {
      const std::uint32_t edges[8] = {
          kCode,
          kCode + s.code_pages * static_cast<std::uint32_t>(PAGE_SIZE),
          kData,
          kData + s.mem_pages * static_cast<std::uint32_t>(PAGE_SIZE),
          0,
          kData + static_cast<std::uint32_t>(fault::CLUSTER_SIZE),
          kCode + static_cast<std::uint32_t>(fault::CLUSTER_SIZE),
          s.has_pinned ? kData + s.pinned.first_page * static_cast<std::uint32_t>(PAGE_SIZE) : kData};
      return edges[page % 8] - 8 + off % 16;  // wraps below 0 to the top of the 32-bit space
    }
    case 4: return (page << 24) | (off << 8) | r[6];
    case 7: return kData + (page % s.mem_pages) * PAGE_SIZE + PAGE_SIZE - 1 - off % 8;
    default: break;
  }
  return kData + (page % s.mem_pages) * PAGE_SIZE + off % PAGE_SIZE;
}

Scenario parse(const std::uint8_t* data, std::size_t size) {
  Scenario s;
  std::uint8_t h[kHeader] = {};
  std::memcpy(h, data, size < kHeader ? size : kHeader);
  s.mem_pages = 1 + h[0] % 24;
  if (h[3] != 0) {
    s.has_pinned = true;
    s.pinned.first_page = h[2] % s.mem_pages;
    s.pinned.pages = 1 + (h[3] - 1) % (s.mem_pages - s.pinned.first_page);
  }
  s.gas = h[4] == 255 ? 1'000'000 : std::uint64_t{h[4]} * 10;
  s.inject = h[5];
  s.code_pages = 1 + (h[6] & 3);
  const std::uint64_t seed = (h[6] >> 2) & 31;
  const bool no_end = (h[6] & 0x80) != 0;

  s.mem_bytes.assign(s.mem_pages * PAGE_SIZE, 0);
  for (std::uint32_t i = 0; i < s.mem_pages; ++i)
    if (((h[1] >> (i % 8)) & 1) == 0) fill(&s.mem_bytes[i * PAGE_SIZE], PAGE_SIZE, seed << 32 | i << 12);
  s.code_bytes.assign(s.code_pages * PAGE_SIZE, 0);
  fill(s.code_bytes.data(), s.code_bytes.size(), (seed << 32) | 0xc0de0000ull);

  const std::size_t nops = size > kHeader ? std::min((size - kHeader) / 8, kMaxOps) : 0;
  for (std::size_t i = 0; i < nops; ++i) {
    const std::uint8_t* r = data + kHeader + 8 * i;
    demo::Op op{};
    op.kind = r[0];
    op.width = r[1];
    op.addr = address(s, r);
    const std::uint64_t v = r[6] | (std::uint64_t{r[7]} << 8);
    op.value = v == 0 ? 0 : mix(v);
    std::memcpy(&s.code_bytes[i * sizeof op], &op, sizeof op);
  }
  if (!no_end) std::memset(&s.code_bytes[nops * sizeof(demo::Op)], 0, sizeof(demo::Op));  // kEnd
  return s;
}

DataCap cap_of(const std::vector<std::uint8_t>& bytes) {
  auto c = DataCap::from_bytes(bytes.data(), bytes.size());
  FUZZ_CHECK_MSG(c.ok(), "from_bytes: %s", status_name(c.status()));
  return c.release_value();
}

struct Outcome {
  demo::Progress progress;
  fault::Counters counters;
  std::uint64_t gas_used;
  Hash32 root;
};

// Each engine runs on copies of the same caps (shared backings, own overlays: rule 3.1).
Outcome run_engine(const Scenario& s, const DataCap& code0, const DataCap& mem0, EngineKind kind) {
  auto c = code0.copy(), m = mem0.copy();
  FUZZ_CHECK_MSG(c.ok() && m.ok(), "copy");
  DataCap code = c.release_value();
  DataCap mem = m.release_value();
  auto t = pt::PageTable::create();
  FUZZ_CHECK_MSG(t.ok(), "PageTable::create");
  pt::PageTable table = t.release_value();
  Outcome o{};
  {
    fault::Run run(fault::RunConfig{.table = &table,
                                    .code = &code,
                                    .mem = &mem,
                                    .pinned = std::span<const fault::PinnedRange>(&s.pinned, s.has_pinned ? 1 : 0),
                                    .gas = s.gas});
    {
      hostsim::GuestCpu cpu(kind, run);
      // Both engines start from the same allocator state, so that "the n-th frame
      // allocation fails" hits the same step: the first run's freed slab objects would
      // otherwise wait in this CPU's slab caches and spare the second run frame allocations.
      drain_slab_caches(env::cpu_id());
      frames().inject_failure_at(s.inject);
      o.progress = demo::run_ops(cpu.engine());
      frames().inject_failure_at(0);
    }
    o.counters = run.counters();
    o.gas_used = run.gas_used();
    FUZZ_CHECK_MSG(o.gas_used <= s.gas, "%s: gas used %llu > budget %llu", hostsim::engine_name(kind),
                   static_cast<unsigned long long>(o.gas_used), static_cast<unsigned long long>(s.gas));
  }
  table.teardown();
  const auto f = mem.flush();
  FUZZ_CHECK_MSG(f.ok(), "flush: %s", status_name(f.status()));
  const auto r = mem.root();
  FUZZ_CHECK_MSG(r.ok(), "root: %s", status_name(r.status()));
  o.root = r.value();
  return o;
}

// --- Thin runs (rule 8.3) ------------------------------------------------------------------

// The thin cap of `full`: page i Missing(its hash) iff bit i of `mask` is set (Loaded pages
// only: Empty stays Empty), by encode thin -> decode thin (rule 8.6).
DataCap thin_of(const DataCap& full, std::uint64_t mask) {
  EncodeOptions opt{.thin = true,
                    .keep = [](void* c, std::uint32_t p) { return ((*static_cast<std::uint64_t*>(c) >> p) & 1) == 0; },
                    .keep_ctx = &mask};
  const auto n = full.encoded_size(opt);
  FUZZ_CHECK_MSG(n.ok(), "thin encoded_size: %s", status_name(n.status()));
  std::vector<std::uint8_t> buf(n.value());
  const auto e = full.encode(buf.data(), buf.size(), opt);
  FUZZ_CHECK_MSG(e.ok(), "thin encode: %s", status_name(e.status()));
  auto d = DataCap::decode(buf.data(), buf.size(), DecodeOptions{.thin = true});
  FUZZ_CHECK_MSG(d.ok(), "thin decode: %s", status_name(d.status()));
  return d.release_value();
}

// Before each access of the thin run: maybe resolve a Missing page early, flush or copy mem.
struct Checkpoints {
  demo::Engine inner;
  demo::Image* image;
  const demo::PageStore* store;
  std::uint64_t rng;
  std::vector<fault::PageRequest> early;  // pages to resolve early, in a random order
  std::vector<DataCap> copies;
  void step() {
    rng = mix(rng);
    switch (rng % 8) {
      case 0:
        if (!early.empty()) {
          const Status st = demo::resolve_request(*image, early.back(), *store);
          FUZZ_CHECK_MSG(st == Status::Ok || st == Status::NotMissing, "early resolve: %s", status_name(st));
          early.pop_back();
        }
        break;
      case 1: {
        const auto f = image->mem.flush();
        FUZZ_CHECK_MSG(f.ok(), "checkpoint flush: %s", status_name(f.status()));
        break;
      }
      case 2: {
        auto c = image->mem.copy();
        FUZZ_CHECK_MSG(c.ok(), "checkpoint copy: %s", status_name(c.status()));
        copies.push_back(c.release_value());
        break;
      }
      default: break;
    }
  }
  demo::Engine engine() {
    return demo::Engine{
        .ctx = this,
        .load =
            [](void* c, std::uint32_t a, unsigned w) {
              auto* self = static_cast<Checkpoints*>(c);
              self->step();
              return self->inner.load(self->inner.ctx, a, w);
            },
        .store =
            [](void* c, std::uint32_t a, unsigned w, std::uint64_t v) {
              auto* self = static_cast<Checkpoints*>(c);
              self->step();
              return self->inner.store(self->inner.ctx, a, w, v);
            },
    };
  }
};

Outcome run_thin(const Scenario& s, const DataCap& code0, const DataCap& mem0, EngineKind kind, std::uint64_t seed) {
  const std::uint64_t code_mask = mix(seed) & ((1ull << s.code_pages) - 1);
  const std::uint64_t mem_mask = mix(seed + 1) & ((1ull << s.mem_pages) - 1);
  auto fc = code0.copy(), fm = mem0.copy();
  FUZZ_CHECK_MSG(fc.ok() && fm.ok(), "copy");
  const demo::Image full{.code = fc.release_value(), .mem = fm.release_value()};
  const demo::PageStore store = demo::image_store(full);
  demo::Image image{.code = thin_of(code0, code_mask), .mem = thin_of(mem0, mem_mask)};
  Checkpoints cp{.inner = {}, .image = &image, .store = &store, .rng = mix(seed + 2), .early = {}, .copies = {}};
  // Early answers: every page Missing in the thin caps (Loaded in the full ones), shuffled.
  for (const Region region : {Region::Code, Region::Mem}) {
    const DataCap& f = region == Region::Code ? full.code : full.mem;
    const std::uint64_t mask = region == Region::Code ? code_mask : mem_mask;
    for (std::uint32_t p = 0; p < f.page_count(); ++p) {
      const SlotView v = f.effective(p);
      if (((mask >> p) & 1) != 0 && v.kind == SlotKind::Loaded)
        cp.early.push_back({.region = region, .page = p, .hash = *v.hash, .addr = VirtAddr{}});
    }
  }
  for (std::size_t i = cp.early.size(); i > 1; --i) std::swap(cp.early[i - 1], cp.early[mix(seed + 3 + i) % i]);
  auto t = pt::PageTable::create();
  FUZZ_CHECK_MSG(t.ok(), "PageTable::create");
  pt::PageTable table = t.release_value();
  Outcome o{};
  {
    fault::Run run(fault::RunConfig{.table = &table,
                                    .code = &image.code,
                                    .mem = &image.mem,
                                    .pinned = std::span<const fault::PinnedRange>(&s.pinned, s.has_pinned ? 1 : 0),
                                    .gas = s.gas,
                                    .resolve_missing = true});
    {
      hostsim::GuestCpu cpu(kind, run);
      demo::ThinHost host{.inner = cpu.engine(), .run = &run, .image = &image, .store = store};
      cp.inner = host.engine();
      o.progress = demo::run_ops(cp.engine());
      FUZZ_CHECK_MSG(host.error == Status::Ok, "%s thin: a request was not answered: %s", hostsim::engine_name(kind),
                     status_name(host.error));
    }
    o.counters = run.counters();
    o.gas_used = run.gas_used();
  }
  table.teardown();
  const auto f = image.mem.flush();
  FUZZ_CHECK_MSG(f.ok(), "thin flush: %s", status_name(f.status()));
  const auto r = image.mem.root();
  FUZZ_CHECK_MSG(r.ok(), "thin root: %s", status_name(r.status()));
  o.root = r.value();
  return o;
}

void check_thin(const Outcome& want, const Outcome& got, EngineKind kind) {
  const char* e = hostsim::engine_name(kind);
  FUZZ_CHECK_MSG(got.progress.stop == want.progress.stop, "%s thin stop %s, all present %s", e,
                 fault::outcome_name(got.progress.stop), fault::outcome_name(want.progress.stop));
  FUZZ_CHECK_MSG(got.progress.addr == want.progress.addr, "%s thin stop address %#llx, all present %#llx", e,
                 static_cast<unsigned long long>(got.progress.addr.value()),
                 static_cast<unsigned long long>(want.progress.addr.value()));
  FUZZ_CHECK_MSG(got.progress.ops_done == want.progress.ops_done, "%s thin ops done %u, all present %u", e,
                 got.progress.ops_done, want.progress.ops_done);
  FUZZ_CHECK_MSG(got.progress.checksum == want.progress.checksum, "%s thin checksum", e);
  FUZZ_CHECK_MSG(got.gas_used == want.gas_used, "%s thin gas %llu, all present %llu", e,
                 static_cast<unsigned long long>(got.gas_used), static_cast<unsigned long long>(want.gas_used));
  const fault::Counters& x = got.counters;
  const fault::Counters& y = want.counters;
  FUZZ_CHECK_MSG(
      x.page_in == y.page_in && x.clusters == y.clusters && x.cow == y.cow && x.guest_faults == y.guest_faults,
      "%s thin counters page_in=%llu clusters=%llu cow=%llu guest_faults=%llu; all present %llu %llu %llu "
      "%llu",
      e, (unsigned long long)x.page_in, (unsigned long long)x.clusters, (unsigned long long)x.cow,
      (unsigned long long)x.guest_faults, (unsigned long long)y.page_in, (unsigned long long)y.clusters,
      (unsigned long long)y.cow, (unsigned long long)y.guest_faults);
  FUZZ_CHECK_MSG(got.root == want.root, "%s thin root differs from the all-present root", e);
}

// The op table as run_ops reads it, applied to a byte model of both caps.
void check_model(const Scenario& s, const Outcome& o) {
  std::vector<std::uint8_t> mem = s.mem_bytes;
  std::uint64_t checksum = 0;
  for (std::uint32_t i = 0; i < o.progress.ops_done; ++i) {
    FUZZ_CHECK_MSG((i + 1) * sizeof(demo::Op) <= s.code_bytes.size(), "op %u past the code cap completed", i);
    demo::Op op;
    std::memcpy(&op, &s.code_bytes[i * sizeof op], sizeof op);
    FUZZ_CHECK_MSG(op.kind != demo::kEnd, "op %u is kEnd but counted as done", i);
    const unsigned width = op.width == 1 || op.width == 2 || op.width == 4 ? op.width : 8;
    const std::uint64_t a = op.addr;
    std::uint8_t* base = nullptr;
    std::uint64_t off = 0;
    if (a >= kData && a + width <= kData + mem.size()) {
      base = mem.data();
      off = a - kData;
    } else if (a >= kCode && a + width <= kCode + s.code_bytes.size() && op.kind != demo::kStore) {
      base = const_cast<std::uint8_t*>(s.code_bytes.data());
      off = a - kCode;
    }
    FUZZ_CHECK_MSG(base != nullptr, "op %u (kind %u addr %#x width %u) completed outside every region", i, op.kind,
                   op.addr, width);
    if (op.kind == demo::kStore) {
      const bool pinned = s.has_pinned && (off + width - 1) / PAGE_SIZE >= s.pinned.first_page &&
                          off / PAGE_SIZE < s.pinned.first_page + s.pinned.pages;
      FUZZ_CHECK_MSG(!pinned, "op %u: a store into the pinned range completed", i);
      for (unsigned k = 0; k < width; ++k) base[off + k] = static_cast<std::uint8_t>(op.value >> (8 * k));
      checksum = (checksum << 7 | checksum >> 57);
    } else {
      std::uint64_t v = 0;
      for (unsigned k = 0; k < width; ++k) v |= std::uint64_t{base[off + k]} << (8 * k);
      checksum = (checksum << 7 | checksum >> 57) ^ v;
    }
  }
  FUZZ_CHECK_MSG(checksum == o.progress.checksum, "checksum %#llx, model %#llx",
                 static_cast<unsigned long long>(o.progress.checksum), static_cast<unsigned long long>(checksum));
  // Rules 2.2 and 3.4 written out here (no frames: cheaper than DataCap::from_bytes, and
  // independent of the cap code): Empty -> 32 zero bytes, else the page content hash.
  std::vector<Hash32> roots(s.mem_pages);
  for (std::uint32_t i = 0; i < s.mem_pages; ++i) {
    const std::uint8_t* page = &mem[i * PAGE_SIZE];
    bool zero = true;
    for (std::size_t k = 0; k < PAGE_SIZE && zero; ++k) zero = page[k] == 0;
    roots[i] = zero ? Hash32{} : hash::page_content_hash(page);
  }
  const Hash32 pages_root = hash::merkleize(roots.data(), roots.size(), s.mem_pages);
  const Hash32 model_root = hash::node(hash::uint64_root(std::uint64_t{s.mem_pages} * PAGE_SIZE), pages_root);
  FUZZ_CHECK_MSG(model_root == o.root, "root differs from the byte model");
}

// One input; aborts on the first disagreement.
int run_one(const std::uint8_t* data, std::size_t size) {
  FrameLeakGuard leak;
  const Scenario s = parse(data, size);
  Outcome a{}, b{};
  {
    const DataCap code = cap_of(s.code_bytes);
    const DataCap mem = cap_of(s.mem_bytes);
    a = run_engine(s, code, mem, EngineKind::Mmu);
    b = run_engine(s, code, mem, EngineKind::Interpreter);
    // Thin runs against the all-present oracle without an injected failure (resolving
    // allocates frames of its own, so the n-th allocation is another step there).
    Scenario plain = s;
    plain.inject = 0;
    const Outcome oracle = s.inject == 0 ? a : run_engine(plain, code, mem, EngineKind::Mmu);
    std::uint64_t seed = 0x7e1fu;
    for (std::size_t i = 0; i < size; ++i) seed = mix(seed ^ data[i]);
    for (const EngineKind kind : {EngineKind::Mmu, EngineKind::Interpreter})
      check_thin(oracle, run_thin(plain, code, mem, kind, seed), kind);
  }
  FUZZ_CHECK_MSG(a.progress.stop == b.progress.stop, "stop: mmu %s, interpreter %s",
                 fault::outcome_name(a.progress.stop), fault::outcome_name(b.progress.stop));
  FUZZ_CHECK_MSG(a.progress.addr == b.progress.addr, "stop address: mmu %#llx, interpreter %#llx",
                 static_cast<unsigned long long>(a.progress.addr.value()),
                 static_cast<unsigned long long>(b.progress.addr.value()));
  FUZZ_CHECK_MSG(a.progress.ops_done == b.progress.ops_done, "ops done: mmu %u, interpreter %u", a.progress.ops_done,
                 b.progress.ops_done);
  FUZZ_CHECK_MSG(a.progress.checksum == b.progress.checksum, "checksum");
  FUZZ_CHECK_MSG(a.gas_used == b.gas_used, "gas: mmu %llu, interpreter %llu",
                 static_cast<unsigned long long>(a.gas_used), static_cast<unsigned long long>(b.gas_used));
  const fault::Counters& x = a.counters;
  const fault::Counters& y = b.counters;
  FUZZ_CHECK_MSG(x.page_in == y.page_in && x.clusters == y.clusters && x.cluster_pages == y.cluster_pages &&
                     x.cow == y.cow && x.guest_faults == y.guest_faults && x.out_of_frames == y.out_of_frames,
                 "counters: mmu page_in=%llu clusters=%llu cluster_pages=%llu cow=%llu guest_faults=%llu oof=%llu; "
                 "interpreter %llu %llu %llu %llu %llu %llu",
                 (unsigned long long)x.page_in, (unsigned long long)x.clusters, (unsigned long long)x.cluster_pages,
                 (unsigned long long)x.cow, (unsigned long long)x.guest_faults, (unsigned long long)x.out_of_frames,
                 (unsigned long long)y.page_in, (unsigned long long)y.clusters, (unsigned long long)y.cluster_pages,
                 (unsigned long long)y.cow, (unsigned long long)y.guest_faults, (unsigned long long)y.out_of_frames);
  FUZZ_CHECK_MSG(a.root == b.root, "root: the engines disagree");
  char la[160], lb[160];
  demo::format_line(la, sizeof la, a.root, a.gas_used, a.counters);
  demo::format_line(lb, sizeof lb, b.root, b.gas_used, b.counters);
  FUZZ_CHECK_MSG(std::strcmp(la, lb) == 0, "line: mmu '%s', interpreter '%s'", la, lb);
  check_model(s, a);
  return 0;
}

}  // namespace fuzz_fault_parity

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz_fault_parity::run_one(data, size);
}
