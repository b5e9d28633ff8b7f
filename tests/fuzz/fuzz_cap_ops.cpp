// libFuzzer target: sequences of DataCap operations against a flat byte-array model.
//
// The input is a little program (format below). A cap of 1..64 pages is built, then each
// operation runs on the cap and on the model: the model keeps the backing and the overlay
// apart (page kinds Bytes / Missing(content) / explicit Empty entry), because put_page and
// place_shared write the backing under an overlay that still shadows it (rule 3.3).
// After every operation:
//   - the effective bytes of every page agree with the model (cap.read), Missing pages
//     read MissingPage and are Missing in cap.effective(), overlay_count() agrees;
//   - a failed operation returned the status the model expects (OutOfExtent, Misaligned,
//     InvalidArgument, MissingInOverlay, OverlayNotEmpty, MissingPage), or OutOfFrames while
//     an allocation failure was injected, and left the backing and the model unchanged.
// A resolve (rule 8.4) offers the Missing page's own bytes, other bytes, short bytes or a
// page by reference; it never changes the root, and only the right bytes change the model.
// After every successful flush and every encode/decode round trip the root equals the root
// of DataCap::from_bytes over the model's bytes (independent path; a Missing page counts
// with the bytes whose hash it carries: rule 2.3). A copy taken earlier (the snapshot) must
// keep its own bytes whatever happens to the cap (rule 3.1). Everything is freed at the end
// of each input; FrameLeakGuard and the Missing box count check that nothing leaked.
//
// Input format (every read past the end gives 0):
//   u8 page count (1..8 for bytes < 192, else 1..64), u8 initial form (create / from_bytes / from_bytes of a short
//   tail), [initial page contents], then operations: u8 opcode (mod kOps) followed by its arguments.
// Page contents come from gen_page(): zeros, a fill byte, a few sparse bytes, an 8-byte
// pattern or an LCG stream (one selector byte plus a few argument bytes).
// Seeds: tests/fuzz/corpus/cap_ops/, made by tests/fuzz/gen_seeds.py.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/page.h"
#include "capmem/slot.h"
#include "fuzz_common.h"

using namespace capmem;

// The harness's own bookkeeping (model, page generator, verification) is left out of the
// coverage: its loop counts only add features that say nothing about the code under test
// and cost libFuzzer time per execution.
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE  // g++ (the replay build, tests/fuzz/replay_main.cpp) has no such attribute
#endif

namespace {

constexpr std::uint32_t kMaxPages = 64;
constexpr std::size_t kMaxOps = 64;  // per input: keeps an iteration cheap

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | u8() << 8); }
  std::uint32_t u32() { return u16() | std::uint32_t{u16()} << 16; }
  bool bit() { return (u8() & 1) != 0; }
};

// Page contents from the input. `nonzero` forces at least one non-zero byte.
NO_COVERAGE void gen_page(Reader& r, std::uint8_t* out, bool nonzero = false) {
  const std::uint8_t sel = r.u8();
  std::memset(out, 0, PAGE_SIZE);
  switch (sel % 5) {
    case 0: break;
    case 1: std::memset(out, r.u8(), PAGE_SIZE); break;
    case 2: {
      const unsigned k = 1 + r.u8() % 4;
      for (unsigned i = 0; i < k; ++i) {
        const std::uint16_t at = r.u16() % PAGE_SIZE;
        out[at] = r.u8();
      }
      break;
    }
    case 3: {
      std::uint8_t pat[8];
      for (auto& b : pat) b = r.u8();
      for (std::size_t i = 0; i < PAGE_SIZE; ++i) out[i] = pat[i % 8];
      break;
    }
    default: {
      std::uint32_t x = r.u32() | 1;
      for (std::size_t i = 0; i < PAGE_SIZE; ++i) {
        x = x * 1664525u + 1013904223u;
        out[i] = static_cast<std::uint8_t>(x >> 24);
      }
      break;
    }
  }
  if (nonzero) out[sel % PAGE_SIZE] |= 0x80;
}

