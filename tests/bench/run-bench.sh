#!/usr/bin/env bash
# ./dev bench: release build of capmem-bench, run it (JSON to $OUT/capmem-bench.json), run
# the peers beside it on the same machine, and print our figures as ratios to theirs.
#
#   tests/bench/run-bench.sh [capmem-bench args...]   e.g. --benchmark_filter=PageRoot
#
# Environment: BUILD (default <repo>/build-release), OUT (default $BUILD/bench-results),
# BENCH_REPS (repetitions per benchmark, default 5; ratios use the best repetition in
# wall-clock time per item, as the hashtree harness reports its best run in wall-clock time).
#
# Peers (tests/bench/peers/, the project's own harnesses; see their headers): hashtree
# (hashtree_pages.js on the npm package that peers/package.json pins: page roots) and
# linux_cow (linux_cow.c, gcc -O2: Linux's CoW write fault and read fault from user space)
# and uffd_copy (uffd_copy.c, gcc -O2 -pthread: a userfaultfd missing-page fault answered with
# UFFDIO_COPY, and a bare UFFDIO_COPY per page; "skipped: <reason>" where userfaultfd is
# unavailable).
# Their npm install goes to $BUILD/peers, never into the source tree.
# If tests/bench/run-kernel-bench.sh exists and is executable it is run too (boots the
# kernel under KVM; writes $OUT/kernel-bench.json or prints why it skipped); "kernel:<key>"
# ratio lines read it.
#
# The `capmem` tool: tests/bench/run-tool-bench.sh times `capmem root` against `sha256sum`
# on one 1 GiB file and on 1000 small files, with peak memory, then `capmem encode`'s peak
# memory and spooled bytes for 1 GiB from a pipe and a file against sha256sum's (printed last).
#
# Benchmarks are never pass/fail tests: this script prints figures and ratios (a missed
# target prints MISSED, a missing input prints "skipped (reason)"); it exits non-zero only
# if the build or the benchmark binary fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-release}
OUT=${OUT:-$BUILD/bench-results}
REPS=${BENCH_REPS:-5}
PEERS_SRC=$ROOT/tests/bench/peers

mkdir -p "$OUT"
# Absolute paths: the peers run from their own directories.
BUILD=$(realpath -m "$BUILD")
export BUILD  # run-kernel-bench.sh builds in the same directory
OUT=$(realpath -m "$OUT")

# ---- build ----------------------------------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" "$ROOT" -Dbuildtype=release -Dbench=true
else
  # --reconfigure: tests/bench/meson.build picks up bench_<area>.cpp with fs.exists at
  # configure time, so a file added since the last setup needs a reconfigure to be built.
  meson setup --reconfigure "$BUILD" "$ROOT" -Dbuildtype=release -Dbench=true >/dev/null
fi
meson compile -C "$BUILD" capmem-bench hostsim/tools/capmem

# ---- capmem-bench -----------------------------------------------------------------------
echo "== capmem-bench ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(date -u +%Y-%m-%dT%H:%MZ))"
"$BUILD/tests/bench/capmem-bench" \
  --benchmark_repetitions="$REPS" \
  --benchmark_out="$OUT/capmem-bench.json" --benchmark_out_format=json "$@"

# ---- peers ------------------------------------------------------------------------------
# Each peer writes one JSON object to $OUT/peer-<name>.json; a skipped peer writes nothing
# and its ratio lines say so.
rm -f "$OUT"/peer-*.json "$OUT"/peer-*.skipped "$OUT"/kernel-bench.json

