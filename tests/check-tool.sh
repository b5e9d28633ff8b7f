#!/usr/bin/env bash
# The `capmem` host tool as a user runs it: roots and encodings agree byte for byte with the
# vectors computed by an SSZ implementation outside this project; bad input is one line on
# stderr, a non-zero exit and no partial output; `capmem demo` engines agree.
set -uo pipefail
tool=$(realpath "$1"); vectors=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$vectors" || fail "no vectors at $vectors"
"$tool" root *.bin > "$tmp/roots" || fail "capmem root exited non-zero"
diff -u ROOTS "$tmp/roots" || fail "capmem root disagrees with ROOTS"
for f in *.bin; do
  b=${f%.bin}
  "$tool" encode "$f" "$tmp/$b.ssz" || fail "encode $f"
  cmp "$tmp/$b.ssz" "$b.ssz" || fail "encode $f differs from $b.ssz"
  "$tool" decode "$b.ssz" "$tmp/$b.out" || fail "decode $b.ssz"
  n=$(stat -c %s "$f")
  cmp -n "$n" "$tmp/$b.out" "$f" || fail "decode $b.ssz bytes differ"
  [ -z "$(tail -c +$((n + 1)) "$tmp/$b.out" | tr -d '\0')" ] || fail "decode $b.ssz: tail past the file is not zero"
  "$tool" inspect "$b.ssz" | grep -q "root:    $(grep " $f\$" ROOTS | cut -d' ' -f1)" || fail "inspect $b.ssz root"
done
# Bad input: truncated, forged, unknown command, missing file.
head -c 100 mixed.ssz > "$tmp/trunc.ssz"
if "$tool" decode "$tmp/trunc.ssz" "$tmp/out" 2> "$tmp/err"; then fail "truncated encoding accepted"; fi
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "expected one line on stderr, got: $(cat "$tmp/err")"
grep -q 'byte offset' "$tmp/err" || fail "error does not name the offset: $(cat "$tmp/err")"
[ ! -e "$tmp/out" ] && [ -z "$(ls "$tmp" | grep '^out')" ] || fail "partial output left behind"
cp abc.ssz "$tmp/forged.ssz"; printf '\xff' | dd of="$tmp/forged.ssz" bs=1 seek=200 conv=notrunc 2>/dev/null
"$tool" decode "$tmp/forged.ssz" "$tmp/out" 2> "$tmp/err" && fail "forged page accepted"
grep -q 'rule 2.5' "$tmp/err" || fail "forged page error does not name rule 2.5: $(cat "$tmp/err")"
"$tool" frobnicate 2>/dev/null && fail "unknown command accepted"
"$tool" root "$tmp/does-not-exist" 2>/dev/null && fail "missing file accepted"
"$tool" --help | grep -q 'usage: capmem' || fail "--help"
"$tool" demo --help | grep -q 'usage: capmem demo' || fail "demo --help"
"$tool" demo --quiet | grep -Eq '^root=[0-9a-f]{64} gas=[0-9]+ cow=[0-9]+ page_in=[0-9]+$' || fail "demo final line"
"$tool" demo --gas 1000 | grep -q 'stopped: out of gas' || fail "demo --gas does not report where it stopped"
echo "tool: all checks passed"
