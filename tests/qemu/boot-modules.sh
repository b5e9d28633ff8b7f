#!/usr/bin/env bash
# boot-modules: the boot modules both loaders pass (docs/boot.md "Boot modules").
#   PVH (QEMU -initrd): without it no module; the demo's page pack becomes the page store, and the kernel's
#   boot_modules_as_the_loader_passed case checks every page arrived and is reserved; a
#   pack with a bad flags word and a pack cut one byte short fail the boot naming the module,
#   the status and its offset; a module that is no pack is reported and the boot goes on.
#   Multiboot2 (GRUB module2, kernel/image/mkiso.sh --module): a file that is no pack, the
#   demo's pack, a second (empty) pack: the first pack is the page store, the second is
#   ignored, saying so; a module of size 0 fails the boot; a malformed second pack too; and
#   nine modules (one more than the kernel keeps).
#   And a real overlap: with -m 4M QEMU puts the initrd just below the top of RAM, which a
#   file of the right size makes the middle of the kernel's .bss (boot.S zeroes .bss, so the
#   kernel runs): the boot fails naming the module and the kernel image.
# Usage: boot-modules.sh QEMU_RUN KERNEL MKISO PACK NM
set -u
run=$1 kernel=$2 mkiso=$3 pack=$4 nm=$5
dir=$(mktemp -d "${TMPDIR:-/tmp}/capmem-modules.XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail=0
pages=$(od -An -tu4 -j8 -N4 "$pack" | tr -d ' ')
out=
boot() {  # boot WANT_RC QEMU_RUN_ARGS...: runs, keeps the output in $out
  local want=$1 rc
  shift
  out=$("$run" "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | grep -E '^(boot|capmem|qemu-run|\[ (OK|FAIL) \])' | cut -c1-200
  [ $rc = "$want" ] || { echo "boot-modules: FAIL: qemu-run.sh $* returned $rc, want $want"; fail=1; }
}
check() {  # check DESCRIPTION REGEX
  grep -qE "$2" <<<"$out" || { echo "boot-modules: FAIL: $1 (no line matching /$2/)"; fail=1; }
}
hex='0x[0-9a-f]+'

echo "== PVH: no -initrd: no module list"
boot 0 "$kernel" --timeout 60 -append ktest=boot_modules
grep -q '^boot: module' <<<"$out" && { echo "boot-modules: FAIL: a module without -initrd"; fail=1; }
check "the case ran" '^\[ OK \] boot_modules_as_the_loader_passed$'

echo "== PVH: -initrd the demo's pack ($pages pages)"
boot 0 "$kernel" --timeout 60 -initrd "$pack" -append "ktest=boot_modules ktest.pack=$pages"
check "the pack is the page store" "^boot: module 0 \[$hex, $hex\), [0-9]+ bytes: page pack of $pages pages: the page store$"
check "the case ran" '^\[ OK \] boot_modules_as_the_loader_passed$'

cp "$pack" "$dir/flags.pack"
printf '\001' | dd of="$dir/flags.pack" bs=1 seek=12 conv=notrunc status=none
echo "== PVH: a pack whose flags are 1"
boot 1 "$kernel" --timeout 60 -initrd "$dir/flags.pack" -append ktest=boot_modules
check "the malformed pack named" "^capmem: boot failed: boot module 0 \[$hex, $hex\): malformed page pack: page pack flags are not 0 at offset 12 \(rule 8.7\)$"
grep -q '^\[ RUN \]' <<<"$out" && { echo "boot-modules: FAIL: cases ran after a malformed pack"; fail=1; }

size=$(stat -c %s "$pack")
head -c $((size - 1)) "$pack" >"$dir/short.pack"
echo "== PVH: a pack one byte short"
boot 1 "$kernel" --timeout 60 -initrd "$dir/short.pack" -append ktest=boot_modules
check "the short pack named" "^capmem: boot failed: boot module 0 \[$hex, $hex\): malformed page pack: page pack length is not pages_offset \+ 4096 x count at offset $((size - 1)) \(rule 8.7\)$"

head -c 10000 /dev/zero | tr '\0' 'x' >"$dir/notes.txt"
echo "== PVH: a module that is no pack"
boot 0 "$kernel" --timeout 60 -initrd "$dir/notes.txt" -append ktest=boot_rsdp
check "reported, left reserved" "^boot: module 0 \[$hex, $hex\), 10000 bytes: not a page pack \(left reserved\)$"

# QEMU 7.2 (hw/i386/x86.c x86_load_linux) places the initrd at (RAM below 4 GiB - ACPI
# data - 1 - size) & ~4095: with -m 4M, a size that puts it in the middle of .bss.
read -r bss_start bss_end < <("$nm" "$kernel" | awk '$3 == "__bss_start" { s = $1 } $3 == "__bss_end" { e = $1 } END { print s, e }')
mid=$(((0x${bss_start:8} + 0x${bss_end:8}) / 2 - 0x80000000))
head -c $((0x400000 - 0x20000 - mid)) /dev/zero >"$dir/over.bin"
echo "== PVH: -m 4M, an initrd that QEMU places over the kernel's .bss (near 0x$(printf %x $mid))"
boot 1 "$kernel" --timeout 60 -m 4M -initrd "$dir/over.bin" -append ktest=boot_rsdp
check "the overlap named" "^capmem: boot failed: boot module 0 \[$hex, $hex\): overlaps the kernel image \[0x100000, $hex\)$"

# An empty pack (0 pages, 4096 bytes): the header, pages_offset 4096, zero pad.
{ printf 'CAPMPAK1\000\000\000\000\000\000\000\000\000\020\000\000\000\000\000\000'; head -c $((4096 - 24)) /dev/zero; } >"$dir/empty.pack"
: >"$dir/zero.bin"
"$mkiso" --module "$dir/notes.txt" --module "$pack" --module "$dir/empty.pack" "$kernel" "$dir/three.iso" \
  ktest=boot_modules ktest.pack="$pages" >/dev/null
rc=$?
if [ $rc = 77 ]; then
  echo "boot-modules: the GRUB tools are missing: the Multiboot2 boots are skipped"
  [ $fail = 0 ] && echo "boot-modules: ok (PVH only)"
  exit $fail
fi
[ $rc = 0 ] || { echo "boot-modules: FAIL: mkiso.sh returned $rc"; exit 1; }
echo "== Multiboot2: module2 notes.txt, the demo's pack, an empty pack"
boot 0 "$dir/three.iso" --timeout 120
check "Multiboot2" '^capmem kernel: Multiboot2 entry'
check "module 0: no pack" "^boot: module 0 \[$hex, $hex\) \"notes.txt\", 10000 bytes: not a page pack \(left reserved\)$"
check "module 1: the page store" "^boot: module 1 \[$hex, $hex\) \"$(basename "$pack")\", [0-9]+ bytes: page pack of $pages pages: the page store$"
check "module 2: ignored" "^boot: module 2 \[$hex, $hex\) \"empty.pack\", 4096 bytes: page pack of 0 pages: ignored, module 1 is the page store \(the first pack wins\)$"
check "the case ran" '^\[ OK \] boot_modules_as_the_loader_passed$'

"$mkiso" --module "$dir/zero.bin" "$kernel" "$dir/zero.iso" ktest=boot_rsdp >/dev/null || fail=1
echo "== Multiboot2: module2 of an empty file"
boot 1 "$dir/zero.iso" --timeout 120
check "size 0 named" "^capmem: boot failed: boot module 0 \[$hex, $hex\) \"zero.bin\": size 0$"

"$mkiso" --module "$pack" --module "$dir/flags.pack" "$kernel" "$dir/two.iso" ktest=boot_rsdp >/dev/null || fail=1
echo "== Multiboot2: the demo's pack, then a malformed pack"
boot 1 "$dir/two.iso" --timeout 120
check "the second, malformed pack named" "^capmem: boot failed: boot module 1 \[$hex, $hex\) \"flags.pack\": malformed page pack: page pack flags are not 0 at offset 12 \(rule 8.7\)$"

nine=()
for _ in 1 2 3 4 5 6 7 8 9; do nine+=(--module "$dir/notes.txt"); done
"$mkiso" "${nine[@]}" "$kernel" "$dir/nine.iso" ktest=boot_rsdp >/dev/null || fail=1
echo "== Multiboot2: nine modules (the kernel keeps 8)"
boot 1 "$dir/nine.iso" --timeout 120
check "too many named" "^capmem: boot failed: the loader passed 9 boot modules; the kernel takes at most 8$"

[ $fail = 0 ] && echo "boot-modules: ok"
exit $fail
