#!/usr/bin/env bash
# triple-fault: a kernel that resets the machine (triple fault) must not count as a pass.
# The kernel loads an empty IDT and faults (-append crash=triple); with -no-reboot QEMU
# exits with status 0, which qemu-run.sh must map to 2 ("no isa-debug-exit").
#   triple-fault.sh QEMU_RUN KERNEL
set -u
"$1" "$2" --timeout 60 -append crash=triple
rc=$?
if [ $rc = 2 ]; then
  echo "triple-fault: ok (reported as reset, status 2)"
  exit 0
fi
echo "triple-fault: FAIL: qemu-run.sh returned $rc, want 2"
exit 1
