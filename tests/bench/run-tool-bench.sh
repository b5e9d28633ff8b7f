#!/usr/bin/env bash
# `capmem root` against `sha256sum` on the same inputs (a benchmark, never a test): one
# 1 GiB file of random bytes (target: capmem at most sha256sum's time) and 1000 small
# files of 1-8 KiB (target: at most 2x). Best wall-clock time of BENCH_REPS runs (default
# 5) after one warm-up run (so both read from the page cache), and each command's peak
# resident memory (GNU time's %M, where /usr/bin/time exists). Then `capmem encode`'s memory on
# 1 GiB (all zeros, and the random file) from a pipe and from a file: its peak RSS, the bytes
# it spooled (a pipe's non-zero pages go to an unlinked file in TMPDIR), and sha256sum's peak
# RSS on the same pipe. Called by run-bench.sh; runs alone too:
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

TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

def run(argv):
    # (best wall seconds, peak RSS in MiB of the best run or None). Peak RSS comes from GNU
    # time's %M: wait4 from this (large) Python process would report the RSS the child
    # inherited at fork, not the command's own.
    best = None
    rss_file = os.path.join(d, "rss")
    for i in range(reps + 1):
        cmd = [TIME, "-f", "%M", "-o", rss_file] + argv if TIME else argv
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
        dt = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit("%s exited with status %d" % (argv[0], rc))
        if i == 0:
            continue  # warm-up: page cache, first-run effects
        rss = None
        if TIME:
            with open(rss_file) as f:
                rss = int(f.read().split()[-1]) / 1024.0
        if best is None or dt < best[0]:
            best = (dt, rss)
    return best

def mib(x):
    return "n/a" if x is None else "%.1f MiB" % x

for label, files, target in (("1 GiB file", [os.path.join(d, "big")], 1.0),
                             ("1000 small files", small, 2.0)):
    a = run([tool, "root"] + files)
    b = run(["sha256sum"] + files)
    ratio = a[0] / b[0]
    print("capmem root / sha256sum (%s) = %.2f (target <= %g)%s   [%.3f s vs %.3f s; peak RSS %s vs %s]"
          % (label, ratio, target, "" if ratio <= target else "  MISSED", a[0], b[0], mib(a[1]), mib(b[1])))

# encode's memory. The bytes a command wrote come from this process's wchar (/proc/self/io),
# which takes in each child's when it is reaped: the source's, GNU time's and the tool's
# writes. The spool is what a pipe run writes beyond its source and a file run's writes.
def wchar():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("wchar:")).split()[1])

def once(argv, src=None, stdin_path=None):
    # (wall seconds, peak RSS MiB or None, bytes written by everything started here)
    rss_file = os.path.join(d, "rss")
    cmd = [TIME, "-f", "%M", "-o", rss_file] + argv if TIME else argv
    w0 = wchar()
    t0 = time.perf_counter()
    if src is not None:
        feed = subprocess.Popen(src, stdout=subprocess.PIPE)
        p = subprocess.Popen(cmd, stdin=feed.stdout, stdout=subprocess.DEVNULL)
        feed.stdout.close()
        rc = p.wait()
        feed.wait()
    else:
        with open(stdin_path or os.devnull, "rb") as f:
            rc = subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL).returncode
    dt = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit("%s exited with status %d" % (argv[0], rc))
    rss = None
    if TIME:
        with open(rss_file) as f:
            rss = int(f.read().split()[-1]) / 1024.0
    return dt, rss, wchar() - w0

zeros = os.path.join(d, "zeros")
with open(zeros, "wb") as f:
    f.truncate(1 << 30)  # sparse: the file run of the all-zero input
out = os.path.join(d, "out.ssz")
for label, src, path in (("1 GiB of zeros", ["head", "-c", str(1 << 30), "/dev/zero"], zeros),
                         ("1 GiB random", ["cat", os.path.join(d, "big")], os.path.join(d, "big"))):
    src_bytes = os.path.getsize(path)
    fp = once([tool, "encode", path, out])
    pp = once([tool, "encode", "-", out], src=src)
    sh = once(["sha256sum", "-"], src=src)
    spool = pp[2] - src_bytes - fp[2]
    print("capmem encode memory (%s): pipe peak RSS %s, spooled %.1f MiB [%.2f s]; file peak RSS %s [%.2f s];"
          " sha256sum (pipe) peak RSS %s" % (label, mib(pp[1]), spool / 1048576.0, pp[0], mib(fp[1]), fp[0], mib(sh[1])))
    os.unlink(out)
PY
