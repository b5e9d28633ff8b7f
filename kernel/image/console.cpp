// Console and exit. Every line goes to the QEMU/Bochs debug console (port 0xe9) and to COM1
// (a 16550 UART at 0x3f8) when one answers; the exit leaves through isa-debug-exit (QEMU),
// then the Bochs shutdown port, then halts. See docs/boot.md "Consoles and exit ports".
#include <atomic>

#include "arch.h"
#include "kernel.h"
#include "smp.h"

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

// Held output (console_hold_begin): the last kHoldMax bytes, oldest first from g_hold_start.
constexpr std::size_t kHoldMax = 16 * 1024;
std::atomic<bool> g_holding{false};
char g_hold[kHoldMax];
std::size_t g_hold_len = 0;    // bytes held, at most kHoldMax
std::size_t g_hold_start = 0;  // index of the oldest byte
std::uint64_t g_hold_dropped = 0;

void write_out(const char* s, std::size_t n) {
  if (uart_present())
    for (std::size_t i = 0; i < n; ++i) {
      uart_wait(kLsrThre);
      arch::outb(kCom1 + kThr, static_cast<std::uint8_t>(s[i]));
    }
  // One `rep outsb` per string (SDM Vol. 2B OUTS): a single exit to QEMU under KVM.
  asm volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(kDebugConPort) : "memory");
}

void hold(const char* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (g_hold_len == kHoldMax) {
      g_hold_start = (g_hold_start + 1) % kHoldMax;
      --g_hold_len;
      ++g_hold_dropped;
    }
    g_hold[(g_hold_start + g_hold_len++) % kHoldMax] = s[i];
  }
}

void write_held() {
  if (g_hold_dropped != 0) {
    static constexpr char kNote[] = "[console: the start of the held output was dropped]\n";
    write_out(kNote, sizeof kNote - 1);
  }
  const std::size_t first = kHoldMax - g_hold_start < g_hold_len ? kHoldMax - g_hold_start : g_hold_len;
  write_out(g_hold + g_hold_start, first);
  write_out(g_hold, g_hold_len - first);
}

void reset_held() {
  g_hold_len = 0;
  g_hold_start = 0;
  g_hold_dropped = 0;
}

}  // namespace

void console_write(const char* s, std::size_t n) {
  if (g_holding.load(std::memory_order_acquire)) {
    if (!smp::panic_owner_here()) {
      hold(s, n);  // callers hold the console lock (env_kernel.cpp flush_line)
      return;
    }
    // The panic report: everything held first, so nothing before the crash is lost.
    g_holding.store(false, std::memory_order_release);
    write_held();
    reset_held();
  }
  write_out(s, n);
}

void console_hold_begin() {
  console_flush();
  reset_held();
  g_holding.store(true, std::memory_order_release);
}

void console_hold_end(bool replay) {
  console_flush();
  if (!g_holding.exchange(false, std::memory_order_acq_rel)) return;  // a panic wrote it out
  if (replay) write_held();
  reset_held();
}

void exit_qemu(std::uint32_t code) {
  if (g_holding.exchange(false, std::memory_order_acq_rel)) write_held();  // nothing held is lost
  if (g_uart == Uart::Present) uart_wait(kLsrTemt);                        // the last line leaves the UART first
  arch::outl(kDebugExitPort, code);
  // Not QEMU with isa-debug-exit: Bochs ends the emulation on "Shutdown" written byte by
  // byte to port 0x8900 (its exit status says nothing; the summary line is the verdict).
  for (const char* p = "Shutdown"; *p != '\0'; ++p) arch::outb(kBochsShutdownPort, static_cast<std::uint8_t>(*p));
  // Neither: stop here.
  arch::halt_forever();
}

}  // namespace capmem::kernel
