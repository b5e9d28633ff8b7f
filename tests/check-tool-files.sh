#!/usr/bin/env bash
# The `capmem` tool's handling of files, as coreutils (cp, sha256sum) handles them. It runs
# as root on people's machines, so: OUT `-` is standard output; a device stays a device; a
# symlink OUT is followed; an existing OUT keeps its mode and hard links; nothing planted
# at a temp name is followed; SIGINT/SIGTERM/SIGHUP leave no temp file; a FIFO input waits for
# its writer (as sha256sum); an input truncated while read does not kill the tool; /proc
# files hash their real content; a failed write to stdout is an error; --gas takes only a
# plain decimal; `inspect` of a broken encoding names the check (and --raw reads bytes);
# decode/inspect never size anything from an unchecked claim.
#
#   tests/check-tool-files.sh CAPMEM VECTORS_DIR
set -uo pipefail
tool=$(realpath "$1"); vectors=$(realpath "$2")
tmp=$(mktemp -d)
bg=()
cleanup() {
  for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# CAPMEM_KEEP_GOING=1: report every failed check instead of stopping at the first (to see
# which cases an older tool fails).
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
  [ -n "${CAPMEM_KEEP_GOING:-}" ] || exit 1
}
[ -f "$vectors/abc.bin" ] || fail "no vectors at $vectors"
cd "$tmp" || exit 1
cp "$vectors/abc.bin" "$vectors/abc.ssz" "$vectors/empty.bin" "$vectors/mixed.ssz" "$vectors/mixed.bin" .
leftovers() { # temp files of the tool (.<name>.capmem-<hex>) in directory $1
  local n=0 f
  for f in "$1"/.*.capmem-*; do [ -e "$f" ] && n=$((n + 1)); done
  echo "$n"
}

# --- OUT ------------------------------------------------------------------------------
# `-` is standard output, not a file named `-`.
"$tool" encode abc.bin - > stdout.ssz || fail "encode to - exited non-zero"
cmp stdout.ssz abc.ssz || fail "encode to - did not write the encoding to stdout"
[ ! -e ./- ] || fail "encode to - created a file named -"
"$tool" decode mixed.ssz - | cmp -n "$(stat -c %s mixed.bin)" - mixed.bin || fail "decode to - differs"

# A character device stays a character device (written in place). As root a private node
# is used, so a broken tool cannot replace the system's /dev/null.
dev=/dev/null full=/dev/full
if [ "$(id -u)" = 0 ] && mknod "$tmp/null" c 1 3 2>/dev/null && mknod "$tmp/full" c 1 7 2>/dev/null; then
  dev=$tmp/null full=$tmp/full
fi
"$tool" encode abc.bin "$dev" || fail "encode to $dev exited non-zero"
"$tool" decode mixed.ssz "$dev" || fail "decode to $dev exited non-zero"
[ -c "$dev" ] || fail "$dev is no longer a character device"
[ "$(leftovers "$(dirname "$dev")")" = 0 ] || fail "temp file left beside $dev"
# Write errors on a device are reported.
if "$tool" encode abc.bin "$full" 2> err; then fail "encode to $full exited 0"; fi
grep -q 'No space left' err || fail "encode to $full: no error named: $(cat err)"
[ -c "$full" ] || fail "$full is no longer a character device"

# A FIFO OUT is written in place (the reader gets the bytes; it is not replaced by a file).
mkfifo outfifo
timeout 20 cat outfifo > fromfifo &
reader=$!; bg+=("$reader")
timeout 20 "$tool" encode abc.bin outfifo || fail "encode to a FIFO exited non-zero"
wait "$reader" || fail "the FIFO's reader got no end of file"
[ -p outfifo ] || fail "FIFO OUT is no longer a FIFO"
cmp fromfifo abc.ssz || fail "the FIFO's reader did not get the encoding"

# A symlink OUT writes through to its target; the link stays a link.
echo old > target; ln -s target link
"$tool" encode abc.bin link || fail "encode to a symlink exited non-zero"
[ -L link ] || fail "symlink OUT was replaced instead of followed"
cmp target abc.ssz || fail "symlink OUT: target does not hold the encoding"
ln -s nowhere dangling
if "$tool" encode abc.bin dangling 2> err; then fail "encode through a dangling symlink exited 0"; fi
[ -L dangling ] && [ ! -e nowhere ] || fail "dangling symlink OUT was replaced or followed"

