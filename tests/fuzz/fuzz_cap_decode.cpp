// libFuzzer target: the cap wire decoder (docs/rules.md section 5, DataCap::decode).
//
// Properties checked on every input:
//   - never a crash, never a leaked frame (FrameLeakGuard) or Missing box;
//   - rejected: a Decode* status that names a rule (status_rule), the same status in
//     DecodeError, an offset inside the input;
//   - accepted: encoded_size() and encode() give exactly the input bytes (canonical), the
//     cap is flushed and holds no Missing slot, every Loaded page sits in an aligned frame
//     holding the input's payload, decode(encode) has the same root, and (for caps whose
//     non-empty extent is small enough to read) DataCap::from_bytes over the cap's bytes
//     with the same size gives the same root: an independent path to the root (rule 5.2);
//   - accepted caps work as caps: a page written at an index from the input and flushed
//     gives the root of from_bytes over the same bytes (the decoded tree has shapes that
//     from_bytes of a small buffer never makes: > 64 pages, far pages, node boundaries);
//   - every input again through a ByteSource that counts reads: each byte is read at most
//     once (rule 5.3) and the outcome (status and offset, or root) is the plain decode's;
//   - accepted, again with one allocation failure injected (the n-th allocation, n from the
//     input): OutOfFrames named in DecodeError or the same cap, nothing leaked;
//   - every input again in thin mode (rule 8.6): thin accepts everything full mode accepts,
//     with the same root; a full-mode rejection other than DecodeMissingSlot is the same
//     rejection at the same offset in thin mode; an accepted thin cap re-encodes (thin, every
//     page kept) to exactly the input, holds no Missing(zero(32)) or Missing(zero page root),
//     has the root merkleized here from the input's slot roots (3.4), keeps that root through
//     a thin encode of every page and its thin decode, is refused by the full encoder iff it
//     holds a Missing slot, and decodes the same through the counting ByteSource and under an
//     injected allocation failure;
//   - every input through the streaming decoders the capmem tool decodes files with,
//     codec::decode_pages (full mode) and codec::decode_pages_thin (thin mode), over a
//     counting ByteSource: each byte read at most once; the status and DecodeError offset of
//     DataCap::decode in the same mode; *size set to the header's size once the header checks
//     pass (accepted: the cap's size); every page handed to `fn` is the input's Loaded payload
//     at that index with its claimed hash, the hash of the bytes, not all zero, and every
//     Missing slot handed to `missing` is resolvable, all strictly in page order over both
//     callbacks; accepted: the (page, hash, bytes) handed to `fn` are exactly the cap's Loaded
//     pages and the (page, hash) handed to `missing` exactly its Missing slots; at most 16
//     frames in use by the decoder during a callback and none after it returns;
//   - the same streaming decode with the k-th callback (k from the input, possibly past the
//     last) returning a status of its own: the decode stops with that status, named at that
//     page's slot, after exactly k + 1 callbacks (the first k as before), nothing leaked; past
//     the last callback the outcome is unchanged; and again with the n-th allocation failing
//     (n from the input): OutOfFrames named at a Loaded slot after a prefix of the
//     callbacks, nothing leaked, or the unchanged outcome.
// A custom mutator rewrites the claimed hash of each Loaded slot to its true hash half of
// the time, so mutated inputs keep reaching the accepting path.
// Seeds: tests/fuzz/corpus/cap_decode/ (the tests/vectors encodings plus encodings made
// by tests/fuzz/gen_seeds.py, thin ones among them). libFuzzer takes -max_len from the largest seed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "fuzz_common.h"

using namespace capmem;
using codec::get_u32;

