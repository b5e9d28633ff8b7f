#include "capmem/log.h"

namespace capmem::log {

void str(const char* s) {
  std::size_t n = 0;
  while (s[n] != '\0') ++n;
  env::log_write(s, n);
}

void dec(std::uint64_t v) {
  char buf[24];
  std::size_t i = sizeof buf;
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  env::log_write(buf + i, sizeof buf - i);
}

void hex(std::uint64_t v, int min_digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char buf[16];
  int i = 16;
  do {
    buf[--i] = kDigits[v & 15];
    v >>= 4;
  } while ((v != 0 || 16 - i < min_digits) && i > 0);
  env::log_write(buf + i, static_cast<std::size_t>(16 - i));
}

std::size_t fmt_hex32(char out[65], const std::uint8_t* b32) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) {
    out[2 * i] = kDigits[b32[i] >> 4];
    out[2 * i + 1] = kDigits[b32[i] & 15];
  }
  out[64] = '\0';
  return 64;
}

void hash_hex(const std::uint8_t* b32) {
  char buf[65];
  env::log_write(buf, fmt_hex32(buf, b32));
}

}  // namespace capmem::log
