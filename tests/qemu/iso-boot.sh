#!/usr/bin/env bash
# boot-iso-tcg: the kernel image on a GRUB rescue ISO boots under QEMU TCG (-cdrom: SeaBIOS,
# GRUB `multiboot2`, boot.S mb2_entry) and passes the usual cases; the Multiboot2 hand-off
# carried the command line and an RSDP. Then two short boots: a 4095-byte command line
# arrives whole through GRUB (its last prefix selects its case), a 4096-byte one fails the
# boot saying so (boot.S copies at most 4096 bytes; docs/boot.md "The kernel command line").
#   iso-boot.sh MKISO QEMU_RUN KERNEL NM
set -u
mkiso=$1 run=$2 kernel=$3 nm=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/capmem-isotest.XXXXXX")
trap 'rm -rf "$dir"' EXIT
# A harmless setting on the command line (the default output): it must arrive intact.
"$mkiso" "$kernel" "$dir/capmem.iso" ktest.out=full
rc=$?
[ $rc = 77 ] && { echo "iso-boot: SKIP: GRUB tools missing"; exit 77; }
[ $rc = 0 ] || { echo "iso-boot: FAIL: mkiso.sh returned $rc"; exit 1; }
out=$("$run" "$dir/capmem.iso" --timeout 200 2>&1)
rc=$?
echo "$out"
fail=0
[ $rc = 0 ] || { echo "iso-boot: FAIL: qemu-run.sh returned $rc, want 0 (pass)"; fail=1; }
check() {  # check DESCRIPTION REGEX
  if ! grep -qE "$2" <<<"$out"; then
    echo "iso-boot: FAIL: $1 (no line matching /$2/)"
    fail=1
  fi
}
check "entered through Multiboot2" '^capmem kernel: Multiboot2 entry, long mode, higher half$'
# SeaBIOS has ACPI tables, so GRUB passes an RSDP tag; boot.S copies it into the image
# (physical [1 MiB, __kernel_phys_end)).
check "RSDP copied into the image and the command line passed" \
  '^boot: multiboot2, rsdp at 0x[1-9a-f][0-9a-f]{5}, cmdline "ktest.out=full"$'
check "a memory map above 1 MiB" '^mem: \[0x[1-9a-f][0-9a-f]{5}, 0x[0-9a-f]+\)$'
check "summary" '^[0-9]+ passed, 0 failed$'

# Lines of 4095 and 4096 bytes with no space (GRUB joins a command's words with single
# spaces): "ktest=", the prefixes hash_sha and hash_sha2 (both select hash_sha256_nist), and
# pt_map last: cut anywhere, pt_map would not run.
long_line() {  # long_line BYTES
  local n=$1 tail=pt_map line=ktest= count r i
  count=$(((n - 6 - 6) / 9))
  r=$((n - 6 - 6 - 9 * count))
  for ((i = 0; i < count; i++)); do
    if [ $i -lt $r ]; then line+=hash_sha2,; else line+=hash_sha,; fi
  done
  printf '%s' "$line$tail"
}
want=$("$nm" "$kernel" | sed -nE 's/.*ktest_case_([A-Za-z0-9_]+)$/\1/p' | LC_ALL=C sort | grep -E '^(hash_sha|pt_map)' | tr '\n' ' ')
for extra in 0 1; do
  rm -f "$dir/long.iso"
  line=$(long_line $((4095 + extra)))
  [ ${#line} = $((4095 + extra)) ] || { echo "iso-boot: FAIL: long_line made ${#line} bytes"; fail=1; }
  "$mkiso" "$kernel" "$dir/long.iso" "$line" >/dev/null || { echo "iso-boot: FAIL: mkiso.sh refused the long line"; fail=1; continue; }
  out=$("$run" "$dir/long.iso" --timeout 120 2>&1)
  rc=$?
  printf '%s\n' "$out" | cut -c1-300
  len=$(printf '%s\n' "$out" | sed -n 's/^boot: multiboot2, rsdp at 0x[0-9a-f]*, cmdline "\(.*\)"$/\1/p' | tr -d '\n' | wc -c)
  if [ $extra = 0 ]; then
    [ $rc = 0 ] || { echo "iso-boot: FAIL: the 4095-byte line: qemu-run.sh returned $rc, want 0"; fail=1; }
    [ "$len" = 4095 ] || { echo "iso-boot: FAIL: the boot line shows $len bytes of the 4095-byte line"; fail=1; }
    ran=$(printf '%s\n' "$out" | sed -n 's/^\[ RUN \] //p' | tr '\n' ' ')
    [ "$ran" = "$want" ] || { echo "iso-boot: FAIL: the 4095-byte line ran '$ran', want '$want'"; fail=1; }
  else
    [ $rc = 1 ] || { echo "iso-boot: FAIL: the 4096-byte line: qemu-run.sh returned $rc, want 1"; fail=1; }
    check "the 4096-byte line refused" '^capmem: boot failed: command line longer than 4095 bytes'
    grep -q '^\[ RUN \]' <<<"$out" && { echo "iso-boot: FAIL: the 4096-byte line ran cases"; fail=1; }
  fi
done
[ $fail = 0 ] && echo "iso-boot: ok"
exit $fail