namespace {

constexpr std::uint32_t kMaxReadPages = 256;  // independent root check up to 1 MiB of extent

Hash32 root_of(const DataCap& c) {
  auto r = c.root();
  FUZZ_CHECK(r.ok());
  return r.value();
}

void check_accepted(const DataCap& cap, const std::uint8_t* data, std::size_t size) {
  FUZZ_CHECK(cap.overlay_count() == 0);
  FUZZ_CHECK(cap.size() != 0 && cap.size() % PAGE_SIZE == 0 && cap.size() <= kMaxCapSize);
  auto es = cap.encoded_size();
  FUZZ_CHECK(es.ok() && es.value() == size);
  std::vector<std::uint8_t> out(size);
  FUZZ_CHECK(cap.encode(out.data(), out.size()).ok());
  FUZZ_CHECK(std::memcmp(out.data(), data, size) == 0);

  // Every slot of the extent: Loaded pages aligned with the payload of the input, no
  // Missing (rule 5.2), the last one not Empty (trimmed).
  const std::uint32_t n = cap.extent();
  FUZZ_CHECK(n <= cap.page_count());
  const std::uint8_t* list = data + 12;
  for (std::uint32_t i = 0; i < n; ++i) {
    const SlotView v = cap.effective(i);
    FUZZ_CHECK(v.kind != SlotKind::Missing);
    const std::uint32_t start = get_u32(list + 4 * i);
    FUZZ_CHECK(list[start] == static_cast<std::uint8_t>(v.kind));
    if (v.kind == SlotKind::Loaded) {
      FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(v.frame->virt()) % PAGE_SIZE == 0);  // rule 1.1
      FUZZ_CHECK(std::memcmp(v.frame->virt(), list + start + 37, PAGE_SIZE) == 0);
      FUZZ_CHECK(std::memcmp(v.hash->b.data(), list + start + 1, 32) == 0);
    }
    if (i + 1 == n) FUZZ_CHECK(v.kind == SlotKind::Loaded);
  }
  const Hash32 root = root_of(cap);

  // decode(encode) has the same root.
  DecodeError err{};
  auto again = DataCap::decode(out.data(), out.size(), &err);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(root_of(again.value()) == root);
  FUZZ_CHECK(again->size() == cap.size() && again->extent() == n);

  // Independent root: the cap's bytes through from_bytes (rule 3.6) with the same size.
  if (n <= kMaxReadPages) {
    std::vector<std::uint8_t> bytes(std::size_t{n} * PAGE_SIZE);
    FUZZ_CHECK(cap.read(0, bytes.data(), bytes.size()).ok());
    auto fb = DataCap::from_bytes(bytes.data(), bytes.size(), cap.size());
    FUZZ_CHECK(fb.ok());
    FUZZ_CHECK(fb->size() == cap.size());  // size 0 is rejected (5.2), so 3.6's one-page minimum never differs
    FUZZ_CHECK(root_of(fb.value()) == root);

    // The decoded cap works as a cap (its tree was built by decode, in shapes from_bytes
    // of a small buffer never makes: more than 64 pages, far pages, holes across tree-node
    // boundaries): one page written at an index picked from the input, flushed, gives the
    // root from_bytes gives for the same bytes; the decoded cap keeps its root.
    const std::uint32_t limit = n < cap.page_count() ? n + 1 : n;
    const std::uint32_t page = (data[size / 2] * 131u + data[size - 1]) % limit;
    auto w = cap.copy();
    FUZZ_CHECK(w.ok());
    std::uint8_t pg[PAGE_SIZE];
    std::memset(pg, data[size / 3] | 1, sizeof pg);
    auto ref = PageRef::from_content(pg, sizeof pg);
    FUZZ_CHECK(ref.ok());
    FUZZ_CHECK(w->write_page(page, ref.release_value()).ok());
    FUZZ_CHECK(w->flush().ok());
    bytes.resize(std::size_t{limit} * PAGE_SIZE, 0);
    std::memcpy(bytes.data() + std::size_t{page} * PAGE_SIZE, pg, PAGE_SIZE);
    auto fw = DataCap::from_bytes(bytes.data(), bytes.size(), cap.size());
    FUZZ_CHECK(fw.ok());
    FUZZ_CHECK(root_of(fw.value()) == root_of(w.value()));
    FUZZ_CHECK(root_of(cap) == root);
  }
}