# An existing OUT keeps its mode; a new one gets 0666 & ~umask.
echo old > moded; chmod 600 moded
"$tool" encode abc.bin moded || fail "encode over a mode-600 file"
[ "$(stat -c %a moded)" = 600 ] || fail "OUT lost its mode: $(stat -c %a moded)"
cmp moded abc.ssz || fail "mode-600 OUT does not hold the encoding"
(umask 027 && "$tool" encode abc.bin fresh) || fail "encode to a new file"
[ "$(stat -c %a fresh)" = 640 ] || fail "new OUT under umask 027 has mode $(stat -c %a fresh)"

# An OUT with hard links is written in place: every link sees the new content.
echo old > link1; ln link1 link2
"$tool" encode abc.bin link1 || fail "encode over a hard-linked file"
cmp link2 abc.ssz || fail "hard link of OUT still has the old content"
[ "$(stat -c %h link1)" = 2 ] || fail "OUT lost its hard link"
"$tool" decode mixed.ssz link1 || fail "decode over a hard-linked file"
cmp -n "$(stat -c %s mixed.bin)" link2 mixed.bin || fail "decode over a hard link: link differs"

# A symlink planted at the temp name a predictable tool would use (OUT.tmp.<pid>: the
# pid is known to whoever starts the tool) is never followed, and no temp file remains.
echo precious > victim
bash -c 'ln -s victim planted.tmp.$$; exec "$0" encode abc.bin planted' "$tool" || fail "encode with a planted symlink"
[ "$(cat victim)" = precious ] || fail "a symlink planted at the temp name made the tool overwrite its target"
cmp planted abc.ssz || fail "planted: OUT does not hold the encoding"
[ "$(leftovers .)" = 0 ] || fail "temp files left behind: $(ls -A)"

# SIGINT, SIGTERM and SIGHUP remove the temp file (and OUT is not created). The input is a
# FIFO whose writer sends nothing, so the tool waits in read() with its temp file open.
mkfifo slow
for sig in INT TERM HUP; do
  mkdir "sig$sig"
  sleep 60 > slow &
  writer=$!; bg+=("$writer")
  env --default-signal="$sig" "$tool" encode slow "sig$sig/out" &
  pid=$!; bg+=("$pid")
  for _ in $(seq 200); do [ "$(leftovers "sig$sig")" = 1 ] && break; sleep 0.05; done
  [ "$(leftovers "sig$sig")" = 1 ] || fail "SIG$sig: no temp file appeared while the tool waited for input"
  kill -"$sig" "$pid"
  wait "$pid" 2>/dev/null; rc=$?
  kill "$writer" 2>/dev/null; wait "$writer" 2>/dev/null
  [ "$rc" = $((128 + $(kill -l "$sig"))) ] || fail "SIG$sig: exit status $rc, expected death by the signal"
  [ -z "$(ls -A "sig$sig")" ] || fail "SIG$sig left files behind: $(ls -A "sig$sig")"
done

# --- Input ----------------------------------------------------------------------------
# (FIFO inputs: see "Input and commands" below.)
# Standard input and a pipe are streams too.
[ "$("$tool" root - < abc.bin | cut -c1-64)" = "$("$tool" root abc.bin | cut -c1-64)" ] || fail "root of - differs"

# /proc files hash their real content (their size is 0 to stat).
cat /proc/version > version.copy
[ "$("$tool" root /proc/version | cut -c1-64)" = "$("$tool" root version.copy | cut -c1-64)" ] ||
  fail "root of /proc/version is not the root of its content"

# An input truncated (and regrown) while it is read never kills the tool (no SIGBUS).
truncate -s 256M shrinking
perl -e 'my $f = shift; my $end = time + 60;
  while (time < $end && -e $f) { truncate($f, 0); truncate($f, 256 << 20); }' shrinking &
