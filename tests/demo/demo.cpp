#include "demo.h"

#include "capmem/env.h"
#include "capmem/log.h"
#include "capmem/page.h"

namespace capmem::demo {

namespace {

// xorshift64*: a fixed, portable pseudo-random sequence (no libc).
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }
};

bool pinned_page(std::uint32_t page) { return page >= kPinned.first_page && page - kPinned.first_page < kPinned.pages; }

// A page of the op table: ops [first, first + 256) (256 ops of 16 bytes per page).
void fill_ops(std::uint8_t* page, std::uint32_t page_index) {
  Rng rng{0xc0dec0de5eedull};
  Op* out = reinterpret_cast<Op*>(page);
  const std::uint32_t per_page = PAGE_SIZE / sizeof(Op);
  // Regenerate the whole sequence up to this page (deterministic, cheap: a few hundred ops).
  for (std::uint32_t i = 0; i < (page_index + 1) * per_page; ++i) {
    Op op{};
    if (i + 1 < kOps) {
      const std::uint32_t r = rng.below(100);
      std::uint32_t page_no = rng.below(kMemPages);
      const unsigned widths[4] = {1, 2, 4, 8};
      op.width = static_cast<std::uint8_t>(widths[rng.below(4)]);
      std::uint32_t off = rng.below(PAGE_SIZE - op.width + 1);
      if (r < 8) off = PAGE_SIZE - 2;  // straddles into the next page
      if (r < 45) {
        op.kind = kLoad;
        if (r >= 35) page_no = kPinned.first_page + rng.below(kPinned.pages);  // pinned reads
        if (r >= 40) {  // reads from the code image, past the op table
          op.addr = static_cast<std::uint32_t>(fault::CODE_BASE) + (4 + rng.below(kCodePages - 4)) * PAGE_SIZE +
                    off % (PAGE_SIZE - 8);
          op.value = 0;
          goto emit;
        }
      } else {
        op.kind = kStore;
        op.value = (r < 55) ? 0 : rng.next();  // some stores write zeros
        // Stores never touch the pinned range (that would end the demo with a fault),
        // including the second page of a straddling store.
        while (pinned_page(page_no) || pinned_page(page_no + 1) || page_no + 1 >= kMemPages)
          page_no = rng.below(kMemPages);
      }
      if (page_no + 1 >= kMemPages && off + op.width > PAGE_SIZE) off = 0;
      op.addr = static_cast<std::uint32_t>(fault::DATA_BASE) + page_no * PAGE_SIZE + off;
    }
  emit:
    if (i >= page_index * per_page) out[i - page_index * per_page] = (i < kOps) ? op : Op{};
  }
}

Result<DataCap> build_cap(std::uint32_t pages, bool code) {
  DataCap cap = CAPMEM_TRY(DataCap::create(std::uint64_t{pages} * PAGE_SIZE));
  Rng rng{code ? 0x5eedc0deull : 0x5eedda7aull};
  for (std::uint32_t i = 0; i < pages; ++i) {
    const std::uint64_t salt = rng.next();
    if (!code && i % 7 == 3) continue;  // Empty pages
    PageRef p = CAPMEM_TRY(PageRef::unhashed_copy(nullptr));
    std::uint8_t* b = p.mutable_bytes();
    if (code && i * (PAGE_SIZE / sizeof(Op)) < kOps) {
      fill_ops(b, i);
    } else {
      Rng fill{salt | 1};
      for (std::size_t k = 0; k < PAGE_SIZE; k += 8) {
        const std::uint64_t v = fill.next();
        __builtin_memcpy(b + k, &v, 8);
      }
    }
    p.seal();
    CAPMEM_TRY(cap.put_page(i, static_cast<PageRef&&>(p)));
  }
  return cap;
}

}  // namespace

Result<Image> build() {
  DataCap code = CAPMEM_TRY(build_cap(kCodePages, true));
  DataCap mem = CAPMEM_TRY(build_cap(kMemPages, false));
  return Image{.code = static_cast<DataCap&&>(code), .mem = static_cast<DataCap&&>(mem)};
}

// --- Thin mode -------------------------------------------------------------------------

