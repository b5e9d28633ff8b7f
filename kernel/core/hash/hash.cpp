// SHA-256 front end: CPU feature detection and dispatch, merkle node/level hashing, page
// roots, SSZ merkleize (rules 1.2, 3.4). General-register only: the SIMD kernels live in
// their own translation units (sha256_shani.cpp, sha256_avx2.cpp, sha256_avx512.cpp) and
// are called from here only inside env::simd_begin()/simd_end().
#include "capmem/hash.h"

#include <atomic>

#include "capmem/env.h"
#include "capmem/log.h"
#include "capmem/mem.h"
#include "hash_internal.h"

namespace capmem::hash {

using namespace detail;

namespace {

// Whether the SIMD back ends (sha256_shani/avx2/avx512.cpp, core_simd_srcs) are linked.
// The only build switch in the hash code: a kernel configured with -Dkernel_simd=false is
// compiled with CAPMEM_HASH_SIMD=0 and links none of them; detection then reports no SIMD
// feature, every table below is the portable one, and no call ever enters the seam's SIMD
// section (docs/boot.md). Discarded `if constexpr` branches odr-use nothing, so the missing
// back ends need no stubs.
#ifndef CAPMEM_HASH_SIMD
#define CAPMEM_HASH_SIMD 1
#endif
constexpr bool kSimdBackends = CAPMEM_HASH_SIMD != 0;

// ---- CPU features --------------------------------------------------------------------
struct CpuidRegs {
  std::uint32_t a, b, c, d;
};
// Intel SDM Vol. 2A, "CPUID—CPU Identification".
CpuidRegs cpuid(std::uint32_t leaf, std::uint32_t sub) {
  CpuidRegs r;
  asm volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(sub));
  return r;
}
// Intel SDM Vol. 2B, "XGETBV"; only valid when CPUID.1:ECX.OSXSAVE[bit 27] = 1.
std::uint64_t xgetbv0() {
  std::uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (std::uint64_t{hi} << 32) | lo;
}

struct Features {
  bool sha = false;     // SHA extensions usable (SSE state is always on in 64-bit mode)
  bool avx2 = false;    // AVX2 and the OS saves YMM state
  bool avx512 = false;  // AVX-512 F/BW/VL and the OS saves opmask + ZMM state
};

Features detect() {
  Features f;
  if constexpr (!kSimdBackends) return f;
  const std::uint32_t max_leaf = cpuid(0, 0).a;
  if (max_leaf < 7) return f;
  // Intel SDM Vol. 2A Table 3-8 (CPUID leaf 01H, ECX): SSSE3 bit 9, SSE4.1 bit 19,
  // OSXSAVE bit 27, AVX bit 28.
  const std::uint32_t ecx1 = cpuid(1, 0).c;
  const bool ssse3 = (ecx1 >> 9) & 1, sse41 = (ecx1 >> 19) & 1;
  const bool osxsave = (ecx1 >> 27) & 1, avx = (ecx1 >> 28) & 1;
  // Table 3-8 (leaf 07H sub-leaf 0, EBX): AVX2 bit 5, AVX512F bit 16, SHA bit 29,
  // AVX512BW bit 30, AVX512VL bit 31.
  const std::uint32_t ebx7 = cpuid(7, 0).b;
  const bool avx2 = (ebx7 >> 5) & 1, avx512f = (ebx7 >> 16) & 1, sha = (ebx7 >> 29) & 1;
  const bool avx512bw = (ebx7 >> 30) & 1, avx512vl = (ebx7 >> 31) & 1;
  f.sha = sha && ssse3 && sse41;
  if (!osxsave) return f;
  // XCR0 (Intel SDM Vol. 1 section 13.3): bit 1 SSE, bit 2 AVX (upper YMM), bit 5 opmask,
  // bit 6 ZMM_Hi256, bit 7 Hi16_ZMM. AVX needs 1|2 (Vol. 1 14.3), AVX-512 also 5|6|7
  // (Vol. 1 15.2).
  const std::uint64_t xcr0 = xgetbv0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xE6) == 0xE6;
  f.avx2 = avx && avx2 && ymm_os;
  f.avx512 = f.avx2 && avx512f && avx512bw && avx512vl && zmm_os;
  return f;
}