NO_COVERAGE bool all_zero(const std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

// A byte buffer taken from a pool of kMaxPages-sized vectors that live for the whole run:
// a fresh vector per iteration costs page faults (ASan maps large blocks anew), not work.
class Buf {
 public:
  explicit Buf(std::size_t n) : v_(acquire()) { v_->assign(n, 0); }
  Buf(const Buf& o) : v_(acquire()) { *v_ = *o.v_; }
  Buf(Buf&& o) noexcept : v_(std::exchange(o.v_, nullptr)) {}
  Buf& operator=(const Buf& o) {
    *v_ = *o.v_;
    return *this;
  }
  Buf& operator=(Buf&& o) noexcept {
    std::swap(v_, o.v_);
    return *this;
  }
  ~Buf() {
    if (v_ != nullptr) pool().push_back(v_);
  }
  [[nodiscard]] std::uint8_t* data() { return v_->data(); }
  [[nodiscard]] const std::uint8_t* data() const { return v_->data(); }
  [[nodiscard]] std::size_t size() const { return v_->size(); }

 private:
  static std::vector<std::vector<std::uint8_t>*>& pool() {
    static auto* p = new std::vector<std::vector<std::uint8_t>*>;  // never destroyed: LSan sees it at exit
    return *p;
  }
  static std::vector<std::uint8_t>* acquire() {
    auto& p = pool();
    if (p.empty()) {
      auto* v = new std::vector<std::uint8_t>;
      v->reserve(std::size_t{kMaxPages} * PAGE_SIZE);
      return v;
    }
    auto* v = p.back();
    p.pop_back();
    return v;
  }
  std::vector<std::uint8_t>* v_;
};

enum Kind : std::uint8_t { kNone = 0, kBytes = 1, kMissing = 2, kEmptyEntry = 3 };

// The model of one cap: backing pages are kBytes or kMissing (bytes = the content whose
// hash the Missing slot carries); overlay pages are kNone, kBytes, kMissing or kEmptyEntry.
struct Model {
  std::uint32_t n = 0;
  std::vector<std::uint8_t> bk_kind;
  Buf bk;
  std::vector<std::uint8_t> ov_kind;
  Buf ov;

  explicit Model(std::uint32_t pages)
      : n(pages),
        bk_kind(pages, kBytes),
        bk(std::size_t{pages} * PAGE_SIZE),
        ov_kind(pages, kNone),
        ov(std::size_t{pages} * PAGE_SIZE) {}
  std::uint8_t* bk_page(std::uint32_t p) { return bk.data() + std::size_t{p} * PAGE_SIZE; }
  std::uint8_t* ov_page(std::uint32_t p) { return ov.data() + std::size_t{p} * PAGE_SIZE; }
  // Effective kind (kBytes or kMissing) and bytes of page p.
  [[nodiscard]] std::uint8_t eff_kind(std::uint32_t p) const {
    return ov_kind[p] == kBytes || ov_kind[p] == kMissing ? ov_kind[p] : bk_kind[p];
  }
  [[nodiscard]] const std::uint8_t* eff(std::uint32_t p) const {
    const std::size_t at = std::size_t{p} * PAGE_SIZE;
    return ov_kind[p] == kBytes || ov_kind[p] == kMissing ? ov.data() + at : bk.data() + at;
  }
  [[nodiscard]] NO_COVERAGE std::uint32_t overlay_count() const {
    std::uint32_t c = 0;
    for (auto k : ov_kind) c += k != kNone;
    return c;
  }
  [[nodiscard]] NO_COVERAGE bool overlay_has_missing() const {
    for (auto k : ov_kind)
      if (k == kMissing) return true;
    return false;
  }
  [[nodiscard]] NO_COVERAGE bool backing_has_missing() const {
    for (auto k : bk_kind)
      if (k == kMissing) return true;
    return false;
  }
  void set_ov(std::uint32_t p, std::uint8_t kind, const std::uint8_t* bytes) {
    ov_kind[p] = kind;
    if (bytes != nullptr) std::memcpy(ov_page(p), bytes, PAGE_SIZE);
  }
  void set_bk(std::uint32_t p, std::uint8_t kind, const std::uint8_t* bytes) {
    bk_kind[p] = kind;
    std::memcpy(bk_page(p), bytes, PAGE_SIZE);
  }
  NO_COVERAGE void flush() {
    for (std::uint32_t p = 0; p < n; ++p) {
      if (ov_kind[p] == kBytes) set_bk(p, kBytes, ov_page(p));
      ov_kind[p] = kNone;
    }
  }
};

Hash32 root_of(const DataCap& c) {
  auto r = c.root();
  FUZZ_CHECK(r.ok());
  return r.value();
}

// The cap's effective bytes and overlay count agree with the model.
NO_COVERAGE void verify(const DataCap& cap, const Model& m) {
  FUZZ_CHECK(cap.size() == std::uint64_t{m.n} * PAGE_SIZE);
  FUZZ_CHECK(cap.overlay_count() == m.overlay_count());
  static std::vector<std::uint8_t> buf(kMaxPages * PAGE_SIZE);
  bool any_missing = false;
  for (std::uint32_t p = 0; p < m.n; ++p) {
    const SlotView v = cap.effective(p);
    if (m.eff_kind(p) == kMissing) {
      any_missing = true;
      FUZZ_CHECK(v.kind == SlotKind::Missing);
      std::uint8_t b = 0x5a;
      FUZZ_CHECK(cap.read(std::uint64_t{p} * PAGE_SIZE + 7, &b, 1).status() == Status::MissingPage);
      FUZZ_CHECK(b == 0x5a);  // nothing written on failure
    } else {
      FUZZ_CHECK(v.kind != SlotKind::Missing);
      if (v.kind == SlotKind::Loaded)
        FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(v.frame->virt()) % PAGE_SIZE == 0);  // rule 1.1
    }
  }
  if (!any_missing) {
    FUZZ_CHECK(cap.read(0, buf.data(), cap.size()).ok());
    for (std::uint32_t p = 0; p < m.n; ++p)
      FUZZ_CHECK(std::memcmp(buf.data() + std::size_t{p} * PAGE_SIZE, m.eff(p), PAGE_SIZE) == 0);
  } else {
    for (std::uint32_t p = 0; p < m.n; ++p) {
      if (m.eff_kind(p) == kMissing) continue;
      FUZZ_CHECK(cap.read(std::uint64_t{p} * PAGE_SIZE, buf.data(), PAGE_SIZE).ok());
      FUZZ_CHECK(std::memcmp(buf.data(), m.eff(p), PAGE_SIZE) == 0);
    }
  }
  std::uint8_t b = 0x5a;
  FUZZ_CHECK(cap.read(cap.size(), &b, 1).status() == Status::OutOfExtent);
  FUZZ_CHECK(b == 0x5a);
  FUZZ_CHECK(cap.read(cap.size(), &b, 0).ok());
}

