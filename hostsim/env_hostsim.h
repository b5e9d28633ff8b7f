// Simulated physical memory: one large anonymous mapping stands in for RAM; a physical
// address is an offset into it (env::phys_to_virt panics on one at or past ram_size(), as
// the kernel's direct map does past its end). Sparse (MAP_NORESERVE), so a 4 GiB+ "machine" costs only
// the pages actually touched.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capmem/frame.h"

namespace capmem::hostsim {

inline constexpr std::uint64_t kDefaultMemBytes = 64ull << 20;

// Creates the simulated RAM (size rounded down to pages; physical frame 0 is never
// reported usable so PA 0 stays an invalid "null" frame), initializes the frame
// allocator over it and selects the hash implementation. Calling it again with the
// allocator all-free re-creates the machine with the new size.
void boot(std::uint64_t mem_bytes = kDefaultMemBytes);
// The same, but false instead of an abort when the RAM cannot be mapped or the allocator
// rejects it (the machine is then not booted). The tool sizes the RAM from bytes it has
// read and checked, and reports this as out of memory.
[[nodiscard]] bool try_boot(std::uint64_t mem_bytes);
// Tears down the machine (the allocator must be all-free, or this aborts).
void shutdown();
bool booted();

// frames().stats() after giving every simulated CPU's slab caches back
// (drain_slab_caches, frame.h), so that an object cached on some CPU does not show as a
// frame in use: for leak checks, while no other thread runs core code.
FrameStats quiescent_frame_stats();

std::uint8_t* ram_base();
std::uint64_t ram_size();

}  // namespace capmem::hostsim
