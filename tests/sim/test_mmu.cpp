// Simulated MMU (hostsim/mmu.h) against hand-built tables: every P/W/U/NX combination at
// every level, every error-code bit, A/D setting, and the ring-3 guest access path
// (straddling, wrapping past 2^32, retry, fault loops). Expected values come from the Intel
// SDM rules written out directly in the test (4.6 access rights, 4.7 error code, 4.8 A/D).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "capmem/frame.h"
#include "capmem/pt.h"
#include "hostsim/env_hostsim.h"
#include "hostsim/mmu.h"

using namespace capmem;
using hostsim::AccessKind;
using hostsim::AccessStatus;
using hostsim::Mmu;
using hostsim::Privilege;

namespace {

std::uint64_t* slots(FrameDesc* d) { return static_cast<std::uint64_t*>(d->virt()); }

// Four hand-built tables mapping one page, and the raw bits under test.
struct HandTables {
  FrameDesc* t[5] = {};  // t[4] PML4 ... t[1] PT
  FrameDesc* page = nullptr;
  // va: PML4 index 0, PDPT index 1, PD index 2, PT index 3, offset 0x567
  static constexpr std::uint64_t kVa = (1ull << 30) | (2ull << 21) | (3ull << 12) | 0x567;
  static constexpr unsigned kIdx[5] = {0, 3, 2, 1, 0};

  HandTables() {
    for (unsigned l = 1; l <= 4; ++l) t[l] = frames().alloc(FrameKind::Table, AllocFlags::Zero);
    page = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  }
  ~HandTables() {
    for (unsigned l = 1; l <= 4; ++l) frames().free(t[l]);
    frames().free(page);
  }
  PhysAddr root() const { return t[4]->phys(); }
  std::uint64_t& entry(unsigned l) { return slots(t[l])[kIdx[l]]; }
  // bits per level: bit0 P, bit1 W, bit2 U, bit3 NX
  void set(unsigned combo) {
    for (unsigned l = 1; l <= 4; ++l) {
      const unsigned b = (combo >> (4 * (l - 1))) & 0xf;
      const std::uint64_t target = l == 1 ? page->phys().value() : t[l - 1]->phys().value();
      std::uint64_t e = target;
      if (b & 1) e |= 1;
      if (b & 2) e |= 2;
      if (b & 4) e |= 4;
      if (b & 8) e |= 1ull << 63;
      entry(l) = e;
    }
  }
};

// The SDM's answer for one access, written independently of the model: returns -1 when the
// access is allowed, else the error code.
int expected_error(unsigned combo, AccessKind kind, Privilege priv) {
  const std::uint32_t access = (kind == AccessKind::Write ? 2u : 0u) | (priv == Privilege::User ? 4u : 0u) |
                               (kind == AccessKind::Fetch ? 16u : 0u);
  bool w = true, u = true, nx = false;
  for (unsigned l = 4; l >= 1; --l) {
    const unsigned b = (combo >> (4 * (l - 1))) & 0xf;
    if (!(b & 1)) return static_cast<int>(access);  // not present: P = 0
    w = w && (b & 2);
    u = u && (b & 4);
    nx = nx || (b & 8);
  }
  const bool bad = (priv == Privilege::User && !u) || (kind == AccessKind::Write && !w) ||  // CR0.WP = 1
                   (kind == AccessKind::Fetch && nx);                                       // EFER.NXE = 1
  return bad ? static_cast<int>(access | 1u) : -1;
}

}  // namespace

TEST(MmuPermissions, EveryPwuNxCombinationAtEveryLevel) {
  HandTables h;
  Mmu mmu;
  mmu.load_cr3(h.root());
  const AccessKind kinds[] = {AccessKind::Read, AccessKind::Write, AccessKind::Fetch};
  const Privilege privs[] = {Privilege::User, Privilege::Supervisor};
  unsigned allowed = 0, faults = 0;
  for (unsigned combo = 0; combo < 65536; ++combo) {
    for (AccessKind k : kinds) {
      for (Privilege p : privs) {
        h.set(combo);
        mmu.flush_all();
        const auto r = mmu.translate(VirtAddr{HandTables::kVa}, k, p);
        const int want = expected_error(combo, k, p);
        if (want < 0) {
          ++allowed;
          ASSERT_TRUE(r.ok) << "combo " << std::hex << combo;
          ASSERT_EQ(r.pa.value(), h.page->phys().value() + 0x567);
          for (unsigned l = 1; l <= 4; ++l) ASSERT_TRUE(h.entry(l) & 0x20) << "A not set at level " << l;
          ASSERT_EQ((h.entry(1) & 0x40) != 0, k == AccessKind::Write) << "D only on a write";
        } else {
          ++faults;
          ASSERT_FALSE(r.ok) << "combo " << std::hex << combo;
          ASSERT_EQ(r.fault.error_code, static_cast<std::uint32_t>(want)) << "combo " << std::hex << combo;
          ASSERT_EQ(r.fault.cr2.value(), HandTables::kVa) << "CR2 is the faulting address itself";
          ASSERT_FALSE(h.entry(1) & 0x40) << "a faulting access never sets D";
          ASSERT_FALSE(mmu.tlb_cached(VirtAddr{HandTables::kVa}));
        }
      }
    }
  }
  EXPECT_GT(allowed, 0u);
  EXPECT_GT(faults, 0u);
  for (unsigned l = 1; l <= 4; ++l) h.entry(l) = 0;
}