bg+=($!)
for _ in 1 2 3; do
  "$tool" root shrinking > /dev/null 2> err; rc=$?
  [ "$rc" -lt 128 ] || fail "root of a file truncated while read died with signal $((rc - 128)): $(cat err)"
  "$tool" inspect --raw shrinking > /dev/null 2> err; rc=$?
  [ "$rc" -lt 128 ] || fail "inspect of a file truncated while read died with signal $((rc - 128))"
done
rm -f shrinking

# --- root streams: same root as the cap DataCap::from_bytes builds --------------------
# `encode` builds the cap with from_bytes; `inspect` of the encoding decodes it and prints
# its root. Sizes around a page and around root's 1 MiB read buffer; zero pages inside and
# at the end (Empty, rule 2.2); an all-zero file.
head -c $((3 << 20)) /dev/urandom > rnd
for spec in 0 1 4095 4096 4097 $((1 << 20)) $(((1 << 20) - 1)) $(((1 << 20) + 4096 + 7)) $(((2 << 20) + 5)); do
  head -c "$spec" rnd > "sz$spec"
done
{ head -c 8192 rnd; head -c 8192 /dev/zero; head -c 100 rnd; } > holes-inside
{ head -c 5000 rnd; head -c $((1 << 20)) /dev/zero; } > zero-tail
head -c 12288 /dev/zero > all-zero
for f in sz* holes-inside zero-tail all-zero; do
  "$tool" encode "$f" "$f.ssz" || fail "encode $f"
  want=$("$tool" inspect --encoded "$f.ssz" | sed -n 's/^root:    //p')
  [ -n "$want" ] && [ "$("$tool" root "$f" | cut -c1-64)" = "$want" ] || fail "root of $f is not the from_bytes root"
  [ "$("$tool" root - < "$f" | cut -c1-64)" = "$want" ] || fail "root of $f through a pipe differs"
done

# --- Standard output errors -----------------------------------------------------------
if "$tool" root abc.bin > /dev/full 2> err; then fail "root > /dev/full exited 0"; fi
[ "$(wc -l < err)" = 1 ] || fail "root > /dev/full: expected one line on stderr, got: $(cat err)"
grep -q 'No space left' err || fail "root > /dev/full: error not named: $(cat err)"
if "$tool" inspect abc.ssz > /dev/full 2> err; then fail "inspect > /dev/full exited 0"; fi
[ "$(wc -l < err)" = 1 ] || fail "inspect > /dev/full: expected one line on stderr"

# --- Arguments ------------------------------------------------------------------------
for g in -1 18446744073709551616 "" +7 " 7" 7x 0x10; do
  if "$tool" demo --quiet --gas "$g" > /dev/null 2> err; then fail "demo --gas '$g' accepted"; fi
  grep -qF -- "--gas" err && grep -qF "'$g'" err || fail "demo --gas '$g': error does not name the argument: $(cat err)"
done
if "$tool" demo --gas 2> err; then fail "demo --gas without a value accepted"; fi
"$tool" demo --quiet --gas 18446744073709551615 > /dev/null || fail "demo --gas UINT64_MAX rejected"

# --- inspect of a broken encoding; --raw ---------------------------------------------
cp abc.ssz forged.ssz; printf '\xff' | dd of=forged.ssz bs=1 seek=200 conv=notrunc 2>/dev/null
if "$tool" inspect forged.ssz > out 2> err; then fail "inspect of a forged encoding exited 0"; fi
[ "$(wc -l < err)" = 1 ] || fail "inspect forged: expected one line on stderr, got: $(cat err)"
grep -q 'rule 2.5' err && grep -q 'byte offset' err || fail "inspect forged: check not named: $(cat err)"
"$tool" inspect --raw forged.ssz > out || fail "inspect --raw of a forged encoding"
grep -q '(raw bytes)' out || fail "inspect --raw did not read raw bytes"
grep -q "root:    $("$tool" root forged.ssz | cut -c1-64)" out || fail "inspect --raw root differs from root"
"$tool" inspect abc.bin | grep -q '(raw bytes)' || fail "inspect of a plain file is not raw bytes"
"$tool" inspect abc.ssz | grep -q '(encoding)' || fail "inspect of a valid encoding is not an encoding"

