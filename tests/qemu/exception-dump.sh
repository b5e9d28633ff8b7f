#!/usr/bin/env bash
# exception-dump: a deliberate ring-0 fault must print the dump (vector, error code, RIP,
# CR2, registers) and FAIL the boot through isa-debug-exit; never hang, never reset.
#   exception-dump.sh QEMU_RUN KERNEL
set -u
run=$1
kernel=$2
fail=0
out=$("$run" "$kernel" --timeout 60 -append crash=pf 2>&1)
rc=$?
echo "$out"
check() {  # check DESCRIPTION REGEX
  if ! grep -qE "$2" <<<"$out"; then
    echo "exception-dump: FAIL: $1 (no line matching /$2/)"
    fail=1
  fi
}
[ $rc = 1 ] || { echo "exception-dump: FAIL: qemu-run.sh returned $rc, want 1 (kernel-reported failure)"; fail=1; }
check "vector 14 named" '^\*\*\* CPU exception 14 \(#PF page fault\) at ring 0$'
# Not-present read at ring 0: error code 0 (SDM Vol. 3A 4.7); CR2 = the address read.
check "error code 0" 'error=0x0000000000000000 rip=0xffffffff8'
check "CR2 of the faulting read" 'cr2=0x00000000dead0000'
check "general registers" 'rax=0x[0-9a-f]{16} rbx=0x[0-9a-f]{16} rcx=0x[0-9a-f]{16}'
check "r15 and ss" 'r15=0x[0-9a-f]{16} ss =0x[0-9a-f]{16}'
check "backtrace" 'backtrace:( 0xffffffff8[0-9a-f]{7})+'
check "boot failed line" '^capmem: boot failed: unexpected CPU exception$'
[ $fail = 0 ] && echo "exception-dump: ok"
exit $fail