namespace {
// One fully permissive mapping through hand tables, then narrowed at the leaf.
struct ErrorCodeCase : ::testing::Test {
  HandTables h;
  Mmu mmu;
  void SetUp() override { mmu.load_cr3(h.root()); }
  void TearDown() override {
    for (unsigned l = 1; l <= 4; ++l) h.entry(l) = 0;
  }
  std::uint32_t err(unsigned leaf_bits, AccessKind k, Privilege p) {
    h.set(0x7770 | leaf_bits);  // levels 4..2: P|W|U; leaf as given
    mmu.flush_all();
    const auto r = mmu.translate(VirtAddr{HandTables::kVa}, k, p);
    EXPECT_FALSE(r.ok);
    return r.fault.error_code;
  }
};
}  // namespace

// Figure 4-12 bit values: P = 0x1, W/R = 0x2, U/S = 0x4, I/D = 0x10.
TEST_F(ErrorCodeCase, PresentBitClearForNotPresent) { EXPECT_EQ(err(0x0, AccessKind::Read, Privilege::User), 0x4u); }
TEST_F(ErrorCodeCase, PresentBitSetForProtection) { EXPECT_EQ(err(0x1, AccessKind::Read, Privilege::User), 0x5u); }
TEST_F(ErrorCodeCase, WriteBit) {
  EXPECT_EQ(err(0x5, AccessKind::Write, Privilege::User), 0x7u);
  EXPECT_EQ(err(0x0, AccessKind::Write, Privilege::User), 0x6u);
}
TEST_F(ErrorCodeCase, UserBitClearAtRing0) {
  EXPECT_EQ(err(0x0, AccessKind::Read, Privilege::Supervisor), 0x0u);
  EXPECT_EQ(err(0x5, AccessKind::Write, Privilege::Supervisor), 0x3u) << "CR0.WP = 1";
}
TEST_F(ErrorCodeCase, InstructionFetchBit) {
  EXPECT_EQ(err(0xd, AccessKind::Fetch, Privilege::User), 0x15u);
  EXPECT_EQ(err(0x0, AccessKind::Fetch, Privilege::User), 0x14u);
  EXPECT_EQ(err(0xf, AccessKind::Fetch, Privilege::Supervisor), 0x11u);
}

TEST(MmuWalk, LargePagesTranslate) {
  HandTables h;
  Mmu mmu;
  mmu.load_cr3(h.root());
  h.set(0x7777);
  // Turn the PDE into a 2 MiB leaf at 0x40000000.
  h.entry(2) = 0x40000000ull | 0x80 | 0x7;
  auto r = mmu.translate(VirtAddr{HandTables::kVa}, AccessKind::Write, Privilege::User);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.pa.value(), 0x40000000ull + (HandTables::kVa & 0x1fffff));
  EXPECT_TRUE(h.entry(2) & 0x40) << "D set in the 2 MiB leaf";
  // A 1 GiB leaf in the PDPTE.
  h.entry(3) = 0x80000000ull | 0x80 | 0x7;
  mmu.flush_all();
  r = mmu.translate(VirtAddr{HandTables::kVa}, AccessKind::Read, Privilege::User);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.pa.value(), 0x80000000ull + (HandTables::kVa & 0x3fffffff));
  for (unsigned l = 1; l <= 4; ++l) h.entry(l) = 0;
}