// Root of the backing by the independent path: from_bytes over the model's backing bytes
// (a Missing page contributes the content its hash was taken from, rule 2.3).
NO_COVERAGE Hash32 model_root(const Model& m) {
  auto c = DataCap::from_bytes(m.bk.data(), m.bk.size());
  FUZZ_CHECK(c.ok());
  FUZZ_CHECK(c->size() == std::uint64_t{m.n} * PAGE_SIZE);
  return root_of(c.value());
}

// The allocation-failure injection armed for the current operation (0 = none).
struct Injection {
  std::uint64_t armed = 0;
  void arm() {
    if (armed != 0) frames().inject_failure_at(armed);
  }
  void disarm() {
    frames().inject_failure_at(0);
    armed = 0;
  }
};

// A call's status is `expect`, or OutOfFrames while an allocation failure is armed.
void expect_status(Status got, Status expect, const Injection& inj) {
  if (got == expect) return;
  if (inj.armed != 0 && got == Status::OutOfFrames) return;
  std::fprintf(stderr, "fuzz_cap_ops: status %u (%s), expected %u (%s)\n", static_cast<unsigned>(got), status_name(got),
               static_cast<unsigned>(expect), status_name(expect));
  std::abort();
}

// A page of `bytes`: hashed (from_content) or an unhashed copy (the fault path's kind).
Result<PageRef> make_page(const std::uint8_t* bytes, bool hashed) {
  return hashed ? PageRef::from_content(bytes, PAGE_SIZE) : PageRef::unhashed_copy(bytes);
}