// ---- Back ends ---------------------------------------------------------------------
// A back end hashes levels with `wide` in batches of `lanes` messages; a trailing partial
// batch of at most `narrow_max` messages (and every single node) goes to `narrow`, which is
// cheaper than a mostly empty wide batch. `compress` serves sha256() of any length.
struct Backend {
  Impl impl;
  bool simd;  // needs the SIMD section
  std::size_t lanes;
  std::size_t narrow_max;
  void (*wide)(const std::uint8_t*, std::uint8_t*, std::size_t);
  void (*narrow)(const std::uint8_t*, std::uint8_t*, std::size_t);
  void (*compress)(std::uint32_t*, const std::uint8_t*, std::size_t);
};

constexpr Backend kPortable{.impl = Impl::Portable,
                            .simd = false,
                            .lanes = 1,
                            .narrow_max = 0,
                            .wide = hash64_portable,
                            .narrow = hash64_portable,
                            .compress = compress_portable};

// Many CPUs (docs/rules.md section 7; docs/smp.md "hash dispatch"): init() detects the features
// and fills g_backends once, on the boot CPU before any other CPU starts (asserted); from
// then on both are read-only. The only thing that ever changes afterwards is g_active, one
// atomic pointer to a read-only back end, and only through force() (tests, benchmarks) or
// a repeated init() (which restores the default). Each public call loads it once, so a
// call running on another CPU meanwhile finishes on the back end it started with.
constinit Features g_features{};
constinit bool g_detected = false;
constinit Backend g_backends[4] = {};  // indexed by Impl; valid once g_detected
constinit std::atomic<const Backend*> g_active{&kPortable};
constinit Backend g_frozen_avx512_v1 = kPortable;  // valid once g_detected (benchmarks only)

Backend make_backend(Impl impl) {
  if constexpr (!kSimdBackends) {
    return kPortable;  // supported() is false for every SIMD back end
  } else {
    // The wide kernels leave the narrow work (single nodes, small tails) to SHA-NI when the
    // CPU has it, else to the portable code (AVX2) or a padded wide batch.
    const bool sha = g_features.sha;
    switch (impl) {
      case Impl::Portable: return kPortable;
      case Impl::ShaNi:
        return {.impl = impl,
                .simd = true,
                .lanes = 1,
                .narrow_max = 0,
                .wide = hash64_shani,
                .narrow = hash64_shani,
                .compress = compress_shani};
      case Impl::Avx2:
        return {.impl = impl,
                .simd = true,
                .lanes = 8,
                .narrow_max = sha ? 3u : 1u,
                .wide = hash64_avx2,
                .narrow = sha ? hash64_shani : hash64_portable,
                .compress = sha ? compress_shani : compress_portable};
      case Impl::Avx512:
        return {.impl = impl,
                .simd = true,
                .lanes = 16,
                .narrow_max = sha ? 4u : 1u,
                .wide = hash64_avx512,
                .narrow = sha ? hash64_shani : hash64_portable,
                .compress = sha ? compress_shani : compress_portable};
    }
    return kPortable;
  }
}

void ensure_detected() {
  if (!g_detected) {
    // Written once, before other CPUs exist: afterwards every CPU only reads.
    CAPMEM_ASSERT(env::cpu_count() == 1);
    g_features = detect();
    for (unsigned i = 0; i < 4; ++i) g_backends[i] = make_backend(static_cast<Impl>(i));
    if constexpr (kSimdBackends) {
      g_frozen_avx512_v1 = g_backends[static_cast<unsigned>(Impl::Avx512)];
      g_frozen_avx512_v1.wide = hash64_avx512_v1;
    }
    g_detected = true;
  }
}

// The SIMD section for one public call: SIMD back ends run only when the seam grants it.
class Section {
 public:
  Section() : b_(g_active.load(std::memory_order_acquire)), on_(b_->simd && env::simd_begin()) {}
  ~Section() {
    if (on_) env::simd_end();
  }
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;
  [[nodiscard]] const Backend& backend() const { return on_ ? *b_ : kPortable; }