# --- Nothing sized from a claim -------------------------------------------------------
# A 256 GiB sparse file: rejected from its header, under a 1 GiB address-space limit. A
# sanitizer build reserves terabytes of shadow address space at start-up, so there the limit
# is lifted (the plain build runs the same cases under it).
vlimit=1048576
libs=$(ldd "$tool" 2>/dev/null || true)  # whole output first: grep -q under pipefail would SIGPIPE ldd
case $libs in *libasan* | *libtsan*) vlimit=unlimited ;; esac
truncate -s 256G huge
for cmd in decode inspect; do
  args=(huge); [ "$cmd" = decode ] && args+=(huge.out)
  (ulimit -v "$vlimit" && exec "$tool" "$cmd" "${args[@]}") > /dev/null 2> err; rc=$?
  [ "$rc" = 1 ] || fail "$cmd of a 256 GiB sparse file: exit status $rc: $(cat err)"
  [ "$(wc -l < err)" = 1 ] || fail "$cmd of a 256 GiB sparse file: expected one line, got: $(cat err)"
done
(ulimit -v "$vlimit" && exec "$tool" decode huge huge.out) 2> err
grep -q 'byte offset 0' err || fail "decode of a 256 GiB sparse file: not rejected at its header: $(cat err)"
(ulimit -v "$vlimit" && exec "$tool" inspect huge) 2> err
grep -q 'larger than 4 GiB' err || fail "inspect of a 256 GiB sparse file: not rejected for its size: $(cat err)"
[ ! -e huge.out ] || fail "decode of a rejected input created OUT"
rm -f huge
# A 12-byte header claiming 4 GiB of Empty pages: the output is a 4 GiB hole, not 4 GiB
# of written zeros.
printf '\x00\x00\x00\x00\x01\x00\x00\x00\x0c\x00\x00\x00' > claim.ssz
(ulimit -v "$vlimit" && exec "$tool" decode claim.ssz claim.out) || fail "decode of a 4 GiB Empty cap"
[ "$(stat -c %s claim.out)" = 4294967296 ] || fail "decode of a 4 GiB Empty cap: size $(stat -c %s claim.out)"
[ "$(stat -c %b claim.out)" -lt 2048 ] || fail "decode wrote $(stat -c %b claim.out) blocks for a 4 GiB hole"
# Empty pages inside a cap are holes too, and read back as zeros.
"$tool" decode mixed.ssz mixed.out || fail "decode mixed"
cmp -n "$(stat -c %s mixed.bin)" mixed.out mixed.bin || fail "decode of mixed.ssz differs"
# ... and real zeros in a stream.
printf '\x00\x00\x01\x00\x00\x00\x00\x00\x0c\x00\x00\x00' > claim64k.ssz
"$tool" decode claim64k.ssz - | cat > claim64k.out || fail "decode to a pipe"
[ "$(stat -c %s claim64k.out)" = 65536 ] && cmp -n 65536 claim64k.out /dev/zero || fail "decode to a pipe: not 64 KiB of zeros"
# An input longer than any encoding its header allows is rejected without reading it all.
{ cat abc.ssz; head -c 100 /dev/zero; } > long.ssz
if "$tool" decode long.ssz long.out 2> err; then fail "decode of an over-long encoding exited 0"; fi
grep -q 'byte offset' err || fail "over-long encoding: no offset named: $(cat err)"
[ ! -e long.out ] && [ "$(leftovers .)" = 0 ] || fail "over-long encoding: output left behind"

# === Input and commands (issue 20) ====================================================
# A FIFO opened before its writer waits for the writer, as sha256sum does, and hashes the
# writer's bytes (it read as empty before: the root of nothing, exit 0). The tool is started
# first and seen blocked in the FIFO's open (wchan) before the writer starts.
mkfifo latefifo
"$tool" root latefifo > late.root &
reader=$!; bg+=("$reader")
for _ in $(seq 100); do
  case $(cat "/proc/$reader/wchan" 2>/dev/null) in *fifo* | *partner*) break ;; esac
  kill -0 "$reader" 2>/dev/null || break
  sleep 0.05
