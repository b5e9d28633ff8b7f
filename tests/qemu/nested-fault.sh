#!/usr/bin/env bash
# nested-fault: a fault inside exception handling at ring 0 must end in a clear report and
# a failed boot through isa-debug-exit (qemu-run.sh status 1): never a hang (3), never a
# reset (2). Boots capmem-kernel-nested (tests/kernel/ktest_nested.cpp) twice:
#   nested=hook  #PF at ring 0 inside a ring-3 run's #PF hook (the kernel's fault path);
#   nested=dump  #PF while the dump of a ring-0 #UD follows a bad frame pointer;
#   nested=rsp0-overflow  a ring-3 run's #PF hook recurses until the TSS.RSP0 stack runs
#                into its guard page.
#   nested-fault.sh QEMU_RUN NESTED_KERNEL
set -u
run=$1
kernel=$2
fail=0
check() {  # check VARIANT DESCRIPTION REGEX
  if ! grep -qE "$3" <<<"$out"; then
    echo "nested-fault: FAIL: $1: $2 (no line matching /$3/)"
    fail=1
  fi
}

out=$("$run" "$kernel" --timeout 60 -append nested=hook 2>&1)
rc=$?
echo "$out"
[ $rc = 1 ] || { echo "nested-fault: FAIL: hook: qemu-run.sh returned $rc, want 1 (kernel-reported failure)"; fail=1; }
check hook "the ring-0 #PF is dumped" '^\*\*\* CPU exception 14 \(#PF page fault\) at ring 0$'
check hook "its CR2" 'cr2=0x00000000dead0000'
# The outer fault: the guest's not-present read at 0x10000000, error code U/S (4).
check hook "the ring-3 fault it is nested in" '^    nested: inside the kernel.s handler of ring-3 exception 14 \(#PF page fault\) error=0x0000000000000004 rip=0x0000008000000000 cr2=0x0000000010000000$'
check hook "boot failed line" '^capmem: boot failed: CPU exception inside a ring-3 trap handler$'

out=$("$run" "$kernel" --timeout 60 -append nested=dump 2>&1)
rc=$?
echo "$out"
[ $rc = 1 ] || { echo "nested-fault: FAIL: dump: qemu-run.sh returned $rc, want 1 (kernel-reported failure)"; fail=1; }
check dump "the #UD is dumped" '^\*\*\* CPU exception 6 \(#UD invalid opcode\) at ring 0$'
check dump "the fault inside the dump" '^\*\*\* nested CPU exception 14 \(#PF page fault\) while reporting an exception: rip=0x[0-9a-f]{16} cr2=0xfffffffff0000008$'
check dump "boot failed line" '^capmem: boot failed: nested CPU exception$'

out=$("$run" "$kernel" --timeout 60 -append nested=rsp0-overflow 2>&1)
rc=$?
echo "$out"
[ $rc = 1 ] || { echo "nested-fault: FAIL: rsp0-overflow: qemu-run.sh returned $rc, want 1 (kernel-reported failure)"; fail=1; }
check rsp0-overflow "the #DF is dumped" '^\*\*\* CPU exception 8 \(#DF double fault\) at ring 0$'
check rsp0-overflow "the ring-3 fault it is nested in" '^    nested: inside the kernel.s handler of ring-3 exception 14 \(#PF page fault\) error=0x0000000000000004 rip=0x0000008000000000 cr2=0x0000000010000000$'
check rsp0-overflow "the RSP0 stack of cpu 0 named" '^capmem: kernel stack overflow on cpu 0 \(rsp0 stack\): guard page 0xffffffff8[0-9a-f]{7} below \[0xffffffff8[0-9a-f]{7}, 0xffffffff8[0-9a-f]{7}\)$'
n=$(printf '%s\n' "$out" | grep -c 'kernel stack overflow on')
[ "$n" = 1 ] || { echo "nested-fault: FAIL: rsp0-overflow: $n overflow reports, want 1"; fail=1; }
check rsp0-overflow "boot failed line" '^capmem: boot failed: kernel stack overflow$'

[ $fail = 0 ] && echo "nested-fault: ok"
exit $fail