 private:
  const Backend* b_;
  bool on_;
};

// ---- Levels --------------------------------------------------------------------------
// Hash32 is exactly its 32 bytes (static_assert in types.h); a cast, not a member access,
// so an empty level may pass a null pointer.
const std::uint8_t* bytes(const Hash32* h) { return reinterpret_cast<const std::uint8_t*>(h); }
std::uint8_t* bytes(Hash32* h) { return reinterpret_cast<std::uint8_t*>(h); }

// out[i] = SHA-256 of the 64-byte message i, n messages (in-place allowed).
void level(const Backend& be, const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  const std::size_t full = n / be.lanes * be.lanes;
  if (full != 0) be.wide(in, out, full);
  const std::size_t rest = n - full;
  if (rest == 0) return;
  if (rest <= be.narrow_max) be.narrow(in + 64 * full, out + 32 * full, rest);
  else be.wide(in + 64 * full, out + 32 * full, rest);
}

Hash32 node1(const Backend& be, const Hash32& l, const Hash32& r) {
  std::uint8_t msg[64];
  for (int i = 0; i < 32; ++i) {
    msg[i] = l.b[i];
    msg[32 + i] = r.b[i];
  }
  Hash32 out;
  be.narrow(msg, bytes(&out), 1);
  return out;
}

// Pages are hashed in groups: levels 0-1 of each page (64, 32 nodes) run page by page,
// level 2 runs over two pages at once (32 nodes: the 16-lane kernels take 32 messages as two
// interleaved batches), then levels 3-6 run over the whole group at once (8*G, 4*G, 2*G, G
// nodes), so the wide kernels stay full even at the top of the tree. The next page is
// prefetched while this one hashes (pages are scattered frames: the hardware prefetcher
// does not cross to them). Stack: 3 KiB + G * 512 B.
constexpr std::size_t kPageGroup = 8;

void prefetch_page(const std::uint8_t* page) {
  if (page != nullptr) mem::prefetch_page(page);
}

// `next` (or null): the page hashed after this group, prefetched during its last page.
void page_group(const Backend& be, const std::uint8_t* const* pages, Hash32* out, std::size_t g,
                const std::uint8_t* next) {
  // Two pages' level-1 nodes at buf[0..31] and buf[32..63]; level 0 of each lands in
  // buf[32..95] first (the first page's level 1 reads it into buf[0..31], the second's
  // reduces it in place).
  Hash32 buf[96];
  Hash32 grp[kPageGroup * 16];
  for (std::size_t p = 0; p < g; p += 2) {
    const std::size_t q = g - p < 2 ? g - p : 2;
    for (std::size_t j = 0; j < q; ++j) {
      prefetch_page(p + j + 1 < g ? pages[p + j + 1] : next);
      level(be, pages[p + j], bytes(buf + 32), 64);         // 128 chunks -> 64
      level(be, bytes(buf + 32), bytes(buf + 32 * j), 32);  // -> 32
    }
    level(be, bytes(buf), bytes(grp + 16 * p), 16 * q);  // -> 16 per page, page p's slots
  }
  // Page p's 16 nodes sit at grp[16p..16p+15]; each level halves them in place and keeps
  // page p's nodes contiguous at grp[k*p..k*p+k-1], so the last level leaves root p at grp[p].
  for (std::size_t per_page = 8; per_page >= 1; per_page /= 2) level(be, bytes(grp), bytes(grp), per_page * g);
  for (std::size_t p = 0; p < g; ++p) out[p] = grp[p];
}

// ---- Zero subtrees ---------------------------------------------------------------------
constexpr Hash32 node_constexpr(const Hash32& l, const Hash32& r) {
  std::uint32_t m[16] = {};
  for (int i = 0; i < 16; ++i) {
    const auto& src = i < 8 ? l : r;
    const int o = 4 * (i & 7);
    m[i] = (std::uint32_t{src.b[o]} << 24) | (std::uint32_t{src.b[o + 1]} << 16) | (std::uint32_t{src.b[o + 2]} << 8) |
           std::uint32_t{src.b[o + 3]};
  }
  std::uint32_t st[8] = {kInit[0], kInit[1], kInit[2], kInit[3], kInit[4], kInit[5], kInit[6], kInit[7]};
  compress_words(st, m);
  rounds_wk(st, kPadWK.data());
  Hash32 out{};
  for (int i = 0; i < 8; ++i)
    for (int k = 0; k < 4; ++k) out.b[4 * i + k] = static_cast<std::uint8_t>(st[i] >> (24 - 8 * k));
  return out;
}

