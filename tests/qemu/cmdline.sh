#!/usr/bin/env bash
# kernel-cmdline: the kernel reads its command line exactly (docs/boot.md "The kernel command
# line"). PVH boots (QEMU -append) of the test image and one of the bench image:
#   - a line of 4095 bytes arrives whole: the filter's last prefix, at its end, selects its case;
#   - a line of 4096 bytes fails the boot saying so (never cut and run);
#   - keys are whole tokens, and an unknown word, key or value fails the boot naming it;
#   - a key given twice, an empty value and a malformed number fail likewise.
#   cmdline.sh QEMU_RUN KERNEL BENCH_KERNEL NM
set -u
run=$1 kernel=$2 bench=$3 nm=$4
fail=0

boot() {  # boot IMAGE APPEND: sets $out and $rc
  out=$("$run" "$1" --timeout 90 -append "$2" 2>&1)
  rc=$?
  printf '=== -append (%d bytes) %.200s\n%s\n' "${#2}" "$2" "$out" | cut -c1-400
}
has() {  # has DESCRIPTION REGEX
  grep -qE "$2" <<<"$out" || { echo "cmdline: FAIL: $1 (no line matching /$2/)"; fail=1; }
}
refused() {  # refused IMAGE APPEND REGEX: the boot fails before any case, with that message
  boot "$1" "$2"
  [ $rc = 1 ] || { echo "cmdline: FAIL: '$2': qemu-run.sh returned $rc, want 1 (kernel-reported failure)"; fail=1; }
  has "'$2' refused" "^capmem: boot failed: command line: $3"
  has "'$2': the keys listed" '^capmem: this image takes'
  if grep -qE '^\[ RUN \]|^smp: [0-9]+ CPUs online' <<<"$out"; then
    echo "cmdline: FAIL: '$2': the boot went on after the refusal"
    fail=1
  fi
}

# A 4095-byte line: "ktest=" + "hash_sha," repeated, padded with spaces at the front, and the
# prefix pt_map last. Cut anywhere, pt_map would not run (or a cut prefix would select
# something else, as the old 127-byte buffer did).
tail=pt_map
line="ktest="
while [ $((${#line} + 9 + ${#tail})) -le 4095 ]; do line+="hash_sha,"; done
line+=$tail
while [ ${#line} -lt 4095 ]; do line=" $line"; done
boot "$kernel" "$line"
[ $rc = 0 ] || { echo "cmdline: FAIL: the 4095-byte line: qemu-run.sh returned $rc, want 0"; fail=1; }
ran=$(printf '%s\n' "$out" | sed -n 's/^\[ RUN \] //p' | tr '\n' ' ')
want=$("$nm" "$kernel" | sed -nE 's/.*ktest_case_([A-Za-z0-9_]+)$/\1/p' | LC_ALL=C sort | grep -E '^(hash_sha|pt_map)' | tr '\n' ' ')
[[ $want == *pt_map* ]] || { echo "cmdline: FAIL: the image has no pt_map* case"; fail=1; }
[ "$ran" = "$want" ] || { echo "cmdline: FAIL: 4095-byte line ran '$ran', want '$want'"; fail=1; }

# One byte more: refused, nothing of it used.
boot "$kernel" " $line"
[ $rc = 1 ] || { echo "cmdline: FAIL: the 4096-byte line: qemu-run.sh returned $rc, want 1"; fail=1; }
has "4096-byte line refused" '^capmem: boot failed: command line longer than 4095 bytes'
grep -q '^\[ RUN \]' <<<"$out" && { echo "cmdline: FAIL: the 4096-byte line ran cases"; fail=1; }

# Whole tokens; unknown keys, words and values are named. ktest=boot_cpu_state keeps a boot
# that wrongly accepts the line short.
q=ktest=boot_cpu_state
refused "$kernel" "nosmp=offline $q" 'unknown key "nosmp" in "nosmp=offline"$'
refused "$kernel" "$q oncrash=panic" 'unknown key "oncrash" in "oncrash=panic"$'
refused "$kernel" "sm=off $q" 'unknown key "sm" in "sm=off"$'
refused "$kernel" "$q nosmp" 'unknown word "nosmp"'
refused "$kernel" "smp=no $q" 'unknown value "no" of key "smp" in "smp=no"$'
refused "$kernel" "acpi=of $q" 'unknown value "of" of key "acpi" in "acpi=of"$'
refused "$kernel" "crash=pff $q" 'unknown value "pff" of key "crash" in "crash=pff"$'
refused "$kernel" "ktest=boot ktest=hash" 'key given twice: "ktest" in "ktest=hash"$'
refused "$kernel" "ktest=" 'empty value "" of key "ktest" in "ktest="$'
# Each image takes its own keys besides the platform's: the bench image's numbers are checked
# (a typo must not run the default size), and the test image does not take them.
refused "$bench" "kbench.pages=512x" 'not a decimal number below 2\^64: "512x" of key "kbench.pages"'
refused "$bench" "kbench.reps=99999999999999999999" 'not a decimal number below 2\^64: "99999999999999999999"'
refused "$kernel" "kbench.pages=512 $q" 'unknown key "kbench.pages"'
# The known values still work, whole: smp=off runs on the boot CPU alone.
boot "$kernel" "smp=off acpi=scan $q"
[ $rc = 0 ] || { echo "cmdline: FAIL: 'smp=off acpi=scan $q' returned $rc, want 0"; fail=1; }
has "smp=off honoured" '^smp: smp=off on the command line: running on the boot CPU alone$'

[ $fail = 0 ] && echo "cmdline: ok"
exit $fail