run_hashtree() {
  local dir=$BUILD/peers
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "hashtree: skipped (node/npm not installed)"
    return
  fi
  # The install lives in the build directory; it is redone when package.json or
  # package-lock.json changed since (npm ci: exactly the locked versions).
  mkdir -p "$dir"
  cp "$PEERS_SRC/hashtree_pages.js" "$dir/"
  if ! cmp -s "$PEERS_SRC/package.json" "$dir/package.json" ||
    ! cmp -s "$PEERS_SRC/package-lock.json" "$dir/package-lock.json" ||
    [ ! -d "$dir/node_modules/@chainsafe/hashtree" ]; then
    rm -rf "$dir/node_modules" "$dir/package.json" "$dir/package-lock.json"
    cp "$PEERS_SRC/package.json" "$PEERS_SRC/package-lock.json" "$dir/"
    if ! (cd "$dir" && npm ci --no-audit --no-fund >"$OUT/npm-install.log" 2>&1); then
      rm -f "$dir/package.json"  # so that the next run tries again
      echo "hashtree: skipped (npm ci failed; see $OUT/npm-install.log)"
      return
    fi
  fi
  echo "== hashtree (node $(node --version)): node hashtree_pages.js 4096 20"
  if (cd "$dir" && node hashtree_pages.js 4096 20) >"$OUT/peer-hashtree.json.tmp"; then
    mv "$OUT/peer-hashtree.json.tmp" "$OUT/peer-hashtree.json"
    cat "$OUT/peer-hashtree.json"
  else
    echo "hashtree: skipped (harness failed)"
    rm -f "$OUT/peer-hashtree.json.tmp"
  fi
}
run_hashtree

run_linux_cow() {
  local src=$PEERS_SRC/linux_cow.c bin=$BUILD/peers/linux_cow
  if [ ! -f "$src" ]; then
    echo "linux_cow: skipped ($src not found)"
    return
  fi
  mkdir -p "$BUILD/peers"
  if ! gcc -O2 -o "$bin" "$src" >"$OUT/linux_cow-build.log" 2>&1; then
    echo "linux_cow: skipped (gcc -O2 failed; see $OUT/linux_cow-build.log)"
    return
  fi
  echo "== linux_cow (Linux $(uname -r)): ./linux_cow 16384 10 (pages, best of reps)"
  if (cd "$BUILD/peers" && ./linux_cow 16384 10) >"$OUT/peer-linux_cow.json.tmp"; then
    mv "$OUT/peer-linux_cow.json.tmp" "$OUT/peer-linux_cow.json"
    cat "$OUT/peer-linux_cow.json"
  else
    echo "linux_cow: skipped (harness failed)"
    rm -f "$OUT/peer-linux_cow.json.tmp"
  fi
}
run_linux_cow

# Issue 22's unverified peer: Linux userfaultfd + UFFDIO_COPY (no hash check), beside
# BM_Resolve (copy + hash + install). A skip writes its reason to peer-uffd_copy.skipped.
run_uffd_copy() {
  local src=$PEERS_SRC/uffd_copy.c bin=$BUILD/peers/uffd_copy
  rm -f "$OUT/peer-uffd_copy.skipped"
  if [ ! -f "$src" ]; then
    echo "uffd_copy: skipped ($src not found)"
    return
  fi
  mkdir -p "$BUILD/peers"
  if ! gcc -O2 -pthread -o "$bin" "$src" >"$OUT/uffd_copy-build.log" 2>&1; then
    echo "uffd_copy: skipped (gcc -O2 -pthread failed; see $OUT/uffd_copy-build.log)"
    echo "gcc failed" >"$OUT/peer-uffd_copy.skipped"
    return
  fi
  echo "== uffd_copy (Linux $(uname -r)): ./uffd_copy 4096 10 (pages, best of reps)"
  if (cd "$BUILD/peers" && ./uffd_copy 4096 10) >"$OUT/peer-uffd_copy.json.tmp"; then
    if grep -q '^skipped' "$OUT/peer-uffd_copy.json.tmp"; then
      sed 's/^skipped: //' "$OUT/peer-uffd_copy.json.tmp" >"$OUT/peer-uffd_copy.skipped"
      echo "uffd_copy: skipped ($(cat "$OUT/peer-uffd_copy.skipped"))"
      rm -f "$OUT/peer-uffd_copy.json.tmp"
      return
    fi
    mv "$OUT/peer-uffd_copy.json.tmp" "$OUT/peer-uffd_copy.json"
    cat "$OUT/peer-uffd_copy.json"
  else
    echo "uffd_copy: skipped (harness failed)"
    echo "harness failed" >"$OUT/peer-uffd_copy.skipped"
    rm -f "$OUT/peer-uffd_copy.json.tmp"
  fi
}
run_uffd_copy