// Rule 5.3: the input through a ReadOnceSource (fuzz_common.h); the outcome must be the
// plain decode's (same status and offset, or a cap with the same root).
void check_source(const std::uint8_t* data, std::size_t size, Status want, std::uint64_t want_at, const Hash32* root,
                  DecodeOptions opt = {}) {
  ReadOnceSource src(data, size);  // not const: copy_in counts reads in it
  DecodeError err{Status::Ok, 0};
  auto r = DataCap::decode(src.source(), opt, &err);
  FUZZ_CHECK(r.status() == want);
  if (r.ok()) FUZZ_CHECK(root_of(r.value()) == *root);
  else FUZZ_CHECK(err.offset == want_at);
}

// Rule 3.4 computed from the input alone: the slot roots read from the accepted input
// (Empty: zero(32), Loaded and Missing: the hash in the slot) merkleized with
// limit = max(page_count, 1), then mixed with the size.
Hash32 root_from_input(const std::uint8_t* data, std::size_t size) {
  const std::uint64_t cap_size = codec::get_u64(data);
  const std::uint8_t* list = data + 12;
  const std::uint32_t n = size == 12 ? 0 : get_u32(list) / 4;
  std::vector<Hash32> leaves(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t start = get_u32(list + 4 * i);
    leaves[i] = Hash32{};
    if (list[start] != 0) std::memcpy(leaves[i].b.data(), list + start + 1, 32);
  }
  const std::uint64_t pages = cap_size / PAGE_SIZE;
  const Hash32 pages_root = hash::merkleize(leaves.data(), n, pages > 0 ? pages : 1);
  return hash::node(hash::uint64_root(cap_size), pages_root);
}

// Rule 8.6 on an input that thin mode accepted.
void check_accepted_thin(const DataCap& cap, const std::uint8_t* data, std::size_t size) {
  FUZZ_CHECK(cap.overlay_count() == 0);
  const EncodeOptions keep_all{.thin = true, .keep_first = 0xffffffffu};
  auto es = cap.encoded_size(keep_all);
  FUZZ_CHECK(es.ok() && es.value() == size);
  std::vector<std::uint8_t> out(size);
  FUZZ_CHECK(cap.encode(out.data(), out.size(), keep_all).ok());
  FUZZ_CHECK(std::memcmp(out.data(), data, size) == 0);
  bool any_missing = false;
  const std::uint8_t* list = data + 12;
  static const Hash32 zero_page = [] {
    const std::vector<std::uint8_t> zero(PAGE_SIZE, 0);
    return hash::page_content_hash(zero.data());
  }();
  for (std::uint32_t i = 0; i < cap.extent(); ++i) {
    const SlotView v = cap.effective(i);
    FUZZ_CHECK(list[get_u32(list + 4 * i)] == static_cast<std::uint8_t>(v.kind));
    if (v.kind != SlotKind::Missing) continue;
    any_missing = true;
    FUZZ_CHECK(!v.hash->is_zero() && !(*v.hash == zero_page));
  }
  const Hash32 root = root_of(cap);
  FUZZ_CHECK(root == root_from_input(data, size));
  // Every Loaded page as Missing: decodes (thin) to the same root, and full mode refuses it
  // exactly when it holds a Missing slot.
  auto ts = cap.encoded_size(EncodeOptions{.thin = true});
  FUZZ_CHECK(ts.ok() && ts.value() <= size);
  std::vector<std::uint8_t> thin(ts.value());
  FUZZ_CHECK(cap.encode(thin.data(), thin.size(), EncodeOptions{.thin = true}).ok());
  DecodeError err{};
  auto again = DataCap::decode(thin.data(), thin.size(), DecodeOptions{.thin = true}, &err);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(root_of(again.value()) == root);
  FUZZ_CHECK(cap.encoded_size().status() == (any_missing ? Status::MissingPage : Status::Ok));
}

