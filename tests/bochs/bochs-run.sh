#!/usr/bin/env bash
# Boot the capmem kernel image from a GRUB ISO under Bochs with one CPU model and judge the
# run by what the kernel prints. See docs/boot.md "Bochs".
#
#   bochs-run.sh MKISO KERNEL MODEL [options]
#     --ktest FILTER        kernel command line ktest=FILTER (default: every case)
#     --supported "A B .."  hash back ends the model must offer, in the kernel's order
#     --active NAME         the back end hash::init() must pick
#     --xcr0 HEX            the XCR0 value the kernel must report (e.g. 0xe7)
#     --timeout SECS        hang timeout (default 600)
#     --cmdline "ARGS"      more kernel command line (e.g. crash=ud)
#     --pack FILE           pass the page pack FILE as a Multiboot2 module (mkiso.sh --module)
#                           and its page count on the command line (ktest.pack=N)
#     --cpus N              N emulated processors (bochsrc `cpu: count=N`; default 1)
#     --keep DIR            copy the console, bochs.log and bochsrc to DIR (for smp-check)
#     --expect-fail REGEX   the run must FAIL: a console line matching REGEX, no clean
#                           summary, and Bochs ended by the kernel's shutdown-port write
#                           (not by the timeout): the exit path on a failure
#
# Bochs setup: display `term` (curses on a pseudo-terminal of its own; never `rfb`, which
# listens on TCP), the kernel's console on COM1 into a file and port 0xe9 (port_e9_hack)
# on stdout, the debugger build told to continue by an -rc file. Bochs ignores SIGTERM once
# the guest sits in `cli; hlt`: the timeout sends SIGKILL 5 s after SIGTERM. Bochs's exit
# status is never used (it exits 1 after the shutdown port, and has crashed after a clean
# summary): the verdict is the kernel's `N passed, 0 failed` line plus the expectations.
#
# Exit: 0 pass, 1 fail (kernel failure, wrong back end, hang), 77 Bochs, its BIOS images or
# the GRUB tools are not installed (meson: skip).
set -u

usage() { echo "usage: $0 MKISO KERNEL MODEL [--ktest F] [--supported LIST] [--active NAME] [--xcr0 HEX] [--timeout S]" >&2; exit 1; }
[ $# -ge 3 ] || usage
mkiso=$1 kernel=$2 model=$3
shift 3
filter='' supported='' active='' xcr0='' timeout_s=600 extra='' expect_fail='' cpus=1 keep='' pack=''
while [ $# -gt 0 ]; do
  case "$1" in
    --ktest) filter=$2; shift ;;
    --supported) supported=$2; shift ;;
    --active) active=$2; shift ;;
    --xcr0) xcr0=$2; shift ;;
    --timeout) timeout_s=$2; shift ;;
    --cmdline) extra=$2; shift ;;
    --expect-fail) expect_fail=$2; shift ;;
    --cpus) cpus=$2; shift ;;
    --keep) keep=$2; shift ;;
    --pack) pack=$2; shift ;;
    *) usage ;;
  esac
  shift
done

bochs=${BOCHS:-bochs-bin}
bios=/usr/share/bochs/BIOS-bochs-latest
vgabios=/usr/share/vgabios/vgabios.bin
missing=()
command -v "$bochs" >/dev/null 2>&1 || missing+=(bochs)
[ -f "$bios" ] || missing+=(bochsbios)
[ -f "$vgabios" ] || missing+=(vgabios)
[ -f /usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so ] || missing+=(bochs-term)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bochs-run: SKIP: missing Debian packages: ${missing[*]} (./dev installs them)"
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/capmem-bochs.XXXXXX")
# shellcheck disable=SC2016  # expanded when the trap runs
trap '[ -n "$keep" ] && mkdir -p "$keep" && cp -f "$dir"/com1.txt "$dir"/bochs.log "$dir"/bochsrc "$keep"/ 2>/dev/null; rm -rf "$dir"' EXIT
modules=()
if [ -n "$pack" ]; then
  modules=(--module "$pack")
  extra="$extra ktest.pack=$(od -An -tu4 -j8 -N4 "$pack" | tr -d ' ')"
fi
# shellcheck disable=SC2086  # $extra: words of the command line
"$mkiso" "${modules[@]}" "$kernel" "$dir/capmem.iso" ${filter:+ktest=$filter} $extra >"$dir/mkiso.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  cat "$dir/mkiso.log"
  [ $rc -eq 77 ] && { echo "bochs-run: SKIP: cannot build the GRUB ISO"; exit 77; }
  echo "bochs-run: FAIL: building the ISO failed" >&2
  exit 1
fi

