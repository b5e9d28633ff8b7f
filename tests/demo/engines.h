// The two hosted engines of a guest run, over one fault::Run:
//   - Mmu: accesses go through hostsim's simulated MMU/TLB; a page fault calls
//     Run::handle_page_fault exactly as the kernel's #PF vector does;
//   - Interpreter: accesses are checked in software (fault::interp_load/store).
#pragma once

#include <cstdint>
#include <string>

#include "capmem/fault.h"
#include "demo.h"
#include "hostsim/mmu.h"

namespace capmem::hostsim {

enum class EngineKind { Mmu, Interpreter };
const char* engine_name(EngineKind k);

// Binds a Run to an engine; `engine()` gives the accessors demo::run_ops() takes. The run
// is executing (Run::try_enter .. leave, rule 3.8) during each load/store and paused
// between them: the host may take checkpoints (flush, copy, ...) of its caps, and other
// runs over them may take their turn (rule 3.9), between accesses. A load/store while
// another run over one of its caps executes answers Outcome::Busy and does nothing.
// With RunConfig::resolve_missing, an access that meets a Missing page answers
// Outcome::NeedPage (the handler's answer, rule 8.2) and did nothing: the host resolves
// Run::pending() (the run is paused again) and calls the same load/store again, or calls
// Run::decline(). demo::ThinHost is that loop for run_ops().
class GuestCpu {
 public:
  GuestCpu(EngineKind kind, fault::Run& run);
  ~GuestCpu();
  GuestCpu(const GuestCpu&) = delete;
  GuestCpu& operator=(const GuestCpu&) = delete;

  fault::AccessResult load(std::uint32_t addr, unsigned width);
  fault::AccessResult store(std::uint32_t addr, unsigned width, std::uint64_t value);
  demo::Engine engine();
  [[nodiscard]] Mmu& mmu() { return mmu_; }

 private:
  fault::AccessResult finish(const GuestAccess& g);
  static bool on_fault(void* ctx, VirtAddr cr2, std::uint32_t error_code);
  EngineKind kind_;
  fault::Run& run_;
  Mmu mmu_;
  fault::Answer last_{fault::Outcome::Retry, VirtAddr{}};
};

// The whole demo on one engine: build the image, run the op table, tear the page table
// down, flush `mem` and take its root.
//
// Thin (rule 8, `capmem demo --thin`): the caps `thin_opt` names are made thin
// (demo::make_thin), the run resolves Missing pages (RunConfig::resolve_missing) and a
// demo::ThinHost answers each NeedPage from a store over a second, full build of the image
// (demo::image_store), re-executing the access. Root, gas, cow and page_in equal the
// normal demo's; the line is demo::format_thin_line's (need_page=N added). A request the
// store cannot answer is declined (the run then stops with a guest page fault) and its
// status is kept in DemoReport::resolve_error.
struct DemoOptions {
  bool thin = false;
  demo::ThinOptions thin_opt{};
  // Thin: answer from this pack (demo::PackStore) instead of a full build of the image.
  const store::Pack* pack = nullptr;
};
struct DemoReport {
  bool ok = false;    // ran (to the end or to a stop); false = host failure
  std::string error;  // when !ok
  demo::Progress progress{};
  fault::Counters counters{};
  std::uint64_t gas_used = 0;
  Hash32 root{};
  std::string line;                   // root=... gas=... cow=... page_in=... [need_page=...]
  Status resolve_error = Status::Ok;  // thin: the first request the store could not answer
};
DemoReport run_demo(EngineKind kind, std::uint64_t gas, const DemoOptions& opt = {});

// `capmem demo --pack OUT`: the pack (rule 8.7, store::pack_write) of every distinct Loaded
// page of the demo image (code and mem), streamed to `sink`; the store a thin demo (here or
// in the kernel, from a boot module) resolves from. Status of the build, the hashing or the
// sink.
Result<void> write_demo_pack(ByteSink sink, void* ctx);

}  // namespace capmem::hostsim
