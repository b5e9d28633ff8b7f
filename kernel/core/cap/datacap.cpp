#include "capmem/datacap.h"

#include "capmem/fault.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

namespace {

// Rule 1.2: the content hash of an all-zero page is the zero subtree of depth 7.
bool zero_page_hash(const Hash32& h) { return h == hash::zero_hash(7); }

// Pages that still need their rule 1.2 hash before they enter a Txn. Each page here is
// referenced by nobody who could change it (a fresh copy, or an unshared unhashed copy).
// Hashes go through hash::page_content_hashes in batches of kBatch.
class PageBatch {
 public:
  static constexpr std::size_t kBatch = 16;
  explicit PageBatch(tree::Txn& t) : txn_(t) {}
  Status add(std::uint32_t page, PageRef p) {
    pages_[n_] = static_cast<PageRef&&>(p);
    index_[n_++] = page;
    return n_ == kBatch ? drain() : Status::Ok;
  }
  Status drain() {
    if (n_ == 0) return Status::Ok;
    const std::uint8_t* ptrs[kBatch];
    Hash32 out[kBatch];
    for (std::size_t i = 0; i < n_; ++i) ptrs[i] = pages_[i].bytes();
    hash::page_content_hashes(ptrs, out, n_);
    Status st = Status::Ok;
    for (std::size_t i = 0; i < n_; ++i) {
      pages_[i].desc()->hash = out[i];
      if (st == Status::Ok) st = txn_.set(index_[i], Slot::loaded(static_cast<PageRef&&>(pages_[i]))).status();
      pages_[i].reset();
    }
    n_ = 0;
    return st;
  }

 private:
  tree::Txn& txn_;
  PageRef pages_[kBatch];
  std::uint32_t index_[kBatch] = {};
  std::size_t n_ = 0;
};

// The backing slot for an effective slot that leaves its cap (flush, place_shared):
// hashed pages are shared, all-zero pages become Empty, unhashed pages are hashed (in
// place when `may_hash_in_place` and nobody else holds the frame, else as a fresh copy).
Status settle(tree::Txn& txn, PageBatch& batch, std::uint32_t page, const Slot& s, bool may_hash_in_place) {
  if (s.kind() != SlotKind::Loaded) return txn.set(page, s).status();
  FrameDesc* f = s.frame();
  if (!f->hash.is_zero()) return txn.set(page, zero_page_hash(f->hash) ? Slot{} : s).status();
  if (mem::page_is_zero(f->virt())) return txn.set(page, Slot{}).status();
  if (may_hash_in_place && f->refs.load(std::memory_order_acquire) == 1) return batch.add(page, s.page());
  auto c = PageRef::unhashed_copy(static_cast<const std::uint8_t*>(f->virt()));
  if (!c.ok()) return c.status();
  return batch.add(page, c.release_value());
}

}  // namespace

DataCap::DataCap(tree::Backing* b, Overlay ov) : backing_(b), overlay_(static_cast<Overlay&&>(ov)) {}

DataCap::DataCap(DataCap&& o) noexcept
    : backing_(std::exchange(o.backing_, nullptr)), overlay_(static_cast<Overlay&&>(o.overlay_)) {
  CAPMEM_ASSERT(o.runs_ == nullptr);  // a run's RunConfig points at the cap it maps
}

DataCap& DataCap::operator=(DataCap&& o) noexcept {
  if (this != &o) {
    CAPMEM_ASSERT(runs_ == nullptr && o.runs_ == nullptr);
    overlay_ = static_cast<Overlay&&>(o.overlay_);
    if (backing_ != nullptr) tree::backing_unref(backing_);
    backing_ = std::exchange(o.backing_, nullptr);
  }
  return *this;
}

DataCap::~DataCap() {
  CAPMEM_ASSERT(runs_ == nullptr);  // the cap must outlive the runs that map it (rule 3.8)
  overlay_.clear();
  if (backing_ != nullptr) tree::backing_unref(backing_);
}

void DataCap::install(tree::Backing* nb, tree::Txn& txn) {
  tree::backing_init(nb, txn.commit(), backing_->size);
  tree::backing_unref(backing_);
  backing_ = nb;
}

// --- Checkpoints (rule 3.8; fault.h "Checkpoints") ---------------------------------------