enum Op : std::uint8_t {
  kWritePage,     // overlay: write_page (hashed or unhashed page), maybe the same page twice
  kWriteBytes,    // overlay: fault-path read-modify-write (reserve_overlay + publish)
  kWriteEmpty,    // overlay: explicit Empty entry (inert)
  kWriteMissing,  // overlay: Missing(hash of some content)
  kPutPage,       // backing: put_page (hashed, unhashed, unhashed but shared)
  kPlaceShared,   // backing: place_shared from self, the snapshot or a fresh cap
  kCopy,          // snapshot = copy()
  kSwap,          // swap the cap and the snapshot
  kFlush,
  kRoundTrip,  // encode + decode (+ maybe continue with the decoded cap)
  kRead,       // a random range
  kRoot,
  kResolve,  // resolve / resolve_page of a page (rule 8.4): right, wrong, short bytes, by reference
  kInject,   // arm an allocation failure for the next operation
  kOps
};

std::uint32_t pick_page(Reader& r, std::uint32_t n) {
  // Mostly in range; sometimes n (one past the end) or far past it.
  const std::uint8_t b = r.u8();
  if (b == 0xff) return 0xfffffu;
  return b % (n + 1);
}

class Run {
 public:
  Run(Reader& r, std::uint32_t n, DataCap cap, Model m) : r_(r), cap_(std::move(cap)), m_(std::move(m)), n_(n) {}

  void step() {
    const std::uint8_t op = r_.u8() % kOps;
    if (op == kInject) {
      inj_.armed = 1 + r_.u8() % 8;
      return;
    }
    const void* bid = cap_.backing_id();
    inj_.arm();
    const bool ok = exec(static_cast<Op>(op));
    inj_.disarm();
    if (!ok) FUZZ_CHECK(cap_.backing_id() == bid);
    verify(cap_, m_);
    if (snap_ && (op == kSwap || ++ops_ % 8 == 0)) verify(*snap_, *snapm_);
  }

  void finish() {
    if (snap_) verify(*snap_, *snapm_);
    // A final flush unless the overlay holds Missing.
    if (!m_.overlay_has_missing()) {
      FUZZ_CHECK(cap_.flush().ok());
      m_.flush();
      verify(cap_, m_);
      FUZZ_CHECK(root_of(cap_) == model_root(m_));
    }
  }