namespace {

// The thin cap of `full`: the same size and root (rule 2.3), each Loaded page at or past
// keep_first Missing(its hash) in the backing. The marks go into the overlay of an O(1)
// copy of `full` (write_slot) and place_shared carries them, by reference, into a fresh
// backing (a Missing slot hashes as its hash, so no page is hashed again).
Result<DataCap> thin_of(const DataCap& full, std::uint32_t keep_first) {
  DataCap marks = CAPMEM_TRY(full.copy());
  for (std::uint32_t i = keep_first; i < full.page_count(); ++i) {
    const SlotView v = full.effective(i);
    if (v.kind != SlotKind::Loaded) continue;
    Slot m = CAPMEM_TRY(Slot::missing(*v.hash));
    CAPMEM_TRY(marks.write_slot(i, static_cast<Slot&&>(m)));
  }
  DataCap thin = CAPMEM_TRY(DataCap::create(full.size()));
  CAPMEM_TRY(thin.place_shared(marks, 0));
  const Hash32 want = CAPMEM_TRY(full.root());
  const Hash32 got = CAPMEM_TRY(thin.root());
  if (!(want == got)) env::panic("demo::make_thin: the thin cap's root differs from the full cap's (rule 2.3)");
  return thin;
}

Status image_find(void* ctx, const Hash32& hash, ByteSource* out) {
  const Image& full = *static_cast<const Image*>(ctx);
  for (const DataCap* cap : {&full.code, &full.mem}) {
    for (std::uint32_t i = 0; i < cap->page_count(); ++i) {
      const SlotView v = cap->effective(i);
      if (v.kind == SlotKind::Loaded && *v.hash == hash) {
        *out = ByteSource::memory(static_cast<const std::uint8_t*>(v.frame->virt()), PAGE_SIZE);
        return Status::Ok;
      }
    }
  }
  return Status::NotInStore;
}

// An access through the thin host: at most one NeedPage per page of the access is expected
// (a straddling access: two), each answered once; more means a resolve that left the page
// Missing, a bug, not a guest property.
fault::AccessResult thin_access(ThinHost& h, bool write, std::uint32_t addr, unsigned width, std::uint64_t value) {
  for (unsigned round = 0;; ++round) {
    const fault::AccessResult r =
        write ? h.inner.store(h.inner.ctx, addr, width, value) : h.inner.load(h.inner.ctx, addr, width);
    if (r.outcome != fault::Outcome::NeedPage) return r;
    if (round >= 4) env::panic("demo::ThinHost: the same access asked again for a page it had resolved");
    const fault::PageRequest* req = h.run->pending();
    if (req == nullptr) env::panic("demo::ThinHost: NeedPage without a pending request (rule 8.2)");
    const Status st = resolve_request(*h.image, *req, h.store);
    if (st == Status::Ok) ++h.resolved;
    if (st == Status::Ok || st == Status::NotMissing) continue;  // NotMissing: answered already
    if (h.error == Status::Ok) h.error = st;
    const fault::Answer a = h.run->decline();  // the guest page fault of rule 4.3
    return {a.outcome, a.addr, 0};
  }
}

}  // namespace

Result<void> make_thin(Image& image, const ThinOptions& opt) {
  DataCap code, mem;
  if (opt.code) code = CAPMEM_TRY(thin_of(image.code, opt.keep_first));
  if (opt.mem) mem = CAPMEM_TRY(thin_of(image.mem, opt.keep_first));
  if (opt.code) image.code = static_cast<DataCap&&>(code);
  if (opt.mem) image.mem = static_cast<DataCap&&>(mem);
  return {};
}

PageStore image_store(const Image& full) { return PageStore{.ctx = const_cast<Image*>(&full), .find = &image_find}; }

PageStore PackStore::store() {
  return PageStore{.ctx = this, .find = [](void* ctx, const Hash32& hash, ByteSource* out) {
                     auto* self = static_cast<PackStore*>(ctx);
                     auto p = self->pack.find(hash);
                     if (!p.ok()) return p.status();
                     self->page = self->pack.page_source(p.value());
                     *out = self->page.source();
                     return Status::Ok;
                   }};
}

