#include "engines.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "capmem/frame.h"

namespace capmem::hostsim {

const char* engine_name(EngineKind k) { return k == EngineKind::Mmu ? "mmu+fault handler" : "interpreter"; }

GuestCpu::GuestCpu(EngineKind kind, fault::Run& run) : kind_(kind), run_(run) {
  mmu_.make_current();
  mmu_.load_cr3(run.table().root());
  mmu_.set_fault_entry(&GuestCpu::on_fault, this);
}
GuestCpu::~GuestCpu() { Mmu::clear_current(); }

bool GuestCpu::on_fault(void* ctx, VirtAddr cr2, std::uint32_t error_code) {
  auto* self = static_cast<GuestCpu*>(ctx);
  self->last_ = self->run_.handle_page_fault(cr2, error_code);
  return self->last_.outcome == fault::Outcome::Retry;
}

fault::AccessResult GuestCpu::finish(const GuestAccess& g) {
  if (g.status == AccessStatus::Ok) return {fault::Outcome::Retry, VirtAddr{}, g.value};
  if (g.status == AccessStatus::FaultLoop) return {fault::Outcome::GuestFault, g.cr2, 0};
  return {last_.outcome, last_.addr, 0};
}

// Each access is guest execution (rule 3.8): the run is executing for its duration,
// including any fault it takes, and paused between accesses (the interpreter's accesses
// also mark it themselves; the marks nest). An access while another run over one of its
// caps executes does not start: Outcome::Busy (rule 3.9).

fault::AccessResult GuestCpu::load(std::uint32_t addr, unsigned width) {
  const fault::Run::Entered entered(run_);
  if (!entered.ok()) return {fault::Outcome::Busy, VirtAddr{addr}, 0};  // rule 3.9
  if (kind_ == EngineKind::Interpreter) return fault::interp_load(run_, addr, width);
  last_ = {fault::Outcome::Retry, VirtAddr{}};
  return finish(mmu_.load(addr, width));
}

fault::AccessResult GuestCpu::store(std::uint32_t addr, unsigned width, std::uint64_t value) {
  const fault::Run::Entered entered(run_);
  if (!entered.ok()) return {fault::Outcome::Busy, VirtAddr{addr}, 0};  // rule 3.9
  if (kind_ == EngineKind::Interpreter) return fault::interp_store(run_, addr, width, value);
  last_ = {fault::Outcome::Retry, VirtAddr{}};
  return finish(mmu_.store(addr, width, value));
}

demo::Engine GuestCpu::engine() {
  return demo::Engine{
      .ctx = this,
      .load = [](void* c, std::uint32_t a, unsigned w) { return static_cast<GuestCpu*>(c)->load(a, w); },
      .store = [](void* c, std::uint32_t a, unsigned w,
                  std::uint64_t v) { return static_cast<GuestCpu*>(c)->store(a, w, v); },
  };
}

DemoReport run_demo(EngineKind kind, std::uint64_t gas, const DemoOptions& opt) {
  DemoReport rep;
  auto image = demo::build();
  if (!image.ok()) {
    rep.error = std::string("building the demo image: ") + status_name(image.status());
    return rep;
  }
  // Thin: the host's page store is a second, full build (the thin image drops its pages).
  std::optional<demo::Image> full;
  if (opt.thin && opt.pack == nullptr) {
    auto f = demo::build();
    if (!f.ok()) {
      rep.error = std::string("building the demo's page store: ") + status_name(f.status());
      return rep;
    }
    full.emplace(f.release_value());
  }
  if (opt.thin) {
    if (auto t = demo::make_thin(image.value(), opt.thin_opt); !t.ok()) {
      rep.error = std::string("making the demo image thin: ") + status_name(t.status());
      return rep;
    }
  }
  auto table = pt::PageTable::create();
  if (!table.ok()) {
    rep.error = std::string("creating the page table: ") + status_name(table.status());
    return rep;
  }
  {
    fault::Run run(fault::RunConfig{.table = &table.value(),
                                    .code = &image->code,
                                    .mem = &image->mem,
                                    .pinned = std::span<const fault::PinnedRange>(&demo::kPinned, 1),
                                    .gas = gas,
                                    .resolve_missing = opt.thin});
    {
      GuestCpu cpu(kind, run);
      if (opt.thin) {
        demo::PackStore pack_store{.pack = opt.pack != nullptr ? *opt.pack : store::Pack{}};
        demo::ThinHost host{.inner = cpu.engine(),
                            .run = &run,
                            .image = &image.value(),
                            .store = opt.pack != nullptr ? pack_store.store() : demo::image_store(*full)};
        rep.progress = demo::run_ops(host.engine());
        rep.resolve_error = host.error;
      } else {
        rep.progress = demo::run_ops(cpu.engine());
      }
    }
    rep.counters = run.counters();
    rep.gas_used = run.gas_used();
    table->teardown();  // drops every mapping's frame reference (rule 4.2)
    if (auto f = image->mem.flush(); !f.ok()) {
      rep.error = std::string("flush: ") + status_name(f.status());
      return rep;
    }
    auto root = image->mem.root();
    if (!root.ok()) {
      rep.error = std::string("root: ") + status_name(root.status());
      return rep;
    }
    rep.root = root.value();
    char line[160];
    if (opt.thin) demo::format_thin_line(line, sizeof line, rep.root, rep.gas_used, rep.counters);
    else demo::format_line(line, sizeof line, rep.root, rep.gas_used, rep.counters);
    rep.line = line;
  }
  rep.ok = true;
  return rep;
}

Result<void> write_demo_pack(ByteSink sink, void* ctx) {
  demo::Image image = CAPMEM_TRY(demo::build());
  std::vector<store::PackEntry> entries;
  for (const DataCap* cap : {&image.code, &image.mem}) {
    for (std::uint32_t i = 0; i < cap->page_count(); ++i) {
      const SlotView v = cap->effective(i);
      if (v.kind == SlotKind::Loaded)
        entries.push_back({.root = *v.hash, .bytes = static_cast<const std::uint8_t*>(v.frame->virt())});
    }
  }
  std::sort(entries.begin(), entries.end(), [](const store::PackEntry& a, const store::PackEntry& b) {
    return std::memcmp(a.root.b.data(), b.root.b.data(), 32) < 0;
  });
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const store::PackEntry& a, const store::PackEntry& b) { return a.root == b.root; }),
                entries.end());
  return store::pack_write(entries.data(), static_cast<std::uint32_t>(entries.size()), sink, ctx);
}

}  // namespace capmem::hostsim