// --- codec::decode_pages / decode_pages_thin: DataCap::decode's checks, the pages streamed ---

// One callback of a streaming decode: a verified Loaded page (to fn) or a Missing slot (to
// missing, thin mode), with the page's bytes' hash for a Loaded page.
struct StreamEvent {
  bool loaded;
  std::uint32_t page;
  Hash32 hash;
};

// The context of a streaming decode over `data`: every callback is checked against the
// input on the spot (the bytes are only valid during the call) and recorded; the call with
// index `stop_at` returns `stop`.
struct StreamRun {
  const std::uint8_t* data;
  std::size_t size;
  std::uint64_t in_use_before = 0;  // frames in use when the decode started
  std::size_t stop_at = ~std::size_t{0};
  Status stop = Status::Ok;
  std::vector<StreamEvent> events = {};

  // The slot of `page` in the input (its offset in the list, from the list's offset table).
  [[nodiscard]] const std::uint8_t* slot(std::uint32_t page) const {
    const std::uint8_t* list = data + 12;
    FUZZ_CHECK(size >= 16 && 4 * std::size_t{page} + 4 <= get_u32(list) && get_u32(list) <= size - 12);
    const std::uint32_t start = get_u32(list + 4 * page);
    FUZZ_CHECK(start <= size - 12);
    return list + start;
  }
  Status record(bool loaded, std::uint32_t page, const Hash32& h) {
    // Page order over both callbacks, each page once.
    FUZZ_CHECK_MSG(events.empty() || events.back().page < page, "page %u after page %u", page,
                   events.empty() ? 0u : events.back().page);
    // At most one batch of frames (16) held while the caller looks at a page.
    const std::uint64_t held = capmem::hostsim::quiescent_frame_stats().in_use - in_use_before;
    FUZZ_CHECK_MSG(held <= 16, "%llu frames held", static_cast<unsigned long long>(held));
    events.push_back(StreamEvent{.loaded = loaded, .page = page, .hash = h});
    return events.size() - 1 == stop_at ? stop : Status::Ok;
  }
  static Status on_page(void* ctx, std::uint32_t page, const std::uint8_t* bytes, const Hash32& hash) {
    auto* r = static_cast<StreamRun*>(ctx);
    // Verified: the input's Loaded slot at this page, its payload, its claimed hash, which
    // is the hash of the bytes handed out (rule 1.2), which are not all zero.
    const std::uint8_t* s = r->slot(page);
    FUZZ_CHECK(s[0] == static_cast<std::uint8_t>(SlotKind::Loaded));
    FUZZ_CHECK(static_cast<std::size_t>(s + codec::kLoadedLen - r->data) <= r->size);
    FUZZ_CHECK(std::memcmp(bytes, s + 37, PAGE_SIZE) == 0);
    FUZZ_CHECK(std::memcmp(hash.b.data(), s + 1, 32) == 0);
    FUZZ_CHECK(hash::page_content_hash(bytes) == hash);
    bool zero = true;
    for (std::size_t i = 0; i < PAGE_SIZE && zero; ++i) zero = bytes[i] == 0;
    FUZZ_CHECK(!zero);
    return r->record(true, page, hash);
  }
  static Status on_missing(void* ctx, std::uint32_t page, const Hash32& hash) {
    auto* r = static_cast<StreamRun*>(ctx);
    const std::uint8_t* s = r->slot(page);
    FUZZ_CHECK(s[0] == static_cast<std::uint8_t>(SlotKind::Missing));
    FUZZ_CHECK(std::memcmp(hash.b.data(), s + 1, 32) == 0);
    FUZZ_CHECK(codec::missing_resolvable(hash));  // checked before the call (8.6)
    return r->record(false, page, hash);
  }
};

