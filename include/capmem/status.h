// Typed errors: one enum class for every failure the core reports, an expected-like
// Result<T>, and CAPMEM_TRY for propagation (after SerenityOS ErrorOr / managarm error.hpp).
// No exceptions exist in the kernel build; every fallible core call returns one of these.
#pragma once

#include <new>
#include <type_traits>
#include <utility>

namespace capmem {

enum class Status : unsigned {
  Ok = 0,
  // Resources
  OutOfFrames,  // the frame allocator (or a slab on top of it) is exhausted
  // Usage errors
  InvalidArgument,   // an argument violates the call's documented precondition
  NotCanonical,      // virtual address is not canonical (x86-64 4-level)
  Misaligned,        // address not 4 KiB aligned where it must be
  HugePageInWalk,    // a page walk met a 2 MiB / 1 GiB leaf
  NotMapped,         // translate/unmap/protect on an address with no leaf
  OverlayNotEmpty,   // rule 3.4: a root was asked of a cap with unflushed writes
  OutOfExtent,       // page index / byte range past the cap's size
  MissingPage,       // rule 2.1: host read of a Missing page
  MissingInOverlay,  // rule 3.5: flush met a Missing overlay entry
  TooLarge,          // size over 4 GiB / 2^20 pages
  SharedTable,       // a page-table change would write into a shared (linked, not owned) table
  Busy,              // rule 3.8: a run that maps the cap is executing; nothing was changed
                     // rule 3.9: another run over one of this run's caps is executing
  // Wire decoding (rules 2.5 and 5.2); each names the rule it enforces (see status_rule()).
  DecodeEmptyBuffer,       // 2.5
  DecodeUnknownSelector,   // 2.5
  DecodeTrailingBytes,     // 2.5
  DecodeMissingBytes,      // 2.5 (truncated)
  DecodeBadPageOffset,     // 2.5 offset other than 36
  DecodeBadPayloadLength,  // 2.5 byte payload other than 4096 bytes
  DecodeForgedHash,        // 2.5 Loaded hash != hash of bytes
  DecodeBadSize,           // 5.2 size 0, not a multiple of 4096 or over 4 GiB
  DecodeTooManySlots,      // 5.2 more slots than size / 4096
  DecodeBadFirstOffset,    // 5.2 first list offset (in container) not 12
  DecodeBadOffsetTable,    // 5.2 offsets out of bounds, decreasing or not a multiple of 4
  DecodeBadListLength,     // 5.2 list length not a whole number of offsets
  DecodeTrailingEmpty,     // 5.2 trailing Empty slot (not canonical)
  DecodeZeroLoaded,        // 5.2 Loaded page of all zero bytes (not canonical)
  DecodeMissingSlot,       // 5.2 Missing slot in a published cap
  // Caller
  Cancelled,  // a build (from_bytes, decode) stopped because its BuildProgress asked to
  // Usage errors added later (kept at the end: the values above do not move)
  EmptyCap,        // rule 3.10: the cap holds nothing (default-constructed or moved from)
  RegionTooLarge,  // rule 4.1: a run's code cap would reach DATA_BASE or its mem cap pass 4 GiB
  // Thin caps (rule 8.6): a Missing slot of zero(32) or of the all-zero page's root, which no
  // resolve can satisfy: in a thin decode (a wire decoding status, at the hash's offset) and
  // where one would have to travel (a thin encode).
  DecodeUnresolvableMissing,
  UnresolvableMissing,
  // Page packs (rule 8.7, pack.h): Pack::parse names each with its byte offset.
  PackBadMagic,        // not "CAPMPAK1"
  PackTruncated,       // shorter than the 24-byte header
  PackBadCount,        // count x 32 index bytes or count x 4096 page bytes exceed the length
  PackBadFlags,        // flags other than 0
  PackBadPagesOffset,  // pages_offset not 4096-aligned, inside the index, or past the end
  PackUnsortedIndex,   // a root not strictly greater than the one before it
  PackNonzeroPad,      // a non-zero byte between the index and pages_offset
  PackBadLength,       // length other than pages_offset + 4096 x count
  NotInStore,          // 8.7: the store holds no page with that root
  // Resolving a Missing page (rule 8.4, DataCap::resolve*): each leaves the cap as it was.
  NotMissing,    // the page's effective slot is not Missing (a late or duplicate answer: harmless)
  HashMismatch,  // the offered bytes hash to something other than the Missing slot's hash
  BadLength,     // the offered bytes are not exactly 4096 bytes
  UnhashedPage,  // a page offered by reference is an unhashed copy (rule 1.3): its hash is unknown
};

// Short human-readable description ("unknown slot selector") and the rule (docs/rules.md) it
// enforces ("2.5"), or "" when the status is not tied to a numbered rule.
const char* status_name(Status s);
const char* status_rule(Status s);

// Misuse of a Result (reading the value of a failed one, a failed one built from
// Status::Ok) is a bug in the caller, not a runtime condition: it traps through
// env::panic with `what` (status.cpp), in the kernel and hosted alike.
[[noreturn]] void result_misuse(const char* what);

// Invariants: ok() <=> a value is held; a failed Result holds a status other than Ok.
// value(), operator*, operator-> and release_value() trap on a failed Result, and
// Result<T>(Status::Ok) traps (a failure must name what failed; return a value instead).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(const T& v) : ok_(true) { new (&value_) T(v); }        // NOLINT(implicit)
  Result(T&& v) : ok_(true) { new (&value_) T(std::move(v)); }  // NOLINT(implicit)
  Result(Status s) : ok_(false), status_(s) {                   // NOLINT(implicit)
    if (s == Status::Ok) result_misuse("Result<T> built from Status::Ok holds no value");
  }
  Result(Result&& o) noexcept : ok_(o.ok_), status_(o.status_) {
    if (ok_) new (&value_) T(std::move(o.value_));
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result& operator=(Result&&) = delete;
  ~Result() {
    if (ok_) value_.~T();
  }

  [[nodiscard]] bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  [[nodiscard]] Status status() const { return ok_ ? Status::Ok : status_; }
  T& value() & { return checked(); }
  const T& value() const& { return checked(); }
  T&& value() && { return std::move(checked()); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &checked(); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return checked(); }
  T&& operator*() && { return std::move(checked()); }
  T release_value() { return std::move(checked()); }

 private:
  T& checked() {
    if (!ok_) [[unlikely]]
      result_misuse("value of a failed Result<T>");
    return value_;
  }
  const T& checked() const {
    if (!ok_) [[unlikely]]
      result_misuse("value of a failed Result<T>");
    return value_;
  }

  bool ok_;
  Status status_ = Status::Ok;
  union {
    T value_;  // constructed iff ok_ (the constructors and destructor above manage it)
  };
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Status s) : status_(s) {}  // NOLINT(implicit)
  [[nodiscard]] bool ok() const { return status_ == Status::Ok; }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] Status status() const { return status_; }
  void release_value() {}

 private:
  Status status_ = Status::Ok;
};

}  // namespace capmem

// CAPMEM_TRY(expr): evaluate a Result; on failure return its status from the enclosing function,
// otherwise yield the value (GNU statement expression, supported by g++ and clang).
#define CAPMEM_TRY(expr)                                    \
  ({                                                        \
    auto _capmem_try_r = (expr);                            \
    if (!_capmem_try_r.ok()) return _capmem_try_r.status(); \
    _capmem_try_r.release_value();                          \
  })
