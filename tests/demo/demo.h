// The deterministic demo scenario, defined once so `capmem demo` (hostsim, both engines) and
// the test kernel image (real ring-3 faults) run the very same guest. Test content, not core:
// the `capmem_demo` library (tests/demo/meson.build) is linked by hostsim, the tests and the
// test kernel image, never into the core library an embedder links.
//
// The guest "program" is a table of 16-byte operations stored at the start of the code cap
// (CODE_BASE) and read through guest memory, op by op, by whoever executes it: the hostsim
// MMU engine, the interpreter engine, or the kernel's ring-3 x86 program.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/datacap.h"
#include "capmem/fault.h"
#include "capmem/pack.h"

namespace capmem::demo {

// One operation, little-endian, 16 bytes, at CODE_BASE + 16 * i.
struct Op {
  std::uint8_t kind;   // kEnd, kLoad, kStore
  std::uint8_t width;  // 1, 2, 4, 8 (any other value runs as 8, as in the ring-3 program)
  std::uint16_t reserved;
  std::uint32_t addr;   // guest address
  std::uint64_t value;  // stored value (stores)
};
static_assert(sizeof(Op) == 16);
inline constexpr std::uint8_t kEnd = 0, kLoad = 1, kStore = 2;
// Field offsets inside an Op, for programs that read it with guest loads.
inline constexpr unsigned kOffKind = 0, kOffWidth = 1, kOffAddr = 4, kOffValue = 8;

inline constexpr std::uint32_t kMemPages = 1024;  // 4 MiB `mem` cap
inline constexpr std::uint32_t kCodePages = 16;   // 64 KiB code cap (op table first)
inline constexpr std::uint32_t kOps = 640;        // including the final kEnd
inline constexpr fault::PinnedRange kPinned{.first_page = 512, .pages = 64};
inline constexpr std::uint64_t kDefaultGas = 1'000'000;

struct Image {
  DataCap code;
  DataCap mem;
};
// Builds the scenario's caps from a fixed seed (pseudo-random pages, every 7th page of
// `mem` Empty, the op table at the start of `code`). Deterministic across builds.
Result<Image> build();

// An engine's guest accessors (function pointers: the two hosted engines and the kernel).
struct Engine {
  void* ctx;
  fault::AccessResult (*load)(void* ctx, std::uint32_t addr, unsigned width);
  fault::AccessResult (*store)(void* ctx, std::uint32_t addr, unsigned width, std::uint64_t value);
};

struct Progress {
  fault::Outcome stop;     // Retry = ran to kEnd; otherwise why it stopped
  VirtAddr addr;           // where it stopped
  std::uint32_t ops_done;  // operations completed
  std::uint64_t checksum;  // fold of every loaded value
};
// Executes the op table through `e`: for each op, guest loads of its fields, then the op.
Progress run_ops(const Engine& e);

// --- Thin mode (rule 8; `capmem demo --thin`, the kernel's thin demo case) ---------------
// The same guest over thin caps: Loaded pages of the chosen caps become Missing(hash) (same
// roots, rule 2.3); the run resolves Missing pages (RunConfig::resolve_missing) and the host
// answers each NeedPage from a page store. Root, gas, cow and page_in equal the normal
// demo's (rule 8.3); the line adds need_page=N (counters.need_page).
struct ThinOptions {
  bool mem = true;               // make `mem` thin
  bool code = false;             // make `code` thin too (the op table then arrives on demand)
  std::uint32_t keep_first = 0;  // pages [0, keep_first) of each thin cap keep their bytes
};
// Replaces image.mem / image.code (as `opt` says) by a thin cap of the same size and root:
// each Loaded page at or past keep_first becomes Missing(its hash) in the backing (Empty
// pages stay Empty); the full cap's pages are dropped. On failure nothing changed.
Result<void> make_thin(Image& image, const ThinOptions& opt);

// A host-side page store, keyed by page root (rule 1.2). `find` sets *out to a 4096-byte
// ByteSource of the page whose root is `hash` (valid until the next find on this store) and
// answers Status::Ok, or answers Status::NotInStore. What it gives is never trusted:
// resolve_request verifies it (DataCap::resolve, rule 8.4). The kernel supplies one over
// its boot-module pack (Pack::find + PackPageSource), the hosted demo image_store().
struct PageStore {
  void* ctx;
  Status (*find)(void* ctx, const Hash32& hash, ByteSource* out);
};
// A store over a full image's pages (code and mem, as build() makes them): a linear scan
// (the demo's 1040 pages). `full` must outlive the store's use.
PageStore image_store(const Image& full);
// A store over a page pack (rule 8.7, store::Pack): the kernel's boot module, or the pack
// `capmem demo --pack` writes (hostsim::write_demo_pack). Pack::find (binary search of the
// index, a hint: resolve verifies every page) and the page as a ByteSource pointing at
// `page`. The PackStore must outlive the PageStore's use.
struct PackStore {
  store::Pack pack;
  store::PackPageSource page{};  // the page last found
  PageStore store();
};

// Answers one NeedPage: the page `req` names (in image.code for Region::Code, image.mem
// otherwise) resolved from `store` with DataCap::resolve (bytes read once and hashed,
// rule 8.4). Ok, NotInStore, or resolve's status (HashMismatch, Busy, OutOfFrames, ...);
// on failure nothing changed and the caller declines (Run::decline) or retries.
Status resolve_request(Image& image, const fault::PageRequest& req, const PageStore& store);

// The host loop of a thin run over an engine: load/store call `inner`; an access answering
// NeedPage is resolved (resolve_request from `store` into `image`) and the same access runs
// again; a request the host cannot answer is declined (Run::decline: the guest page fault
// of rule 4.3) and the first such status kept in `error`. `resolved` counts answered
// requests. Between accesses the run is paused (the engine's contract), so resolving is
// allowed (rule 8.4: Busy otherwise).
struct ThinHost {
  Engine inner;
  fault::Run* run;
  Image* image;
  PageStore store;
  std::uint64_t resolved = 0;
  Status error = Status::Ok;
  Engine engine();  // accessors for run_ops(); `this` must outlive them
};

// The closing line both engines and the kernel must agree on:
// `root=<64 hex> gas=<n> cow=<n> page_in=<n>` (page_in counts page-in charges: CoW-range
// page-ins plus read-only clusters). Writes a NUL-terminated line into `out`.
std::size_t format_line(char* out, std::size_t cap, const Hash32& root, std::uint64_t gas_used,
                        const fault::Counters& counters);
// The thin demo's line: format_line's, then ` need_page=<counters.need_page>`.
std::size_t format_thin_line(char* out, std::size_t cap, const Hash32& root, std::uint64_t gas_used,
                             const fault::Counters& counters);

}  // namespace capmem::demo