# ---- in-kernel benchmarks (KVM) ---------------------------------------------------------
KERNEL_BENCH=$ROOT/tests/bench/run-kernel-bench.sh
if [ -x "$KERNEL_BENCH" ]; then
  echo "== kernel benchmarks: $KERNEL_BENCH $OUT"
  rc=0
  "$KERNEL_BENCH" "$OUT" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "kernel benchmarks: failed (exit status $rc); kernel ratio lines are skipped"
    rm -f "$OUT/kernel-bench.json"
  fi
else
  echo "kernel benchmarks: skipped ($KERNEL_BENCH not present or not executable)"
fi

# ---- ratios -----------------------------------------------------------------------------
echo "== ratios (best of $REPS repetitions per item; lower is better)"
python3 - "$OUT" <<'PY'
import json, os, statistics, sys

out = sys.argv[1]

# (ours, reference, target). Each side is one of:
#   - a capmem-bench benchmark name;
#   - "peer:<name>:<json key>", read from $OUT/peer-<name>.json (ns);
#   - "kernel:<json key>", read from $OUT/kernel-bench.json (ns; tests/bench/run-kernel-bench.sh).
# Against a peer or the kernel (which measure wall-clock time), a benchmark counts with its
# best repetition in wall-clock time per item. Between two capmem-bench benchmarks the
# ratio is judged on CPU time per item (best repetition of each; the wall-clock ratio is
# printed beside it): same process, same harness, and CPU time leaves out the time the core
# spends running other processes.
# reference None: an absolute target in ns, judged on the median over the repetitions of
# CPU time per item (wall-clock median printed beside it).
# target None: printed for information. Add a line here for every new target.
# A reference may also be a list of (factor, benchmark) terms: their weighted sum per item.
# BM_FlushDirty/n/k counts k items (dirty pages) per flush, so against BM_PageRoot (one item =
# one page root) its ratio is flush / (k page roots); /1 is judged against one page root, its
# path's 25 node hashes and four 1280-byte node copies (a third of a 4 KiB copy each).
TABLE = [
    # Issue 23: page roots toward the op-count limit, flush at the hash limit.
    ("BM_PageRoot", "peer:hashtree:ns_per_page_best", 0.4),
    ("BM_PageRoot", "BM_PageRoot_Impl/avx512-v1", 0.8),
    ("BM_FlushDirty/1048576/4096", "BM_PageRoot", 1.5),
    ("BM_FlushDirty/1048576/64", "BM_PageRoot", 1.75),
    ("BM_FlushDirty/1048576/1",
     [(1, "BM_PageRoot"), (25, "BM_MerkleNodes"), (4.0 / 3, "BM_Memcpy4K/threads:1")], 1.25),
    ("BM_PageRoot_Impl/sha-ni", "peer:hashtree:ns_per_page_best", None),
    # The same kernels with the pages in L2 (compute only; informative, no target).
    ("BM_PageRootHot", "BM_PageRootHot_Impl/avx512-v1", None),
    ("BM_CowFault/threads:1", "BM_Memcpy4K/threads:1", 1.75),  # issue 23 (was 2.0, issue 9)
    ("BM_FrameAllocFree/threads:1", "BM_GlibcAlignedAllocFree", 0.25),
    # Many CPUs (issue 15, docs/smp.md): CPU time per operation per thread, 2 threads on 2
    # simulated CPUs against 1.
    ("BM_FrameAllocFree/threads:2", "BM_FrameAllocFree/threads:1", 1.25),
    ("BM_CowFault/threads:2", "BM_CowFault/threads:1", 1.25),
    ("BM_Memcpy4K/threads:2", "BM_Memcpy4K/threads:1", None),  # the hardware's own scaling
    ("BM_TlbShootdown", None, None),
    ("kernel:cow_write_fault_ns", "peer:linux_cow:cow_write_fault_ns", 0.25),
    ("kernel:read_fault_ns", "peer:linux_cow:read_fault_ns", 1.0),
    # capmem-kernel-bench on --smp 4 (kbench-smp line): wall-clock ns per CoW fault with 2
    # and 4 CPUs faulting at once against 1 (lower is better scaling; informative).
    ("kernel:smp_cow_fault_ns_2cpu", "kernel:smp_cow_fault_ns_1cpu", None),
    ("kernel:smp_cow_fault_ns_4cpu", "kernel:smp_cow_fault_ns_1cpu", None),
    ("BM_Translate", None, 10.0),
    ("BM_MapLeaf", None, 25.0),
    # For information: the hosted handler's own work against Linux's whole fault (trap,
    # entry/exit, handler), so not a like-for-like comparison.
    ("BM_CowFault/threads:1", "peer:linux_cow:cow_write_fault_ns", None),
    ("BM_PageIn", "peer:linux_cow:read_fault_ns", None),
    # Issue 22 (rule 8.2): access -> NeedPage -> resolve_page (shared page) -> access again,
    # through each hosted engine; reported.
    ("BM_NeedPageRoundTrip/mmu", None, None),
    ("BM_NeedPageRoundTrip/interpreter", None, None),
    # Issue 22, for information: capmem's resolve (verified: copy + hash against the Missing
    # slot + install) beside Linux's UFFDIO_COPY (unverified: the bytes are taken as given),
    # tests/bench/peers/uffd_copy.c; a peer with no reference prints its own figure.
    ("BM_Resolve", "peer:uffd_copy:copy_ns", None),
    ("peer:uffd_copy:copy_ns", None, None),
    ("peer:uffd_copy:fault_round_trip_ns", None, None),
    # The ring-3 NeedPage round trip (resolve by bytes: copy + hash) at most 0.5x Linux's
    # userfaultfd round trip (KVM only; skipped otherwise).
    ("kernel:need_page_round_trip_bytes_ns", "peer:uffd_copy:fault_round_trip_ns", 0.5),
]
NAMES = {
    "peer:hashtree:ns_per_page_best": "hashtree",
    "peer:linux_cow:cow_write_fault_ns": "linux cow_write_fault_ns",
    "peer:linux_cow:read_fault_ns": "linux read_fault_ns",
    "kernel:cow_write_fault_ns": "kernel cow_write_fault_ns",
    "kernel:read_fault_ns": "kernel read_fault_ns",
    "kernel:smp_cow_fault_ns_1cpu": "kernel smp CoW fault ns (1 CPU)",
    "kernel:smp_cow_fault_ns_2cpu": "kernel smp CoW fault ns (2 CPUs)",
    "kernel:smp_cow_fault_ns_4cpu": "kernel smp CoW fault ns (4 CPUs)",
    "BM_Resolve": "BM_Resolve (capmem resolve, verified)",
    "kernel:need_page_round_trip_bytes_ns": "kernel ring-3 NeedPage round trip (verified)",
    "peer:uffd_copy:copy_ns": "UFFDIO_COPY bare ioctl per page (Linux, unverified)",
    "peer:uffd_copy:fault_round_trip_ns": "UFFDIO_COPY fault round trip (Linux userfaultfd, unverified)",
}