void DataCap::attach_run(fault::Run* r) {
  CAPMEM_ASSERT(r->next_run_ == nullptr && r->prev_run_ == nullptr && runs_ != r);
  r->next_run_ = runs_;
  if (runs_ != nullptr) runs_->prev_run_ = r;
  runs_ = r;
}

void DataCap::detach_run(fault::Run* r) {
  if (r->prev_run_ != nullptr) {
    r->prev_run_->next_run_ = r->next_run_;
  } else {
    CAPMEM_ASSERT(runs_ == r);
    runs_ = r->next_run_;
  }
  if (r->next_run_ != nullptr) r->next_run_->prev_run_ = r->prev_run_;
  r->next_run_ = nullptr;
  r->prev_run_ = nullptr;
}

DataCap::RunsHold::RunsHold(const DataCap& cap) : cap_(cap) {
  for (fault::Run* r = cap_.runs_; r != nullptr; r = r->next_run_) {
    if (r->try_hold()) continue;
    // Executing somewhere: release the claims taken so far (the runs before r).
    for (fault::Run* q = cap_.runs_; q != r; q = q->next_run_) q->release_hold();
    busy_ = true;
    return;
  }
}

DataCap::RunsHold::~RunsHold() {
  if (busy_) return;
  for (fault::Run* r = cap_.runs_; r != nullptr; r = r->next_run_) r->release_hold();
}

// Only overlay pages can be mapped writable (fault.h invariants): prepare every run's
// paid bitmap for them (may fail, nothing visible changed), then write-protect.
Result<void> DataCap::protect_runs() const {
  if (runs_ == nullptr || overlay_.count() == 0) return {};
  for (fault::Run* r = runs_; r != nullptr; r = r->next_run_) {
    const Status st = overlay_.for_each([r](std::uint32_t page, const Slot&) { return r->reserve_paid(page); });
    if (st != Status::Ok) return st;
  }
  for (fault::Run* r = runs_; r != nullptr; r = r->next_run_) {
    (void)overlay_.for_each([r](std::uint32_t page, const Slot&) {
      r->protect_page(page);
      return Status::Ok;
    });
  }
  return {};
}

Result<void> DataCap::reserve_runs(std::uint32_t first, std::uint32_t n) const {
  for (fault::Run* r = runs_; r != nullptr; r = r->next_run_)
    for (std::uint32_t i = 0; i < n; ++i)
      if (const Status st = r->reserve_paid(first + i); st != Status::Ok) return st;
  return {};
}

void DataCap::refresh_runs(std::uint32_t first, std::uint32_t n) const {
  for (fault::Run* r = runs_; r != nullptr; r = r->next_run_)
    for (std::uint32_t i = 0; i < n; ++i) r->refresh_page(first + i);
}

// --- Construction -----------------------------------------------------------------------

Result<DataCap> DataCap::create(std::uint64_t size) {
  if (size % PAGE_SIZE != 0) return Status::InvalidArgument;
  if (size > kMaxCapSize) return Status::TooLarge;
  tree::Backing* b = CAPMEM_TRY(tree::backing_alloc());
  tree::backing_init(b, nullptr, size);
  return DataCap(b, Overlay{});
}

Result<DataCap> DataCap::from_bytes(const std::uint8_t* content, std::size_t len, std::uint64_t target,
                                    BuildProgress progress) {
  if (len > kMaxCapSize || target > kMaxCapSize) return Status::TooLarge;
  std::uint64_t size = target > len ? target : len;
  size = (size + PAGE_SIZE - 1) & ~std::uint64_t{PAGE_SIZE - 1};
  if (size == 0) size = PAGE_SIZE;
  tree::Backing* nb = CAPMEM_TRY(tree::backing_alloc());
  tree::Txn txn(nullptr);
  PageBatch batch(txn);
  Status st = Status::Ok;
  for (std::size_t off = 0; off < len && st == Status::Ok; off += PAGE_SIZE) {
    const std::uint8_t* src = content + off;
    const std::size_t n = len - off < PAGE_SIZE ? len - off : PAGE_SIZE;
    const auto page = static_cast<std::uint32_t>(off / PAGE_SIZE);
    if (off % BuildProgress::kProgressStep == 0) {
      if (progress.cancelled()) {
        st = Status::Cancelled;
        break;
      }
      progress(off);
    }
    // The zero test on `content` only skips work; the one that decides is on the copy, so
    // content that changes under the call never yields an all-zero Loaded page (3.2, 3.6).
    if (n == PAGE_SIZE) {
      if (mem::page_is_zero(src)) continue;
    } else {
      bool zero = true;
      for (std::size_t i = 0; i < n && zero; ++i) zero = src[i] == 0;
      if (zero) continue;
    }
    auto p = PageRef::unhashed_copy(n == PAGE_SIZE ? src : nullptr);
    if (!p.ok()) {
      st = p.status();
      break;
    }
    if (n != PAGE_SIZE) __builtin_memcpy(p->mutable_bytes(), src, n);
    if (!mem::page_is_zero(p->bytes())) st = batch.add(page, p.release_value());
  }
  if (st == Status::Ok) st = batch.drain();
  if (st != Status::Ok) {
    tree::backing_free_unused(nb);
    return st;
  }
  progress(len);
  tree::backing_init(nb, txn.commit(), size);
  return DataCap(nb, Overlay{});
}