# clock sync=none: emulated time follows the instruction count, so the run is deterministic
# and as fast as the host allows; ips only scales the BIOS/GRUB timer waits.
cat > "$dir/bochsrc" <<RC
memory: guest=256, host=256
cpu: model=$model, count=$cpus, ips=20000000
romimage: file=$bios
vgaromimage: file=$vgabios
display_library: term
ata0-master: type=cdrom, path=$dir/capmem.iso, status=inserted
boot: cdrom
port_e9_hack: enabled=1
com1: enabled=1, mode=file, dev=$dir/com1.txt
log: $dir/bochs.log
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
clock: sync=none
mouse: enabled=0
speaker: enabled=0
sound: driver=dummy
RC
printf 'continue\n' > "$dir/debugger.rc"

start=$(date +%s)
# stdin /dev/null: the term display then opens a pseudo-terminal of its own (/dev/ptmx).
(cd "$dir" && TERM=xterm timeout -k 5 "$timeout_s" "$bochs" -q -f "$dir/bochsrc" -rc "$dir/debugger.rc" \
  </dev/null >"$dir/stdout.txt" 2>"$dir/stderr.txt")
bochs_rc=$?
secs=$(( $(date +%s) - start ))
# CPU time of the children (mkiso, Bochs): with the CPUs oversubscribed the wall time says little.
# `times` must run in this shell (a pipeline or $(...) would fork and see no children).
times >"$dir/times.txt"
cpu=$(tail -n 1 "$dir/times.txt" | awk '{ gsub(/[ms]/, " "); printf "%.0f", $1 * 60 + $2 + $3 * 60 + $4 }')

out=$dir/com1.txt
[ -s "$out" ] || out=$dir/stdout.txt   # no COM1 output at all: judge by port 0xe9
grep -aE '^(capmem|boot|cpu|hash|ktest|mem|kernel demo|\[ (FAIL|OK) \]|[0-9]+ passed)' "$out" | grep -av '^\[ OK \]'

fail() {
  echo "bochs-run: FAIL ($model, ${secs}s wall, ${cpu}s CPU): $*" >&2
  echo "--- last lines of the console ($out):" >&2
  tail -n 20 "$out" >&2
  echo "--- last lines of bochs.log:" >&2
  tail -n 15 "$dir/bochs.log" >&2 2>/dev/null
  exit 1
}

summary=$(grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
if [ -n "$expect_fail" ]; then
  case $bochs_rc in 124|137) fail "hang: Bochs still running after ${timeout_s}s, killed" ;; esac
  grep -aqE "$expect_fail" "$out" || fail "no console line matching /$expect_fail/"
  [[ $summary =~ ^[0-9]+\ passed,\ 0\ failed$ ]] && fail "expected a failure, got: $summary"
  grep -aq 'Shutdown port: shutdown requested' "$dir/stderr.txt" "$dir/bochs.log" ||
    fail "Bochs did not stop through the shutdown port (exit status $bochs_rc)"
  echo "bochs-run: PASS ($model, ${secs}s wall, ${cpu}s CPU: failed as expected, left through the shutdown port)"
  exit 0
fi
if [ -z "$summary" ]; then
  case $bochs_rc in
    124|137) fail "hang: no summary after ${timeout_s}s, Bochs killed" ;;
    *) fail "no summary line (Bochs exit status $bochs_rc)" ;;
  esac
fi
[[ $summary =~ ^[0-9]+\ passed,\ 0\ failed$ ]] || fail "the kernel reported failure: $summary"
[[ $summary =~ ^0\ passed ]] && fail "no case ran: $summary"
grep -aq '^capmem kernel: Multiboot2 entry' "$out" || fail "not entered through Multiboot2"

if [ -n "$xcr0" ]; then
  grep -aqE "^cpu: .* xcr0=$xcr0 " "$out" || fail "expected xcr0=$xcr0"
fi
if [ -n "$supported" ] || [ -n "$active" ]; then
  line=$(grep -aE '^hash: supported:' "$out" | tail -n 1)
  want="hash: supported: $supported; active: $active"
  [ "$line" = "$want" ] || fail "back ends: got '$line', expected '$want'"
fi
# Every back end the model offers was forced and checked (ktest_hash.cpp prints these lines
# only when the hash cases ran and that back end passed).
if [ -n "$supported" ] && grep -aq '^\[ OK \] hash_each_supported_impl_gives_vector_roots' "$out"; then
  for impl in $supported; do
    grep -aqx "hash: $impl gives the vector roots" "$out" || fail "$impl: no vector-root line"
    grep -aqx "hash: $impl equals portable on random pages" "$out" || fail "$impl: no random-page line"
  done
elif [ -n "$supported" ]; then
  fail "the hash cases did not run (filter '$filter')"
fi
echo "bochs-run: PASS ($model, ${secs}s wall, ${cpu}s CPU: $summary)"
exit 0