TEST(MmuWalk, WalksTheTablesTheCoreBuilt) {
  FrameDesc* page = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  auto t = pt::PageTable::create().release_value();
  const VirtAddr va{0x10003000};
  ASSERT_TRUE(t.map_leaf(va, page->phys(), {.user = true}).ok());
  Mmu mmu;
  mmu.load_cr3(t.root());
  auto r = mmu.translate(va + 8, AccessKind::Read, Privilege::User);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.pa, page->phys() + 8);
  EXPECT_TRUE(t.translate(va)->accessed);
  EXPECT_FALSE(t.translate(va)->dirty);
  r = mmu.translate(va, AccessKind::Write, Privilege::User);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.fault.error_code, 0x7u);
  EXPECT_FALSE(t.translate(va)->dirty);
  t.teardown();
  frames().free(page);
}

// --- Guest access path ------------------------------------------------------------------------
namespace {
struct Guest : ::testing::Test {
  pt::PageTable table = pt::PageTable::create().release_value();
  Mmu mmu;
  std::vector<FrameDesc*> pages;
  struct Call {
    std::uint64_t cr2;
    std::uint32_t err;
  };
  std::vector<Call> calls;
  // What the handler does: map the faulting page read-write (if `map_on_fault`) and retry.
  bool map_on_fault = true;
  bool retry = true;

  void SetUp() override {
    mmu.make_current();
    mmu.load_cr3(table.root());
    mmu.set_fault_entry(&Guest::entry, this);
  }
  void TearDown() override {
    Mmu::clear_current();
    table.teardown();
    for (FrameDesc* d : pages) frames().unref(d);
  }
  FrameDesc* map(std::uint64_t va, bool writable, std::uint8_t fill) {
    FrameDesc* d = frames().alloc(FrameKind::Page);
    std::memset(d->virt(), fill, 4096);
    pages.push_back(d);
    EXPECT_TRUE(table.map_leaf(VirtAddr{va}, d->phys(), {.writable = writable, .user = true, .no_execute = true}).ok());
    return d;
  }
  static bool entry(void* ctx, VirtAddr cr2, std::uint32_t err) {
    auto* g = static_cast<Guest*>(ctx);
    g->calls.push_back({cr2.value(), err});
    if (g->map_on_fault && cr2.value() < Mmu::kGuestLimit) g->map(cr2.page_base().value(), true, 0);
    return g->retry;
  }
  std::uint8_t* bytes(FrameDesc* d) { return static_cast<std::uint8_t*>(d->virt()); }
};
}  // namespace

TEST_F(Guest, LoadStoreEveryWidthLittleEndian) {
  FrameDesc* p = map(0x10000000, true, 0);
  const std::uint64_t v = 0x1122334455667788ull;
  for (unsigned w : {1u, 2u, 4u, 8u}) {
    for (std::uint32_t off : {0u, 1u, 3u, 4096u - w}) {
      std::memset(bytes(p), 0, 4096);
      auto s = mmu.store(0x10000000 + off, w, v);
      ASSERT_EQ(s.status, AccessStatus::Ok);
      std::uint8_t ref[4096] = {};
      std::memcpy(ref + off, &v, w);  // x86 is little-endian: the low w bytes of v
      EXPECT_EQ(std::memcmp(bytes(p), ref, 4096), 0) << w << "@" << off;
      auto l = mmu.load(0x10000000 + off, w);
      ASSERT_EQ(l.status, AccessStatus::Ok);
      std::uint64_t want = 0;
      std::memcpy(&want, ref + off, w);
      EXPECT_EQ(l.value, want);
    }
  }
  EXPECT_TRUE(calls.empty());
  EXPECT_TRUE(table.translate(VirtAddr{0x10000000})->dirty);
}

TEST_F(Guest, StraddleSecondPageFaultsNoByteOfFirstWritten) {
  FrameDesc* first = map(0x10000000, true, 0xaa);
  map_on_fault = false;
  retry = false;
  auto s = mmu.store(0x10000ffe, 4, 0x11223344);
  ASSERT_EQ(s.status, AccessStatus::Fault);
  EXPECT_EQ(s.cr2.value(), 0x10001000u) << "CR2 is the first byte of the second page";
  EXPECT_EQ(s.error_code, 0x6u) << "not present, write, user";
  EXPECT_EQ(bytes(first)[0xffe], 0xaa);
  EXPECT_EQ(bytes(first)[0xfff], 0xaa);
  ASSERT_EQ(calls.size(), 1u);
}

