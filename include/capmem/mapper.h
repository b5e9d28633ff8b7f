// What a DataCap needs from whoever maps it (rules 3.8 and 3.9): the interface between a cap
// and its mappers (fault::Run implements it in fault.cpp), so the cap does not depend on
// the fault path and the fault path reaches the cap only through datacap.h.
//
// A mapper is on the intrusive list of every cap it maps, once per region: a run whose
// `code` and `mem` are one cap is on that cap's list twice. Each node carries a pointer to
// a small table of operations (no virtual dispatch: one implementation in the core, and a
// test may supply its own table for a fake mapper). The cap calls them as follows:
//   - try_hold / release: a checkpoint (DataCap::flush, copy, write_page, write_slot,
//     put_page, place_shared, resolve*) claims every mapper paused before its first step; try_hold is
//     false, with nothing changed, while the mapper executes (the call is then Busy). Holds
//     stack: a mapper listed twice, or held by two checkpoints, is held twice.
//   - prepare(page): the fallible step before protect / refresh / published of `page` (may
//     allocate, OutOfFrames changes nothing visible). Called by a checkpoint holding the
//     mapper, or by another mapper's fault path (DataCap::reserve_overlay) while the mapper
//     is paused because that other one has the cap's turn (rule 3.9).
//   - protect(page): the mapper's writable leaf of `page`, if any, becomes read-only (only
//     overlay pages can be writable). Cannot fail.
//   - refresh(page): the cap's effective page changed under a checkpoint: the mapper's leaf
//     of `page`, if any, follows it (re-pointed read-only, or unmapped if Missing). Cannot
//     fail.
//   - published(page): another mapper's copy-on-write fault put a new page into the overlay
//     (rule 3.9). The mapper is paused and the caller is inside a page fault on another run
//     (interrupts off, no TLB shootdown allowed, rule 7.2): the mapper records the page and
//     brings its leaf to the new copy at its next entry, before any guest code runs, with
//     the shootdown of every CPU it has left. Cannot fail.
// `page` is always a page index of the cap the node is on; the node's region says which
// part of the mapper's address space shows that cap.
#pragma once

#include <cstdint>

#include "capmem/status.h"

namespace capmem {

// Which of a run's regions a cap is mapped as (rule 4.1).
enum class Region : std::uint8_t { Code, Mem };

struct MapperNode;

struct MapperOps {
  bool (*try_hold)(MapperNode& n);
  void (*release)(MapperNode& n);
  Status (*prepare)(MapperNode& n, std::uint32_t page);
  void (*protect)(MapperNode& n, std::uint32_t page);
  void (*refresh)(MapperNode& n, std::uint32_t page);
  void (*published)(MapperNode& n, std::uint32_t page);
};

// One entry on a cap's list of mappers. Invariants: `ops` and `owner` are set before the
// node is attached and never change while it is; next/prev are the cap's to change
// (DataCap::attach_mapper / detach_mapper, by the cap's owner, like any cap mutation).
struct MapperNode {
  const MapperOps* ops = nullptr;
  void* owner = nullptr;  // the mapper (a fault::Run); also what the cap's turn records
  Region region = Region::Mem;
  MapperNode* next = nullptr;
  MapperNode* prev = nullptr;
};

}  // namespace capmem
