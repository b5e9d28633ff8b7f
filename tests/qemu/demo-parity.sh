#!/usr/bin/env bash
# Parity: `capmem demo` (hostsim, both engines) and the kernel image's demo (real ring-3
# faults) must print the same final `root=... gas=... cow=... page_in=...` line.
# Usage: demo-parity.sh CAPMEM_TOOL QEMU_RUN KERNEL [--kvm]
set -uo pipefail
tool=$1; run=$2; kernel=$3; shift 3
host=$("$tool" demo --quiet | tail -1) || { echo "FAIL: capmem demo failed"; exit 1; }
out=$("$run" "$kernel" "$@" --timeout 150 2>&1); rc=$?
[ $rc -eq 77 ] && { echo "SKIP: $(echo "$out" | tail -1)"; exit 77; }
kern=$(echo "$out" | sed -n 's/^kernel demo: //p' | tail -1)
echo "hostsim: $host"
echo "kernel:  $kern"
[ -n "$kern" ] || { echo "FAIL: the kernel printed no demo line"; echo "$out" | tail -20; exit 1; }
[ "$host" = "$kern" ] || { echo "FAIL: the lines differ"; exit 1; }
echo "parity: same line"
