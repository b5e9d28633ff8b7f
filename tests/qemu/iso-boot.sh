#!/usr/bin/env bash
# boot-iso-tcg: the kernel image on a GRUB rescue ISO boots under QEMU TCG (-cdrom: SeaBIOS,
# GRUB `multiboot2`, boot.S mb2_entry) and passes the usual cases; the Multiboot2 hand-off
# carried the command line and an RSDP.
#   iso-boot.sh MKISO QEMU_RUN KERNEL
set -u
mkiso=$1 run=$2 kernel=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/capmem-isotest.XXXXXX")
trap 'rm -rf "$dir"' EXIT
# A harmless token on the command line: it must arrive intact through GRUB.
"$mkiso" "$kernel" "$dir/capmem.iso" capmem.iso-test=1
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
  '^boot: multiboot2, rsdp at 0x[1-9a-f][0-9a-f]{5}, cmdline "capmem.iso-test=1"$'
check "a memory map above 1 MiB" '^mem: \[0x[1-9a-f][0-9a-f]{5}, 0x[0-9a-f]+\)$'
check "summary" '^[0-9]+ passed, 0 failed$'
[ $fail = 0 ] && echo "iso-boot: ok"
exit $fail