TEST_F(Guest, StraddleRetriedAfterHandlerMapsSecondPage) {
  FrameDesc* first = map(0x10000000, true, 0);
  auto s = mmu.store(0x10000ffd, 8, 0x0807060504030201ull);
  ASSERT_EQ(s.status, AccessStatus::Ok);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].cr2, 0x10001000u);
  FrameDesc* second = pages.back();
  EXPECT_EQ(bytes(first)[0xffd], 1);
  EXPECT_EQ(bytes(first)[0xfff], 3);
  EXPECT_EQ(bytes(second)[0], 4);
  EXPECT_EQ(bytes(second)[4], 8);
  EXPECT_EQ(mmu.load(0x10000ffd, 8).value, 0x0807060504030201ull);
}

TEST_F(Guest, StraddleFirstPageReadOnlyFaultsAtTheAccessAddress) {
  map(0x10000000, false, 0);
  FrameDesc* second = map(0x10001000, true, 0x55);
  map_on_fault = false;
  retry = false;
  auto s = mmu.store(0x10000fff, 2, 0xffff);
  ASSERT_EQ(s.status, AccessStatus::Fault);
  EXPECT_EQ(s.cr2.value(), 0x10000fffu);
  EXPECT_EQ(s.error_code, 0x7u) << "protection, write, user";
  EXPECT_EQ(bytes(second)[0], 0x55);
}

TEST_F(Guest, LastPageOf32BitSpace) {
  FrameDesc* p = map(0xfffff000, true, 0);
  ASSERT_EQ(mmu.store(0xfffffff8, 8, 0xdeadbeefcafef00dull).status, AccessStatus::Ok);
  EXPECT_EQ(mmu.load(0xfffffff8, 8).value, 0xdeadbeefcafef00dull);
  EXPECT_EQ(mmu.load(0xffffffff, 1).value, 0xdeu);
  std::uint64_t v;
  std::memcpy(&v, bytes(p) + 0xff8, 8);
  EXPECT_EQ(v, 0xdeadbeefcafef00dull);
  EXPECT_TRUE(calls.empty());
}

TEST_F(Guest, AddressPlusWidthWrappingPast4GiBFaultsAtTheFirstByteBeyond) {
  FrameDesc* p = map(0xfffff000, true, 0x77);
  // Even a mapping at 2^32 (a native address the guest cannot name) must not be used.
  FrameDesc* beyond = frames().alloc(FrameKind::Page, AllocFlags::Zero);
  pages.push_back(beyond);
  ASSERT_TRUE(table.map_leaf(VirtAddr{1ull << 32}, beyond->phys(), {.writable = true, .user = true}).ok());
  map_on_fault = false;
  retry = false;
  auto s = mmu.store(0xfffffffe, 4, 0x01020304);
  ASSERT_EQ(s.status, AccessStatus::Fault);
  EXPECT_EQ(s.cr2.value(), 1ull << 32);
  EXPECT_EQ(s.error_code, 0x6u);
  EXPECT_EQ(bytes(p)[0xffe], 0x77) << "no byte before 2^32 written";
  EXPECT_EQ(bytes(p)[0xfff], 0x77);
  EXPECT_EQ(bytes(beyond)[0], 0) << "nothing written past 2^32";
  ASSERT_EQ(calls.size(), 1u) << "the guest sees it as a page fault through the #PF entry";
  EXPECT_EQ(calls[0].cr2, 1ull << 32);
  auto l = mmu.load(0xffffffff, 2);
  EXPECT_EQ(l.status, AccessStatus::Fault);
  EXPECT_EQ(l.error_code, 0x4u);
}

TEST_F(Guest, HandlerThatNeverFixesIsAFaultLoop) {
  map_on_fault = false;  // answers retry but maps nothing
  auto s = mmu.load(0x20000000, 4);
  EXPECT_EQ(s.status, AccessStatus::FaultLoop);
  EXPECT_EQ(s.cr2.value(), 0x20000000u);
  EXPECT_EQ(calls.size(), Mmu::kMaxSameFault - 1);
}

TEST_F(Guest, ReadThenWriteFaultIsProgressNotALoop) {
  // The handler maps read-only first, then writable: two different faults, then success.
  struct Ctx {
    Guest* g;
    int n = 0;
  } ctx{this};
  mmu.set_fault_entry(
      [](void* c, VirtAddr cr2, std::uint32_t err) {
        auto* x = static_cast<Ctx*>(c);
        ++x->n;
        x->g->calls.push_back({cr2.value(), err});
        if (err & pt::ErrorCode::kPresent) {
          auto t = x->g->table.translate(cr2.page_base());
          EXPECT_TRUE(x->g->table.protect(cr2.page_base(), {.writable = true, .user = true}).ok());
          (void)t;
        } else {
          x->g->map(cr2.page_base().value(), false, 0);
        }
        return true;
      },
      &ctx);
  auto s = mmu.store(0x30000010, 4, 42);
  ASSERT_EQ(s.status, AccessStatus::Ok);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].err, 0x6u);
  EXPECT_EQ(calls[1].err, 0x7u);
  EXPECT_EQ(mmu.load(0x30000010, 4).value, 42u);
}

