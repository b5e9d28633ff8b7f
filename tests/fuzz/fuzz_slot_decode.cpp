// libFuzzer target: the page-slot decoder (rules 2.4, 2.5 of docs/rules.md; include/capmem/codec.h).
//
// Properties checked on every input:
//   - never a crash, never a leaked frame (FrameLeakGuard) or Missing box;
//   - rejected: a Decode* status that names a rule, the same status in DecodeError and an
//     offset inside the input;
//   - accepted: slot_encode gives exactly the input bytes (the encoding is canonical), a
//     Loaded page sits in its own aligned frame with the input's bytes and a hash that is the
//     rule 1.2 hash of those bytes, and decoding the re-encoding gives the same kind and root;
//   - the same input through a ByteSource that counts reads: each byte read once (rule 5.3)
//     and the same outcome;
//   - accepted, again with one allocation failure injected: OutOfFrames or the same slot,
//     nothing leaked either way.
// A custom mutator rewrites the claimed hash of a Loaded slot to the true hash half of the
// time, so mutated page bytes still reach the accepting path instead of only DecodeForgedHash.
// Seeds: tests/fuzz/corpus/slot_decode/, made by tests/fuzz/gen_seeds.py.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "capmem/codec.h"
#include "capmem/hash.h"
#include "capmem/slot.h"
#include "fuzz_common.h"

using namespace capmem;

namespace {

void check_rejection(Status st, const DecodeError& err, std::size_t size) {
  FUZZ_CHECK(is_decode_status(st));
  FUZZ_CHECK(status_rule(st)[0] != '\0');
  FUZZ_CHECK(err.status == st);
  FUZZ_CHECK(err.offset <= size);
}

void check_accepted(const Slot& s, const std::uint8_t* data, std::size_t size) {
  static std::uint8_t buf[codec::kLoadedLen];
  FUZZ_CHECK(codec::slot_encoded_size(s) == size);
  FUZZ_CHECK(static_cast<std::uint8_t>(s.kind()) == data[0]);
  codec::slot_encode(s, buf);
  FUZZ_CHECK(std::memcmp(buf, data, size) == 0);
  if (s.kind() == SlotKind::Loaded) {
    const FrameDesc* f = s.frame();
    FUZZ_CHECK(f->kind == FrameKind::Page);
    FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(f->virt()) % PAGE_SIZE == 0);  // rule 1.1
    FUZZ_CHECK(std::memcmp(f->virt(), data + 37, PAGE_SIZE) == 0);
    FUZZ_CHECK(hash::page_content_hash(static_cast<const std::uint8_t*>(f->virt())) == s.root());
  }
  if (s.kind() != SlotKind::Empty) FUZZ_CHECK(std::memcmp(s.root().b.data(), data + 1, 32) == 0);
  DecodeError err{};
  auto again = codec::slot_decode(buf, size, &err);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->kind() == s.kind());
  FUZZ_CHECK(again->root() == s.root());
}

// Rule 5.3: the input through a ReadOnceSource (fuzz_common.h); the outcome must be the
// plain decode's (status and offset, or kind and root).
void check_source(const std::uint8_t* data, std::size_t size, const Result<Slot>& plain, const DecodeError& perr) {
  ReadOnceSource src(data, size);  // not const: copy_in counts reads in it
  DecodeError err{Status::Ok, 0};
  auto r = codec::slot_decode(src.source(), &err);
  FUZZ_CHECK(r.status() == plain.status());
  if (r.ok()) FUZZ_CHECK(r->kind() == plain->kind() && r->root() == plain->root());
  else FUZZ_CHECK(err.offset == perr.offset);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FrameLeakGuard guard;
  const std::uint64_t boxes = Slot::missing_boxes();
  {
    DecodeError err{Status::Ok, ~std::uint64_t{0}};
    auto r = codec::slot_decode(data, size, &err);
    check_source(data, size, r, err);
    if (!r.ok()) {
      check_rejection(r.status(), err, size);
    } else {
      check_accepted(r.value(), data, size);
      // The same input with the n-th allocation failing (n from the input, so the run
      // is reproducible): either the allocation was not needed or OutOfFrames, no leak.
      const std::uint64_t n = 1 + (size > 1 ? data[size - 1] % 2 : 0);
      r.value().reset();
      frames().inject_failure_at(n);
      DecodeError err2{Status::Ok, 0};
      auto f = codec::slot_decode(data, size, &err2);
      frames().inject_failure_at(0);
      if (f.ok()) {
        check_accepted(f.value(), data, size);
      } else {
        FUZZ_CHECK(f.status() == Status::OutOfFrames);
        FUZZ_CHECK(err2.status == Status::OutOfFrames);
      }
    }
  }
  FUZZ_CHECK(Slot::missing_boxes() == boxes);
  return 0;
}

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if ((seed & 1) != 0 && size >= codec::kLoadedLen && data[0] == 1) {
    const Hash32 h = hash::page_content_hash(data + 37);
    std::memcpy(data + 1, h.b.data(), 32);
  }
  return size;
}
