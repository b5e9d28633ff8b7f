#!/usr/bin/env bash
# run-summary: what `./dev run` shows (ktest.out=summary|list, on 2 CPUs here): the demo's
# account from every CPU, each CPU's closing line equal to `capmem demo`'s, then the summary;
# no case's own output; with ktest.out=list also each case's verdict, one line each. And
# what is held is not lost (capmem-kernel-nested, whose one case fails without nested= and
# faults at ring 0 with nested=hook): a failing case's output is written out before its
# FAIL line, and a ring-0 fault writes the held lines before its dump.
#   run-summary.sh CAPMEM_TOOL QEMU_RUN KERNEL NESTED_KERNEL
set -u
tool=$1 run=$2 kernel=$3 nested=$4
fail=0
host=$("$tool" demo --quiet | tail -1) || { echo "run-summary: FAIL: capmem demo failed"; exit 1; }
cases=demo_ring3_on_every_cpu_at_once,boot_cpu_state
check() {  # check DESCRIPTION REGEX
  grep -qE "$2" <<<"$out" || { echo "run-summary: FAIL: $1 (no line matching /$2/)"; fail=1; }
}
for mode in summary list; do
  out=$("$run" "$kernel" --smp 2 --timeout 150 -append "ktest.out=$mode ktest=$cases" 2>&1)
  rc=$?
  echo "=== ktest.out=$mode"
  echo "$out"
  [ $rc = 0 ] || { echo "run-summary: FAIL: $mode: qemu-run.sh returned $rc, want 0"; fail=1; }
  check "$mode: 2 CPUs online" '^smp: 2 CPUs online$'
  check "$mode: the demo's header" '^demo: one guest on 2 CPUs at once'
  for cpu in 0 1; do
    check "$mode: cpu $cpu's account" "^demo cpu $cpu: 639 ops; #PFs resumed [0-9]+: [0-9]+ CoW page-ins"
    line=$(printf '%s\n' "$out" | sed -n "s/^demo cpu $cpu: \(root=\)/\1/p")
    [ "$line" = "$host" ] || { echo "run-summary: FAIL: $mode: cpu $cpu's line '$line' is not capmem demo's '$host'"; fail=1; }
  done
  if grep -qE '^\[ (RUN|OK) \]|^    failure:' <<<"$out"; then
    echo "run-summary: FAIL: $mode: a case's own output was printed"
    fail=1
  fi
  # The summary comes after the account; with `list`, each case's verdict before it.
  last=$(printf '%s\n' "$out" | grep -vE '^qemu-run: ' | tail -1)
  [ "$last" = "2 passed, 0 failed" ] || { echo "run-summary: FAIL: $mode: last line '$last'"; fail=1; }
  if [ $mode = list ]; then
    check "list: each verdict" '^  ok   boot_cpu_state$'
    check "list: each verdict" '^  ok   demo_ring3_on_every_cpu_at_once$'
  else
    grep -q '^  ok   ' <<<"$out" && { echo "run-summary: FAIL: summary printed the case list"; fail=1; }
  fi
done
in_order() {  # in_order DESCRIPTION REGEX... : lines matching each REGEX, in this order
  local what=$1 n=0 r
  shift
  local -a lines=()
  for r in "$@"; do
    n=$(printf '%s\n' "$out" | grep -nE "$r" | head -1 | cut -d: -f1)
    [ -n "$n" ] || { echo "run-summary: FAIL: $what: no line matching /$r/"; fail=1; return; }
    lines+=("$n")
  done
  for ((i = 1; i < ${#lines[@]}; i++)); do
    [ "${lines[i - 1]}" -lt "${lines[i]}" ] || { echo "run-summary: FAIL: $what: lines out of order (${lines[*]})"; fail=1; }
  done
}
out=$("$run" "$nested" --timeout 90 -append "ktest.out=summary" 2>&1)
rc=$?
echo "=== nested image, ktest.out=summary (its case fails)"
echo "$out"
[ $rc = 1 ] || { echo "run-summary: FAIL: nested summary: qemu-run.sh returned $rc, want 1"; fail=1; }
in_order "a failing case's held output, then its verdict" '^\[ RUN \] nested_fault$' \
  '^    failure: no nested= variant' '^\[ FAIL \] nested_fault: no nested= variant' '^0 passed, 1 failed$'
out=$("$run" "$nested" --timeout 90 -append "ktest.out=summary nested=hook" 2>&1)
rc=$?
echo "=== nested image, ktest.out=summary nested=hook (a ring-0 fault inside the case)"
echo "$out"
[ $rc = 1 ] || { echo "run-summary: FAIL: nested=hook: qemu-run.sh returned $rc, want 1"; fail=1; }
in_order "the held lines, then the dump" '^\[ RUN \] nested_fault$' '^nested: the #PF hook reads 0xdead0000 at ring 0$' \
  '^\*\*\* CPU exception 14 \(#PF page fault\) at ring 0$' '^capmem: boot failed'

[ $fail = 0 ] && echo "run-summary: ok"
exit $fail