TEST_F(Guest, InstructionFetchFromNoExecutePage) {
  map(0x10000000, false, 0x90);
  retry = false;
  map_on_fault = false;
  auto f = mmu.fetch(0x10000000, 1);
  EXPECT_EQ(f.status, AccessStatus::Fault);
  EXPECT_EQ(f.error_code, 0x15u) << "P | U/S | I/D";
  FrameDesc* code = frames().alloc(FrameKind::Page);
  std::memset(code->virt(), 0xc3, 4096);
  pages.push_back(code);
  ASSERT_TRUE(table.map_leaf(VirtAddr{0x20000000}, code->phys(), {.user = true}).ok());
  auto ok = mmu.fetch(0x20000000, 1);
  ASSERT_EQ(ok.status, AccessStatus::Ok);
  EXPECT_EQ(ok.value, 0xc3u);
}

// hostsim physical memory beyond 4 GiB (sparse): a frame whose physical address needs more
// than 32 bits is mapped by the core and reached through the simulated MMU.
TEST(HostsimPhysmem, FrameAbove4GiBMappedAndAccessed) {
  const std::uint64_t old_size = hostsim::ram_size();
  hostsim::boot((4ull << 30) + (64ull << 20));  // sparse: only touched pages cost memory
  std::vector<FrameDesc*> held;
  FrameDesc* high = nullptr;
  while (high == nullptr) {
    FrameDesc* d = frames().alloc(FrameKind::Page);
    ASSERT_NE(d, nullptr);
    if (d->phys().value() >= (4ull << 30) + (16ull << 20)) high = d;
    else held.push_back(d);
  }
  {
    auto t = pt::PageTable::create().release_value();
    ASSERT_TRUE(t.map_leaf(VirtAddr{0x10000000}, high->phys(), {.writable = true, .user = true}).ok());
    EXPECT_EQ(t.translate(VirtAddr{0x10000010})->pa.value(), high->phys().value() + 0x10);
    Mmu mmu;
    mmu.load_cr3(t.root());
    ASSERT_EQ(mmu.store(0x10000010, 8, 0x0123456789abcdefull).status, AccessStatus::Ok);
    std::uint64_t v;
    std::memcpy(&v, static_cast<std::uint8_t*>(high->virt()) + 0x10, 8);
    EXPECT_EQ(v, 0x0123456789abcdefull);
  }
  frames().free(high);
  for (FrameDesc* d : held) frames().free(d);
  hostsim::boot(old_size);
  frames().set_poison(true);
}

// env::phys_to_virt checks its bounds in hostsim as the kernel's direct map does: the last
// byte of the simulated RAM is reachable, the first byte past it is an assertion failure
// (before, it was a pointer into whatever host memory followed the mapping).
TEST(HostsimPhysmemDeathTest, PhysToVirtPastTheRamPanics) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::uint64_t size = hostsim::ram_size();
  auto* last = static_cast<std::uint8_t*>(env::phys_to_virt(PhysAddr{size - 1}));
  EXPECT_EQ(last, hostsim::ram_base() + size - 1);
  EXPECT_DEATH((void)env::phys_to_virt(PhysAddr{size}), "assertion failed.*ram_size");
  EXPECT_DEATH((void)env::phys_to_virt(PhysAddr{std::uint64_t{1} << 40}), "assertion failed.*ram_size");
}

// The simulated MMU reaches leaves through phys_to_virt too: a leaf pointing past the RAM
// (map_leaf accepts any 52-bit frame without holds_ref) stops at the check.
TEST(HostsimPhysmemDeathTest, MmuAccessToAFramePastTheRamPanics) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto t = pt::PageTable::create().release_value();
        (void)t.map_leaf(VirtAddr{0x10000000}, PhysAddr{hostsim::ram_size()}, {.user = true});
        Mmu mmu;
        mmu.load_cr3(t.root());
        (void)mmu.load(0x10000000, 8);
      },
      "assertion failed.*ram_size");
}
