#!/usr/bin/env bash
# `capmem root` against `sha256sum` on the same inputs (a benchmark, never a test): one
# 1 GiB file of random bytes (target: capmem at most sha256sum's time) and 1000 small
# files of 1-8 KiB (target: at most 2x). Best wall-clock time of BENCH_REPS runs (default
# 5) after one warm-up run (so both read from the page cache), and each command's peak
# resident memory (wait4's ru_maxrss). Called by run-bench.sh; runs alone too:
#
#   tests/bench/run-tool-bench.sh CAPMEM [WORKDIR]
#
# WORKDIR (default a temp directory) holds the inputs while it runs; they are removed at
# the end. Prints one line per input; a missed target prints MISSED.
set -euo pipefail
tool=$(realpath "$1")
work=${2:-}
if [ -z "$work" ]; then work=$(mktemp -d); else mkdir -p "$work"; work=$(realpath "$work"); fi
trap 'rm -rf "$work/tool-bench"' EXIT
dir=$work/tool-bench
mkdir -p "$dir/small"
head -c $((1 << 30)) /dev/urandom > "$dir/big"
python3 - "$dir/small" <<'PY'
import os, random, sys
rng = random.Random(14)
for i in range(1000):
    with open(os.path.join(sys.argv[1], "f%04d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1, 8192)))
PY
python3 - "$tool" "$dir" "${BENCH_REPS:-5}" <<'PY'
import glob, os, subprocess, sys, time

tool, d, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
small = sorted(glob.glob(os.path.join(d, "small", "f*")))

def run(argv):
    # (best wall seconds, peak RSS in MiB of the best run's process)
    best = None
    for i in range(reps + 1):
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("%s exited with status %d" % (argv[0], os.waitstatus_to_exitcode(status)))
        if i == 0:
            continue  # warm-up: page cache, first-run effects
        if best is None or dt < best[0]:
            best = (dt, ru.ru_maxrss / 1024.0)
    return best

for label, files, target in (("1 GiB file", [os.path.join(d, "big")], 1.0),
                             ("1000 small files", small, 2.0)):
    a = run([tool, "root"] + files)
    b = run(["sha256sum"] + files)
    ratio = a[0] / b[0]
    print("capmem root / sha256sum (%s) = %.2f (target <= %g)%s   [%.3f s vs %.3f s; peak RSS %.1f MiB vs %.1f MiB]"
          % (label, ratio, target, "" if ratio <= target else "  MISSED", a[0], b[0], a[1], b[1]))
PY
