#!/usr/bin/env bash
# The kernel image built with -Dkernel_simd=false must never touch a vector register:
# no instruction with an XMM/YMM/ZMM or opmask operand and no FXSAVE/XSAVE-family state
# save or restore anywhere in the image. (cpu_init's one-time `fninit` and `ldmxcsr`,
# which only give ring-3 guests a defined FPU/SSE state, use no vector register.)
#
#   check-no-simd.sh KERNEL OBJDUMP
set -euo pipefail
kernel=$1
objdump=${2:-objdump}
[ -f "$kernel" ] || { echo "check-no-simd: no kernel image at $kernel" >&2; exit 1; }
hits=$("$objdump" -d --no-show-raw-insn "$kernel" |
  awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 }
       /%[xyz]mm[0-9]|%k[0-7]([^0-9]|$)|[[:space:]]f?xsave|[[:space:]]f?xrstor/ { n[fn]++ }
       END { for (f in n) print n[f], f }')
if [ -n "$hits" ]; then
  echo "check-no-simd: FAIL: instructions using vector state in $kernel (count, function):" >&2
  echo "$hits" | sort -rn | head -20 >&2
  exit 1
fi
echo "check-no-simd: PASS: no XMM/YMM/ZMM/opmask operand and no (F)XSAVE/(F)XRSTOR in $kernel"
