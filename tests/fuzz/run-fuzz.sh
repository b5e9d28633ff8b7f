#!/usr/bin/env bash
# Runs every libFuzzer target for SECS seconds (default 60) on its committed seed corpus
# plus a scratch corpus; a crash is saved under build-fuzz/crashes/ and fails the run.
# Usage: tests/fuzz/run-fuzz.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
dir=${CAPMEM_FUZZ_BUILD:-build-fuzz}
# The core library is instrumented too (coverage for libFuzzer, ASan/UBSan for its reads of
# the input), not only the fuzz_*.cpp files.
opts=(-Dfuzz=true -Dkernel=false -Dbench=false -Dbuildtype=debugoptimized -Db_lundef=false
      -Db_sanitize=address,undefined "-Dcpp_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined")
if [ ! -f "$dir/build.ninja" ]; then
  CXX=clang++-14 CXX_LD=lld meson setup "$dir" . "${opts[@]}" >/dev/null 2>&1 ||
    CXX=clang++-14 meson setup "$dir" . "${opts[@]}" >/dev/null
else
  meson configure "$dir" "${opts[@]}" >/dev/null  # an older build dir gets today's options
fi
meson compile -C "$dir" >/dev/null || meson compile -C "$dir"
mkdir -p "$dir/crashes" "$dir/scratch"
# One JSON line per target, in the shape of meson's testlog.json, for ./dev test's summary.
results="$dir/fuzz-results.json"
: > "$results"
rc=0
total=0
for exe in "$dir"/tests/fuzz/fuzz-*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue  # skip the fuzz-*.p object directories
  name=$(basename "$exe"); name=${name#fuzz-}; name=${name//-/_}
  seeds=tests/fuzz/corpus/$name
  # Inputs that once crashed (regressions/<name>/) are replayed first, with the seeds.
  regs=(); [ -d "tests/fuzz/regressions/$name" ] && regs=("tests/fuzz/regressions/$name")
  mkdir -p "$dir/scratch/$name"
  log="$dir/fuzz-$name.log"
  # -entropic=0: libFuzzer 14's entropic scheduler spent about 65 % of cap_ops' time on its
  # own bookkeeping (4x fewer executions for the same coverage in a 20 s run).
  if "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -entropic=0 \
      -artifact_prefix="$dir/crashes/$name-" "$dir/scratch/$name" "$seeds" "${regs[@]}" >"$log" 2>&1; then
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz: $name ok (${execs:-?} executions in ${secs}s, corpus $(ls "$dir/scratch/$name" | wc -l) + $(ls "$seeds" 2>/dev/null | wc -l) seeds)"
    echo "{\"name\": \"fuzz-$name\", \"result\": \"OK\"}" >> "$results"
  else
    echo "{\"name\": \"fuzz-$name\", \"result\": \"FAIL\"}" >> "$results"
    echo "fuzz: $name FAILED (see $log; reproducer in $dir/crashes/)"
    tail -30 "$log"
    rc=1
  fi
  total=$((total + 1))
done
[ "$total" -gt 0 ] || { echo "fuzz: no targets built"; exit 1; }
exit $rc
