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

// The closing line both engines and the kernel must agree on:
// `root=<64 hex> gas=<n> cow=<n> page_in=<n>` (page_in counts page-in charges: CoW-range
// page-ins plus read-only clusters). Writes a NUL-terminated line into `out`.
std::size_t format_line(char* out, std::size_t cap, const Hash32& root, std::uint64_t gas_used,
                        const fault::Counters& counters);

}  // namespace capmem::demo
