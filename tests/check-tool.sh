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
# demo --pack OUT: the demo's pages as a page pack (rule 8.7): inspect checks every page against
# its index root; the same bytes every time and through standard output; nothing on stdout.
"$tool" demo --pack "$tmp/demo.pak" > "$tmp/demo.pack.out" || fail "demo --pack"
[ ! -s "$tmp/demo.pack.out" ] || fail "demo --pack printed: $(head -c 200 "$tmp/demo.pack.out")"
"$tool" inspect "$tmp/demo.pak" > "$tmp/demo.insp" || fail "inspect of the demo's pack: $(cat "$tmp/demo.insp")"
n=$(sed -n 's/^pages:   \([0-9]*\),.*/\1/p' "$tmp/demo.insp")
# tests/demo/demo.h: a 1024-page mem cap, every 7th page Empty (at least 877 pseudo-random
# pages), and a 16-page code cap.
[ -n "$n" ] && [ "$n" -ge 877 ] && [ "$n" -le 1040 ] && [ "$(stat -c %s "$tmp/demo.pak")" -ge $((4096 * (n + 1))) ] ||
  fail "demo --pack: $(cat "$tmp/demo.insp")"
"$tool" demo --pack - | cmp -s - "$tmp/demo.pak" || fail "demo --pack - differs (not deterministic?)"
"$tool" unpack "$tmp/demo.pak" "$tmp/demo.store" && [ "$(find "$tmp/demo.store" -type f | wc -l)" = "$n" ] ||
  fail "demo --pack: unpack does not give $n pages"
# demo --thin (rule 8): the line of `capmem demo` plus need_page=N (N > 0), at the default gas
# and when gas runs out early (rule 8.3); the pages from a second build, from the pack of
# demo --pack and from that pack unpacked. A store that lacks the pages or holds them wrong
# is exit 1 naming why (the run's request is declined, rule 8.2).
for g in 1000000 1000; do
  full=$("$tool" demo --quiet --gas "$g") || fail "demo --gas $g"
  for s in "" "$tmp/demo.pak" "$tmp/demo.store"; do
    thin=$("$tool" demo --thin --quiet --gas "$g" ${s:+--store "$s"}) || fail "demo --thin --gas $g ${s:+--store $s}"
    [[ $thin =~ ^"$full need_page="[1-9][0-9]*$ ]] || fail "demo --thin ${s:+--store $s} --gas $g: '$thin', full run '$full'"
  done
done
"$tool" demo --thin | grep -q 'thin: mem' || fail "demo --thin does not say what is thin"
mkdir "$tmp/demo.empty"
if "$tool" demo --thin --quiet --store "$tmp/demo.empty" 2> "$tmp/err"; then fail "demo --thin from an empty store exited 0"; fi
grep -q 'a page request was not answered (no page with that root in the store)' "$tmp/err" ||
  fail "demo --thin from an empty store: $(cat "$tmp/err")"
# Byte 9 of every page flipped (the pages are the last 4096 x n bytes; header and index kept).
perl -e 'local $/; my $d = <STDIN>; my $n = shift; my $base = length($d) - 4096 * $n;
  substr($d, $base + 4096 * $_ + 9, 1) ^= "\xff" for 0 .. $n - 1; print $d' "$n" < "$tmp/demo.pak" > "$tmp/demo.bad.pak"
if "$tool" demo --thin --quiet --store "$tmp/demo.bad.pak" 2> "$tmp/err"; then fail "demo --thin from a damaged pack exited 0"; fi
grep -q "a page request was not answered (the bytes do not hash to the Missing page's hash)" "$tmp/err" ||
  fail "demo --thin from a damaged pack: $(cat "$tmp/err")"
"$tool" demo --store "$tmp/demo.pak" 2> /dev/null && fail "demo --store without --thin accepted"
"$tool" demo --thin --pack "$tmp/x.pak" 2> /dev/null && fail "demo --pack --thin accepted"
# Progress bar: over 64 MiB and stderr a terminal (script(1) gives it a pty) the bar moves
# through intermediate percentages while hashing and verifying; without a terminal, stderr
# stays empty and stdout is the same.
yes 'capmem progress' | head -c $((72 << 20)) > "$tmp/big"
"$tool" root "$tmp/big" > "$tmp/big.root" 2> "$tmp/big.err" || fail "root of a 72 MiB file"
[ ! -s "$tmp/big.err" ] || fail "progress bar written to a non-terminal: $(head -c 200 "$tmp/big.err")"
if command -v script >/dev/null; then
  script -qec "'$tool' root '$tmp/big'" /dev/null > "$tmp/big.tty" || fail "root under a terminal"
  grep -q "$(cut -c1-64 "$tmp/big.root")" "$tmp/big.tty" || fail "root under a terminal differs"
  grep -aEq 'hashing \[[#.]{40}\] +[1-9][0-9]?%' "$tmp/big.tty" || fail "no intermediate hashing progress shown"
  "$tool" encode "$tmp/big" "$tmp/big.ssz" || fail "encode of a 72 MiB file"
  script -qec "'$tool' decode '$tmp/big.ssz' '$tmp/big.out'" /dev/null > "$tmp/big.tty" || fail "decode under a terminal"
  grep -aEq 'verifying \[[#.]{40}\] +[1-9][0-9]?%' "$tmp/big.tty" || fail "no intermediate verifying progress shown"
  cmp "$tmp/big" "$tmp/big.out" || fail "decode of the 72 MiB encoding differs"
fi
echo "tool: all checks passed"
