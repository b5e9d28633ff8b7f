#!/usr/bin/env bash
# smp-boot: the kernel image on 4 CPUs (docs/rules.md section 7; docs/smp.md). Every in-kernel case
# must pass, and the SMP cases must show that every CPU took part:
#   - 4 CPUs online, each reporting its own id;
#   - every CPU's demo run prints the line `capmem demo` prints (hostsim, both engines);
#   - every CPU ran thousands of CoW faults and its caps were flushed and dropped on the next;
#   - the shootdown reached CPUs 1..3, each of which faulted on the narrowed page;
#   - every CPU shot down at once (waits with interrupts on: no deadlock), each answered all;
#   - the migrating run visited CPUs 1, 2, 1;
#   - a paused run on CPU 1 checkpointed from CPU 2 (its table still loaded) stores again;
#   - lines every CPU logged at once arrived whole;
#   - CPU 1, idle again after freeing frames, holds none in its cache (rule 7.4).
# Usage: smp-boot.sh CAPMEM_TOOL QEMU_RUN KERNEL [--kvm] [--skip-case NAME]...
# The remaining arguments go to QEMU_RUN as they are. --skip-case (a runner that leaves a case
# out on purpose: tests/bochs/bochs-smp-run.sh) also drops that case's checks here; only
# smp_concurrent_runs_over_shared_caps_match_one_cpu (the CoW and demo lines) can be dropped.
set -uo pipefail
tool=$1; run=$2; kernel=$3; shift 3
ncpu=4
concurrent=1
args=("$@")
for ((k = 0; k < ${#args[@]}; k++)); do
  [ "${args[k]}" = --skip-case ] || continue
  case "${args[k + 1]:-}" in
    smp_concurrent_runs_over_shared_caps_match_one_cpu) concurrent=0 ;;
    *) echo "smp-boot: FAIL: --skip-case ${args[k + 1]:-}: only smp_concurrent_runs_over_shared_caps_match_one_cpu can be left out"; exit 1 ;;
  esac
done
host=$("$tool" demo --quiet | tail -1) || { echo "FAIL: capmem demo failed"; exit 1; }
out=$("$run" "$kernel" "$@" --smp $ncpu --timeout 270 2>&1); rc=$?
echo "$out"
[ $rc -eq 77 ] && { echo "SKIP: $(echo "$out" | tail -1)"; exit 77; }
fail=0
check() {  # check DESCRIPTION REGEX
  if ! grep -qE "$2" <<<"$out"; then
    echo "smp-boot: FAIL: $1 (no line matching /$2/)"
    fail=1
  fi
}
[ $rc = 0 ] || { echo "smp-boot: FAIL: qemu-run.sh returned $rc"; fail=1; }
check "$ncpu CPUs online" "^smp: $ncpu CPUs online$"
for ((i = 0; i < ncpu; i++)); do
  check "cpu $i reports its id" "^smp: cpu $i reports id $i, "
  [ $concurrent = 1 ] || continue
  check "cpu $i ran CoW faults, caps dropped on the next CPU" \
    "^smp runs cpu $i: [0-9]{4,} CoW faults, caps flushed and dropped on cpu $(((i + 1) % ncpu))$"
  line=$(printf '%s\n' "$out" | sed -n "s/^smp demo cpu $i: //p" | tail -1)
  if [ "$line" != "$host" ]; then
    echo "smp-boot: FAIL: cpu $i's demo line differs from capmem demo's"
    echo "  capmem demo: $host"
    echo "  cpu $i:      $line"
    fail=1
  fi
done
for ((i = 1; i < ncpu; i++)); do
  check "shootdown reached cpu $i" "^smp shootdown: cpu $i read the shared page [0-9]+ times, then faulted at 0x10000000 \([1-9][0-9]* shootdown answered\)$"
done
# Console: every line the CPUs printed at once arrived whole (no piece of another CPU's line).
whole=$(printf '%s\n' "$out" | grep -cE '^smp console: cpu ([0-9]+) line [0-9]+( \1-[0-7]){8}$')
pieces=$(printf '%s\n' "$out" | grep -c 'smp console')
if [ "$whole" != $((ncpu * 40)) ] || [ "$pieces" != "$whole" ]; then
  echo "smp-boot: FAIL: console lines: $whole whole of $pieces with 'smp console', want $((ncpu * 40)) whole"
  fail=1
fi
check "every CPU shooting down at once completed" "^smp storm: $ncpu CPUs shot down 300 ranges each at once; every CPU answered $((300 * (ncpu - 1)))$"
check "paused run on cpu 1 checkpointed from cpu 2, second store in the cap" "^smp checkpoint: run on cpu 1, flushed from cpu 2 \([1-9][0-9]* shootdown answered\), second store read back 0x6262626262626262$"
check "an idle cpu keeps no cached frames" "^smp idle: cpu 1 freed frames and went idle with 0 cached$"
check "migrating run on cpus 1, 2, 1" "^smp migrate: step 2 on cpu 1 read 0x3333333333333333$"
[ $fail = 0 ] && echo "smp-boot: ok"
exit $fail
