#include "capmem/datacap.h"

#include "capmem/env.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

namespace {

// Rule 1.2: the content hash of an all-zero page is the zero subtree of depth 7.
bool zero_page_hash(const Hash32& h) { return h == hash::zero_hash(7); }

// Pages that still need their rule 1.2 hash before they enter a Txn. Each page here is
// a fresh copy that nobody else references.
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
      // Rule 2.2: an all-zero page is Empty. Told by its root (the all-zero page's root is
      // the depth-7 zero subtree; equal roots of different pages would be a SHA-256
      // collision), so the page is read once, by its hash, not first by a zero scan.
      if (zero_page_hash(out[i])) {
        if (st == Status::Ok) st = txn_.set(index_[i], Slot{}).status();
      } else {
        pages_[i].desc()->hash = out[i];
        if (st == Status::Ok) st = txn_.set(index_[i], Slot::loaded(static_cast<PageRef&&>(pages_[i]))).status();
      }
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
// hashed pages are shared, all-zero pages become Empty, unhashed pages are hashed as a
// fresh copy (a flush has hashed the ones only its overlay holds in place before:
// hash_overlay_in_place).
Status settle(tree::Txn& txn, PageBatch& batch, std::uint32_t page, const Slot& s) {
  if (s.kind() != SlotKind::Loaded) return txn.set(page, s).status();
  FrameDesc* f = s.frame();
  if (!f->hash.is_zero()) return txn.set(page, zero_page_hash(f->hash) ? Slot{} : s).status();
  // An all-zero page becomes Empty when its batch is hashed (PageBatch::drain).
  auto c = PageRef::unhashed_copy(static_cast<const std::uint8_t*>(f->virt()));
  if (!c.ok()) return c.status();
  return batch.add(page, c.release_value());
}

// A flush's first pass: every unhashed page that only the overlay holds gets its rule 1.2
// hash in place, kBatch at a time, before any tree node is touched. settle() then finds
// it hashed, so the tree pass (Txn::set for each page, then Txn::commit) runs without the
// 4 KiB read of every dirty page between them. The descriptors of a batch are asked for
// while the batch is gathered and read when it is full, so their misses overlap.
// Cannot fail; a page whose flush fails later keeps its (true) hash, as a hashed page.
void hash_overlay_in_place(const Overlay& ov) {
  constexpr std::size_t kBatch = 32;
  FrameDesc* seen[kBatch];
  std::size_t n = 0;
  const auto drain = [&] {
    const std::uint8_t* ptrs[kBatch];
    FrameDesc* mine[kBatch];
    Hash32 out[kBatch];
    std::size_t m = 0;
    for (std::size_t i = 0; i < n; ++i) {
      FrameDesc* f = seen[i];
      // Only the overlay holds it (acquire: a release on another CPU may have dropped the
      // last other reference); a page a run's leaf also holds is settle()'s to copy.
      if (!f->hash.is_zero() || f->refs.load(std::memory_order_acquire) != 1) continue;
      mine[m] = f;
      ptrs[m++] = static_cast<const std::uint8_t*>(f->virt());
    }
    n = 0;
    if (m == 0) return;
    hash::page_content_hashes(ptrs, out, m);
    for (std::size_t i = 0; i < m; ++i) mine[i]->hash = out[i];
  };
  (void)ov.for_each([&](std::uint32_t, const Slot& s) {
    if (s.kind() != SlotKind::Loaded) return Status::Ok;
    FrameDesc* f = s.frame();
    __builtin_prefetch(f, 1);
    seen[n++] = f;
    if (n == kBatch) drain();
    return Status::Ok;
  });
  drain();
}

}  // namespace

DataCap::DataCap(tree::Backing* b, Overlay ov) : backing_(b), overlay_(static_cast<Overlay&&>(ov)) {}

void DataCap::empty_trap(const char* what) {
  log::str("DataCap::");
  log::str(what);
  log::str(" on an empty cap (default-constructed or moved from)\n");
  env::panic("rule 3.10: a cap that holds nothing may only be destroyed or assigned to");
}

void DataCap::check_unmapped(const char* what) const {
  if (mappers_ == nullptr) [[likely]]
    return;
  log::str(what);
  log::str(" a DataCap that a run maps (as its code or mem)\n");
  env::panic("rule 3.9: a cap that a run maps cannot be destroyed, moved from or assigned to until the run ends");
}

DataCap::DataCap(DataCap&& o) noexcept
    : backing_(std::exchange(o.backing_, nullptr)), overlay_(static_cast<Overlay&&>(o.overlay_)) {
  o.check_unmapped("moving from");  // a run's RunConfig points at the cap it maps
}

