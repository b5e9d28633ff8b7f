// The kernel command line: captured from the boot hand-off, checked once against the table
// of known keys (the platform's below plus the image's), then read by key. See kernel.h and
// docs/boot.md "The kernel command line".
#include <cstddef>
#include <cstdint>
#include <span>

#include "capmem/log.h"
#include "kernel.h"

namespace capmem::kernel {
namespace {

// The platform's own keys (smp.cpp reads both).
constexpr CmdlineKey kPlatformKeys[] = {
    {.key = "smp", .kind = CmdlineKind::Choice, .choices = "off", .help = "the boot CPU alone"},
    {.key = "acpi",
     .kind = CmdlineKind::Choice,
     .choices = "off|scan",
     .help = "no ACPI tables / find the RSDP by scanning the BIOS area"},
};

// The line as the loader gave it (printed on the boot line) and a parsed copy: every
// separator and the first '=' of each token replaced by NUL, so keys and values are
// NUL-terminated strings pointing into it.
char g_line[kCmdlineMax];
char g_parsed[kCmdlineMax];
bool g_too_long = false;
struct Token {
  const char* key;
  const char* value;  // never empty: cmdline_check refuses an empty value
  const CmdlineKey* spec;
};
constexpr std::size_t kMaxTokens = kCmdlineMax / 2;  // "k=v k=v ...": at most one per 4 bytes
Token g_tokens[kMaxTokens];
std::size_t g_ntokens = 0;
bool g_checked = false;

bool equal(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

// Whether `value` is one of the '|'-separated `choices`.
bool is_choice(const char* value, const char* choices) {
  for (const char* c = choices; *c != '\0';) {
    const char* v = value;
    while (*c != '\0' && *c != '|' && *c == *v) ++c, ++v;
    if (*v == '\0' && (*c == '\0' || *c == '|')) return true;
    while (*c != '\0' && *c != '|') ++c;
    if (*c == '|') ++c;
  }
  return false;
}

const CmdlineKey* find_in(std::span<const CmdlineKey> keys, const char* key) {
  for (const CmdlineKey& k : keys)
    if (equal(k.key, key)) return &k;
  return nullptr;
}

const CmdlineKey* find_key(const char* key) {
  const CmdlineKey* k = find_in(kPlatformKeys, key);
  return k != nullptr ? k : find_in(image_cmdline_keys(), key);
}

void print_key(const CmdlineKey& k) {
  log::str("  ");
  log::str(k.key);
  log::str("=");
  switch (k.kind) {
    case CmdlineKind::Choice: log::str(k.choices); break;
    case CmdlineKind::U64: log::str("N (decimal)"); break;
    case CmdlineKind::Text: log::str(k.choices != nullptr ? k.choices : "TEXT"); break;
  }
  if (k.help != nullptr) {
    log::str("    ");
    log::str(k.help);
  }
  log::nl();
}

void list_keys() {
  log::str("capmem: this image takes (docs/boot.md \"The kernel command line\"):\n");
  for (const CmdlineKey& k : kPlatformKeys) print_key(k);
  for (const CmdlineKey& k : image_cmdline_keys()) print_key(k);
}

// Prints `capmem: boot failed: command line: <what> "<quoted>"<rest>[ in "<key>=<value>"]`
// and the keys.
bool refuse(const char* what, const char* quoted, const char* rest, const char* key = nullptr,
            const char* value = nullptr) {
  if (what[0] != '"') log::str("capmem: boot failed: command line: ");  // else: continues a line
  log::str(what);
  log::str(" \"");
  log::str(quoted);
  log::str("\"");
  log::str(rest);
  if (key != nullptr) {
    log::str(" in \"");
    log::str(key);
    log::str("=");
    log::str(value);
    log::str("\"");
  }
  log::nl();
  list_keys();
  return false;
}

// Decimal, no sign, fits 64 bits.
bool parse_u64(const char* s, std::uint64_t& out) {
  if (*s == '\0') return false;
  std::uint64_t v = 0;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
    const auto d = static_cast<std::uint64_t>(*s - '0');
    if (v > (~std::uint64_t{0} - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

const Token* find_token(const char* key) {
  CAPMEM_ASSERT(g_checked);
  // Every key read must be in the table: a reader of an undeclared key is a bug here, not a
  // user error (the check could not have refused a misspelling of it).
  CAPMEM_ASSERT(find_key(key) != nullptr);
  for (std::size_t i = 0; i < g_ntokens; ++i)
    if (equal(g_tokens[i].key, key)) return &g_tokens[i];
  return nullptr;
}

}  // namespace

void cmdline_capture(const char* src) {
  std::size_t i = 0;
  for (; i < kCmdlineMax && src[i] != '\0'; ++i) g_line[i] = src[i];
  if (i == kCmdlineMax) {
    g_line[kCmdlineMax - 1] = '\0';  // printable, but refused by cmdline_check
    g_too_long = true;
    return;
  }
  g_line[i] = '\0';
}

const char* cmdline() { return g_line; }

bool cmdline_check() {
  g_checked = true;
  g_ntokens = 0;
  if (g_too_long) {
    log::str("capmem: boot failed: command line longer than ");
    log::dec(kCmdlineMax - 1);
    log::str(" bytes (nothing of it was used)\n");
    return false;
  }
  for (std::size_t i = 0; i < kCmdlineMax; ++i) {
    g_parsed[i] = g_line[i];
    if (g_line[i] == '\0') break;
  }
  // Only printable ASCII and spaces: a control byte (a newline from a loader's config, a
  // tab) would otherwise split or hide a token.
  for (std::size_t i = 0; g_line[i] != '\0'; ++i) {
    const auto c = static_cast<unsigned char>(g_line[i]);
    if (c != ' ' && (c < 0x21 || c > 0x7e)) {
      log::str("capmem: boot failed: command line: byte 0x");
      log::hex(c);
      log::str(" at offset ");
      log::dec(i);
      log::str(" is not printable ASCII or a space\n");
      return false;
    }
  }
  char* p = g_parsed;
  while (true) {
    while (*p == ' ') *p++ = '\0';
    if (*p == '\0') break;
    char* const start = p;
    char* eq = nullptr;
    while (*p != '\0' && *p != ' ') {
      if (*p == '=' && eq == nullptr) eq = p;
      ++p;
    }
    const bool last = *p == '\0';
    *p = '\0';
    // `start` is now the whole token; print it whole in a refusal before cutting it at '='.
    if (eq == nullptr) return refuse("unknown word", start, " (every setting is KEY=VALUE)");
    *eq = '\0';
    const char* key = start;
    const char* value = eq + 1;
    const CmdlineKey* spec = find_key(key);
    if (spec == nullptr) return refuse("unknown key", key, "", key, value);
    for (std::size_t i = 0; i < g_ntokens; ++i)
      if (g_tokens[i].spec == spec) return refuse("key given twice:", key, "", key, value);
    bool ok = true;
    switch (spec->kind) {
      case CmdlineKind::Choice: ok = is_choice(value, spec->choices); break;
      case CmdlineKind::U64: {
        std::uint64_t v = 0;
        ok = parse_u64(value, v);
        break;
      }
      case CmdlineKind::Text: ok = *value != '\0'; break;
    }
    if (!ok) {
      // `unknown value "no" of key "smp" in "smp=no"`
      log::str("capmem: boot failed: command line: ");
      log::str(spec->kind == CmdlineKind::Choice ? "unknown value \""
               : spec->kind == CmdlineKind::U64  ? "not a decimal number below 2^64: \""
                                                 : "empty value \"");
      log::str(value);
      return refuse("\" of key", key, "", key, value);
    }
    g_tokens[g_ntokens++] = Token{.key = key, .value = value, .spec = spec};
    if (last) break;
    ++p;
  }
  return true;
}

const char* cmdline_value(const char* key) {
  const Token* t = find_token(key);
  return t != nullptr ? t->value : nullptr;
}

bool cmdline_is(const char* key, const char* value) {
  const Token* t = find_token(key);
  // The reader asks for a value its key can take (a typo there would never match).
  const CmdlineKey* spec = find_key(key);
  CAPMEM_ASSERT(spec->kind == CmdlineKind::Choice && is_choice(value, spec->choices));
  return t != nullptr && equal(t->value, value);
}

std::uint64_t cmdline_u64(const char* key, std::uint64_t dflt) {
  const Token* t = find_token(key);
  if (t == nullptr) return dflt;
  CAPMEM_ASSERT(t->spec->kind == CmdlineKind::U64);
  std::uint64_t v = 0;
  const bool ok = parse_u64(t->value, v);
  CAPMEM_ASSERT(ok);  // cmdline_check accepted it
  return v;
}

}  // namespace capmem::kernel
