#!/usr/bin/env bash
# lowmem: the whole in-kernel suite under a small -m. Out of memory is a status, never a
# panic (docs/reliability.md): a case that runs out of frames fails with its own line and the
# boot goes on to its summary. The lane passes when
#   - the boot reaches its summary line `N passed, M failed` and exits through isa-debug-exit;
#   - every case that started ([ RUN ]) ended with [ OK ] or [ FAIL ] NAME: reason;
#   - every failing case is one allowed below, by name, failing for the reason given (so a
#     new bug in an allowed case still fails the lane), and M counts them;
#   - there is no ring-0 exception dump, panic, reset or timeout.
# Usage: lowmem.sh QEMU_RUN KERNEL MEM [--smp N] [--kvm]
set -uo pipefail
run=$1; kernel=$2; mem=$3; shift 3
# The cases that may fail under -m 16M / 32M, each with the reason it may fail for (an
# extended regex on the text after "[ FAIL ] NAME: "):
#   - smp_concurrent_runs_over_shared_caps_match_one_cpu: every CPU runs the demo and fill
#     guests over copies of a 4 MiB cap and keeps 4 caps' overlays alive (about 5 MiB per CPU).
allowed=(
  'smp_concurrent_runs_over_shared_caps_match_one_cpu|.*out of frames$'
)
qargs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smp) qargs+=(--smp "$2"); shift ;;
    *) qargs+=("$1") ;;
  esac
  shift
done
out=$("$run" "$kernel" "${qargs[@]}" --timeout 240 -m "$mem" 2>&1); rc=$?
echo "$out"
[ $rc -eq 77 ] && { echo "SKIP: $(echo "$out" | tail -1)"; exit 77; }
fail=0
bad() { echo "lowmem: FAIL: $*"; fail=1; }
# qemu-run.sh: 0 all passed, 1 the kernel reported failure (cases failed); 2 reset, 3 timeout,
# 4 QEMU failed.
case $rc in
  0 | 1) ;;
  *) bad "qemu-run.sh returned $rc (2 reset, 3 timeout, 4 QEMU failed)" ;;
esac
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$out" | tail -1)
[ -n "$summary" ] || bad "no summary line 'N passed, M failed'"
# A guest's exception at ring 3 is a case's business (ring3_other_exception_ends_run); one at
# ring 0, a panic or a failed boot is not.
if grep -qE '^\*\*\* (nested )?CPU exception .* at ring 0|capmem panic|capmem: boot failed|nested panic' <<<"$out"; then
  bad "a ring-0 exception, panic or failed boot:"
  grep -E '^\*\*\* (nested )?CPU exception .* at ring 0|capmem panic|capmem: boot failed|nested panic' <<<"$out" | sed 's/^/  /'
fi
mapfile -t started < <(sed -n 's/^\[ RUN \] //p' <<<"$out")
[ ${#started[@]} -gt 0 ] || bad "no case started"
nfail=0
for name in "${started[@]}"; do
  if grep -qxF "[ OK ] $name" <<<"$out"; then continue; fi
  if ! grep -qE "^\[ FAIL \] $name: .+" <<<"$out"; then
    bad "case $name started but printed neither [ OK ] nor [ FAIL ] $name: reason"
    continue
  fi
  nfail=$((nfail + 1))
  line=$(grep -E "^\[ FAIL \] $name: " <<<"$out" | head -1)
  reason=${line#"[ FAIL ] $name: "}
  ok=0
  for a in "${allowed[@]}"; do
    [ "${a%%|*}" = "$name" ] && [[ $reason =~ ^${a#*|} ]] && ok=1
  done
  [ $ok = 1 ] || bad "case $name failed and is not allowed to fail so under -m $mem: $line"
done
if [ -n "$summary" ]; then
  want="$((${#started[@]} - nfail)) passed, $nfail failed"
  [ "$summary" = "$want" ] || bad "summary '$summary', want '$want' from the case lines"
fi
[ $fail = 0 ] && echo "lowmem: ok (-m $mem: $summary)"
exit $fail