Status resolve_request(Image& image, const fault::PageRequest& req, const PageStore& store) {
  ByteSource src{};
  if (const Status st = store.find(store.ctx, req.hash, &src); st != Status::Ok) return st;
  DataCap& cap = req.region == Region::Code ? image.code : image.mem;
  return cap.resolve(req.page, src).status();
}

Engine ThinHost::engine() {
  return Engine{
      .ctx = this,
      .load = [](void* c, std::uint32_t a,
                 unsigned w) { return thin_access(*static_cast<ThinHost*>(c), false, a, w, 0); },
      .store = [](void* c, std::uint32_t a, unsigned w,
                  std::uint64_t v) { return thin_access(*static_cast<ThinHost*>(c), true, a, w, v); },
  };
}

Progress run_ops(const Engine& e) {
  Progress p{.stop = fault::Outcome::Retry, .addr = VirtAddr{}, .ops_done = 0, .checksum = 0};
  for (std::uint32_t i = 0;; ++i) {
    const std::uint32_t base = static_cast<std::uint32_t>(fault::CODE_BASE) + i * sizeof(Op);
    fault::AccessResult f[4] = {e.load(e.ctx, base + kOffKind, 1), {}, {}, {}};
    if (f[0].outcome != fault::Outcome::Retry) return {f[0].outcome, f[0].addr, p.ops_done, p.checksum};
    if (f[0].value == kEnd) return p;
    f[1] = e.load(e.ctx, base + kOffWidth, 1);
    f[2] = e.load(e.ctx, base + kOffAddr, 4);
    f[3] = e.load(e.ctx, base + kOffValue, 8);
    for (int k = 1; k < 4; ++k)
      if (f[k].outcome != fault::Outcome::Retry) return {f[k].outcome, f[k].addr, p.ops_done, p.checksum};
    // Width as the ring-3 program (tests/kernel/demo_ring3.S) reads it: 1, 2 or 4 bytes,
    // anything else 8. The table is guest memory: no byte of it may reach an assertion.
    const auto w = static_cast<unsigned>(f[1].value);
    const unsigned width = w == 1 || w == 2 || w == 4 ? w : 8;
    const auto addr = static_cast<std::uint32_t>(f[2].value);
    const fault::AccessResult r =
        f[0].value == kStore ? e.store(e.ctx, addr, width, f[3].value) : e.load(e.ctx, addr, width);
    if (r.outcome != fault::Outcome::Retry) return {r.outcome, r.addr, p.ops_done, p.checksum};
    p.checksum = (p.checksum << 7 | p.checksum >> 57) ^ r.value;
    ++p.ops_done;
  }
}

namespace {
struct Buf {
  char* out;
  std::size_t cap;
  std::size_t n = 0;
  void put(const char* s) {
    while (*s != '\0') {
      if (n + 1 < cap) out[n] = *s;
      ++n;
      ++s;
    }
  }
  void num(std::uint64_t v) {
    char tmp[24];
    int i = 24;
    do {
      tmp[--i] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    char z[25];
    int k = 0;
    while (i < 24) z[k++] = tmp[i++];
    z[k] = '\0';
    put(z);
  }
};

void put_line(Buf& b, const Hash32& root, std::uint64_t gas_used, const fault::Counters& counters) {
  char hex[65];
  log::fmt_hex32(hex, root.b.data());
  b.put("root=");
  b.put(hex);
  b.put(" gas=");
  b.num(gas_used);
  b.put(" cow=");
  b.num(counters.cow);
  b.put(" page_in=");
  b.num(counters.page_in + counters.clusters);
}

std::size_t finish(Buf& b) {
  if (b.cap != 0) b.out[b.n < b.cap ? b.n : b.cap - 1] = '\0';
  return b.n;
}
}  // namespace

std::size_t format_line(char* out, std::size_t cap, const Hash32& root, std::uint64_t gas_used,
                        const fault::Counters& counters) {
  Buf b{out, cap};
  put_line(b, root, gas_used, counters);
  return finish(b);
}

std::size_t format_thin_line(char* out, std::size_t cap, const Hash32& root, std::uint64_t gas_used,
                             const fault::Counters& counters) {
  Buf b{out, cap};
  put_line(b, root, gas_used, counters);
  b.put(" need_page=");
  b.num(counters.need_page);
  return finish(b);
}

}  // namespace capmem::demo
