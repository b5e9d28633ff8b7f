// Console and exit: the QEMU debug console (port 0xe9) and isa-debug-exit (port 0xf4).
#include "arch.h"
#include "kernel.h"

namespace capmem::kernel {

namespace {
constexpr std::uint16_t kDebugConPort = 0xe9;   // QEMU `-debugcon stdio` (isa-debugcon)
constexpr std::uint16_t kDebugExitPort = 0xf4;  // -device isa-debug-exit,iobase=0xf4,iosize=0x04
}  // namespace

void console_write(const char* s, std::size_t n) {
  // One `rep outsb` per string (SDM Vol. 2B OUTS): a single exit to QEMU under KVM.
  asm volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(kDebugConPort) : "memory");
}

void exit_qemu(std::uint32_t code) {
  arch::outl(kDebugExitPort, code);
  // Not under QEMU (or no isa-debug-exit device): stop here.
  arch::halt_forever();
}

}  // namespace capmem::kernel
