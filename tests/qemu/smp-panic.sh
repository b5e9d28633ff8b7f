#!/usr/bin/env bash
# smp-panic: a panic or an unexpected exception on one CPU stops every CPU and is reported
# once; the CPU list comes from the boot RSDP, the BIOS-area scan (acpi=scan) or, with no
# ACPI at all (acpi=off, or QEMU's -machine acpi=off), the boot CPU runs alone and says so
# once. Each boot crashes on purpose right after the CPUs are up (-append crash=...), so it
# is short.
# Usage: smp-panic.sh QEMU_RUN KERNEL [--kvm]
set -uo pipefail
run=$1; kernel=$2; shift 2
name=smp-panic
boot_args=(--smp 4)
# shellcheck source=tests/qemu/crash-boot-lib.sh
source "$(dirname "$0")/crash-boot-lib.sh"

boot crash=ap-panic "$@"; want_fail
check "4 CPUs online" '^smp: 4 CPUs online$'
count "one panic report" '^capmem panic: requested on the command line, raised on an application processor$' 1
check "raised on cpu 3, every other CPU stopped" '^capmem panic: on cpu 3; stopped 3 of 3 other CPUs$'
count "one boot-failed line" '^capmem: boot failed' 1

boot crash=ap-pf "$@"; want_fail
count "one exception dump" '^\*\*\* CPU exception 14 \(#PF page fault\) at ring 0$' 1
check "on cpu 3" '^    on cpu 3$'
check "every other CPU stopped" '^capmem: stopped 3 of 3 other CPUs$'
count "one boot-failed line" '^capmem: boot failed' 1

boot "acpi=scan crash=panic" "$@"; want_fail
check "MADT through the BIOS-area scan" '^smp: MADT through the BIOS-area RSDP scan: 4 CPUs'
check "4 CPUs online" '^smp: 4 CPUs online$'
check "boot CPU's panic stops the others" '^capmem panic: on cpu 0; stopped 3 of 3 other CPUs$'

boot "acpi=off crash=panic" "$@"; want_fail
count "boot CPU alone, said once" 'running on the boot CPU alone' 1
count "no CPU started" '^smp: cpu [1-9]' 0
check "panic on cpu 0" '^capmem panic: on cpu 0$'

# Firmware without ACPI tables at all (QEMU -machine acpi=off): no RSDP from PVH, none in
# the BIOS area.
boot crash=panic "$@" -machine acpi=off; want_fail
count "boot CPU alone, said once" 'running on the boot CPU alone' 1
check "no RSDP anywhere" '^smp: no valid ACPI MADT \(no RSDP from the boot protocol, none in the BIOS area\)'
count "no CPU started" '^smp: cpu [1-9]' 0

[ $fail = 0 ] && echo "smp-panic: ok"
exit $fail