with open(os.path.join(out, "capmem-bench.json")) as f:
    bench = json.load(f)

UNIT_NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}

def ns_per_item(run):
    # (wall, cpu) ns per item. items_per_second is computed from CPU time, which gives the
    # items per iteration; real_time and cpu_time are per iteration.
    unit = UNIT_NS[run.get("time_unit", "ns")]
    real_ns, cpu_ns = run["real_time"] * unit, run["cpu_time"] * unit
    if run.get("items_per_second"):
        items_per_iter = run["items_per_second"] * cpu_ns * 1e-9
        return real_ns / items_per_iter, cpu_ns / items_per_iter
    return real_ns, cpu_ns

reps = {}
for run in bench["benchmarks"]:
    if run.get("run_type") != "iteration" or run.get("error_occurred"):
        continue
    reps.setdefault(run.get("run_name", run["name"]), []).append(ns_per_item(run))

def is_bench(ref):
    if isinstance(ref, list):
        return all(is_bench(n) for _, n in ref)
    return not (ref.startswith("peer:") or ref.startswith("kernel:"))

def read_json(path, what):
    if not os.path.exists(path):
        skipped = os.path.splitext(path)[0] + ".skipped"  # a peer's own reason, if it gave one
        if os.path.exists(skipped):
            with open(skipped) as f:
                return None, "%s skipped: %s" % (what, f.read().strip())
        return None, "%s not run" % what
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, "%s: unreadable %s (%s)" % (what, path, e)

