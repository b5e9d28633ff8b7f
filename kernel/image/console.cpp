// Console and exit. Every line goes to the QEMU/Bochs debug console (port 0xe9) and to COM1
// (a 16550 UART at 0x3f8) when one answers; the exit leaves through isa-debug-exit (QEMU),
// then the Bochs shutdown port, then halts. See docs/boot.md "Consoles and exit ports".
#include "arch.h"
#include "kernel.h"

namespace capmem::kernel {

namespace {
constexpr std::uint16_t kDebugConPort = 0xe9;         // QEMU `-debugcon`, Bochs `port_e9_hack`
constexpr std::uint16_t kDebugExitPort = 0xf4;        // -device isa-debug-exit,iobase=0xf4,iosize=0x04
constexpr std::uint16_t kBochsShutdownPort = 0x8900;  // Bochs: the bytes "Shutdown" end the emulation

// 16550 registers at COM1 (PC16550D data sheet, Table 2 "Register Summary").
constexpr std::uint16_t kCom1 = 0x3f8;
constexpr std::uint16_t kThr = 0, kDll = 0, kIer = 1, kDlm = 1, kFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kScr = 7;
constexpr std::uint8_t kLcrDlab = 0x80, kLcr8n1 = 0x03;
constexpr std::uint8_t kLsrThre = 0x20;  // transmit holding register empty
constexpr std::uint8_t kLsrTemt = 0x40;  // transmitter empty (shift register too)
constexpr int kUartSpin = 100000;        // bounded polling: a wedged UART never hangs the kernel

enum class Uart : std::uint8_t { Unprobed, Absent, Present };
Uart g_uart = Uart::Unprobed;

// A UART answers through its scratch register; no device reads back 0xff (QEMU `-serial
// none`), so the console costs nothing where there is no COM1.
bool uart_present() {
  if (g_uart != Uart::Unprobed) return g_uart == Uart::Present;
  arch::outb(kCom1 + kScr, 0x5a);
  const bool answers = arch::inb(kCom1 + kScr) == 0x5a;
  arch::outb(kCom1 + kScr, 0xa5);
  g_uart = answers && arch::inb(kCom1 + kScr) == 0xa5 ? Uart::Present : Uart::Absent;
  if (g_uart == Uart::Present) {
    arch::outb(kCom1 + kIer, 0x00);  // no interrupts: polled output only
    arch::outb(kCom1 + kLcr, kLcrDlab);
    arch::outb(kCom1 + kDll, 0x01);  // divisor 1: 115200 baud
    arch::outb(kCom1 + kDlm, 0x00);
    arch::outb(kCom1 + kLcr, kLcr8n1);
    arch::outb(kCom1 + kFcr, 0x07);  // FIFOs on and cleared
    arch::outb(kCom1 + kMcr, 0x03);  // DTR, RTS
  }
  return g_uart == Uart::Present;
}

void uart_wait(std::uint8_t bit) {
  for (int i = 0; i < kUartSpin && (arch::inb(kCom1 + kLsr) & bit) == 0; ++i) {
  }
}

}  // namespace

void console_write(const char* s, std::size_t n) {
  if (uart_present())
    for (std::size_t i = 0; i < n; ++i) {
      uart_wait(kLsrThre);
      arch::outb(kCom1 + kThr, static_cast<std::uint8_t>(s[i]));
    }
  // One `rep outsb` per string (SDM Vol. 2B OUTS): a single exit to QEMU under KVM.
  asm volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(kDebugConPort) : "memory");
}

void exit_qemu(std::uint32_t code) {
  if (g_uart == Uart::Present) uart_wait(kLsrTemt);  // the last line leaves the UART first
  arch::outl(kDebugExitPort, code);
  // Not QEMU with isa-debug-exit: Bochs ends the emulation on "Shutdown" written byte by
  // byte to port 0x8900 (its exit status says nothing; the summary line is the verdict).
  for (const char* p = "Shutdown"; *p != '\0'; ++p) arch::outb(kBochsShutdownPort, static_cast<std::uint8_t>(*p));
  // Neither: stop here.
  arch::halt_forever();
}

}  // namespace capmem::kernel