 private:
  // Runs one operation; returns false if it failed (the model is then unchanged).
  bool exec(Op op) {
    switch (op) {
      case kWritePage: {
        const std::uint32_t p = pick_page(r_, n_);
        gen_page(r_, page_);
        const bool hashed = r_.bit();
        const bool twice = r_.bit();
        const std::uint32_t p2 = r_.u8() % n_;
        auto pg = make_page(page_, hashed);
        if (!pg.ok()) return fail(pg.status());
        PageRef extra = twice ? pg.value() : PageRef{};
        auto w = cap_.write_page(p, pg.release_value());
        if (p >= n_) return expect_fail(w.status(), Status::OutOfExtent);
        if (!w.ok()) return fail(w.status());
        m_.set_ov(p, kBytes, page_);
        if (twice) {
          auto w2 = cap_.write_page(p2, std::move(extra));
          if (!w2.ok()) return fail(w2.status());
          m_.set_ov(p2, kBytes, page_);
        }
        return true;
      }
      case kWriteBytes: {
        const std::uint32_t p = pick_page(r_, n_);
        const std::uint16_t off = r_.u16() % PAGE_SIZE;
        const std::uint32_t len = 1 + r_.u16() % (PAGE_SIZE - off);
        const std::uint8_t v = r_.u8();
        const bool abandon = r_.u8() % 8 == 0;
        if (p >= n_) return expect_fail(cap_.reserve_overlay(p).status(), Status::OutOfExtent);
        if (m_.eff_kind(p) == kMissing) {
          // A write fault on a Missing page is a guest fault: the host read fails.
          return expect_fail(cap_.read(std::uint64_t{p} * PAGE_SIZE, page_, PAGE_SIZE).status(), Status::MissingPage);
        }
        FUZZ_CHECK(cap_.read(std::uint64_t{p} * PAGE_SIZE, page_, PAGE_SIZE).ok());
        std::memset(page_ + off, v, len);
        auto copy = PageRef::unhashed_copy(page_);
        if (!copy.ok()) return fail(copy.status());
        auto res = cap_.reserve_overlay(p);
        if (!res.ok()) return fail(res.status());
        if (abandon) return false;  // reservation and copy dropped: nothing changes
        cap_.publish(res.release_value(), copy.release_value());
        m_.set_ov(p, kBytes, page_);
        return true;
      }
      case kWriteEmpty: {
        const std::uint32_t p = pick_page(r_, n_);
        auto w = cap_.write_slot(p, Slot{});
        if (p >= n_) return expect_fail(w.status(), Status::OutOfExtent);
        if (!w.ok()) return fail(w.status());
        m_.set_ov(p, kEmptyEntry, nullptr);
        return true;
      }
      case kWriteMissing: {
        const std::uint32_t p = pick_page(r_, n_);
        gen_page(r_, page_, /*nonzero=*/true);
        auto s = Slot::missing(hash::page_content_hash(page_));
        if (!s.ok()) return fail(s.status());
        auto w = cap_.write_slot(p, s.release_value());
        if (p >= n_) return expect_fail(w.status(), Status::OutOfExtent);
        if (!w.ok()) return fail(w.status());
        m_.set_ov(p, kMissing, page_);
        return true;
      }
      case kPutPage: {
        const std::uint32_t p = pick_page(r_, n_);
        gen_page(r_, page_);
        const std::uint8_t how = r_.u8() % 3;  // 0 hashed, 1 unhashed, 2 unhashed and shared
        auto pg = make_page(page_, how == 0);
        if (!pg.ok()) return fail(pg.status());
        PageRef other = how == 2 ? pg.value() : PageRef{};
        auto w = cap_.put_page(p, pg.release_value());
        if (p >= n_) return expect_fail(w.status(), Status::OutOfExtent);
        if (how == 2 && !all_zero(page_, PAGE_SIZE)) return expect_fail(w.status(), Status::InvalidArgument);
        if (!w.ok()) return fail(w.status());
        if (how == 2) FUZZ_CHECK(other.unhashed());  // a shared page is never sealed
        m_.set_bk(p, kBytes, page_);
        return true;
      }
      case kPlaceShared: {
        const std::uint8_t src = r_.u8() % 3;
        const std::uint32_t at = r_.u8() % (n_ + 2);
        const bool misalign = r_.u8() % 16 == 0;
        const std::uint64_t off = std::uint64_t{at} * PAGE_SIZE + (misalign ? 1 + r_.u8() % 4095 : 0);
        std::optional<DataCap> fresh;
        std::optional<Model> fresh_m;
        const DataCap* b = &cap_;
        const Model* bm = &m_;
        if (src == 1 && snap_) {
          b = &*snap_;
          bm = &*snapm_;
        } else if (src == 2) {
          if (!make_fresh(fresh, fresh_m)) return false;
          b = &*fresh;
          bm = &*fresh_m;
        }
        const Model before = *bm;  // b may be the cap itself
        auto w = cap_.place_shared(*b, off);
        if (misalign) return expect_fail(w.status(), Status::Misaligned);
        if (at > n_) return expect_fail(w.status(), Status::OutOfExtent);
        if (!w.ok()) return fail(w.status());
        for (std::uint32_t i = 0; i < before.n && at + i < n_; ++i)
          m_.set_bk(at + i, before.eff_kind(i), before.eff(i));
        if (fresh) verify(*fresh, *fresh_m);  // the source keeps its own pages
        return true;
      }
      case kCopy: {
        auto c = cap_.copy();
        if (!c.ok()) return fail(c.status());
        snap_.reset();
        snap_.emplace(c.release_value());
        snapm_.emplace(m_);
        return true;
      }
      case kSwap: {
        if (!snap_) return true;
        std::swap(cap_, *snap_);
        std::swap(m_, *snapm_);
        return true;
      }
      case kFlush: {
        const bool was_empty = m_.overlay_count() == 0;
        const void* bid = cap_.backing_id();
        auto f = cap_.flush();
        if (was_empty) FUZZ_CHECK(f.ok() && cap_.backing_id() == bid);  // no new backing
        if (m_.overlay_has_missing()) return expect_fail(f.status(), Status::MissingInOverlay);
        if (!f.ok()) return fail(f.status());
        m_.flush();
        FUZZ_CHECK(cap_.overlay_count() == 0);
        inj_.disarm();
        FUZZ_CHECK(root_of(cap_) == model_root(m_));
        return true;
      }
      case kRoundTrip: {
        const bool keep = r_.bit();
        auto es = cap_.encoded_size();
        if (m_.overlay_count() != 0) return expect_fail(es.status(), Status::OverlayNotEmpty);
        if (m_.backing_has_missing()) return expect_fail(es.status(), Status::MissingPage);
        FUZZ_CHECK(es.ok());
        std::vector<std::uint8_t> enc(es.value());
        FUZZ_CHECK(cap_.encode(enc.data(), enc.size()).ok());
        DecodeError err{};
        auto d = DataCap::decode(enc.data(), enc.size(), &err);
        if (!d.ok()) {
          FUZZ_CHECK(err.status == d.status());
          return fail(d.status());
        }
        inj_.disarm();
        const Hash32 root = root_of(cap_);
        FUZZ_CHECK(root_of(d.value()) == root);
        FUZZ_CHECK(root == model_root(m_));
        verify(d.value(), m_);
        if (keep) cap_ = d.release_value();
        return true;
      }
      case kRead: {
        const std::uint64_t size = cap_.size();
        const std::uint64_t off = r_.u32() % (size + PAGE_SIZE + 1);
        const std::size_t len = r_.u16() % (3 * PAGE_SIZE);
        static std::vector<std::uint8_t> buf(3 * PAGE_SIZE);
        std::memset(buf.data(), 0xcc, len);
        auto rd = cap_.read(off, buf.data(), len);
        Status expect = Status::Ok;
        if (off > size || len > size - off) {
          expect = Status::OutOfExtent;
        } else if (len != 0) {
          for (std::uint64_t p = off / PAGE_SIZE; p <= (off + len - 1) / PAGE_SIZE; ++p)
            if (m_.eff_kind(static_cast<std::uint32_t>(p)) == kMissing) expect = Status::MissingPage;
        }
        FUZZ_CHECK(rd.status() == expect);
        if (!rd.ok()) {
          for (std::size_t i = 0; i < len; ++i) FUZZ_CHECK(buf[i] == 0xcc);
          return true;
        }
        for (std::size_t i = 0; i < len; ++i) {
          const std::uint64_t at = off + i;
          FUZZ_CHECK(buf[i] == m_.eff(static_cast<std::uint32_t>(at / PAGE_SIZE))[at % PAGE_SIZE]);
        }
        return true;
      }
      case kRoot: {
        auto rt = cap_.root();
        if (m_.overlay_count() != 0) return expect_fail(rt.status(), Status::OverlayNotEmpty);
        FUZZ_CHECK(rt.ok());
        return true;
      }
      case kResolve: {
        // Rule 8.4. The offer: 0 the Missing page's own content (or some page if it is not
        // Missing), 1 generated bytes (a mismatch unless they happen to be that content),
        // 2 the content by reference (hashed), 3 an unhashed copy of it by reference,
        // 4 the content one byte short. A resolve never changes the root.
        const std::uint32_t p = pick_page(r_, n_);
        const std::uint8_t how = r_.u8() % 5;
        const bool missing = p < n_ && m_.eff_kind(p) == kMissing;
        if (missing && how != 1) std::memcpy(page_, m_.eff(p), PAGE_SIZE);
        else gen_page(r_, page_);
        const bool right = missing && std::memcmp(page_, m_.eff(p), PAGE_SIZE) == 0;
        std::optional<Hash32> root;
        if (m_.overlay_count() == 0) root = root_of(cap_);
        Status st = Status::Ok;
        if (how == 2 || how == 3) {
          auto pg = make_page(page_, how == 2);
          if (!pg.ok()) return fail(pg.status());
          st = cap_.resolve_page(p, pg.release_value()).status();
        } else {
          st = cap_.resolve(p, page_, how == 4 ? PAGE_SIZE - 1 : PAGE_SIZE).status();
        }
        Status expect = Status::Ok;
        if (p >= n_) expect = Status::OutOfExtent;
        else if (!missing) expect = Status::NotMissing;
        else if (how == 3) expect = Status::UnhashedPage;
        else if (how == 4) expect = Status::BadLength;
        else if (!right) expect = Status::HashMismatch;
        if (expect != Status::Ok) return expect_fail(st, expect);
        if (st != Status::Ok) return fail(st);
        if (m_.ov_kind[p] == kMissing) m_.set_ov(p, kBytes, page_);
        else m_.set_bk(p, kBytes, page_);
        inj_.disarm();
        if (root) FUZZ_CHECK(root_of(cap_) == *root);
        return true;
      }
      case kInject:
      case kOps: break;
    }
    return true;
  }

