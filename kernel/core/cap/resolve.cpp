// Resolving Missing pages (rule 8.4; datacap.h "Resolving Missing pages").
//
// One implementation, resolve_many(); resolve() and resolve_page() are one-item batches.
// Prepare, then commit:
//   prepare  every item is checked against the cap as it is (bounds, effective slot
//            Missing(h) with h resolvable, length / hashed reference). Bytes are read once
//            (rule 5.3) into fresh frames and hashed there, in batches of kBatch through the
//            multi-buffer page hash. A page that resolves a backing slot goes into a Txn on
//            the backing's tree by a path copy that marks nothing dirty (the slot root is
//            unchanged, so no node is rehashed, rule 2.3); a page that resolves an overlay
//            entry waits in a scratch Txn (a page-indexed map that is never committed). The
//            new backing is allocated and the mappers are prepared. Any failure drops the
//            Txns, the frames and the unused backing: the cap is untouched.
//   commit   cannot fail: the new backing takes over (size, extent and root copied from the
//            old one), the overlay entries are replaced in place, the mappers' leaves of the
//            pages follow (rule 3.8).
// All of it under a RunsHold: Busy, with nothing read, while a mapper of the cap executes.

#include "capmem/datacap.h"
#include "capmem/frame.h"
#include "capmem/hash.h"

