#!/usr/bin/env bash
# run-summary: what `./dev run` shows (ktest.out=summary|list, on 2 CPUs here): the demo's
# account from every CPU, each CPU's closing line equal to `capmem demo`'s, then the summary;
# no case's own output; with ktest.out=list also each case's verdict, one line each.
#   run-summary.sh CAPMEM_TOOL QEMU_RUN KERNEL
set -u
tool=$1 run=$2 kernel=$3
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
[ $fail = 0 ] && echo "run-summary: ok"
exit $fail
