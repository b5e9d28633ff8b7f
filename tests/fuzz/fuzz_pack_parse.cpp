// libFuzzer target: the page pack parser (rule 8.7, include/capmem/pack.h).
//
// Properties checked on every input:
//   - never a crash, never a read outside the input (ASan; the ByteSource pass below checks
//     every range it is asked for);
//   - rejected: a Pack* status naming rule 8.7, the same status in DecodeError, an offset
//     inside the input (at most its length);
//   - accepted: the layout holds (magic, flags 0, pages_offset 4096-aligned and at or after
//     the index, length = pages_offset + 4096 x count, strictly increasing roots, zero pad),
//     checked here from the input bytes; every index root is found at its own position; every
//     page location handed out (page(i), find of an index root, of a root from the input, of
//     near misses) lies inside the input; a root that is not in the index is NotInStore;
//   - every input again through a ByteSource that counts reads: parse reads each byte at most
//     once and never a page byte, and gives the same outcome (status and offset, or count and
//     pages_offset).
// A custom mutator rewrites the header half the time (magic, flags 0, a small count, the
// writer's pages_offset, the length the count needs, sorted roots), so mutated inputs keep
// reaching the accepting path and the lookups.
// Seeds: tests/fuzz/corpus/pack_parse/ (packs made by tests/fuzz/gen_seeds.py).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "capmem/pack.h"
#include "fuzz_common.h"

using namespace capmem;
using namespace capmem::store;