// zero_hash(d) for d in [0, 64], computed at compile time (no lazy init, no race).
constexpr std::array<Hash32, 65> kZeroHashes = [] {
  std::array<Hash32, 65> z{};
  for (int d = 1; d <= 64; ++d) z[d] = node_constexpr(z[d - 1], z[d - 1]);
  return z;
}();

// ---- merkleize ----------------------------------------------------------------------
// Leaves are reduced in chunks of 2^kChunkDepth with whole-level calls (so the wide
// kernels see up to 64 nodes at once), then chunk roots are merged by an incremental
// stack with one slot per level. Stack use: kChunk/2 hashes + 65 slots, for any limit.
constexpr unsigned kChunkDepth = 7;
constexpr std::size_t kChunk = std::size_t{1} << kChunkDepth;

// Root of `count` (1 <= count <= 2^depth) leaves padded with zero chunks to 2^depth.
Hash32 subtree_root(const Backend& be, const Hash32* leaves, std::size_t count, unsigned depth) {
  Hash32 buf[kChunk / 2];
  const Hash32* src = leaves;
  std::size_t n = count;
  for (unsigned d = 0; d < depth; ++d) {
    const std::size_t pairs = n / 2;
    if (pairs != 0) level(be, bytes(src), bytes(buf), pairs);
    if (n & 1) buf[pairs] = node1(be, src[n - 1], kZeroHashes[d]);  // node1 reads before it writes
    n = (n + 1) / 2;
    src = buf;
  }
  return src[0];
}

unsigned depth_for(std::uint64_t limit) {
  unsigned depth = 0;
  while (depth < 64 && (std::uint64_t{1} << depth) < limit) ++depth;
  return depth;
}

}  // namespace

// ---- Public API ----------------------------------------------------------------------
// Runs once on the boot CPU before any other CPU starts (detection asserts it). Called
// again later (tests restoring the default after force()) it only re-selects the default.
void init() {
  ensure_detected();
  Impl best = Impl::Portable;
  if (g_features.avx512) best = Impl::Avx512;
  else if (g_features.sha) best = Impl::ShaNi;
  else if (g_features.avx2) best = Impl::Avx2;
  g_active.store(&g_backends[static_cast<unsigned>(best)], std::memory_order_release);
}

Impl active() { return g_active.load(std::memory_order_acquire)->impl; }

bool supported(Impl impl) {
  ensure_detected();
  switch (impl) {
    case Impl::Portable: return true;
    case Impl::ShaNi: return g_features.sha;
    case Impl::Avx2: return g_features.avx2;
    case Impl::Avx512: return g_features.avx512;
  }
  return false;
}

// Tests and benchmarks only: switches the back end of calls that start after it.
void force(Impl impl) {
  CAPMEM_ASSERT(supported(impl));
  g_active.store(&g_backends[static_cast<unsigned>(impl)], std::memory_order_release);
}

bool frozen_supported(Frozen k) { return k == Frozen::Avx512V1 && supported(Impl::Avx512); }

void force_frozen(Frozen k) {
  CAPMEM_ASSERT(frozen_supported(k));
  g_active.store(&g_frozen_avx512_v1, std::memory_order_release);
}

const char* frozen_name(Frozen k) { return k == Frozen::Avx512V1 ? "avx512-v1" : "?"; }

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::Portable: return "portable";
    case Impl::ShaNi: return "sha-ni";
    case Impl::Avx2: return "avx2-8way";
    case Impl::Avx512: return "avx512-16way";
  }
  return "?";
}