done
timeout 10 sh -c 'exec cat abc.bin > latefifo' || fail "FIFO input: the writer found no reader (the tool did not wait for it)"
timeout 20 tail --pid="$reader" -f /dev/null
if kill -0 "$reader" 2>/dev/null; then kill "$reader"; fail "root of a FIFO: still running after its writer closed"; fi
wait "$reader"; rc=$?
[ "$rc" = 0 ] || fail "root of a FIFO opened before its writer exited $rc"
[ "$(cut -c1-64 late.root)" = "$("$tool" root abc.bin | cut -c1-64)" ] ||
  fail "root of a FIFO opened before its writer is not the root of the writer's bytes: $(cat late.root)"

# Options only before the operands; `--` ends them; an operand named -h is a file.
mkdir opts && cp abc.bin opts/a && printf 'not help' > opts/-h
want_h=$(cd opts && "$tool" root -- -h | cut -c1-64)
(cd opts && "$tool" root a -h) > opts.out 2> err; rc=$?
[ "$rc" = 0 ] || fail "root a -h: exit $rc: $(cat err)"
! grep -q usage opts.out || fail "root a -h printed help"
[ "$(sed -n 2p opts.out)" = "$want_h  -h" ] || fail "root a -h: no line for the file -h: $(cat opts.out)"
[ "$(sed -n 1p opts.out | cut -c1-64)" = "$("$tool" root abc.bin | cut -c1-64)" ] || fail "root a -h: a's line wrong"
[ -n "$want_h" ] && [ "$want_h" != "$("$tool" root empty.bin | cut -c1-64)" ] || fail "root -- -h: not the file's root"
(cd opts && "$tool" root -- a -h) | cmp -s - opts.out || fail "root -- a -h differs from root a -h"
(cd opts && "$tool" root ./-h) | grep -q "^$want_h  ./-h\$" || fail "root ./-h"
"$tool" root -h | grep -q 'usage: capmem root' || fail "root -h (leading) does not print help"
"$tool" root --help abc.bin | grep -q 'usage: capmem root' || fail "root --help FILE does not print help"
if "$tool" root abc.bin --help > out 2> err; then fail "root FILE --help (no such file) exited 0"; fi
grep -q -- '--help: No such file' err && ! grep -q usage out || fail "root FILE --help: not a file operand: $(cat err)"
if "$tool" root -x abc.bin > out 2> err; then fail "root -x (unknown option) exited 0"; fi
grep -q "unknown option '-x'" err || fail "root -x: error does not name it: $(cat err)"
"$tool" inspect --raw -- abc.ssz | grep -q '(raw bytes)' || fail "inspect --raw -- FILE"
"$tool" demo --quiet --gas=1000 > /dev/null || fail "demo --gas=N"
"$tool" encode -- abc.bin -- && cmp -- -- abc.ssz || fail "encode -- abc.bin -- (OUT named --)"

# Names are printed as sha256sum prints them: a backslash, newline or carriage return gets
# the line a leading backslash and is escaped, so a name cannot forge a line. The expected
# lines are sha256sum's own with its digest replaced by the root.
if command -v sha256sum > /dev/null; then
  mkdir names
  for n in 'back\slash' "$(printf 'new\nline')" "$(printf 'cr\rname')" "$(printf 'x\n%064d  forged' 0)" plain; do
    printf '%s' "$n" > "names/$n"
    (cd names && "$tool" root "$n") > got 2> err || fail "root of a file named $(printf %q "$n"): $(cat err)"
    r=$("$tool" root - < "names/$n" | cut -c1-64)
    (cd names && sha256sum "$n") | sed "s/[0-9a-f]\{64\}/$r/" > want
    cmp -s got want || fail "root of $(printf %q "$n"): $(od -c got | head -3) is not sha256sum's form $(od -c want | head -3)"
    [ "$(wc -l < got)" = 1 ] || fail "root of $(printf %q "$n"): $(wc -l < got) lines"
  done
else
  echo "SKIP: names escaped as sha256sum escapes them (no sha256sum)"
fi

