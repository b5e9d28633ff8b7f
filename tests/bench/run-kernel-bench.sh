#!/usr/bin/env bash
# In-kernel fault benchmarks (docs/performance.md "In-kernel fault benchmarks"): build
# capmem-kernel-bench in release mode, boot it under KVM with --smp 4 and write
# OUTDIR/kernel-bench.json from the image's `kbench: {...}` line and its `kbench-smp: {...}`
# line (CoW faults per second on 1, 2 and 4 CPUs, docs/smp.md) and its `kbench-needpage: {...}`
# line (the ring-3 NeedPage round trip, rule 8.2: resolve by bytes and by shared page).
#
#   tests/bench/run-kernel-bench.sh OUTDIR
#
# Without a usable /dev/kvm (readable, writable, and QEMU can start a KVM machine) it prints
# `kernel bench: skipped (...)` and exits 0 without writing the file: TCG timings say
# nothing about the fault path. CAPMEM_KBENCH_TCG=1 forces a TCG run, to check that the
# bench works; its figures are labelled TCG and go to OUTDIR/kernel-bench-tcg.json instead.
#
# Environment: BUILD (default <repo>/build-release, shared with run-bench.sh),
# KBENCH_APPEND (extra kernel command line, e.g. "kbench.reps=5" or "kbench.pages=32768"),
# KBENCH_MEM (QEMU memory, default 1G), KBENCH_SMP (CPUs, default 4), QEMU (the emulator binary).
# Exit status: 0 (figures written, or skipped), 1 the build or the bench run failed.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$1
BUILD=${BUILD:-$ROOT/build-release}
QEMU=${QEMU:-qemu-system-x86_64}
MEM=${KBENCH_MEM:-1G}
APPEND=${KBENCH_APPEND:-}
SMP=${KBENCH_SMP:-4}