Hash32 sha256(const void* data, std::size_t len) {
  const Section sec;
  const Backend& be = sec.backend();
  std::uint32_t st[8];
  for (int i = 0; i < 8; ++i) st[i] = kInit[i];
  const auto* p = static_cast<const std::uint8_t*>(data);
  const std::size_t full = len / 64;
  if (full != 0) be.compress(st, p, full);
  // FIPS 180-4 section 5.1.1: 0x80, zeros, 64-bit big-endian bit length.
  std::uint8_t tail[128] = {};
  const std::size_t rem = len - full * 64;
  for (std::size_t i = 0; i < rem; ++i) tail[i] = p[full * 64 + i];
  tail[rem] = 0x80;
  const std::size_t tblocks = rem + 9 <= 64 ? 1 : 2;
  const std::uint64_t bits = static_cast<std::uint64_t>(len) * 8;
  for (int i = 0; i < 8; ++i) tail[tblocks * 64 - 1 - i] = static_cast<std::uint8_t>(bits >> (8 * i));
  be.compress(st, tail, tblocks);
  Hash32 out;
  for (int i = 0; i < 8; ++i)
    for (int k = 0; k < 4; ++k) out.b[4 * i + k] = static_cast<std::uint8_t>(st[i] >> (24 - 8 * k));
  return out;
}

Hash32 node(const Hash32& l, const Hash32& r) {
  const Section sec;
  return node1(sec.backend(), l, r);
}

void nodes(const Hash32* in, Hash32* out, std::size_t n) {
  const Section sec;
  level(sec.backend(), bytes(in), bytes(out), n);
}

Hash32 page_content_hash(const std::uint8_t* page) {
  const Section sec;
  Hash32 out;
  page_group(sec.backend(), &page, &out, 1, nullptr);
  return out;
}

void page_content_hashes(const std::uint8_t* const* pages, Hash32* out, std::size_t n) {
  const Section sec;
  for (std::size_t i = 0; i < n; i += kPageGroup) {
    const std::size_t g = n - i < kPageGroup ? n - i : kPageGroup;
    page_group(sec.backend(), pages + i, out + i, g, i + g < n ? pages[i + g] : nullptr);
  }
}

const Hash32& zero_hash(unsigned depth) {
  CAPMEM_ASSERT(depth <= 64);
  return kZeroHashes[depth];
}

Hash32 merkleize(const Hash32* leaves, std::size_t count, std::uint64_t limit) {
  if (limit < count) limit = count;
  const unsigned depth = depth_for(limit);
  if (count == 0) return kZeroHashes[depth];
  const Section sec;
  const Backend& be = sec.backend();
  if (depth <= kChunkDepth) return subtree_root(be, leaves, count, depth);
  // Incremental stack over chunk roots (level kChunkDepth and up): slot l holds a finished
  // left subtree of 2^l leaves still waiting for its right sibling.
  Hash32 stack[65];
  bool have[65] = {};
  for (std::size_t i = 0; i < count; i += kChunk) {
    const std::size_t c = count - i < kChunk ? count - i : kChunk;
    Hash32 cur = subtree_root(be, leaves + i, c, kChunkDepth);
    unsigned lvl = kChunkDepth;
    while (have[lvl]) {
      cur = node1(be, stack[lvl], cur);
      have[lvl] = false;
      ++lvl;
    }
    stack[lvl] = cur;
    have[lvl] = true;
  }
  // Fold the right edge with zero subtrees up to `depth`.
  Hash32 acc{};
  bool acc_set = false;
  for (unsigned lvl = kChunkDepth; lvl < depth; ++lvl) {
    if (have[lvl]) {
      acc = node1(be, stack[lvl], acc_set ? acc : kZeroHashes[lvl]);
      acc_set = true;
    } else if (acc_set) {
      acc = node1(be, acc, kZeroHashes[lvl]);
    }
  }
  return acc_set ? acc : stack[depth];  // nothing pending below depth: count == 2^depth
}

Hash32 uint64_root(std::uint64_t v) {
  Hash32 h{};
  for (int i = 0; i < 8; ++i) h.b[i] = static_cast<std::uint8_t>(v >> (8 * i));
  return h;
}

}  // namespace capmem::hash