namespace {

bool is_pack_status(Status s) { return s >= Status::PackBadMagic && s <= Status::PackBadLength; }

struct CountingSource {
  const std::uint8_t* data;
  std::vector<std::uint8_t> reads;
  [[nodiscard]] ByteSource source() const { return ByteSource{.copy_in = copy_in, .ctx = this, .len = reads.size()}; }
  static void copy_in(const void* ctx, std::uint64_t off, std::uint8_t* out, std::size_t n) {
    auto* s = const_cast<CountingSource*>(static_cast<const CountingSource*>(ctx));
    FUZZ_CHECK(off <= s->reads.size() && n <= s->reads.size() - off);
    for (std::size_t i = 0; i < n; ++i) {
      FUZZ_CHECK(s->reads[off + i]++ == 0);  // read once
      out[i] = s->data[off + i];
    }
  }
};

void check_in_bounds(const Pack& p, const PackPage& pg, std::size_t size) {
  FUZZ_CHECK(pg.index < p.count());
  FUZZ_CHECK(pg.offset == p.pages_offset() + std::uint64_t{PAGE_SIZE} * pg.index);
  FUZZ_CHECK(pg.offset <= size && PAGE_SIZE <= size - pg.offset);
}

void check_accepted(const Pack& p, const std::uint8_t* data, std::size_t size) {
  const std::uint32_t count = codec::get_u32(data + 8);
  const std::uint64_t pages_offset = codec::get_u64(data + 16);
  FUZZ_CHECK(std::memcmp(data, "CAPMPAK1", 8) == 0);
  FUZZ_CHECK(codec::get_u32(data + 12) == 0);
  FUZZ_CHECK(p.count() == count && p.pages_offset() == pages_offset && p.size() == size);
  FUZZ_CHECK(pages_offset % PAGE_SIZE == 0 && pages_offset >= 24 + 32ull * count);
  FUZZ_CHECK(pages_offset + std::uint64_t{PAGE_SIZE} * count == size);
  for (std::uint64_t i = 24 + 32ull * count; i < pages_offset; ++i) FUZZ_CHECK(data[i] == 0);
  for (std::uint32_t i = 0; i < count; ++i) {
    Hash32 r;
    std::memcpy(r.b.data(), data + 24 + 32ull * i, 32);
    if (i > 0) FUZZ_CHECK(std::memcmp(data + 24 + 32ull * (i - 1), r.b.data(), 32) < 0);
    auto at = p.root_at(i);
    FUZZ_CHECK(at.ok() && at.value() == r);
    auto pg = p.page(i);
    FUZZ_CHECK(pg.ok() && pg->index == i);
    check_in_bounds(p, pg.value(), size);
    FUZZ_CHECK(p.page_bytes(pg.value()) == data + pg->offset);
    auto f = p.find(r);
    FUZZ_CHECK(f.ok() && f->index == i);
    // Near misses of an index root: found (then in bounds, at a root equal to the probe) or
    // NotInStore.
    for (int k = 0; k < 2; ++k) {
      Hash32 near = r;
      near.b[k == 0 ? 31 : 0] ^= 1;
      auto g = p.find(near);
      if (g.ok()) {
        check_in_bounds(p, g.value(), size);
        FUZZ_CHECK(p.root_at(g->index).value() == near);
      } else {
        FUZZ_CHECK(g.status() == Status::NotInStore);
      }
    }
  }
  FUZZ_CHECK(p.root_at(count).status() == Status::OutOfExtent);
  FUZZ_CHECK(p.page(count).status() == Status::OutOfExtent);
  // Roots taken from anywhere in the input (pages included).
  for (std::size_t at = 0; at + 32 <= size; at += 1 + size / 16) {
    Hash32 h;
    std::memcpy(h.b.data(), data + at, 32);
    auto g = p.find(h);
    if (g.ok()) check_in_bounds(p, g.value(), size);
    else FUZZ_CHECK(g.status() == Status::NotInStore);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  DecodeError err{Status::Ok, ~std::uint64_t{0}};
  auto p = Pack::parse(data, size, &err);
  if (!p.ok()) {
    FUZZ_CHECK_MSG(is_pack_status(p.status()), "%s", status_name(p.status()));
    FUZZ_CHECK(std::strcmp(status_rule(p.status()), "8.7") == 0);
    FUZZ_CHECK(err.status == p.status());
    FUZZ_CHECK(err.offset <= size);
  } else {
    check_accepted(p.value(), data, size);
  }
  // The same input through a counting ByteSource: read once, no page byte, same outcome.
  CountingSource src{.data = data, .reads = std::vector<std::uint8_t>(size, 0)};
  DecodeError err2{Status::Ok, ~std::uint64_t{0}};
  auto q = Pack::parse(src.source(), &err2);
  FUZZ_CHECK(q.status() == p.status());
  if (q.ok()) {
    FUZZ_CHECK(q->count() == p->count() && q->pages_offset() == p->pages_offset());
    FUZZ_CHECK(q->page_bytes(PackPage{.index = 0, .offset = 0}) == nullptr);
    for (std::uint64_t i = q->pages_offset(); i < size; ++i) FUZZ_CHECK(src.reads[i] == 0);
  } else {
    FUZZ_CHECK(err2.offset == err.offset);
  }
  return 0;
}

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

// Makes `data` a well-formed pack of the count it claims (clamped so the pack fits max_size),
// keeping whatever roots and page bytes it holds, sorted and made distinct.
static std::size_t fix_pack(std::uint8_t* data, std::size_t size, std::size_t max_size) {
  if (max_size < 4096) return size;
  if (size < 24) {
    std::memset(data + size, 0, 24 - size);
    size = 24;
  }
  std::uint32_t count = codec::get_u32(data + 8) % 8;
  while (count > 0 && pack_size(count) > max_size) --count;
  const std::size_t want = static_cast<std::size_t>(pack_size(count));
  if (size < want) std::memset(data + size, 0, want - size);
  std::memcpy(data, "CAPMPAK1", 8);
  codec::put_u32(data + 8, count);
  codec::put_u32(data + 12, 0);
  codec::put_u64(data + 16, pack_min_pages_offset(count));
  std::vector<Hash32> roots(count);
  for (std::uint32_t i = 0; i < count; ++i) std::memcpy(roots[i].b.data(), data + 24 + 32 * i, 32);
  std::sort(roots.begin(), roots.end(), [](const Hash32& a, const Hash32& b) { return root_compare(a, b) < 0; });
  for (std::uint32_t i = 1; i < count; ++i)
    if (root_compare(roots[i - 1], roots[i]) >= 0) {  // equal: make it the successor
      roots[i] = roots[i - 1];
      for (int k = 31; k >= 0 && ++roots[i].b[k] == 0; --k) {
      }
    }
  for (std::uint32_t i = 0; i < count; ++i) std::memcpy(data + 24 + 32 * i, roots[i].b.data(), 32);
  const std::uint64_t pad = 24 + 32ull * count;
  std::memset(data + pad, 0, static_cast<std::size_t>(pack_min_pages_offset(count) - pad));
  return want;
}

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if ((seed & 1) != 0) size = fix_pack(data, size, max_size);
  return size;
}