Result<DataCap> DataCap::copy() const {
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  // The clone shares the overlay's pages: a page a run maps writable must stop being
  // writable first, or a later guest store would show through in the copy (rule 3.8).
  if (auto r = protect_runs(); !r.ok()) return r.status();
  Overlay ov = CAPMEM_TRY(overlay_.clone());
  tree::backing_ref(backing_);
  return DataCap(backing_, static_cast<Overlay&&>(ov));
}

// --- Reads ------------------------------------------------------------------------------

SlotView DataCap::effective(std::uint32_t page) const {
  if (page < page_count()) {
    if (overlay_.count() != 0) {
      const Slot* o = overlay_.find(page);
      if (o != nullptr && !o->empty()) return o->view();
    }
    const Slot* s = tree::lookup(backing_->root, page);
    if (s != nullptr) return s->view();
  }
  return Slot{}.view();
}

Result<Slot> DataCap::slot(std::uint32_t page) const {
  if (page >= page_count()) return Status::OutOfExtent;
  const Slot* o = overlay_.find(page);
  if (o != nullptr && !o->empty()) return Slot(*o);
  const Slot* s = tree::lookup(backing_->root, page);
  return s != nullptr ? Slot(*s) : Slot{};
}

Result<SlotView> DataCap::page_at(std::uint64_t offset) const {
  if (offset >= size()) return Status::OutOfExtent;
  return effective(static_cast<std::uint32_t>(offset / PAGE_SIZE));
}

Result<void> DataCap::read(std::uint64_t offset, std::uint8_t* out, std::size_t len) const {
  if (offset > size() || len > size() - offset) return Status::OutOfExtent;
  if (len == 0) return {};
  const auto first = static_cast<std::uint32_t>(offset / PAGE_SIZE);
  const auto last = static_cast<std::uint32_t>((offset + len - 1) / PAGE_SIZE);
  for (std::uint32_t p = first; p <= last; ++p)
    if (effective(p).kind == SlotKind::Missing) return Status::MissingPage;
  std::size_t done = 0;
  while (done < len) {
    const std::uint64_t at = offset + done;
    const std::size_t in_page = at % PAGE_SIZE;
    std::size_t n = PAGE_SIZE - in_page;
    if (n > len - done) n = len - done;
    const SlotView v = effective(static_cast<std::uint32_t>(at / PAGE_SIZE));
    if (v.kind == SlotKind::Loaded)
      __builtin_memcpy(out + done, static_cast<const std::uint8_t*>(v.frame->virt()) + in_page, n);
    else __builtin_memset(out + done, 0, n);
    done += n;
  }
  return {};
}

// --- Overlay writes ---------------------------------------------------------------------

Result<void> DataCap::write_page(std::uint32_t page, PageRef p) {
  CAPMEM_ASSERT(static_cast<bool>(p));
  return write_slot(page, Slot::loaded(static_cast<PageRef&&>(p)));
}

Result<void> DataCap::write_slot(std::uint32_t page, Slot s) {
  if (page >= page_count()) return Status::OutOfExtent;
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  CAPMEM_TRY(reserve_runs(page, 1));
  CAPMEM_TRY(overlay_.put(page, static_cast<Slot&&>(s)));
  refresh_runs(page, 1);  // the runs' leaves follow the new effective page (rule 3.8)
  return {};
}

Result<OverlayReservation> DataCap::reserve_overlay(std::uint32_t page) {
  if (page >= page_count()) return Status::OutOfExtent;
  return overlay_.reserve(page);
}