  // A fresh source cap of 1..8 pages from from_bytes, maybe with an unhashed overlay page.
  bool make_fresh(std::optional<DataCap>& c, std::optional<Model>& m) {
    const std::uint32_t pages = 1 + r_.u8() % 8;
    m.emplace(pages);
    for (std::uint32_t i = 0; i < pages; ++i) gen_page(r_, m->bk_page(i));
    auto f = DataCap::from_bytes(m->bk.data(), m->bk.size());
    if (!f.ok()) return fail(f.status());
    c.emplace(f.release_value());
    if (r_.bit()) {
      const std::uint32_t p = r_.u8() % pages;
      gen_page(r_, page_);
      auto pg = PageRef::unhashed_copy(page_);
      if (!pg.ok()) return fail(pg.status());
      auto w = c->write_page(p, pg.release_value());
      if (!w.ok()) return fail(w.status());
      m->set_ov(p, kBytes, page_);
    }
    return true;
  }

  bool fail(Status st) {
    expect_status(st, Status::Ok, inj_);
    FUZZ_CHECK(st == Status::OutOfFrames);
    return false;
  }
  bool expect_fail(Status st, Status expect) {
    expect_status(st, expect, inj_);
    return false;
  }

  Reader& r_;
  DataCap cap_;
  Model m_;
  std::uint32_t n_;
  std::optional<DataCap> snap_;
  std::optional<Model> snapm_;
  Injection inj_;
  std::size_t ops_ = 0;
  std::uint8_t page_[PAGE_SIZE] = {};
};

