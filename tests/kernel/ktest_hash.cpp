// Hashing self-test inside the kernel image: the same core code as the hosted build, now
// freestanding with the kernel's FPU/XSAVE set-up, checked against published values and
// against straightforward references written here.
#include <cstddef>
#include <cstdint>

#include "capmem/datacap.h"
#include "capmem/hash.h"
#include "capmem/log.h"
#include "ktest.h"

namespace {

using capmem::Hash32;
namespace hash = capmem::hash;

constexpr int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }
constexpr Hash32 from_hex(const char (&s)[65]) {
  Hash32 h{};
  for (int i = 0; i < 32; ++i) h.b[i] = static_cast<std::uint8_t>(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
  return h;
}

// FIPS 180-4 examples (NIST CSRC "SHA-256" example values).
constexpr Hash32 kShaAbc = from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
constexpr Hash32 kShaEmpty = from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
constexpr Hash32 kSha448 = from_hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
constexpr Hash32 kSha896 = from_hex("cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
// tests/vectors/FIRST_PAGE_ROOTS (page_content_hash of a file's first page, zero-padded).
constexpr Hash32 kRootAbcPage = from_hex("fc207efee96698a784ce22d1e488b5621ffea4b11d6c953b18606925dff0d21a");
constexpr Hash32 kRootEmptyPage = from_hex("87eb0ddba57e35f6d286673802a4af5975e22506c7cf4c64bb6be5ee11527f2c");
constexpr Hash32 kRootFfPage = from_hex("8f711e9197bcd96314b8d20425eac7dce4aee7c9a0579e901d636d3256db3672");
// tests/vectors/ROOTS (DataCap root of the whole file, rule 3.6), for the files whose
// content is easy to rebuild here: "abc", nothing, 4096 x 0xff, 12288 x 0x00.
constexpr Hash32 kCapAbc = from_hex("e71fa5ec23d07837d85487a24d4fb2159399853d875fb4c3ba93bedb2ada2f61");
constexpr Hash32 kCapEmpty = from_hex("ed5f4ed0d6617d50abd49d4c84281e175b48a7e1edf550a89bf2c9b5c4ce01f0");
constexpr Hash32 kCapOnePageFf = from_hex("d0c8c3aa52815f9fa883664746a0cc953e6868c0040c67af19d2cb7fa9afe3b5");
constexpr Hash32 kCapZero3Pages = from_hex("e96bc703ba6bd014213bf5ec96f3fe6a2181e9c05aa12c211558829fd4778500");

alignas(4096) std::uint8_t g_pages[6][4096];
std::uint8_t g_buf[2048];

std::uint64_t g_rng = 0x9e3779b97f4a7c15ull;
std::uint64_t next_rand() {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}
void fill_random(std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(next_rand() >> 24);
}
void fill(std::uint8_t* p, std::size_t n, std::uint8_t v) {
  for (std::size_t i = 0; i < n; ++i) p[i] = v;
}

std::size_t length(const char* s) {
  std::size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

// Reference SSZ root of one page: 128 chunks reduced pairwise with plain sha256() of the
// 64-byte concatenation (no node(), no merkleize(), no zero_hash()).
Hash32 reference_page_root(const std::uint8_t* page) {
  Hash32 level[128];
  for (int i = 0; i < 128; ++i)
    for (int k = 0; k < 32; ++k) level[i].b[k] = page[32 * i + k];
  for (int n = 128; n > 1; n /= 2)
    for (int i = 0; i < n / 2; ++i) {
      std::uint8_t pair[64];
      for (int k = 0; k < 32; ++k) {
        pair[k] = level[2 * i].b[k];
        pair[32 + k] = level[2 * i + 1].b[k];
      }
      level[i] = hash::sha256(pair, 64);
    }
  return level[0];
}

const hash::Impl kAllImpls[] = {hash::Impl::Portable, hash::Impl::ShaNi, hash::Impl::Avx2, hash::Impl::Avx512};

}  // namespace

KTEST(hash_sha256_nist) {
  const char* abc = "abc";
  KEXPECT(hash::sha256(abc, 3) == kShaAbc);
  KEXPECT(hash::sha256(abc, 0) == kShaEmpty);
  const char* m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  KEXPECT(hash::sha256(m448, length(m448)) == kSha448);
  const char* m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  KEXPECT(hash::sha256(m896, length(m896)) == kSha896);
}

KTEST(hash_node_is_sha256_of_64_bytes) {
  for (int round = 0; round < 8; ++round) {
    std::uint8_t pair[64];
    fill_random(pair, 64);
    Hash32 l, r;
    for (int k = 0; k < 32; ++k) {
      l.b[k] = pair[k];
      r.b[k] = pair[32 + k];
    }
    KEXPECT(hash::node(l, r) == hash::sha256(pair, 64));
  }
  // nodes(): a whole level, out-of-place and in place.
  Hash32 in[16], out[8];
  fill_random(reinterpret_cast<std::uint8_t*>(in), sizeof in);
  hash::nodes(in, out, 8);
  for (int i = 0; i < 8; ++i) KEXPECT(out[i] == hash::node(in[2 * i], in[2 * i + 1]));
  hash::nodes(in, in, 8);
  for (int i = 0; i < 8; ++i) KEXPECT(in[i] == out[i]);
}

KTEST(hash_zero_page_and_zero_hashes) {
  fill(g_pages[0], 4096, 0);
  KEXPECT(hash::zero_hash(0) == Hash32{});
  for (unsigned d = 0; d < 64; ++d)
    KEXPECT(hash::zero_hash(d + 1) == hash::node(hash::zero_hash(d), hash::zero_hash(d)));
  KEXPECT(hash::page_content_hash(g_pages[0]) == hash::zero_hash(7));  // 128 zero chunks
  KEXPECT(hash::zero_hash(7) == kRootEmptyPage);
}

KTEST(hash_page_roots_match_vectors) {
  fill(g_pages[0], 4096, 0);
  g_pages[0][0] = 'a';
  g_pages[0][1] = 'b';
  g_pages[0][2] = 'c';
  KEXPECT(hash::page_content_hash(g_pages[0]) == kRootAbcPage);
  KEXPECT(reference_page_root(g_pages[0]) == kRootAbcPage);
  fill(g_pages[1], 4096, 0xff);
  KEXPECT(hash::page_content_hash(g_pages[1]) == kRootFfPage);
  fill_random(g_pages[2], 4096);
  KEXPECT(hash::page_content_hash(g_pages[2]) == reference_page_root(g_pages[2]));
}

// Every implementation the CPU (and XCR0 as set by cpu.cpp) supports gives the portable
// result on every entry point.
KTEST(hash_every_supported_impl_equals_portable) {
  const hash::Impl saved = hash::active();
  KASSERT(hash::supported(hash::Impl::Portable));
  fill_random(g_buf, sizeof g_buf);
  for (auto& p : g_pages) fill_random(p, 4096);
  g_pages[3][100] = 0;  // and one mostly-zero page
  fill(g_pages[4], 4096, 0);
  g_pages[4][4095] = 1;

  static constexpr std::size_t kLens[] = {0,   1,   3,   31,  32,  55,  56,  63,   64,  65,
                                          119, 127, 128, 129, 200, 255, 256, 1000, 2048};
  constexpr std::size_t kN = sizeof kLens / sizeof kLens[0];
  Hash32 want_sha[kN], want_node[4], want_page[6], want_pages[6];
  hash::force(hash::Impl::Portable);
  for (std::size_t i = 0; i < kN; ++i) want_sha[i] = hash::sha256(g_buf, kLens[i]);
  const auto* chunks = reinterpret_cast<const Hash32*>(g_buf);
  for (int i = 0; i < 4; ++i) want_node[i] = hash::node(chunks[2 * i], chunks[2 * i + 1]);
  const std::uint8_t* ptrs[6];
  for (int i = 0; i < 6; ++i) {
    ptrs[i] = g_pages[i];
    want_page[i] = hash::page_content_hash(g_pages[i]);
  }
  hash::page_content_hashes(ptrs, want_pages, 6);
  for (int i = 0; i < 6; ++i) KEXPECT(want_pages[i] == want_page[i]);

  unsigned checked = 0;
  for (auto impl : kAllImpls) {
    if (!hash::supported(impl)) continue;
    ++checked;
    hash::force(impl);
    for (std::size_t i = 0; i < kN; ++i)
      if (!(hash::sha256(g_buf, kLens[i]) == want_sha[i])) t.fail(hash::impl_name(impl));
    for (int i = 0; i < 4; ++i)
      if (!(hash::node(chunks[2 * i], chunks[2 * i + 1]) == want_node[i])) t.fail(hash::impl_name(impl));
    Hash32 got[6];
    hash::page_content_hashes(ptrs, got, 6);
    for (int i = 0; i < 6; ++i) {
      if (!(got[i] == want_page[i])) t.fail(hash::impl_name(impl));
      if (!(hash::page_content_hash(g_pages[i]) == want_page[i])) t.fail(hash::impl_name(impl));
    }
    if (!t.failed()) {
      // tests/bochs requires this line for every back end the CPU model has.
      capmem::log::str("hash: ");
      capmem::log::str(hash::impl_name(impl));
      capmem::log::str(" equals portable on random pages\n");
    }
  }
  hash::force(saved);
  KEXPECT(checked >= 1);
}

namespace {

// The DataCap root of `len` bytes at `p` (rule 3.6), or all-zero if building it failed.
Hash32 cap_root(const std::uint8_t* p, std::size_t len, capmem::ktest::Ctx& t) {
  auto cap = capmem::DataCap::from_bytes(p, len);
  if (!cap.ok()) {
    t.fail("DataCap::from_bytes failed");
    return Hash32{};
  }
  auto root = cap->root();
  if (!root.ok()) {
    t.fail("DataCap::root failed");
    return Hash32{};
  }
  return root.value();
}

}  // namespace

// Every back end the CPU supports, forced in turn, reproduces the published values on its
// own: the FIPS 180-4 examples, the page roots of tests/vectors/FIRST_PAGE_ROOTS (one
// page at a time and as a batch, the lane-parallel path) and the DataCap roots of
// tests/vectors/ROOTS.
KTEST(hash_each_supported_impl_gives_vector_roots) {
  const hash::Impl saved = hash::active();
  unsigned checked = 0;
  for (auto impl : kAllImpls) {
    if (!hash::supported(impl)) continue;
    ++checked;
    hash::force(impl);
    const unsigned before = t.failures();
    const char* name = hash::impl_name(impl);
    const char* m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    if (!(hash::sha256("abc", 3) == kShaAbc) || !(hash::sha256("", 0) == kShaEmpty) ||
        !(hash::sha256(m448, length(m448)) == kSha448))
      t.fail(name);

    // Pages: abc, empty, ff, then again (6 pages: more than one SIMD batch on 4/8 lanes).
    for (int i = 0; i < 6; ++i) fill(g_pages[i], 4096, i % 3 == 2 ? 0xff : 0);
    for (int i = 0; i < 6; i += 3) {
      g_pages[i][0] = 'a';
      g_pages[i][1] = 'b';
      g_pages[i][2] = 'c';
    }
    const Hash32 want[3] = {kRootAbcPage, kRootEmptyPage, kRootFfPage};
    const std::uint8_t* ptrs[6];
    for (int i = 0; i < 6; ++i) ptrs[i] = g_pages[i];
    Hash32 got[6];
    hash::page_content_hashes(ptrs, got, 6);
    for (int i = 0; i < 6; ++i) {
      if (!(got[i] == want[i % 3])) t.fail(name);
      if (!(hash::page_content_hash(g_pages[i]) == want[i % 3])) t.fail(name);
    }

    // Whole DataCaps (frames are taken and returned inside cap_root).
    if (!(cap_root(reinterpret_cast<const std::uint8_t*>("abc"), 3, t) == kCapAbc)) t.fail(name);
    if (!(cap_root(g_pages[0], 0, t) == kCapEmpty)) t.fail(name);
    if (!(cap_root(g_pages[2], 4096, t) == kCapOnePageFf)) t.fail(name);
    fill(g_pages[0], 3 * 4096, 0);  // g_pages is one contiguous array: pages 0..2
    if (!(cap_root(g_pages[0], 3 * 4096, t) == kCapZero3Pages)) t.fail(name);

    if (t.failures() == before) {
      // tests/bochs requires this line for every back end the CPU model has.
      capmem::log::str("hash: ");
      capmem::log::str(name);
      capmem::log::str(" gives the vector roots\n");
    }
  }
  hash::force(saved);
  KEXPECT(checked >= 1);
}
