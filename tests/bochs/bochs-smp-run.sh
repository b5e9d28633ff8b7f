#!/usr/bin/env bash
# The SMP boot cases under Bochs (docs/boot.md "Bochs", docs/smp.md): tests/qemu/smp-boot.sh
# runs this in place of qemu-run.sh, so the Bochs lane makes exactly the qemu lane's checks
# (every CPU online and reporting its id, CoW runs, shootdown, console, storm, migration),
# and this script adds what only Bochs can show:
#   - the local APICs ran in the mode --apic names (default x2APIC): `x2APIC` where the
#     model has CPUID.01H:ECX[21] (QEMU's TCG has no x2APIC), so INIT-SIPI-SIPI, the IPIs
#     and EOI went through the x2APIC MSRs; `xAPIC` on a model without it (the MMIO page);
#   - every smp_* case of the kernel's source (KTEST(smp_...) in --cases) ran and passed,
#     but those a --skip-case names: a case the filter dropped or that never started counts
#     as a failure, and a --skip-case that names no case of the source is one too;
#   - the kernel's `N passed, 0 failed` summary (bochs-run.sh).
#
#   bochs-smp-run.sh KERNEL --mkiso MKISO --model MODEL --ktest FILTER --cases KTEST_SMP_CPP
#                    [--apic x2APIC|xAPIC] [--skip-case NAME]... [--bochs-timeout SECS]
#                    --smp N [--timeout SECS]
# --smp and --timeout come from smp-boot.sh (which also reads --skip-case and drops the
# checks of that case); --timeout (its QEMU budget) is ignored in favour of --bochs-timeout
# (Bochs emulates every instruction of every CPU on one host thread).
# Prints the whole kernel console (smp-boot.sh judges it). Exit: 0 pass, 1 fail, 77 skip.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 KERNEL --mkiso M --model M --ktest F --cases FILE --smp N" >&2; exit 1; }
kernel=$1
shift
mkiso='' model='' filter='' cases='' ncpu='' bochs_timeout=900 apic=x2APIC skip=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mkiso) mkiso=$2; shift ;;
    --model) model=$2; shift ;;
    --ktest) filter=$2; shift ;;
    --cases) cases=$2; shift ;;
    --apic) apic=$2; shift ;;
    --skip-case) skip+=("$2"); shift ;;
    --bochs-timeout) bochs_timeout=$2; shift ;;
    --smp) ncpu=$2; shift ;;
    --timeout) shift ;;
    *) echo "bochs-smp-run: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done
if [ -z "$mkiso" ] || [ -z "$model" ] || [ -z "$filter" ] || [ -z "$cases" ] || [ -z "$ncpu" ]; then
  echo "bochs-smp-run: --mkiso, --model, --ktest, --cases and --smp are required" >&2
  exit 1
fi
case $apic in x2APIC | xAPIC) ;; *) echo "bochs-smp-run: --apic must be x2APIC or xAPIC, not $apic" >&2; exit 1 ;; esac

keep=$(mktemp -d "${TMPDIR:-/tmp}/capmem-bochs-smp.XXXXXX")
trap 'rm -rf "$keep"' EXIT
"$here/bochs-run.sh" "$mkiso" "$kernel" "$model" --cpus "$ncpu" --ktest "$filter" \
  --timeout "$bochs_timeout" --keep "$keep"
rc=$?
[ $rc -eq 77 ] && exit 77
console=$keep/com1.txt
[ -f "$console" ] || { echo "bochs-smp-run: FAIL: no console output kept"; exit 1; }
cat "$console"

fail=$rc
if ! grep -aqE "^smp: MADT through .*: $ncpu CPUs, $apic$" "$console"; then
  echo "bochs-smp-run: FAIL: the kernel did not report $ncpu CPUs in $apic mode"
  fail=1
fi
names=$(sed -n 's/^KTEST(\(smp_[A-Za-z0-9_]*\)).*/\1/p' "$cases")
[ -n "$names" ] || { echo "bochs-smp-run: FAIL: no KTEST(smp_...) in $cases"; fail=1; }
for name in "${skip[@]}"; do
  grep -qx "$name" <<<"$names" || { echo "bochs-smp-run: FAIL: --skip-case $name: no such smp_* case in $cases"; fail=1; }
done
passed=0
for name in $names; do
  printf '%s\n' "${skip[@]}" | grep -qx "$name" && continue
  if grep -aqx "\[ OK \] $name" "$console"; then
    passed=$((passed + 1))
  else
    echo "bochs-smp-run: FAIL: $name did not pass"
    fail=1
  fi
done
[ $fail = 0 ] && echo "bochs-smp-run: $apic, $passed smp_* cases passed${skip[*]:+ (left out here: ${skip[*]})}"
exit $fail
