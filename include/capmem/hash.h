// SHA-256 and SSZ merkleization (rules 1.2, 3.4). Implementations: portable, SHA
// extensions, AVX2 8-lane, AVX-512 16-lane; chosen once by hash::init() from CPUID.
// Every entry point is safe to call before init() (it then runs the portable code).
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/types.h"

namespace capmem::hash {

// Which implementation the dispatcher picked (or was forced to, for tests/benchmarks).
enum class Impl : std::uint8_t { Portable, ShaNi, Avx2, Avx512 };
void init();  // detect CPU features once; pick the fastest correct Impl
Impl active();
bool supported(Impl impl);  // CPU (and OS state, XCR0) allow it
void force(Impl impl);      // tests/benchmarks: use `impl` (must be supported; asserts)
const char* impl_name(Impl impl);

// Benchmarks only: frozen copies of earlier kernels, kept as the references the live ones are
// measured against (capmem-bench BM_PageRoot_Impl/<frozen_name>, docs/performance.md).
// init() never picks one; force_frozen() is undone by the next init() or force().
enum class Frozen : std::uint8_t { Avx512V1 };  // the AVX-512 16-lane kernel of issue 23
bool frozen_supported(Frozen k);
void force_frozen(Frozen k);  // must be supported (asserts)
const char* frozen_name(Frozen k);

// Plain SHA-256 of `len` bytes.
Hash32 sha256(const void* data, std::size_t len);

// Merkle node: SHA-256(left || right) of one 64-byte message. The constant second block
// (padding + length 512) is precomputed, not re-derived per call.
Hash32 node(const Hash32& left, const Hash32& right);
// A whole level: out[i] = node(in[2i], in[2i+1]) for i < n. `out` may equal `in`
// (in-place reduction); otherwise they must not overlap.
void nodes(const Hash32* in, Hash32* out, std::size_t n);

// Rule 1.2: SSZ root of ByteVector[4096] of one page's 4096 bytes.
Hash32 page_content_hash(const std::uint8_t* page);
// Many pages at once (multi-buffer where the CPU allows): out[i] = hash of pages[i].
void page_content_hashes(const std::uint8_t* const* pages, Hash32* out, std::size_t n);

// zero_hash(d): root of a zero subtree of depth d (2^d zero chunks); d in [0, 64].
const Hash32& zero_hash(unsigned depth);

// SSZ merkleize(leaves, limit): pad `count` leaves with zero chunks up to the next power
// of two of max(limit, 1) (limit >= count; a smaller limit is taken as `count`) and reduce. No allocation: works for
// limits up to 2^20 leaves and beyond (any uint64 limit) using a bounded stack buffer (~3 KiB).
Hash32 merkleize(const Hash32* leaves, std::size_t count, std::uint64_t limit);

// SSZ hash_tree_root(uint64): little-endian value in a zero-padded chunk.
Hash32 uint64_root(std::uint64_t v);

}  // namespace capmem::hash
