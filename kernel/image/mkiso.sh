#!/usr/bin/env bash
# Build a BIOS GRUB rescue ISO that boots the capmem kernel image through Multiboot2.
#
#   mkiso.sh [--module FILE]... KERNEL OUT.iso [KERNEL COMMAND LINE...]
#
# Each --module FILE becomes a Multiboot2 boot module (grub.cfg `module2`, in the order
# given; the kernel takes the first page pack as its page store: docs/boot.md "Boot
# modules"), its string the file's base name (the same characters as the command line).
# The command line (e.g. `ktest=boot,hash`) goes into the ISO's grub.cfg: one ISO per lane.
# Its words are joined with single spaces and may hold only the characters
#   A-Z a-z 0-9 . , _ = + - : / and the space between words
# (every key and value the kernel takes: docs/boot.md "The kernel command line"); anything
# else (quotes, $, \, ;, #, braces, a newline or tab, any other byte) is refused, since
# grub.cfg would read it as its own syntax. The kernel takes at most 4095 bytes and fails
# the boot, saying so, on a longer line (tests/qemu/iso-boot.sh boots both).
# Needs grub-mkrescue with the i386-pc platform (Debian grub-common + grub-pc-bin), xorriso
# and mtools. Exit status 77 when they are missing (meson counts it as a skip), 1 on failure.
# See docs/boot.md "The GRUB ISO".
set -euo pipefail

modules=()
while [ $# -gt 0 ] && [ "$1" = --module ]; do
  [ $# -ge 2 ] || { echo "mkiso: --module needs a FILE" >&2; exit 1; }
  modules+=("$2")
  shift 2
done
[ $# -ge 2 ] || { echo "usage: $0 [--module FILE]... KERNEL OUT.iso [cmdline...]" >&2; exit 1; }
kernel=$1
out=$2
shift 2
cmdline="$*"

# Checked before anything else, so a refusal never depends on the tools being installed.
# LC_ALL=C: the ranges are bytes, not a locale's collation.
if ! LC_ALL=C grep -qxE '[A-Za-z0-9.,_=+:/ -]*' <<<"$cmdline" || [ "$(printf '%s\n' "$cmdline" | wc -l)" != 1 ]; then
  bad=$(printf '%s' "$cmdline" | LC_ALL=C tr -d 'A-Za-z0-9.,_=+:/ -' | od -An -c | tr -s ' ' | sed 's/^ //')
  echo "mkiso: the kernel command line may hold only A-Z a-z 0-9 . , _ = + - : / and spaces; refused: $bad" >&2
  exit 1
fi
[ -f "$kernel" ] || { echo "mkiso: no kernel image at $kernel (build first)" >&2; exit 1; }
for m in "${modules[@]}"; do
  [ -f "$m" ] || { echo "mkiso: no module file at $m" >&2; exit 1; }
  if ! LC_ALL=C grep -qxE '[A-Za-z0-9.,_=+:-]+' <<<"$(basename -- "$m")"; then
    echo "mkiso: a module's file name may hold only A-Z a-z 0-9 . , _ = + - : (it becomes the module's string); refused: $(basename -- "$m")" >&2
    exit 1
  fi
done
missing=()
command -v grub-mkrescue >/dev/null 2>&1 || missing+=(grub-common)
[ -d /usr/lib/grub/i386-pc ] || missing+=(grub-pc-bin)
command -v xorriso >/dev/null 2>&1 || missing+=(xorriso)
command -v mformat >/dev/null 2>&1 || missing+=(mtools)
if [ ${#missing[@]} -gt 0 ]; then
  echo "mkiso: missing Debian packages: ${missing[*]} (./dev installs them)" >&2
  exit 77
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/capmem-iso.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/boot/grub"
cp "$kernel" "$root/boot/capmem-kernel"
module_lines=
for i in "${!modules[@]}"; do
  cp "${modules[i]}" "$root/boot/module$i"
  module_lines+="  module2 /boot/module$i $(basename -- "${modules[i]}")"$'\n'
done
# timeout=0: no menu wait. GRUB's own output goes to the BIOS console (VGA) only, so the
# kernel's 0xe9/COM1 console carries the kernel's lines alone.
cat > "$root/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
menuentry "capmem" {
  multiboot2 /boot/capmem-kernel $cmdline
${module_lines}  boot
}
CFG
# Only the BIOS platform: with grub-efi installed too, grub-mkrescue would add EFI images.
if ! grub-mkrescue -d /usr/lib/grub/i386-pc -o "$out" "$root" >"$root.log" 2>&1; then
  cat "$root.log" >&2
  rm -f "$root.log"
  echo "mkiso: grub-mkrescue failed" >&2
  exit 1
fi
rm -f "$root.log"
echo "mkiso: $out (grub.cfg: multiboot2 /boot/capmem-kernel $cmdline${modules[*]:+; ${#modules[@]} module2})"