namespace capmem {

namespace {

constexpr std::size_t kBatch = 16;

// A fresh Page frame for the host's bytes: no zeroing, every byte is written by copy_in.
Result<PageRef> fresh_frame() {
  FrameDesc* d = frames().alloc(FrameKind::Page);
  if (d == nullptr) return Status::OutOfFrames;
  return PageRef::adopt(d);
}

// A page offered by reference: a Page frame (InvalidArgument otherwise) with a computed hash
// (UnhashedPage for an unhashed copy, rule 1.3).
Status check_ref(const FrameDesc& f) {
  if (f.kind != FrameKind::Page) return Status::InvalidArgument;
  return f.hash.is_zero() ? Status::UnhashedPage : Status::Ok;
}

// Pages read from the host, not yet hashed: the item index, the hash the slot wants, the
// frame and where it goes.
struct Pending {
  std::size_t item;
  bool overlay;
  Hash32 want;
  PageRef page;
};

}  // namespace

Result<void> DataCap::resolve(std::uint32_t page, const ByteSource& src) {
  const ResolveItem it{.page = page, .src = src};
  return resolve_many(&it, 1, nullptr);
}

Result<void> DataCap::resolve(std::uint32_t page, const std::uint8_t* bytes, std::size_t len) {
  if (bytes == nullptr && len != 0) return Status::InvalidArgument;
  return resolve(page, ByteSource::memory(bytes, len));
}

Result<void> DataCap::resolve_page(std::uint32_t page, PageRef p) {
  if (!p) return Status::InvalidArgument;
  const ResolveItem it{.page = page, .ref = p.desc()};
  return resolve_many(&it, 1, nullptr);
}

Result<void> DataCap::resolve_many(const ResolveItem* items, std::size_t n, std::size_t* failed) {
  if (failed != nullptr) *failed = 0;
  if (backing_ == nullptr) return Status::EmptyCap;
  if (n == 0) return {};
  if (items == nullptr) return Status::InvalidArgument;
  const RunsHold hold(*this);
  CAPMEM_TRY(hold.claimed());

  // In place or by path copy. A backing that only this cap holds, with every node on the
  // items' paths held only by its parent (refs == 1), is reachable from nowhere else: its
  // Missing slots become Loaded where they are (same slot root, so no cached hash changes
  // and nothing is allocated). Otherwise a Txn path-copies (other holders keep the old
  // nodes). Decided before anything takes a reference; a bad item fails either way.
  bool in_place = backing_->refs.load(std::memory_order_acquire) == 1;
  for (std::size_t i = 0; i < n && in_place; ++i)
    in_place = items[i].page >= page_count() || tree::path_exclusive(backing_->root, items[i].page);

  tree::Txn txn(in_place ? nullptr : backing_->root);  // backing slots by path copy (never rehashed)
  tree::Txn scratch(nullptr);                          // verified pages waiting for the commit (overlay, or in place)
  Slot single;                                         // the same for a one-item call (no scratch node)
  tree::Backing* nb = nullptr;                         // the new backing, once an item resolves a backing slot by copy
  Pending pend[kBatch];
  std::size_t npend = 0;
  std::size_t bad = 0;

  // Puts a verified page where it goes; InvalidArgument for a second item of a page.
  auto place = [&](bool overlay, std::uint32_t page, PageRef p) -> Status {
    if (overlay || in_place) {
      if (n == 1) {
        single = Slot::loaded(static_cast<PageRef&&>(p));
        return Status::Ok;
      }
      if (scratch.find(page) != nullptr) return Status::InvalidArgument;
      return scratch.set(page, Slot::loaded(static_cast<PageRef&&>(p))).status();
    }
    if (nb == nullptr) {
      auto b = tree::backing_alloc();
      if (!b.ok()) return b.status();
      nb = b.value();
    }
    return txn.resolve(page, Slot::loaded(static_cast<PageRef&&>(p))).status();
  };
  // Hashes the pending pages (in the frames only this call sees) and places them in order.
  auto drain = [&]() -> Status {
    if (npend == 0) return Status::Ok;
    const std::uint8_t* ptrs[kBatch];
    Hash32 got[kBatch];
    for (std::size_t k = 0; k < npend; ++k) ptrs[k] = pend[k].page.bytes();
    hash::page_content_hashes(ptrs, got, npend);
    Status st = Status::Ok;
    for (std::size_t k = 0; k < npend; ++k) {
      Pending& q = pend[k];
      if (st == Status::Ok) {
        q.page.desc()->hash = got[k];  // the copy's own hash (rule 1.2), never a claim
        if (!(got[k] == q.want)) st = Status::HashMismatch;
        else st = place(q.overlay, items[q.item].page, static_cast<PageRef&&>(q.page));
        if (st != Status::Ok) bad = q.item;
      }
      q.page.reset();
    }
    npend = 0;
    return st;
  };

  Status st = Status::Ok;
  for (std::size_t i = 0; i < n && st == Status::Ok; ++i) {
    const ResolveItem& it = items[i];
    Status item_st = Status::Ok;
    bool overlay = false;
    const Slot* s = nullptr;
    if (it.page >= page_count()) {
      item_st = Status::OutOfExtent;
    } else {
      const Slot* o = overlay_.count() != 0 ? overlay_.find(it.page) : nullptr;
      overlay = o != nullptr && !o->empty();  // the entry shadows the backing (rule 3.3)
      s = overlay ? o : tree::lookup(backing_->root, it.page);
      if (s == nullptr || s->kind() != SlotKind::Missing) item_st = Status::NotMissing;
      else if (!codec::missing_resolvable(s->root())) item_st = Status::UnresolvableMissing;
      else if (it.ref != nullptr) item_st = check_ref(*it.ref);
      else if (it.src.len != PAGE_SIZE) item_st = Status::BadLength;
      else if (it.src.copy_in == nullptr) item_st = Status::InvalidArgument;
    }
    if (item_st == Status::Ok && it.ref != nullptr) {
      // By reference: no copy, no SHA-256; earlier byte items go first (failure order).
      item_st = drain();
      if (item_st != Status::Ok) {
        st = item_st;
        break;
      }
      if (!(it.ref->hash == s->root())) item_st = Status::HashMismatch;
      else item_st = place(overlay, it.page, PageRef::ref_existing(it.ref));
    } else if (item_st == Status::Ok) {
      auto p = fresh_frame();
      if (!p.ok()) {
        item_st = p.status();
      } else {
        it.src.copy_in(it.src.ctx, 0, p->mutable_bytes(), PAGE_SIZE);  // read once (5.3)
        pend[npend++] = Pending{.item = i, .overlay = overlay, .want = s->root(), .page = p.release_value()};
        if (npend == kBatch) st = drain();
      }
    }
    if (item_st != Status::Ok) {
      // An earlier pending item may fail first; it is the one to report.
      st = drain();
      if (st == Status::Ok) {
        st = item_st;
        bad = i;
      }
    }
  }
  if (st == Status::Ok) st = drain();

  // The mappers get ready to follow each page (may allocate; OutOfFrames changes nothing
  // they show).
  for (std::size_t i = 0; i < n && st == Status::Ok; ++i) {
    if (auto r = reserve_runs(items[i].page, 1); !r.ok()) {
      st = r.status();
      bad = i;
    }
  }
  if (st != Status::Ok) {
    if (nb != nullptr) tree::backing_free_unused(nb);
    if (failed != nullptr) *failed = bad;
    return st;  // the Txns release every node and page they hold
  }

  // --- Commit: nothing below can fail. ---
  if (nb != nullptr) {
    tree::backing_init_like(nb, txn.commit(), *backing_);
    tree::backing_unref(backing_);
    backing_ = nb;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t page = items[i].page;
    if (n != 1 && scratch.find(page) == nullptr) continue;  // resolved by the Txn
    if (n == 1 && single.empty()) continue;
    Slot s = n == 1 ? static_cast<Slot&&>(single) : scratch.take(page);
    const Slot* o = overlay_.count() != 0 ? overlay_.find(page) : nullptr;
    if (o != nullptr && !o->empty()) overlay_.replace(page, static_cast<Slot&&>(s));
    else tree::exclusive_slot(backing_->root, page)->swap(s);  // in place; s now holds the Missing box
  }
  for (std::size_t i = 0; i < n; ++i) refresh_runs(items[i].page, 1);
  return {};
}

std::uint32_t DataCap::missing_count() const {
  const tree::Backing* b = live("missing_count()");
  std::uint32_t c = tree::count_missing(b->root);
  (void)overlay_.for_each([&](std::uint32_t page, const Slot& o) {
    if (o.empty()) return Status::Ok;  // inert (rule 3.3)
    const Slot* under = tree::lookup(b->root, page);
    if (under != nullptr && under->kind() == SlotKind::Missing) --c;
    if (o.kind() == SlotKind::Missing) ++c;
    return Status::Ok;
  });
  return c;
}

}  // namespace capmem
