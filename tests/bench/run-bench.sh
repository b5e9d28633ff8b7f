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
# Benchmarks are never pass/fail tests: this script prints figures and ratios; it exits
# non-zero only if the build or the benchmark binary fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-release}
OUT=${OUT:-$BUILD/bench-results}
REPS=${BENCH_REPS:-5}
PEERS_SRC=$ROOT/../shared/peers

mkdir -p "$OUT"

# ---- build ----------------------------------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" "$ROOT" -Dbuildtype=release -Dbench=true
else
  meson configure "$BUILD" -Dbuildtype=release -Dbench=true >/dev/null
fi
meson compile -C "$BUILD" capmem-bench

# ---- capmem-bench -----------------------------------------------------------------------
echo "== capmem-bench ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(date -u +%Y-%m-%dT%H:%MZ))"
"$BUILD/tests/bench/capmem-bench" \
  --benchmark_repetitions="$REPS" \
  --benchmark_out="$OUT/capmem-bench.json" --benchmark_out_format=json "$@"

# ---- peers ------------------------------------------------------------------------------
# Each peer writes one JSON object to $OUT/peer-<name>.json; a skipped peer writes nothing
# and its ratio lines say so.
rm -f "$OUT"/peer-*.json

run_hashtree() {
  local dir=$PEERS_SRC
  if [ ! -d "$PEERS_SRC" ]; then
    echo "hashtree: skipped ($PEERS_SRC not found)"
    return
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "hashtree: skipped (node/npm not installed)"
    return
  fi
  if [ ! -d "$PEERS_SRC/node_modules/@chainsafe/hashtree" ]; then
    # The shared directory may be read-only: install into a private copy, kept for reuse.
    dir=$BUILD/peers
    mkdir -p "$dir"
    cp "$PEERS_SRC/package.json" "$PEERS_SRC/hashtree_pages.js" "$dir/"
    if [ ! -d "$dir/node_modules/@chainsafe/hashtree" ]; then
      if ! (cd "$dir" && npm install --no-audit --no-fund >"$OUT/npm-install.log" 2>&1); then
        echo "hashtree: skipped (npm install failed; see $OUT/npm-install.log)"
        return
      fi
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

# ---- ratios -----------------------------------------------------------------------------
echo "== ratios (best of $REPS repetitions, wall-clock time per item; lower is better)"
python3 - "$OUT" <<'PY'
import json, os, sys

out = sys.argv[1]

# (ours, reference, target): `ours` is a capmem-bench benchmark name; `reference` is either
# another benchmark name or "peer:<name>:<json key>" read from $OUT/peer-<name>.json (in ns).
# Add a line here for every new target.
TABLE = [
    ("BM_PageRoot", "peer:hashtree:ns_per_page_best", 0.5),
    ("BM_PageRoot_Impl/sha-ni", "peer:hashtree:ns_per_page_best", None),
    ("BM_CowFault", "BM_Memcpy4K", 2.0),
    ("BM_FrameAllocFree", "BM_GlibcAlignedAllocFree", 0.5),
]
NAMES = {"peer:hashtree:ns_per_page_best": "hashtree"}

with open(os.path.join(out, "capmem-bench.json")) as f:
    bench = json.load(f)

UNIT_NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}

def ns_per_item(run):
    # Wall-clock time per item, like the peers' harnesses measure. items_per_second is
    # computed from CPU time, which gives the items per iteration; real_time is per iteration.
    unit = UNIT_NS[run.get("time_unit", "ns")]
    real_ns, cpu_ns = run["real_time"] * unit, run["cpu_time"] * unit
    if run.get("items_per_second"):
        items_per_iter = run["items_per_second"] * cpu_ns * 1e-9
        return real_ns / items_per_iter
    return real_ns

best = {}
for run in bench["benchmarks"]:
    if run.get("run_type") != "iteration":
        continue
    name = run.get("run_name", run["name"])
    v = ns_per_item(run)
    best[name] = min(best.get(name, v), v)

def value(ref):
    if ref.startswith("peer:"):
        _, peer, key = ref.split(":", 2)
        path = os.path.join(out, "peer-%s.json" % peer)
        if not os.path.exists(path):
            return None, "peer %s not run" % peer
        with open(path) as f:
            return float(json.load(f)[key]), None
    if ref not in best:
        return None, "%s not in this run" % ref
    return best[ref], None

for ours, ref, target in TABLE:
    label = "%s / %s" % (ours, NAMES.get(ref, ref))
    a, why_a = value(ours)
    b, why_b = value(ref)
    if a is None or b is None:
        print("%s: skipped (%s)" % (label, why_a or why_b))
        continue
    tgt = "" if target is None else " (target <= %g)%s" % (target, "" if a / b <= target else "  MISSED")
    print("%s = %.2f%s   [%.1f ns vs %.1f ns]" % (label, a / b, tgt, a, b))
PY
