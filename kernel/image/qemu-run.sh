#!/usr/bin/env bash
# Boot the capmem kernel image under QEMU and report its verdict.
#
#   qemu-run.sh KERNEL|IMAGE.iso [--kvm] [--smp N] [--timeout SECS] [extra qemu args...]
#
# KERNEL is booted with `-kernel` (PVH); a file ending in .iso (kernel/image/mkiso.sh, a
# GRUB rescue ISO) with `-cdrom` (SeaBIOS, GRUB, then the kernel's Multiboot2 entry).
# --smp N: N CPUs (-smp N); under TCG with one host thread per CPU (-accel tcg,thread=multi),
# so the CPUs really run at the same time.
#
# Console: the kernel writes to the QEMU debug console (port 0xe9), shown here on stdout
# (-debugcon stdio). It ends with `isa-debug-exit`: QEMU then exits with (code << 1) | 1,
# so 1 means the kernel reported success and 3 failure.
#
# Exit status of this script:
#   0   the kernel passed (isa-debug-exit 0 AND its last summary line says `0 failed`)
#   1   the kernel reported failure (isa-debug-exit 1)
#   2   QEMU exited without isa-debug-exit: reset/triple fault (-no-reboot) or power-off
#   3   timeout: a hang was killed
#   4   QEMU itself failed (bad arguments, missing kernel, ...)
#   77  --kvm was asked for but /dev/kvm is not usable (meson counts 77 as a skip)
set -u

usage() { echo "usage: $0 KERNEL|IMAGE.iso [--kvm] [--smp N] [--timeout SECS] [qemu args...]" >&2; exit 4; }
[ $# -ge 1 ] || usage
kernel=$1
shift
kvm=0
smp=1
timeout_s=${CAPMEM_QEMU_TIMEOUT:-60}
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kvm) kvm=1 ;;
    --smp) shift; smp=$1 ;;
    --timeout) shift; timeout_s=$1 ;;
    *) extra+=("$1") ;;
  esac
  shift
done

[ -f "$kernel" ] || { echo "qemu-run: no kernel image at $kernel (build first)" >&2; exit 4; }
# QEMU's PVH option ROM copies -append into a 4096-byte buffer without a bound: a longer line
# overruns the start_info after it, and the kernel then finds no hand-off at all. The kernel
# takes 4095 bytes and refuses a 4096-byte line itself (docs/boot.md "The kernel command line").
for ((i = 0; i + 1 < ${#extra[@]}; i++)); do
  if [ "${extra[i]}" = -append ] && [ ${#extra[i + 1]} -gt 4096 ]; then
    echo "qemu-run: -append is ${#extra[i + 1]} bytes; the kernel takes at most 4095 (and QEMU's PVH ROM overruns its buffer past 4096)" >&2
    exit 4
  fi
done
qemu=${QEMU:-qemu-system-x86_64}
if ! command -v "$qemu" >/dev/null 2>&1; then
  echo "qemu-run: $qemu not found" >&2
  # Under meson, a missing emulator is a skip, not a failure of capmem.
  [ -n "${MESON_TEST_ITERATION:-}" ] && exit 77
  exit 4
fi

if [ $kvm = 1 ]; then
  if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "qemu-run: /dev/kvm is not usable here: skipping the KVM boot"
    exit 77
  fi
  accel=(-accel kvm -cpu host)
else
  # TCG with every feature QEMU can emulate (QEMU 7.2 TCG: SSE4.x, AVX, AVX2; no SHA-NI,
  # no AVX-512); the kernel prints which hash implementations CPUID offers.
  accel=(-accel tcg -cpu max)
  [ "$smp" -gt 1 ] && accel=(-accel tcg,thread=multi -cpu max)
fi
accel+=(-smp "$smp")

case $kernel in
  *.iso) boot=(-cdrom "$kernel" -boot d) ;;
  *) boot=(-kernel "$kernel") ;;
esac

log=$(mktemp "${TMPDIR:-/tmp}/capmem-qemu.XXXXXX")
trap 'rm -f "$log"' EXIT

# -M pc -nodefaults: no VGA/NIC; neither the PVH loader nor SeaBIOS+GRUB needs them. -no-reboot turns a
# triple fault (reset) into an exit with status 0, which is NOT a pass (see above).
# stdin is /dev/null so QEMU never touches the terminal and timeout can run it unattended.
timeout --foreground -k 5 "$timeout_s" "$qemu" \
  -M pc -nodefaults -no-reboot -display none -monitor none -serial none \
  "${accel[@]}" -m 256M \
  "${boot[@]}" \
  -debugcon stdio \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  "${extra[@]}" </dev/null 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
case $rc in
  1)
    if [[ $summary =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
      echo "qemu-run: PASS ($summary)"
      exit 0
    fi
    if grep -q 'capmem kernel:' "$log"; then
      echo "qemu-run: FAIL: kernel exited with status 0 but printed no clean summary" >&2
      exit 1
    fi
    if [ $kvm = 1 ] && grep -qiE 'kvm' "$log"; then
      echo "qemu-run: KVM could not be initialized: skipping the KVM boot"
      exit 77
    fi
    echo "qemu-run: FAIL: QEMU exited with status 1 before the kernel ran" >&2
    exit 4
    ;;
  3)
    echo "qemu-run: FAIL: the kernel reported failure${summary:+ ($summary)}" >&2
    exit 1
    ;;
  0)
    echo "qemu-run: FAIL: QEMU exited without isa-debug-exit (reset or triple fault?)" >&2
    exit 2
    ;;
  124|137)
    echo "qemu-run: FAIL: timeout after ${timeout_s}s (hang killed)" >&2
    exit 3
    ;;
  *)
    echo "qemu-run: FAIL: QEMU exited with status $rc" >&2
    exit 4
    ;;
esac