def term_name(ref):
    if isinstance(ref, list):
        return "(" + " + ".join(("%s" % n) if f == 1 else ("%.4g x %s" % (f, n)) for f, n in ref) + ")"
    return NAMES.get(ref, ref)

def value(ref, cpu=False, median=False):
    if isinstance(ref, list):
        total = 0.0
        for f, n in ref:
            v, why = value(n, cpu, median)
            if v is None:
                return None, why
            total += f * v
        return total, None
    if not is_bench(ref):
        if ref.startswith("peer:"):
            _, peer, key = ref.split(":", 2)
            name = "peer-%s.json" % peer
            data, why = read_json(os.path.join(out, name), "peer " + peer)
        else:
            key = ref.split(":", 1)[1]
            name = "kernel-bench.json"
            data, why = read_json(os.path.join(out, name), "kernel benchmarks")
        if data is None:
            return None, why
        if key not in data:
            return None, "%s has no %s" % (name, key)
        return float(data[key]), None
    if ref not in reps:
        return None, "%s not in this run" % ref
    xs = [r[1 if cpu else 0] for r in reps[ref]]
    return (statistics.median(xs) if median else min(xs)), None

def r(x):
    return "%.2f" % x if x >= 0.095 else "%.2g" % x

def verdict(x, target, strict):
    if target is None:
        return ""
    met = x < target if strict else x <= target
    return " (target %s %g%s)%s" % ("<" if strict else "<=", target, " ns" if strict else "", "" if met else "  MISSED")

for ours, ref, target in TABLE:
    if ref is None and not is_bench(ours):
        v, why = value(ours)
        if v is None:
            print("%s: skipped (%s)" % (NAMES.get(ours, ours), why))
        else:
            print("%s = %.0f ns%s   [wall-clock, best repetition]" % (NAMES.get(ours, ours), v, verdict(v, target, True)))
        continue
    if ref is None:
        label = "%s (median of %d)" % (ours, len(reps.get(ours, [])))
        cpu, why = value(ours, cpu=True, median=True)
        if cpu is None:
            print("%s: skipped (%s)" % (label, why))
            continue
        wall, _ = value(ours, median=True)
        print("%s = %.2f ns CPU%s   [wall %.2f ns]" % (label, cpu, verdict(cpu, target, True), wall))
        continue
    label = "%s / %s" % (NAMES.get(ours, ours), term_name(ref))
    a, why_a = value(ours)
    b, why_b = value(ref)
    if a is None or b is None:
        print("%s: skipped (%s)" % (label, why_a or why_b))
        continue
    if is_bench(ours) and is_bench(ref):
        ca, cb = value(ours, cpu=True)[0], value(ref, cpu=True)[0]
        print("%s = %s CPU%s   [%.1f ns vs %.1f ns CPU; wall %s = %.1f ns vs %.1f ns]"
              % (label, r(ca / cb), verdict(ca / cb, target, False), ca, cb, r(a / b), a, b))
        continue
    print("%s = %s%s   [%.1f ns vs %.1f ns]" % (label, r(a / b), verdict(a / b, target, False), a, b))