DataCap& DataCap::operator=(DataCap&& o) noexcept {
  if (this != &o) {
    check_unmapped("assigning to");
    o.check_unmapped("moving from");
    overlay_ = static_cast<Overlay&&>(o.overlay_);
    if (backing_ != nullptr) tree::backing_unref(backing_);
    backing_ = std::exchange(o.backing_, nullptr);
  }
  return *this;
}

DataCap::~DataCap() {
  check_unmapped("destroying");  // the cap must outlive the runs that map it
  overlay_.clear();
  if (backing_ != nullptr) tree::backing_unref(backing_);
}

void DataCap::install(tree::Backing* nb, tree::Txn& txn) {
  tree::backing_init(nb, txn.commit(), backing_->size);
  tree::backing_unref(backing_);
  backing_ = nb;
}

// --- Mappers (rules 3.8, 3.9; mapper.h) ---------------------------------------------------

void DataCap::list_read_lock() const {
  std::uint32_t v = list_guard_.load(std::memory_order_relaxed);
  for (;;) {
    if ((v & kListWriter) != 0) {  // an attach / detach: a few stores
      __builtin_ia32_pause();
      v = list_guard_.load(std::memory_order_relaxed);
      continue;
    }
    if (list_guard_.compare_exchange_weak(v, v + 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
  }
}

namespace {
// The writer side of DataCap::list_guard_ for attach / detach (see datacap.h).
class ListWriter {
 public:
  explicit ListWriter(std::atomic<std::uint32_t>& g, std::uint32_t bit) : g_(g) {
    std::uint32_t expected = 0;
    while (!g_.compare_exchange_weak(expected, bit, std::memory_order_acquire, std::memory_order_relaxed)) {
      expected = 0;
      __builtin_ia32_pause();
    }
  }
  ~ListWriter() { g_.store(0, std::memory_order_release); }
  ListWriter(const ListWriter&) = delete;
  ListWriter& operator=(const ListWriter&) = delete;

 private:
  std::atomic<std::uint32_t>& g_;
};
}  // namespace

void DataCap::attach_mapper(MapperNode* n) const {
  const ListWriter w(list_guard_, kListWriter);
  CAPMEM_ASSERT(n->ops != nullptr && n->next == nullptr && n->prev == nullptr && mappers_ != n);
  n->next = mappers_;
  if (mappers_ != nullptr) mappers_->prev = n;
  mappers_ = n;
}

void DataCap::detach_mapper(MapperNode* n) const {
  const ListWriter w(list_guard_, kListWriter);
  if (n->prev != nullptr) {
    n->prev->next = n->next;
  } else {
    CAPMEM_ASSERT(mappers_ == n);
    mappers_ = n->next;
  }
  if (n->next != nullptr) n->next->prev = n->prev;
  n->next = nullptr;
  n->prev = nullptr;
}

bool DataCap::take_turn(const void* owner, bool exclusive) const {
  const auto me = reinterpret_cast<std::uintptr_t>(owner);
  CAPMEM_ASSERT(me != 0 && (me & 1) == 0);
  std::uintptr_t v = turn_.load(std::memory_order_relaxed);
  for (;;) {
    std::uintptr_t next = 0;
    if (exclusive) {
      if (v != 0) return false;
      next = me;
    } else {
      if (v != 0 && (v & 1) == 0) return false;  // an exclusive holder
      next = v == 0 ? 3 : v + 2;
    }
    if (turn_.compare_exchange_weak(v, next, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
}

void DataCap::give_turn(const void* owner, bool exclusive) const {
  if (exclusive) {
    const std::uintptr_t was = turn_.exchange(0, std::memory_order_release);
    CAPMEM_ASSERT(was == reinterpret_cast<std::uintptr_t>(owner));
    return;
  }
  std::uintptr_t v = turn_.load(std::memory_order_relaxed);
  for (;;) {
    CAPMEM_ASSERT((v & 1) != 0 && v >= 3);
    const std::uintptr_t next = v == 3 ? 0 : v - 2;
    if (turn_.compare_exchange_weak(v, next, std::memory_order_release, std::memory_order_relaxed)) return;
  }
}

DataCap::RunsHold::RunsHold(const DataCap& cap) : cap_(cap) {
  cap_.list_read_lock();  // the list stays as it is until the destructor
  for (MapperNode* n = cap_.mappers_; n != nullptr; n = n->next) {
    if (n->ops->try_hold(*n)) continue;
    // Executing somewhere: release the claims taken so far (the nodes before n).
    for (MapperNode* q = cap_.mappers_; q != n; q = q->next) q->ops->release(*q);
    busy_ = true;
    return;
  }
}

DataCap::RunsHold::~RunsHold() {
  if (!busy_)
    for (MapperNode* n = cap_.mappers_; n != nullptr; n = n->next) n->ops->release(*n);
  cap_.list_read_unlock();
}

// Only overlay pages can be mapped writable (fault.h invariants): prepare every mapper
// for them (may fail, nothing visible changed), then write-protect.
Result<void> DataCap::protect_runs() const {
  if (mappers_ == nullptr || overlay_.count() == 0) return {};
  for (MapperNode* n = mappers_; n != nullptr; n = n->next) {
    const Status st = overlay_.for_each([n](std::uint32_t page, const Slot&) { return n->ops->prepare(*n, page); });
    if (st != Status::Ok) return st;
  }
  for (MapperNode* n = mappers_; n != nullptr; n = n->next) {
    (void)overlay_.for_each([n](std::uint32_t page, const Slot&) {
      n->ops->protect(*n, page);
      return Status::Ok;
    });
  }
  return {};
}

Result<void> DataCap::reserve_runs(std::uint32_t first, std::uint32_t n) const {
  for (MapperNode* m = mappers_; m != nullptr; m = m->next)
    for (std::uint32_t i = 0; i < n; ++i)
      if (const Status st = m->ops->prepare(*m, first + i); st != Status::Ok) return st;
  return {};
}

void DataCap::refresh_runs(std::uint32_t first, std::uint32_t n) const {
  for (MapperNode* m = mappers_; m != nullptr; m = m->next)
    for (std::uint32_t i = 0; i < n; ++i) m->ops->refresh(*m, first + i);
}

// --- Construction -----------------------------------------------------------------------

Result<DataCap> DataCap::create(std::uint64_t size) {
  if (size == 0 || size % PAGE_SIZE != 0) return Status::InvalidArgument;  // rule 3.10: >= 1 page
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
    // The zero test on `content` only skips work; the one that decides is the copy's root
    // (PageBatch::drain), so content that changes under the call never yields an all-zero
    // Loaded page (3.2, 3.6).
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
    st = batch.add(page, p.release_value());  // all-zero after all: Empty (PageBatch::drain)
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
  if (backing_ == nullptr) return Status::EmptyCap;
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

const Slot* DataCap::effective_slot(std::uint32_t page) const {
  if (overlay_.count() != 0) {
    const Slot* o = overlay_.find(page);
    if (o != nullptr && !o->empty()) return o;  // Loaded or Missing shadows (rule 3.3)
  }
  return tree::lookup(backing_->root, page);
}

SlotView DataCap::effective(std::uint32_t page) const {
  if (page < page_count()) {
    if (const Slot* s = effective_slot(page); s != nullptr) return s->view();
  }
  return Slot{}.view();
}

Result<Slot> DataCap::slot(std::uint32_t page) const {
  if (backing_ == nullptr) return Status::EmptyCap;
  if (page >= page_count()) return Status::OutOfExtent;
  const Slot* s = effective_slot(page);
  return s != nullptr ? Slot(*s) : Slot{};
}

Result<SlotView> DataCap::page_at(std::uint64_t offset) const {
  if (backing_ == nullptr) return Status::EmptyCap;
  if (offset >= size()) return Status::OutOfExtent;
  return effective(static_cast<std::uint32_t>(offset / PAGE_SIZE));
}

Result<void> DataCap::read(std::uint64_t offset, std::uint8_t* out, std::size_t len) const {
  if (backing_ == nullptr) return Status::EmptyCap;
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
  if (backing_ == nullptr) return Status::EmptyCap;
  return write_slot(page, Slot::loaded(static_cast<PageRef&&>(p)));
}

Result<void> DataCap::write_slot(std::uint32_t page, Slot s) {
  if (backing_ == nullptr) return Status::EmptyCap;
  if (page >= page_count()) return Status::OutOfExtent;
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  CAPMEM_TRY(reserve_runs(page, 1));
  CAPMEM_TRY(overlay_.put(page, static_cast<Slot&&>(s)));
  refresh_runs(page, 1);  // the runs' leaves follow the new effective page (rule 3.8)
  return {};
}

Result<OverlayReservation> DataCap::reserve_overlay(std::uint32_t page, const MapperNode* by) {
  if (backing_ == nullptr) return Status::EmptyCap;
  if (page >= page_count()) return Status::OutOfExtent;
  // Rule 3.9: every other mapper (paused: `by` has the turn) gets ready to follow the page.
  list_read_lock();
  Status st = Status::Ok;
  for (MapperNode* m = mappers_; m != nullptr && st == Status::Ok; m = m->next)
    if (m != by) st = m->ops->prepare(*m, page);
  list_read_unlock();
  if (st != Status::Ok) return st;
  return overlay_.reserve(page);
}

void DataCap::publish(OverlayReservation&& r, PageRef p, const MapperNode* by) {
  CAPMEM_ASSERT(static_cast<bool>(p) && r.page() < page_count());
  const std::uint32_t page = r.page();
  overlay_.publish(static_cast<OverlayReservation&&>(r), Slot::loaded(static_cast<PageRef&&>(p)));
  list_read_lock();
  for (MapperNode* m = mappers_; m != nullptr; m = m->next)
    if (m != by) m->ops->published(*m, page);
  list_read_unlock();
}

// --- Backing writes ---------------------------------------------------------------------

Result<void> DataCap::put_page(std::uint32_t page, PageRef p) {
  CAPMEM_ASSERT(static_cast<bool>(p));
  if (backing_ == nullptr) return Status::EmptyCap;
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
  if (backing_ == nullptr || b.backing_ == nullptr) return Status::EmptyCap;
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
      const Slot* s = b.effective_slot(i);
      st = settle(txn, batch, at + i, s != nullptr ? *s : empty);
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
  if (backing_ == nullptr) return Status::EmptyCap;
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());
  if (overlay_.count() == 0) return {};
  Status st = overlay_.for_each([](std::uint32_t, const Slot& s) {
    return s.kind() == SlotKind::Missing ? Status::MissingInOverlay : Status::Ok;
  });
  if (st != Status::Ok) return st;
  // Rule 3.8: no run may keep writing a page this flush settles. A write-protected private
  // copy is referenced by its leaf too, so the first pass leaves it and settle() copies it
  // rather than hashing it in place.
  CAPMEM_TRY(protect_runs());
  hash_overlay_in_place(overlay_);
  const auto settle_overlay = [this](tree::Txn& txn) {
    PageBatch batch(txn);
    // Pages go to the Txn kAhead behind the walk: the tree lines of page j are asked for at
    // j (its level-1 link) and j + kAhead / 2 (its leaf), and set at j + kAhead.
    constexpr std::uint32_t kAhead = 16;
    struct Pending {
      std::uint32_t page;
      const Slot* slot;
    } ring[kAhead];
    std::uint32_t seen = 0;
    const auto settle_one = [&](std::uint32_t j) {
      const Pending& p = ring[j % kAhead];
      return settle(txn, batch, p.page, *p.slot);
    };
    Status s = overlay_.for_each([&](std::uint32_t page, const Slot& slot) {
      if (slot.empty()) return Status::Ok;  // inert (rule 3.5)
      Status r = Status::Ok;
      if (seen >= kAhead) r = settle_one(seen - kAhead);
      ring[seen % kAhead] = {page, &slot};
      if (slot.kind() == SlotKind::Loaded) __builtin_prefetch(slot.frame(), 0);  // settle() reads its hash
      txn.prefetch(page, false);
      if (seen >= kAhead / 2) txn.prefetch(ring[(seen - kAhead / 2) % kAhead].page, true);
      ++seen;
      return r;
    });
    for (std::uint32_t j = seen > kAhead ? seen - kAhead : 0; j < seen && s == Status::Ok; ++j) {
      if (j + kAhead / 2 < seen) txn.prefetch(ring[(j + kAhead / 2) % kAhead].page, true);
      s = settle_one(j);
    }
    if (s == Status::Ok) s = batch.drain();
    return s;
  };
  // Rule 3.5 leaves the old backing exactly as it was because other caps may share it. When
  // none does (refs == 1: this cap's own reference; acquire, as a release on another CPU may
  // have dropped the last other one), the flush changes it in place: its tree through an
  // in-place Txn (the nodes only it holds are taken over, not copied and released; a failure
  // puts everything back), and the backing header itself.
  if (backing_->refs.load(std::memory_order_acquire) == 1) {
    tree::Txn txn(backing_->root, tree::Txn::InPlace{});
    st = settle_overlay(txn);
    if (st != Status::Ok) return st;  // txn's destructor restores the tree
    tree::backing_init(backing_, txn.commit(), backing_->size);
  } else {
    tree::Backing* nb = CAPMEM_TRY(tree::backing_alloc());
    {
      tree::Txn txn(backing_->root);
      st = settle_overlay(txn);
      if (st == Status::Ok) install(nb, txn);
    }
    if (st != Status::Ok) {
      tree::backing_free_unused(nb);
      return st;
    }
  }
  overlay_.clear();
  return {};
}

Result<Hash32> DataCap::root() const {
  if (backing_ == nullptr) return Status::EmptyCap;
  if (overlay_.count() != 0) return Status::OverlayNotEmpty;
  return backing_->cap_root;
}

}  // namespace capmem
