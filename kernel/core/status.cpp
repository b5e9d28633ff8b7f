#include "capmem/status.h"

#include "capmem/env.h"

namespace capmem {

namespace {
struct StatusInfo {
  const char* name;
  const char* rule;
};

constexpr StatusInfo info(Status s) {
  switch (s) {
    case Status::Ok: return {"ok", ""};
    case Status::OutOfFrames: return {"out of physical frames", ""};
    case Status::InvalidArgument: return {"invalid argument", ""};
    case Status::NotCanonical: return {"non-canonical virtual address", ""};
    case Status::Misaligned: return {"address not 4 KiB aligned", ""};
    case Status::HugePageInWalk: return {"page walk met a 2 MiB/1 GiB leaf", ""};
    case Status::NotMapped: return {"no leaf mapped at that address", ""};
    case Status::OverlayNotEmpty: return {"cap has unflushed overlay entries; flush before asking its root", "3.4"};
    case Status::OutOfExtent: return {"page or byte range past the cap's size", "3.2"};
    case Status::MissingPage: return {"page is Missing (known only by hash)", "2.1"};
    case Status::MissingInOverlay: return {"flush met a Missing overlay entry", "3.5"};
    case Status::TooLarge: return {"size over 4 GiB (2^20 pages)", "5.1"};
    case Status::SharedTable: return {"page-table change would write into a shared (linked) table", ""};
    case Status::Busy: return {"a run that maps the cap is executing; try again while it is paused", "3.8"};
    case Status::DecodeEmptyBuffer: return {"empty buffer where a page slot was expected", "2.5"};
    case Status::DecodeUnknownSelector: return {"unknown page slot selector", "2.5"};
    case Status::DecodeTrailingBytes: return {"trailing bytes after a page slot", "2.5"};
    case Status::DecodeMissingBytes: return {"truncated page slot", "2.5"};
    case Status::DecodeBadPageOffset: return {"page bytes offset is not 36", "2.5"};
    case Status::DecodeBadPayloadLength: return {"page byte payload is not 4096 bytes", "2.5"};
    case Status::DecodeForgedHash: return {"Loaded page hash does not match its bytes", "2.5"};
    case Status::DecodeBadSize: return {"cap size is 0, not a multiple of 4096 or over 4 GiB", "5.2"};
    case Status::DecodeTooManySlots: return {"more page slots than size / 4096", "5.2"};
    case Status::DecodeBadFirstOffset: return {"pages list offset is not 12", "5.2"};
    case Status::DecodeBadOffsetTable: return {"slot offset out of bounds, decreasing or not a multiple of 4", "5.2"};
    case Status::DecodeBadListLength: return {"list length is not a whole number of offsets", "5.2"};
    case Status::DecodeTrailingEmpty: return {"trailing Empty slot (not canonical)", "5.2"};
    case Status::DecodeZeroLoaded: return {"Loaded page with all-zero bytes (not canonical)", "5.2"};
    case Status::DecodeMissingSlot: return {"Missing slot in a published cap", "5.2"};
    case Status::Cancelled: return {"cancelled by the caller", ""};
    case Status::EmptyCap: return {"the cap holds nothing (default-constructed or moved from)", "3.10"};
    case Status::RegionTooLarge:
      return {"a run's code cap reaches DATA_BASE (over 252 MiB) or its mem cap passes 4 GiB (over 3840 MiB)", "4.1"};
    case Status::DecodeUnresolvableMissing:
      return {"thin cap's Missing slot holds zero(32) or the all-zero page's root (never resolvable)", "8.6"};
    case Status::UnresolvableMissing:
      return {"cap holds Missing(zero(32)) or Missing(all-zero page's root), which no resolve satisfies", "8.6"};
    case Status::PackBadMagic: return {"not a page pack (magic is not CAPMPAK1)", "8.7"};
    case Status::PackTruncated: return {"page pack shorter than its 24-byte header", "8.7"};
    case Status::PackBadCount: return {"page pack count does not fit in its length", "8.7"};
    case Status::PackBadFlags: return {"page pack flags are not 0", "8.7"};
    case Status::PackBadPagesOffset:
      return {"page pack pages_offset not 4096-aligned, inside the index or past the end", "8.7"};
    case Status::PackUnsortedIndex: return {"page pack index roots not strictly increasing", "8.7"};
    case Status::PackNonzeroPad: return {"page pack pad between index and pages is not zero", "8.7"};
    case Status::PackBadLength: return {"page pack length is not pages_offset + 4096 x count", "8.7"};
    case Status::NotInStore: return {"no page with that root in the store", "8.7"};
    case Status::NotMissing: return {"the page is not Missing (nothing to resolve)", "8.4"};
    case Status::HashMismatch: return {"the bytes do not hash to the Missing page's hash", "8.4"};
    case Status::BadLength: return {"a page must be exactly 4096 bytes", "8.4"};
    case Status::UnhashedPage: return {"an unhashed page cannot be installed by reference", "8.4"};
  }
  return {"unknown status", ""};
}
}  // namespace

const char* status_name(Status s) { return info(s).name; }
const char* status_rule(Status s) { return info(s).rule; }

void result_misuse(const char* what) { env::panic(what); }

}  // namespace capmem