# Issue 22 (rule 8.4, tests/bench/bench_resolve.cpp): resolving a Missing page, judged like the
# bench-vs-bench lines above (CPU time per item, best repetition); each line names the hash back
# end its benchmarks ran on (their label), since the targets are relative to BM_PageRoot's.
RESOLVE_TABLE = [
    ("BM_Resolve", [(1, "BM_PageRoot"), (1, "BM_Memcpy4K/threads:1")], 1.3),  # copy + hash + install
    ("BM_ResolveShared", "BM_PageRoot", 0.3),  # a hashed page by reference: install only
    ("BM_ResolveMany/16", [(1, "BM_PageRoot"), (1, "BM_Memcpy4K/threads:1")], None),
    # BM_Resolve's own byte path without the cap (a fresh frame, the copy, the page hash of
    # the copy; no checks, no install), for information.
    ("BM_ResolveParts/2", [(1, "BM_PageRoot"), (1, "BM_Memcpy4K/threads:1")], None),
]
# For information: BM_Resolve on each back end against that back end's own batched page roots
# (docs/performance.md, "BM_Resolve on each back end"). The issue's line is the default back
# end's, above; a back end the CPU lacks prints "skipped".
for impl in ("portable", "sha-ni", "avx2-8way", "avx512-16way"):
    RESOLVE_TABLE.append(("BM_Resolve_Impl/" + impl,
                          [(1, "BM_PageRoot_Impl/" + impl), (1, "BM_Memcpy4K/threads:1")], None))

def backend(*names):
    seen = []
    for n in names:
        for x in bench["benchmarks"]:
            if x.get("run_name", x["name"]) == n and x.get("label"):
                lab = x["label"].split(",")[0]
                if lab not in seen:
                    seen.append(lab)
                break
    return "/".join(seen) or bench.get("context", {}).get("capmem_hash_impl", "unknown")

for ours, ref, target in RESOLVE_TABLE:
    label = "%s / %s" % (ours, term_name(ref))
    a, why_a = value(ours)
    b, why_b = value(ref)
    if a is None or b is None:
        print("%s: skipped (%s)" % (label, why_a or why_b))
        continue
    ca, cb = value(ours, cpu=True)[0], value(ref, cpu=True)[0]
    refs = [n for _, n in ref] if isinstance(ref, list) else [ref]
    print("%s = %s CPU%s   [%.1f ns vs %.1f ns CPU; wall %s = %.1f ns vs %.1f ns; hash back end %s]"
          % (label, r(ca / cb), verdict(ca / cb, target, False), ca, cb, r(a / b), a, b,
             backend(ours, *[n for n in refs if n.startswith("BM_PageRoot")])))

# For the record (issue 23): the page-root kernels' instructions per 16-lane compression and
# issue rate (instructions per cycle), medians over the repetitions, where the run had the
# hardware counters (bench_hash.cpp).
for name in ("BM_PageRoot", "BM_PageRoot_Impl/avx512-v1", "BM_PageRootHot", "BM_PageRootHot_Impl/avx512-v1"):
    runs = [x for x in bench["benchmarks"] if x.get("run_type") == "iteration" and x.get("run_name", x["name"]) == name]
    ops = [x["insn_per_16lane_compression"] for x in runs if "insn_per_16lane_compression" in x]
    ipc = [x["insn_per_cycle"] for x in runs if "insn_per_cycle" in x]
    if not runs:
        continue
    if not ops or not ipc:
        print("%s: instructions per 16-lane compression: skipped (no hardware counters in this run)" % name)
        continue
    print("%s: %.0f instructions per 16-lane compression, %.2f instructions per cycle (median of %d)"
          % (name, statistics.median(ops), statistics.median(ipc), len(ops)))
PY

# ---- the capmem tool against sha256sum ---------------------------------------------------
echo "== capmem root vs sha256sum (best wall-clock time of $REPS runs after a warm-up; lower is better)"
if command -v sha256sum >/dev/null && command -v python3 >/dev/null; then
  BENCH_REPS=$REPS "$ROOT/tests/bench/run-tool-bench.sh" "$BUILD/hostsim/tools/capmem" "$OUT" ||
    echo "tool benchmark: failed (exit status $?)"
else
  echo "tool benchmark: skipped (sha256sum or python3 not installed)"
fi