// Rule 5.2's checks of the header and the list's first offset, from the input alone: the
// point after which decode_pages sets *size.
bool header_ok(const std::uint8_t* data, std::size_t size) {
  if (size < 12) return false;
  const std::uint64_t cap_size = codec::get_u64(data);
  if (cap_size == 0 || cap_size % PAGE_SIZE != 0 || cap_size > kMaxCapSize || get_u32(data + 8) != 12) return false;
  if (size == 12) return true;  // no slots
  if (size < 16) return false;
  const std::uint32_t start = get_u32(data + 12);
  return start != 0 && start % 4 == 0 && start <= size - 12 && start / 4 <= cap_size / PAGE_SIZE;
}

// Runs decode_pages (thin: decode_pages_thin) over the input through a ReadOnceSource.
Status run_stream(StreamRun* run, bool thin, std::uint64_t* size, DecodeError* err) {
  ReadOnceSource src(run->data, run->size);
  run->events.clear();
  run->in_use_before = capmem::hostsim::quiescent_frame_stats().in_use;
  const Status st =
      thin ? codec::decode_pages_thin(src.source(), StreamRun::on_page, StreamRun::on_missing, run, size, err)
           : codec::decode_pages(src.source(), StreamRun::on_page, run, size, err);
  // Nothing held after the return, whatever the outcome.
  FUZZ_CHECK_MSG(capmem::hostsim::quiescent_frame_stats().in_use == run->in_use_before, "%s",
                 "decode_pages kept a frame");
  return st;
}