void DataCap::publish(OverlayReservation&& r, PageRef p) {
  CAPMEM_ASSERT(static_cast<bool>(p) && r.page() < page_count());
  overlay_.publish(static_cast<OverlayReservation&&>(r), Slot::loaded(static_cast<PageRef&&>(p)));
}

// --- Backing writes ---------------------------------------------------------------------

Result<void> DataCap::put_page(std::uint32_t page, PageRef p) {
  CAPMEM_ASSERT(static_cast<bool>(p));
  if (page >= page_count()) return Status::OutOfExtent;
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  CAPMEM_TRY(reserve_runs(page, 1));
  Slot s;
  if (p.unhashed()) {
    if (!mem::page_is_zero(p.bytes())) {
      if (p.ref_count() != 1) return Status::InvalidArgument;
      p.seal();
      s = Slot::loaded(static_cast<PageRef&&>(p));
    }
  } else if (!zero_page_hash(p.hash())) {
    s = Slot::loaded(static_cast<PageRef&&>(p));
  }
  tree::Backing* nb = CAPMEM_TRY(tree::backing_alloc());
  tree::Txn txn(backing_->root);
  if (auto r = txn.set(page, static_cast<Slot&&>(s)); !r.ok()) {
    tree::backing_free_unused(nb);
    return r.status();
  }
  install(nb, txn);
  refresh_runs(page, 1);
  return {};
}

Result<void> DataCap::place_shared(const DataCap& b, std::uint64_t offset) {
  if (offset % PAGE_SIZE != 0) return Status::Misaligned;
  if (offset > size()) return Status::OutOfExtent;
  const auto at = static_cast<std::uint32_t>(offset / PAGE_SIZE);
  const std::uint32_t room = page_count() - at;
  const std::uint32_t n = b.page_count() < room ? b.page_count() : room;
  // Rule 3.8: this cap's runs and b's (whose pages are read) must be paused; this cap's
  // runs' leaves of the placed pages follow them once placed.
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  const RunsHold hold_b(b);  // b's runs too, if b is not this cap (holds stack)
  CAPMEM_TRY(hold_b.claimed());
  CAPMEM_TRY(reserve_runs(at, n));
  tree::Backing* nb = CAPMEM_TRY(tree::backing_alloc());
  Status st = Status::Ok;
  {
    tree::Txn txn(backing_->root);
    PageBatch batch(txn);
    const Slot empty;
    for (std::uint32_t i = 0; i < n && st == Status::Ok; ++i) {
      const Slot* o = b.overlay_.count() != 0 ? b.overlay_.find(i) : nullptr;
      const Slot* s = o != nullptr && !o->empty() ? o : tree::lookup(b.backing_->root, i);
      st = settle(txn, batch, at + i, s != nullptr ? *s : empty, false);
    }
    if (st == Status::Ok) st = batch.drain();
    if (st == Status::Ok) install(nb, txn);
  }
  if (st != Status::Ok) {
    tree::backing_free_unused(nb);
    return st;
  }
  refresh_runs(at, n);
  return {};
}

Result<void> DataCap::flush() {
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  if (overlay_.count() == 0) return {};
  Status st = overlay_.for_each([](std::uint32_t, const Slot& s) {
    return s.kind() == SlotKind::Missing ? Status::MissingInOverlay : Status::Ok;
  });
  if (st != Status::Ok) return st;
  // Rule 3.8: no run may keep writing a page this flush settles. A write-protected private
  // copy is referenced by its leaf too, so settle() copies it rather than hashing in place.
  CAPMEM_TRY(protect_runs());
  tree::Backing* nb = CAPMEM_TRY(tree::backing_alloc());
  {
    tree::Txn txn(backing_->root);
    PageBatch batch(txn);
    st = overlay_.for_each([&](std::uint32_t page, const Slot& s) {
      if (s.empty()) return Status::Ok;  // inert (rule 3.5)
      return settle(txn, batch, page, s, true);
    });
    if (st == Status::Ok) st = batch.drain();
    if (st == Status::Ok) install(nb, txn);
  }
  if (st != Status::Ok) {
    tree::backing_free_unused(nb);
    return st;
  }
  overlay_.clear();
  return {};
}

Result<Hash32> DataCap::root() const {
  if (overlay_.count() != 0) return Status::OverlayNotEmpty;
  return backing_->cap_root;
}

}  // namespace capmem