kvm_usable() {
  [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  command -v "$QEMU" >/dev/null 2>&1 || return 1
  # QEMU must actually get a KVM machine (a container may expose the node without access).
  echo quit | timeout 20 "$QEMU" -M none -accel kvm -nodefaults -display none -monitor stdio -S \
    >/dev/null 2>&1
}

if kvm_usable; then
  mode=kvm
elif [ "${CAPMEM_KBENCH_TCG:-0}" = 1 ]; then
  mode=tcg
else
  echo "kernel bench: skipped (no usable /dev/kvm; TCG timings are not representative)"
  exit 0
fi

# ---- build ------------------------------------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" "$ROOT" -Dbuildtype=release
else
  meson configure "$BUILD" -Dbuildtype=release >/dev/null
fi
meson compile -C "$BUILD" kernel/image/capmem-kernel-bench
image=$BUILD/kernel/image/capmem-kernel-bench

# ---- run ----------------------------------------------------------------------------------
mkdir -p "$OUT"
log=$OUT/kernel-bench-$mode.log
if [ $mode = kvm ]; then
  json=$OUT/kernel-bench.json
  accel=(--kvm --timeout 600)  # qemu-run.sh: -accel kvm -cpu host
  echo "== kernel bench under KVM ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(date -u +%Y-%m-%dT%H:%MZ))"
else
  json=$OUT/kernel-bench-tcg.json
  accel=(--timeout 1200)       # qemu-run.sh: -accel tcg -cpu max
  echo "== kernel bench under TCG (CAPMEM_KBENCH_TCG=1): checks that it works; the figures are NOT representative"
fi
rm -f "$json"
set +e
"$ROOT/kernel/image/qemu-run.sh" "$image" "${accel[@]}" --smp "$SMP" -m "$MEM" ${APPEND:+-append "$APPEND"} >"$log" 2>&1
rc=$?
set -e
grep -E '^kbench(-smp|-needpage)?: ' "$log" | if [ $mode = tcg ]; then sed -E 's/^kbench(-smp|-needpage)?: /kbench\1 (TCG): /'; else cat; fi
if [ $rc -ne 0 ]; then
  echo "kernel bench: FAILED (qemu-run.sh status $rc; console in $log)" >&2
  tail -n 20 "$log" >&2
  exit 1
fi

line=$(grep '^kbench: {' "$log" | tail -n 1 | sed 's/^kbench: //')
smp_line=$(grep '^kbench-smp: {' "$log" | tail -n 1 | sed 's/^kbench-smp: //')
np_line=$(grep '^kbench-needpage: {' "$log" | tail -n 1 | sed 's/^kbench-needpage: //')
python3 - "$json" "$line" "$mode" "$smp_line" "$np_line" <<'PY'
import json, sys
path, line, mode, smp_line, np_line = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
keys = ["cow_write_fault_ns", "read_fault_ns", "read_fault_2mib_ns", "flush_ns_per_page", "tsc_mhz", "pages"]
smp_keys = ["cow_faults_per_sec_1cpu", "cow_faults_per_sec_2cpu", "cow_faults_per_sec_4cpu", "pages_per_cpu"]
d = json.loads(line)
missing = [k for k in keys if k not in d]
if missing:
    sys.exit(f"kernel bench: the kbench line lacks {missing}: {line}")
if not smp_line:
    sys.exit("kernel bench: no kbench-smp line (the SMP CoW case did not run)")
ds = json.loads(smp_line)
missing = [k for k in smp_keys if k not in ds]
if missing:
    sys.exit(f"kernel bench: the kbench-smp line lacks {missing}: {smp_line}")
if not np_line:
    sys.exit("kernel bench: no kbench-needpage line (the NeedPage round-trip case did not run)")
dn = json.loads(np_line)
np_keys = ["need_page_round_trip_bytes_ns", "need_page_round_trip_shared_ns", "need_page_resolve_bytes_ns",
           "need_page_resolve_shared_ns", "need_page_hash", "need_page_pages"]
missing = [k for k in np_keys if k not in dn]
if missing:
    sys.exit(f"kernel bench: the kbench-needpage line lacks {missing}: {np_line}")
out = {k: d[k] for k in keys}
out.update({"smp_" + k: ds[k] for k in smp_keys})
out.update({k: dn[k] for k in np_keys})
# The same as wall-clock ns per fault over all CPUs together (run-bench.sh's kernel ratio
# lines compare ns): 1e9 / faults per second; absent when that many CPUs were not online.
for n in (1, 2, 4):
    v = ds[f"cow_faults_per_sec_{n}cpu"]
    if v:
        out[f"smp_cow_fault_ns_{n}cpu"] = round(1e9 / v, 1)
with open(path, "w") as f:
    json.dump(out, f)
    f.write("\n")
label = " (TCG, not representative)" if mode == "tcg" else ""
print(f"kernel bench{label}: {path}")
print(f"  cow write fault  {out['cow_write_fault_ns']:>10} ns/page")
print(f"  read fault       {out['read_fault_ns']:>10} ns/page")
print(f"  2 MiB cluster    {out['read_fault_2mib_ns']:>10} ns/cluster (one fault, 512 pages mapped and loaded)")
print(f"  flush            {out['flush_ns_per_page']:>10} ns/page")
print(f"  TSC {out['tsc_mhz']} MHz, {out['pages']} pages")
one = ds["cow_faults_per_sec_1cpu"]
for n in (1, 2, 4):
    v = ds[f"cow_faults_per_sec_{n}cpu"]
    if v == 0:
        print(f"  CoW faults/s {n} CPU{'s' if n > 1 else ' '} {'not run (fewer CPUs online)':>22}")
        continue
    ratio = f"  ({v / one:.2f}x 1 CPU)" if one and n > 1 else ""
    print(f"  CoW faults/s {n} CPU{'s' if n > 1 else ' '} {v:>12}{ratio}")
print(f"  ({ds['pages_per_cpu']} CoW faults per CPU and round)")
print(f"  ring-3 NeedPage round trip, resolve by bytes (copy + hash {out['need_page_hash']})"
      f" {out['need_page_round_trip_bytes_ns']:>10} ns/page (resolve {out['need_page_resolve_bytes_ns']})")
print(f"  ring-3 NeedPage round trip, shared page (resolve_page, no hash)"
      f" {out['need_page_round_trip_shared_ns']:>10} ns/page (resolve_page {out['need_page_resolve_shared_ns']})")
PY
