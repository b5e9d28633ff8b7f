# Shared by the qemu cases that boot the kernel to fail on purpose (smp-panic.sh,
# stack-overflow.sh): source it after setting
#   name       the case's name, prefixed to every failure line;
#   run kernel qemu-run.sh and the kernel image;
#   boot_args  (array) qemu-run.sh arguments every boot gets (e.g. --smp 4).
# It sets fail=0; each check that does not hold prints "NAME: FAIL: ..." and sets fail=1.
# shellcheck shell=bash disable=SC2154,SC2034  # run, kernel, boot_args, name in; fail out
fail=0
boot() {  # boot APPEND [qemu-run args]: sets $out and $rc
  local app=$1
  shift
  out=$("$run" "$kernel" "${boot_args[@]}" "$@" --timeout 120 -append "$app" 2>&1); rc=$?
  echo "=== -append $app $*"
  echo "$out"
}
check() {  # check DESCRIPTION REGEX: some line of the last boot matches
  if ! grep -qE "$2" <<<"$out"; then
    echo "$name: FAIL: $1 (no line matching /$2/)"
    fail=1
  fi
}
count() {  # count DESCRIPTION REGEX N: exactly N lines of the last boot match
  local c
  c=$(printf '%s\n' "$out" | grep -cE "$2")
  [ "$c" = "$3" ] || { echo "$name: FAIL: $1: $c lines matching /$2/, want $3"; fail=1; }
}
want_fail() {  # the last boot ended in a kernel-reported failure (77: skip the whole case)
  [ "$rc" = 77 ] && { echo "SKIP: $(echo "$out" | tail -1)"; exit 77; }
  [ "$rc" = 1 ] || { echo "$name: FAIL: qemu-run.sh returned $rc, want 1 (kernel-reported failure)"; fail=1; }
}
