// SHA-256 front end, merkle node/level hashing, SSZ merkleize (rules 1.2, 3.4).
// Placeholder dispatch: portable only. (The SIMD back ends arrive with the hashing work.)
#include "capmem/hash.h"

#include "hash_internal.h"

namespace capmem::hash {

using detail::compress_portable;

void init() {}
Impl active() { return Impl::Portable; }
bool supported(Impl impl) { return impl == Impl::Portable; }
void force(Impl) {}
const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::Portable: return "portable";
    case Impl::ShaNi: return "sha-ni";
    case Impl::Avx2: return "avx2-8way";
    case Impl::Avx512: return "avx512-16way";
  }
  return "?";
}

namespace {
void store_be(const std::uint32_t st[8], Hash32* out) {
  for (int i = 0; i < 8; ++i) {
    out->b[4 * i] = static_cast<std::uint8_t>(st[i] >> 24);
    out->b[4 * i + 1] = static_cast<std::uint8_t>(st[i] >> 16);
    out->b[4 * i + 2] = static_cast<std::uint8_t>(st[i] >> 8);
    out->b[4 * i + 3] = static_cast<std::uint8_t>(st[i]);
  }
}
}  // namespace

Hash32 sha256(const void* data, std::size_t len) {
  std::uint32_t st[8];
  for (int i = 0; i < 8; ++i) st[i] = detail::kInit[i];
  const auto* p = static_cast<const std::uint8_t*>(data);
  const std::size_t full = len / 64;
  compress_portable(st, p, full);
  std::uint8_t tail[128] = {};
  const std::size_t rem = len - full * 64;
  for (std::size_t i = 0; i < rem; ++i) tail[i] = p[full * 64 + i];
  tail[rem] = 0x80;
  const std::size_t tblocks = rem + 9 <= 64 ? 1 : 2;
  const std::uint64_t bits = static_cast<std::uint64_t>(len) * 8;
  for (int i = 0; i < 8; ++i) tail[tblocks * 64 - 1 - i] = static_cast<std::uint8_t>(bits >> (8 * i));
  compress_portable(st, tail, tblocks);
  Hash32 out;
  store_be(st, &out);
  return out;
}

Hash32 node(const Hash32& l, const Hash32& r) {
  std::uint8_t buf[64];
  for (int i = 0; i < 32; ++i) {
    buf[i] = l.b[i];
    buf[32 + i] = r.b[i];
  }
  return sha256(buf, 64);
}

void nodes(const Hash32* in, Hash32* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = node(in[2 * i], in[2 * i + 1]);
}

Hash32 page_content_hash(const std::uint8_t* page) {
  Hash32 level[64];
  const auto* chunks = reinterpret_cast<const Hash32*>(page);
  nodes(chunks, level, 64);
  for (std::size_t n = 32; n >= 1; n /= 2) nodes(level, level, n);
  return level[0];
}

void page_content_hashes(const std::uint8_t* const* pages, Hash32* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = page_content_hash(pages[i]);
}

namespace {
struct ZeroHashes {
  Hash32 h[65];
  bool ready = false;
};
constinit ZeroHashes g_zero{};
}  // namespace

const Hash32& zero_hash(unsigned depth) {
  if (!g_zero.ready) {
    for (unsigned d = 1; d <= 64; ++d) g_zero.h[d] = node(g_zero.h[d - 1], g_zero.h[d - 1]);
    g_zero.ready = true;
  }
  return g_zero.h[depth];
}

Hash32 merkleize(const Hash32* leaves, std::size_t count, std::uint64_t limit) {
  if (limit < count) limit = count;
  if (limit < 1) limit = 1;
  unsigned depth = 0;
  while ((std::uint64_t{1} << depth) < limit) ++depth;
  if (count == 0) return zero_hash(depth);
  // Stack-based reduction: one pending hash per level (no allocation).
  Hash32 stack[65];
  bool have[65] = {};
  for (std::size_t i = 0; i < count; ++i) {
    Hash32 cur = leaves[i];
    unsigned lvl = 0;
    while (have[lvl]) {
      cur = node(stack[lvl], cur);
      have[lvl] = false;
      ++lvl;
    }
    stack[lvl] = cur;
    have[lvl] = true;
  }
  // Fold the right edge with zero subtrees up to `depth`.
  Hash32 acc{};
  bool acc_set = false;
  for (unsigned lvl = 0; lvl < depth; ++lvl) {
    if (have[lvl]) {
      acc = acc_set ? node(stack[lvl], acc) : node(stack[lvl], zero_hash(lvl));
      acc_set = true;
    } else if (acc_set) {
      acc = node(acc, zero_hash(lvl));
    }
  }
  if (!acc_set) return stack[depth];  // count == 2^depth exactly
  return acc;
}

Hash32 uint64_root(std::uint64_t v) {
  Hash32 h{};
  for (int i = 0; i < 8; ++i) h.b[i] = static_cast<std::uint8_t>(v >> (8 * i));
  return h;
}

}  // namespace capmem::hash