# encode keeps memory bounded: a 1 MiB buffer, a bit per page and 32 bytes per non-zero page.
# A seekable input is read twice; a pipe's non-zero pages go to an unlinked file in TMPDIR
# (none is made for an all-zero input: TMPDIR=/nonexistent proves it). It read the whole
# input into memory before (1 GiB of zeros from a pipe: a 1.07 GB peak to write 12 bytes).
# Peak RSS from GNU time; under ASan/TSan the shadow and quarantine are resident too, so
# there only the bytes are checked.
rss_bound=16384 # KiB
case $libs in *libasan* | *libtsan*) rss_bound= ;; esac
[ -x /usr/bin/time ] || { rss_bound=; echo "SKIP: encode's peak memory (no /usr/bin/time)"; }
peak_ok() { # $1: what; the peak of the last `timed` command against the bound
  [ -z "$rss_bound" ] || [ "$(tail -n 1 rss.kib)" -lt "$rss_bound" ] ||
    fail "$1: peak RSS $(tail -n 1 rss.kib) KiB, bound $rss_bound KiB"
}
timed() { if [ -x /usr/bin/time ]; then /usr/bin/time -f %M -o rss.kib "$@"; else "$@"; fi; }
# The encoding of 1 GiB of zeros: size 2^30, first offset 12, no slots (rule 5.1).
printf '\x00\x00\x00\x40\x00\x00\x00\x00\x0c\x00\x00\x00' > zeros1g.want
head -c $((1 << 30)) /dev/zero | TMPDIR=/nonexistent timed "$tool" encode - zeros1g.ssz 2> err ||
  fail "encode of 1 GiB of zeros from a pipe: $(cat err)"