void run(const std::uint8_t* data, std::size_t size) {
  Reader r{data, size};
  // Mostly small caps (1..8 pages: cheap iterations), a quarter up to kMaxPages.
  const std::uint8_t nb = r.u8();
  const std::uint32_t n = nb < 192 ? 1 + nb % 8 : 1 + nb % kMaxPages;
  Model m(n);
  const std::uint8_t form = r.u8() % 3;
  std::optional<DataCap> cap;
  if (form == 0) {
    auto c = DataCap::create(std::uint64_t{n} * PAGE_SIZE);
    FUZZ_CHECK(c.ok());
    cap.emplace(c.release_value());
  } else {
    // Up to 8 generated pages at chosen places; form 2 drops a tail of the last page and
    // passes the full size as target (rule 3.6).
    const unsigned k = r.u8() % 9;
    for (unsigned i = 0; i < k; ++i) gen_page(r, m.bk_page(r.u8() % n));
    std::size_t len = m.bk.size();
    if (form == 2) {
      const std::size_t cut = r.u16() % PAGE_SIZE;
      len -= cut;
      std::memset(m.bk.data() + len, 0, cut);
    }
    auto c = DataCap::from_bytes(m.bk.data(), len, form == 2 ? m.bk.size() : 0);
    FUZZ_CHECK(c.ok());
    cap.emplace(c.release_value());
    FUZZ_CHECK(root_of(*cap) == model_root(m));
  }
  verify(*cap, m);
  Run prog(r, n, std::move(*cap), std::move(m));
  cap.reset();
  for (std::size_t i = 0; i < kMaxOps && r.n != 0; ++i) prog.step();
  prog.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FrameLeakGuard guard;
  const std::uint64_t boxes = Slot::missing_boxes();
  run(data, size);
  FUZZ_CHECK(Slot::missing_boxes() == boxes);
  return 0;
}
