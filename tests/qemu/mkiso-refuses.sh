#!/usr/bin/env bash
# mkiso-refuses: kernel/image/mkiso.sh (and so `./dev iso ARGS`) writes ARGS into grub.cfg's
# kernel line only: a byte outside A-Z a-z 0-9 . , _ = + - : / and the space is refused with a
# message naming it, before any tool runs and without writing the ISO (no boot needed); a
# --module file whose name (its module2 string) holds such a byte, or that is missing, too.
#   mkiso-refuses.sh MKISO KERNEL
set -u
mkiso=$1 kernel=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/capmem-mkisotest.XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail=0
refused() {  # refused DESCRIPTION BYTES-SHOWN ARG...
  local what=$1 shown=$2
  shift 2
  out=$("$mkiso" "$kernel" "$dir/out.iso" "$@" 2>&1)
  rc=$?
  echo "=== $what: rc $rc: $out"
  [ $rc = 1 ] || { echo "mkiso-refuses: FAIL: $what: mkiso.sh returned $rc, want 1"; fail=1; }
  grep -qF "may hold only A-Z a-z 0-9 . , _ = + - : / and spaces; refused: $shown" <<<"$out" ||
    { echo "mkiso-refuses: FAIL: $what: no message naming '$shown'"; fail=1; }
  [ ! -e "$dir/out.iso" ] || { echo "mkiso-refuses: FAIL: $what: an ISO was written"; fail=1; rm -f "$dir/out.iso"; }
}
# A single quote, then a newline that would start a second grub.cfg command (and close the
# menu entry): both got through before.
refused "single quote" "'" "ktest=a'b"
refused "newline + grub.cfg commands" '\n } \n' "$(printf 'ktest=a\n}\nmenuentry x {')"
refused "double quote" '"' 'ktest="a"'
# shellcheck disable=SC2016,SC1003  # literal $ and \ on purpose
refused "dollar" '$' 'ktest=$root'
# shellcheck disable=SC1003
refused "backslash" '\' 'ktest=a\b'
refused "semicolon" ';' 'ktest=a;reboot'
refused "hash" '#' 'ktest=a#b'
refused "tab" '\t' "$(printf 'ktest=a\tb')"
refused "non-ASCII" '303 251' "$(printf 'ktest=caf\xc3\xa9')"
refused "the bad word among good ones" '{' ktest=boot 'acpi=scan{'
# A module's file name becomes its module2 string: the same rule, without '/' and spaces.
: >"$dir/a;reboot"
out=$("$mkiso" --module "$dir/a;reboot" "$kernel" "$dir/out.iso" 2>&1)
rc=$?
echo "=== module name with ';': rc $rc: $out"
[ $rc = 1 ] || { echo "mkiso-refuses: FAIL: module name: mkiso.sh returned $rc, want 1"; fail=1; }
grep -qF "a module's file name may hold only" <<<"$out" || { echo "mkiso-refuses: FAIL: module name: no message"; fail=1; }
[ ! -e "$dir/out.iso" ] || { echo "mkiso-refuses: FAIL: module name: an ISO was written"; fail=1; }
out=$("$mkiso" --module "$dir/none" "$kernel" "$dir/out.iso" 2>&1)
rc=$?
echo "=== missing module file: rc $rc: $out"
[ $rc = 1 ] && grep -qF "no module file at $dir/none" <<<"$out" ||
  { echo "mkiso-refuses: FAIL: a missing module file not refused by name"; fail=1; }
[ $fail = 0 ] && echo "mkiso-refuses: ok"
exit $fail