cmp zeros1g.ssz zeros1g.want || fail "encode of 1 GiB of zeros from a pipe: wrong bytes"
peak_ok "encode of 1 GiB of zeros from a pipe"
truncate -s 1G sparse1g
TMPDIR=/nonexistent timed "$tool" encode sparse1g sparse1g.ssz 2> err || fail "encode of a 1 GiB sparse file: $(cat err)"
cmp sparse1g.ssz zeros1g.want || fail "encode of a 1 GiB sparse file: wrong bytes"
peak_ok "encode of a 1 GiB sparse file"
rm -f sparse1g
# Non-zero data, from a file (two passes) and from a pipe (spooled): the same bytes, the
# vectors' bytes, and an encoding that decodes to the input with the root `root` streams.
for f in "$vectors"/*.bin; do
  b=$(basename "$f" .bin)
  [ -f "$vectors/$b.ssz" ] || continue
  cat "$f" | "$tool" encode - "pipe-$b.ssz" || fail "encode of $b.bin from a pipe"
  cmp "pipe-$b.ssz" "$vectors/$b.ssz" || fail "encode of $b.bin from a pipe differs from $b.ssz"
done
{ head -c $((24 << 20)) /dev/urandom; head -c $((8 << 20)) /dev/zero; head -c $((32 << 20)) /dev/urandom; head -c 3000 rnd; } > data64m
timed "$tool" encode data64m data64m.ssz 2> err || fail "encode of 64 MiB from a file: $(cat err)"
peak_ok "encode of 64 MiB from a file"
cat data64m | timed "$tool" encode - data64m.pipe.ssz 2> err || fail "encode of 64 MiB from a pipe: $(cat err)"
peak_ok "encode of 64 MiB from a pipe"
cmp data64m.ssz data64m.pipe.ssz || fail "encode of 64 MiB: a pipe and a file give different bytes"
[ "$("$tool" inspect --encoded data64m.ssz | sed -n 's/^root:    //p')" = "$("$tool" root data64m | cut -c1-64)" ] ||
  fail "encode of 64 MiB: the encoding's root is not the file's root"
# decode and inspect stream too (codec::decode_pages: DataCap::decode's checks, each
# verified page handed out; a pipe's encoding is spooled): bounded from a file and a pipe.
timed "$tool" decode data64m.ssz data64m.out 2> err && cmp -n "$(stat -c %s data64m)" data64m.out data64m ||
  fail "encode of 64 MiB: the encoding does not decode to the input: $(cat err)"
peak_ok "decode of a 64 MiB encoding from a file"
cat data64m.ssz | timed "$tool" decode - data64m.out 2> err && cmp -n "$(stat -c %s data64m)" data64m.out data64m ||
  fail "decode of a 64 MiB encoding from a pipe: $(cat err)"
peak_ok "decode of a 64 MiB encoding from a pipe"
for src in file pipe; do
  if [ "$src" = file ]; then timed "$tool" inspect data64m.ssz > out 2> err; else
    cat data64m.ssz | timed "$tool" inspect - > out 2> err; fi
  grep -q "root:    $("$tool" root data64m | cut -c1-64)" out && grep -q '(encoding)' out ||
    fail "inspect of a 64 MiB encoding from a $src: $(cat out err)"
  peak_ok "inspect of a 64 MiB encoding from a $src"
done
head -c 100 abc.ssz | TMPDIR=/nonexistent "$tool" decode - nospool.out 2> err && fail "decode of a pipe with TMPDIR=/nonexistent exited 0"
grep -q '/nonexistent.*No such file' err || fail "decode's spool in a missing TMPDIR: not named: $(cat err)"
rm -f data64m.out data64m.pipe.ssz
# The spool's errors name the directory and the reason; OUT is not created.
head -c 100000 rnd | TMPDIR=/nonexistent "$tool" encode - nospool.ssz 2> err && fail "encode with TMPDIR=/nonexistent exited 0"
grep -q '/nonexistent.*No such file' err || fail "spool in a missing TMPDIR: not named: $(cat err)"
[ ! -e nospool.ssz ] || fail "spool failure: OUT created"
if [ "$(id -u)" = 0 ] && unshare -m true 2> /dev/null; then
  # A 1 MiB tmpfs as TMPDIR, in a private mount namespace (nothing to unmount after).
  mkdir small
  head -c $((4 << 20)) rnd | unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs small && TMPDIR=small exec "$0" encode - full.ssz' "$tool" 2> err &&
    fail "encode spooling 4 MiB into a 1 MiB TMPDIR exited 0"
  grep -q 'small.*No space left on device' err || fail "spool ENOSPC: not reported by name: $(cat err)"
  [ ! -e full.ssz ] && [ "$(leftovers .)" = 0 ] || fail "spool ENOSPC: output left behind"
else
  echo "SKIP: encode's spool on a full TMPDIR (needs root and unshare -m for a private tmpfs)"
fi
# An input that changes between the passes is an error naming the page, never an encoding
# mixing two versions. A writer counts up in page 7 without pause; every run either sees
# one version (an encoding that decodes) or names page 7, and some run names it.
head -c $((32 << 20)) /dev/urandom > moving
perl -e 'open(my $f, "+<", $ARGV[0]) or die; my ($i, $end) = (0, time + 120);
  while (time < $end && -e $ARGV[0]) { sysseek($f, 7 * 4096, 0); syswrite($f, pack("Q", ++$i)); }' moving &
flipper=$!; bg+=("$flipper")
changed=0
for _ in $(seq 10); do
  if "$tool" encode moving moving.ssz 2> err; then
    "$tool" decode moving.ssz moving.out 2> err || fail "an input changing while encoded gave a bad encoding: $(cat err)"
  else
    grep -q 'changed while it was read: page 7 ' err || fail "an input changing while encoded: page 7 not named: $(cat err)"
    changed=$((changed + 1))
    break
  fi
done
kill "$flipper" 2> /dev/null; wait "$flipper" 2> /dev/null
[ "$changed" != 0 ] || fail "encode of an input rewritten throughout: no run saw the change (read once?)"
[ ! -e moving.ssz ] || [ "$changed" = 0 ] || "$tool" decode moving.ssz /dev/null ||
  fail "the OUT of an earlier run was damaged by a failed one"
rm -f moving moving.ssz moving.out
# IN and OUT the same file (by a second name or a hard link, so OUT would be written in
# place while IN is read): refused as cp refuses it, and the file is untouched.
cp abc.bin self.bin && ln self.bin self.link && ln -s self.bin self.sym
for o in self.bin self.link self.sym; do
  for cmd in encode decode; do
    if "$tool" "$cmd" self.bin "$o" 2> err; then fail "$cmd self.bin $o exited 0"; fi
    grep -q 'are the same file' err || fail "$cmd self.bin $o: not refused as the same file: $(cat err)"
    cmp self.bin abc.bin || fail "$cmd self.bin $o changed the input"
  done
done

[ "$failures" = 0 ] || { echo "tool-files: $failures checks failed"; exit 1; }
echo "tool-files: all checks passed"
