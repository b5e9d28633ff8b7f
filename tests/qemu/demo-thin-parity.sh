#!/usr/bin/env bash
# Thin parity (rule 8.3): the kernel's demo over a thin mem cap at ring 3, each NeedPage exit
# resolved from the boot page store (the demo's pack passed as a boot module) and the guest
# entered again, prints the same `root=... gas=... cow=... page_in=... need_page=N` line as
# `capmem demo --thin` (hostsim). The kernel case (tests/kernel/ktest_demo.cpp
# demo_ring3_thin_resolves_each_need_page) also checks root, gas and counters against the
# same demo with every page present.
# Usage: demo-thin-parity.sh CAPMEM_TOOL PACK QEMU_RUN KERNEL [--kvm]
#        demo-thin-parity.sh CAPMEM_TOOL PACK --bochs BOCHS_RUN MKISO KERNEL MODEL [bochs-run options]
# (Bochs: GRUB module2 of PACK through bochs-run.sh --pack, with the caller's --ktest, if any.)
set -uo pipefail
tool=$1 pack=$2
shift 2
if [ "$1" = --bochs ]; then
  shift
  out=$("$@" --pack "$pack" 2>&1)  # the caller's case filter (none: every case)
  rc=$?
else
  run=$1 kernel=$2
  shift 2
  out=$("$run" "$kernel" "$@" --timeout 150 -initrd "$pack" -append ktest=demo_ring3_thin 2>&1)
  rc=$?
fi
[ $rc -eq 77 ] && { echo "SKIP: $(echo "$out" | tail -1)"; exit 77; }
host=$("$tool" demo --thin --quiet | tail -1) || { echo "FAIL: capmem demo --thin failed"; exit 1; }
store=$(echo "$out" | sed -n 's/^kernel demo thin: .* page store: //p' | tail -1)
kern=$(echo "$out" | sed -n 's/^kernel demo thin: \(root=.*\)$/\1/p' | tail -1)
echo "page store: $store"
echo "hostsim: $host"
echo "kernel:  $kern"
[ $rc -eq 0 ] || { echo "FAIL: the kernel run failed ($rc)"; echo "$out" | tail -20; exit 1; }
[[ $store =~ ^boot\ module\ [0-9]+\ \([0-9]+\ pages\)$ ]] ||
  { echo "FAIL: the kernel did not resolve from the boot module"; echo "$out" | tail -20; exit 1; }
[ -n "$kern" ] || { echo "FAIL: the kernel printed no thin demo line"; echo "$out" | tail -20; exit 1; }
[[ $host =~ \ need_page=[1-9][0-9]*$ ]] || { echo "FAIL: the host line has no need_page count"; exit 1; }
[ "$host" = "$kern" ] || { echo "FAIL: the lines differ"; exit 1; }
echo "parity: same line"
