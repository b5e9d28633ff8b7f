#!/usr/bin/env bash
# stack-overflow: unbounded recursion at ring 0 runs into the guard page below the stack
# (cpu.cpp install_stack_guards) instead of overwriting the stack below it; the #PF there
# becomes a #DF on IST1, which names the CPU and the stack, stops every other CPU and fails
# the boot once (docs/boot.md "Stack guard pages"). Without the guard pages the boot CPU's
# overflow overwrites the boot page tables and an AP's overflow runs through the other
# CPUs' stacks: a reset, a hang or a different report, never these lines.
# Usage: stack-overflow.sh QEMU_RUN KERNEL [--kvm]
set -uo pipefail
run=$1; kernel=$2; shift 2
name=stack-overflow
boot_args=()
# shellcheck source=tests/qemu/crash-boot-lib.sh
source "$(dirname "$0")/crash-boot-lib.sh"

# The boot CPU, alone, on boot.S's stack.
boot crash=stack-overflow "$@"; want_fail
count "one #DF dump" '^\*\*\* CPU exception 8 \(#DF double fault\) at ring 0$' 1
check "on cpu 0" '^    on cpu 0$'
count "one overflow report, naming the boot stack of cpu 0" \
  '^capmem: kernel stack overflow on cpu 0 \(boot stack\): guard page 0xffffffff8[0-9a-f]{7} below \[0xffffffff8[0-9a-f]{7}, 0xffffffff8[0-9a-f]{7}\)$' 1
count "no other overflow line" 'kernel stack overflow on' 1
count "one boot-failed line" '^capmem: boot failed' 1
check "boot-failed line names the overflow" '^capmem: boot failed: kernel stack overflow$'

# The last of 4 CPUs, on its own kernel stack, while the boot CPU waits for it.
boot crash=ap-stack-overflow "$@" --smp 4; want_fail
check "4 CPUs online" '^smp: 4 CPUs online$'
count "one #DF dump" '^\*\*\* CPU exception 8 \(#DF double fault\) at ring 0$' 1
check "on cpu 3" '^    on cpu 3$'
count "one overflow report, naming the kernel stack of cpu 3" \
  '^capmem: kernel stack overflow on cpu 3 \(kernel stack\): guard page 0xffffffff8[0-9a-f]{7} below \[0xffffffff8[0-9a-f]{7}, 0xffffffff8[0-9a-f]{7}\)$' 1
count "no other overflow line" 'kernel stack overflow on' 1
check "every other CPU stopped" '^capmem: stopped 3 of 3 other CPUs$'
count "one boot-failed line" '^capmem: boot failed' 1
check "boot-failed line names the overflow" '^capmem: boot failed: kernel stack overflow$'

[ $fail = 0 ] && echo "stack-overflow: ok"
exit $fail
