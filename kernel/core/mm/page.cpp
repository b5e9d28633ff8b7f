#include "capmem/page.h"

#include "capmem/hash.h"
#include "capmem/log.h"
#include "capmem/mem.h"

namespace capmem {

PageRef PageRef::adopt(FrameDesc* d) {
  CAPMEM_ASSERT(d != nullptr);
  if (d->kind != FrameKind::Page || d->adopted != 0 || d->refs.load(std::memory_order_relaxed) != 1)
    env::panic("PageRef::adopt: frame is not a fresh, unadopted page");
  d->adopted = 1;
  return PageRef(d);
}

namespace {
Result<PageRef> fresh_page() {
  FrameDesc* d = frames().alloc(FrameKind::Page);
  if (d == nullptr) return Status::OutOfFrames;
  return PageRef::adopt(d);
}
}  // namespace

Result<PageRef> PageRef::from_content(const std::uint8_t* content, std::size_t len) {
  PageRef p = CAPMEM_TRY(fresh_page());
  std::uint8_t* dst = p.mutable_bytes();
  const std::size_t n = len < PAGE_SIZE ? len : PAGE_SIZE;
  if (n == PAGE_SIZE) {
    mem::copy_page(dst, content);
  } else {
    mem::zero_page(dst);
    if (n != 0) __builtin_memcpy(dst, content, n);
  }
  p.d_->hash = hash::page_content_hash(dst);
  return p;
}

Result<PageRef> PageRef::unhashed_copy(const std::uint8_t* src) {
  PageRef p = CAPMEM_TRY(fresh_page());
  p.unhashed_fill(src);
  // Sentinel hash (rule 1.3): fresh_page() left it as 32 zero bytes; no SHA-256 here.
  return p;
}

Result<PageRef> PageRef::unhashed_frame(const std::uint8_t* src) {
  PageRef p = CAPMEM_TRY(fresh_page());
  mem::prefetch_page(p.bytes(), /*for_write=*/true);
  if (src != nullptr) mem::prefetch_page(src);
  return p;
}

void PageRef::unhashed_fill(const std::uint8_t* src) {
  if (src != nullptr) mem::copy_page(mutable_bytes(), src);
  else mem::zero_page(mutable_bytes());
}

Result<PageRef> PageRef::from_verified(const std::uint8_t* bytes4096, const Hash32& h) {
  PageRef p = CAPMEM_TRY(fresh_page());
  mem::copy_page(p.mutable_bytes(), bytes4096);
  p.d_->hash = h;
  return p;
}

void PageRef::seal() {
  if (ref_count() != 1) env::panic("PageRef::seal on a shared page");
  d_->hash = hash::page_content_hash(bytes());
}

Result<PageRef> PageRef::clone() const { return from_verified(bytes(), hash()); }

}  // namespace capmem