// The streaming decoder in `thin` mode against DataCap::decode in the same mode: `want`
// (and `want_at`, rejected) or `cap` (accepted).
void check_stream(const std::uint8_t* data, std::size_t size, bool thin, Status want, std::uint64_t want_at,
                  const DataCap* cap) {
  constexpr std::uint64_t kUnset = 0xfeedfacecafebeefull;
  StreamRun run{.data = data, .size = size};
  std::uint64_t got_size = kUnset;
  DecodeError err{Status::Ok, ~std::uint64_t{0}};
  const Status st = run_stream(&run, thin, &got_size, &err);
  FUZZ_CHECK_MSG(st == want, "%s: %s, DataCap::decode: %s", thin ? "decode_pages_thin" : "decode_pages",
                 status_name(st), status_name(want));
  // *size: set once the header checks pass, to the header's size.
  FUZZ_CHECK_MSG((got_size != kUnset) == header_ok(data, size), "*size %s, header %s",
                 got_size != kUnset ? "set" : "unset", header_ok(data, size) ? "accepted" : "refused");
  if (got_size != kUnset) FUZZ_CHECK(got_size == codec::get_u64(data));
  if (st != Status::Ok) {
    FUZZ_CHECK(err.status == st);
    FUZZ_CHECK_MSG(err.offset == want_at, "%s: %s at %llu, DataCap::decode at %llu",
                   thin ? "decode_pages_thin" : "decode_pages", status_name(st),
                   static_cast<unsigned long long>(err.offset), static_cast<unsigned long long>(want_at));
  } else {
    // Accepted: the cap's size, its Loaded pages (and, thin, its Missing slots) in page order.
    FUZZ_CHECK(got_size == cap->size());
    std::size_t e = 0;
    for (std::uint32_t i = 0; i < cap->extent(); ++i) {
      const SlotView v = cap->effective(i);
      if (v.kind == SlotKind::Empty) continue;
      FUZZ_CHECK_MSG(e < run.events.size(), "page %u (%s) not handed out", i,
                     v.kind == SlotKind::Loaded ? "Loaded" : "Missing");
      const StreamEvent& ev = run.events[e++];
      FUZZ_CHECK_MSG(ev.page == i && ev.loaded == (v.kind == SlotKind::Loaded), "event %zu: page %u, cap: page %u",
                     e - 1, ev.page, i);
      FUZZ_CHECK(ev.hash == *v.hash);
      // The bytes were compared with the input's in the callback; the cap holds the same.
      if (ev.loaded) FUZZ_CHECK(hash::page_content_hash(static_cast<const std::uint8_t*>(v.frame->virt())) == ev.hash);
    }
    FUZZ_CHECK_MSG(e == run.events.size(), "%zu callbacks, the cap has %zu pages", run.events.size(), e);
  }

  // The same decode with the k-th callback (k from the input, possibly past the last one)
  // returning a status of its own: it stops there with that status, named at the page's
  // slot, after exactly the first k callbacks; past the last one, the outcome is as above.
  const std::vector<StreamEvent> all = run.events;
  const std::size_t k = size == 0 ? 0 : (data[size / 4] * 257u + data[size - 1]) % (all.size() + 1);
  run.stop_at = k;
  run.stop = Status::InvalidArgument;  // a status no decode check gives
  std::uint64_t size2 = kUnset;
  DecodeError err2{Status::Ok, ~std::uint64_t{0}};
  const Status st2 = run_stream(&run, thin, &size2, &err2);
  if (k < all.size()) {
    FUZZ_CHECK_MSG(st2 == Status::InvalidArgument, "stopped at callback %zu: %s", k, status_name(st2));
    FUZZ_CHECK(err2.status == st2);
    FUZZ_CHECK(err2.offset == static_cast<std::uint64_t>(run.slot(all[k].page) - data));
    FUZZ_CHECK(run.events.size() == k + 1);
  } else {
    FUZZ_CHECK(st2 == st && run.events.size() == all.size());
    if (st2 != Status::Ok) FUZZ_CHECK(err2.status == st && err2.offset == err.offset);
  }
  for (std::size_t i = 0; i < run.events.size(); ++i)
    FUZZ_CHECK(run.events[i].page == all[i].page && run.events[i].hash == all[i].hash);

  // The same decode with the n-th allocation failing (n in [1, 8] from the input; the only
  // allocations are the frames Loaded pages are read into): OutOfFrames named at a Loaded
  // slot, the callbacks made a prefix of the full run's, nothing leaked (run_stream); or,
  // with fewer allocations, the outcome of the full run.
  run.stop_at = ~std::size_t{0};
  const std::uint64_t n = size == 0 ? 1 : 1 + data[size / 3] % 8;
  DecodeError err3{Status::Ok, ~std::uint64_t{0}};
  std::uint64_t size3 = kUnset;
  frames().inject_failure_at(n);
  const Status st3 = run_stream(&run, thin, &size3, &err3);
  frames().inject_failure_at(0);
  FUZZ_CHECK(run.events.size() <= all.size());
  for (std::size_t i = 0; i < run.events.size(); ++i)
    FUZZ_CHECK(run.events[i].page == all[i].page && run.events[i].hash == all[i].hash);
  if (st3 == Status::OutOfFrames) {
    FUZZ_CHECK(err3.status == st3 && err3.offset < size);
    FUZZ_CHECK(data[err3.offset] == static_cast<std::uint8_t>(SlotKind::Loaded));
  } else {
    FUZZ_CHECK_MSG(st3 == st && run.events.size() == all.size(), "allocation %llu failing: %s, %zu callbacks",
                   static_cast<unsigned long long>(n), status_name(st3), run.events.size());
    if (st3 != Status::Ok) FUZZ_CHECK(err3.status == st && err3.offset == err.offset);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FrameLeakGuard guard;
  const std::uint64_t boxes = Slot::missing_boxes();
  {
    DecodeError err{Status::Ok, ~std::uint64_t{0}};
    auto r = DataCap::decode(data, size, &err);
    if (!r.ok()) {
      FUZZ_CHECK(is_decode_status(r.status()));
      FUZZ_CHECK(status_rule(r.status())[0] != '\0');
      FUZZ_CHECK(err.status == r.status());
      FUZZ_CHECK(err.offset <= size);
      check_source(data, size, r.status(), err.offset, nullptr);
    } else {
      check_accepted(r.value(), data, size);
      const Hash32 root = root_of(r.value());
      check_source(data, size, Status::Ok, 0, &root);
      // The same input with one allocation failing: the count of allocations a decode
      // makes is about one per page plus tree nodes; pick n in [1, 8] from the input.
      const std::uint64_t n = 1 + data[size - 1] % 8;
      frames().inject_failure_at(n);
      DecodeError err2{Status::Ok, 0};
      auto f = DataCap::decode(data, size, &err2);
      frames().inject_failure_at(0);
      if (f.ok()) {
        FUZZ_CHECK(root_of(f.value()) == root);
      } else {
        FUZZ_CHECK(f.status() == Status::OutOfFrames);
        FUZZ_CHECK(err2.status == Status::OutOfFrames);
        FUZZ_CHECK(err2.offset <= size);
      }
    }

    // The streaming decoder (the tool's): DataCap::decode's outcome, its pages handed out.
    check_stream(data, size, false, r.status(), err.offset, r.ok() ? &r.value() : nullptr);

    // Thin mode (rule 8.6): a superset of full mode, with the same roots.
    DecodeError terr{Status::Ok, ~std::uint64_t{0}};
    auto t = DataCap::decode(data, size, DecodeOptions{.thin = true}, &terr);
    if (r.ok()) {
      FUZZ_CHECK_MSG(t.ok(), "full mode accepted, thin refused: %s at %llu", status_name(t.status()),
                     static_cast<unsigned long long>(terr.offset));
      FUZZ_CHECK(root_of(t.value()) == root_of(r.value()));
    } else if (r.status() != Status::DecodeMissingSlot) {
      FUZZ_CHECK(t.status() == r.status() && terr.offset == err.offset);  // the same path up to there
    }
    if (!t.ok()) {
      FUZZ_CHECK(is_decode_status(t.status()));
      FUZZ_CHECK(status_rule(t.status())[0] != '\0');
      FUZZ_CHECK(terr.status == t.status());
      FUZZ_CHECK(terr.offset <= size);
      FUZZ_CHECK(t.status() != Status::DecodeMissingSlot);
      check_source(data, size, t.status(), terr.offset, nullptr, DecodeOptions{.thin = true});
    } else {
      check_accepted_thin(t.value(), data, size);
      const Hash32 root = root_of(t.value());
      check_source(data, size, Status::Ok, 0, &root, DecodeOptions{.thin = true});
      const std::uint64_t n = 1 + data[size - 1] % 8;
      frames().inject_failure_at(n);
      DecodeError err2{Status::Ok, 0};
      auto f = DataCap::decode(data, size, DecodeOptions{.thin = true}, &err2);
      frames().inject_failure_at(0);
      if (f.ok()) {
        FUZZ_CHECK(root_of(f.value()) == root);
      } else {
        FUZZ_CHECK(f.status() == Status::OutOfFrames && err2.status == Status::OutOfFrames);
        FUZZ_CHECK(err2.offset <= size);
      }
    }
    check_stream(data, size, true, t.status(), terr.offset, t.ok() ? &t.value() : nullptr);
  }
  FUZZ_CHECK(Slot::missing_boxes() == boxes);
  return 0;
}

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

// Rewrites the hash of every Loaded slot whose 4096 payload bytes lie inside the buffer.
static void fix_hashes(std::uint8_t* data, std::size_t size) {
  if (size < 16) return;
  std::uint8_t* list = data + 12;
  const std::size_t L = size - 12;
  const std::uint32_t o0 = get_u32(list);
  if (o0 == 0 || o0 % 4 != 0 || o0 > L) return;
  for (std::uint32_t i = 0; i < o0 / 4; ++i) {
    const std::uint32_t start = get_u32(list + 4 * i);
    if (start >= L || list[start] != 1 || L - start < codec::kLoadedLen) continue;
    const Hash32 h = hash::page_content_hash(list + start + 37);
    std::memcpy(list + start + 1, h.b.data(), 32);
  }
}

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if ((seed & 1) != 0) fix_hashes(data, size);
  return size;
}
