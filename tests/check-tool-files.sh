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
flip_byte() { # invert every bit of byte $2 of file $1 in place: always a change, whatever the byte was
  local b
  b=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
  [ -n "$b" ] || fail "flip_byte: $1 has no byte $2"
  printf "\\$(printf %03o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2> /dev/null
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
# FIFO whose writer sends nothing, so the tool waits in read() with its temp file open (an
# O_TMPFILE has no name: the tool is seen holding a file in the directory; every other
# catchable signal, named temps and SIGKILL: the "OUT: output path" block at the end).
holds_file_in() { # pid dir: the process has a file in dir open
  local f d
  d=$(realpath "$2")
  for f in /proc/"$1"/fd/*; do [[ $(readlink "$f" 2>/dev/null) == "$d"/* ]] && return 0; done
  return 1
}
mkfifo slow
for sig in INT TERM HUP; do
  mkdir "sig$sig"
  sleep 60 > slow &
  writer=$!; bg+=("$writer")
  env --default-signal="$sig" "$tool" encode slow "sig$sig/out" &
  pid=$!; bg+=("$pid")
  for _ in $(seq 200); do holds_file_in "$pid" "$tmp/sig$sig" && break; sleep 0.05; done
  holds_file_in "$pid" "$tmp/sig$sig" || fail "SIG$sig: the tool made no temp file while it waited for input"
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
cp abc.ssz forged.ssz; chmod u+w forged.ssz; printf '\xff' | dd of=forged.ssz bs=1 seek=200 conv=notrunc 2>/dev/null
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

# --- OUT: output path (issue 20) ------------------------------------------------------
# Who may write OUT, what a replaced OUT keeps, what is written in place, our own
# descriptors as OUT, closed standard descriptors, and signals. Cases that need root or a
# filesystem feature say what is missing and are skipped.
skip() { echo "SKIP: $*"; }
head -c 100 mixed.ssz > trunc.ssz
head -c $((2 << 20)) /dev/urandom > rnd2m
"$tool" encode rnd2m rnd2m.ssz || fail "encode rnd2m"
ulimit -c 0  # signals whose default dumps core (QUIT, XFSZ, XCPU) leave no core file here
inode() { stat -c %i "$1"; }

# A plain file is still replaced by rename (new inode), keeping owner and mode; a new OUT
# is made with O_TMPFILE and linked in when complete. Concurrent writers to one OUT: the
# result is one writer's complete output, and no temp file stays.
echo old > plain; chmod 640 plain; ino=$(inode plain)
[ "$(id -u)" != 0 ] || chown 1:1 plain  # as root, someone else's file
want=$(stat -c %u:%g:%a plain)
"$tool" encode abc.bin plain || fail "encode over a plain file"
cmp plain abc.ssz && [ "$(inode plain)" != "$ino" ] || fail "a plain OUT was not replaced by rename"
[ "$(stat -c %u:%g:%a plain)" = "$want" ] || fail "replaced OUT lost owner or mode: $(stat -c %u:%g:%a plain), was $want"
mkdir conc
for _ in 1 2 3 4 5; do
  "$tool" encode rnd2m conc/out & p1=$!
  "$tool" encode abc.bin conc/out & p2=$!
  wait "$p1" || fail "concurrent writer 1 failed"
  wait "$p2" || fail "concurrent writer 2 failed"
  cmp -s conc/out rnd2m.ssz || cmp -s conc/out abc.ssz || fail "concurrent writers: OUT is neither writer's output"
done
[ "$(ls -A conc)" = out ] || fail "concurrent writers left files behind: $(ls -A conc)"

# Set-id bits and file capabilities do not survive new content, replaced or in place.
for m in 4755 2755 6755; do
  echo old > "setid$m"; chmod "$m" "setid$m"
  "$tool" encode abc.bin "setid$m" || fail "encode over a mode-$m file"
  [ "$(stat -c %a "setid$m")" = 755 ] || fail "set-id bits survived new content: mode $(stat -c %a "setid$m") from $m"
  echo old > "setidl$m"; ln "setidl$m" "setidl$m.link"; chmod "$m" "setidl$m"
  "$tool" encode abc.bin "setidl$m" || fail "encode over a hard-linked mode-$m file"
  [ "$(stat -c %a "setidl$m")" = 755 ] || fail "set-id bits survived in-place content: $(stat -c %a "setidl$m") from $m"
done
if [ "$(id -u)" = 0 ] && command -v setcap > /dev/null && command -v getcap > /dev/null; then
  echo old > capf; echo old > capl; ln capl capl.link
  if setcap cap_net_raw+ep capf 2> /dev/null && setcap cap_net_raw+ep capl; then
    "$tool" encode abc.bin capf && "$tool" encode abc.bin capl || fail "encode over a file with capabilities"
    [ -z "$(getcap capf capl)" ] || fail "file capabilities survived new content: $(getcap capf capl)"
  else
    skip "file capabilities: this filesystem refuses setcap"
  fi
else
  skip "file capabilities: need root and setcap/getcap (Debian package libcap2-bin)"
fi

# What a new file would not have keeps OUT in place (same inode, the attribute kept):
# an ACL, a user.* attribute, an SELinux label.
if command -v setfacl > /dev/null && command -v getfacl > /dev/null; then
  echo old > acl
  if setfacl -m u:65534:rw acl 2> /dev/null; then
    ino=$(inode acl)
    "$tool" encode abc.bin acl || fail "encode over a file with an ACL"
    cmp acl abc.ssz || fail "OUT with an ACL does not hold the encoding"
    getfacl -n acl 2> /dev/null | grep -q '^user:65534:rw-' || fail "OUT lost its ACL: $(getfacl -n acl 2>&1)"
    [ "$(inode acl)" = "$ino" ] || fail "OUT with an ACL was replaced instead of written in place"
  else
    skip "ACL case: this filesystem refuses setfacl"
  fi
else
  skip "ACL case: needs setfacl/getfacl (Debian package acl)"
fi
if command -v setfattr > /dev/null && command -v getfattr > /dev/null; then
  echo old > xat
  if setfattr -n user.capmem -v kept xat 2> /dev/null; then
    "$tool" encode abc.bin xat || fail "encode over a file with a user.* attribute"
    cmp xat abc.ssz || fail "OUT with a user.* attribute does not hold the encoding"
    [ "$(getfattr --only-values -n user.capmem xat 2> /dev/null)" = kept ] || fail "OUT lost its user.* attribute"
    # A rejected input leaves it byte-identical.
    if "$tool" decode trunc.ssz xat 2> /dev/null; then fail "decode of a truncated encoding into xat exited 0"; fi
    cmp xat abc.ssz || fail "a rejected input changed an in-place OUT (user.* attribute)"
  else
    skip "user.* case: this filesystem refuses user.* attributes"
  fi
  echo old > label
  if [ "$(id -u)" = 0 ] && setfattr -n security.selinux -v system_u:object_r:capmem_test_t:s0 label 2> /dev/null; then
    "$tool" encode abc.bin label || fail "encode over a file with an SELinux label"
    [ "$(getfattr --only-values -n security.selinux label 2> /dev/null | tr -d '\0')" = \
      system_u:object_r:capmem_test_t:s0 ] || fail "OUT lost its SELinux label"
    cmp label abc.ssz || fail "OUT with an SELinux label does not hold the encoding"
  else
    skip "SELinux label case: needs root and a filesystem/LSM that takes this security.selinux value"
  fi
else
  skip "user.* and SELinux label cases: need setfattr/getfattr (Debian package attr)"
fi

# A bind-mounted OUT (rename gives EBUSY) is written in place, in a private mount
# namespace so nothing outlives the case.
echo old > bsrc; echo old > bout
if [ "$(id -u)" = 0 ] && unshare -m --propagation private mount --bind bsrc bout 2> /dev/null; then
  unshare -m --propagation private bash -c 'mount --bind "$1" "$2" || exit 9
    "$3" encode abc.bin "$2" || exit 1
    "$3" decode trunc.ssz "$2" 2> /dev/null && exit 2
    mountpoint -q "$2" || exit 3' _ bsrc bout "$tool"
  case $? in
    0) cmp bsrc abc.ssz || fail "bind-mounted OUT: the mounted file does not hold the encoding" ;;
    1) fail "encode to a bind-mounted OUT failed" ;;
    2) fail "decode of a truncated encoding into a bind-mounted OUT exited 0" ;;
    3) fail "bind-mounted OUT is no longer a mount point" ;;
    *) fail "bind-mounted OUT: the mount failed in the namespace" ;;
  esac
  cmp bsrc abc.ssz || fail "a rejected input changed a bind-mounted OUT"
else
  skip "bind-mounted OUT: needs root and mount namespaces (unshare -m)"
fi

# Wherever OUT is written in place, nothing reaches it until the whole result is known
# good. Under `ulimit -f` the tool dies of SIGXFSZ while making a 2 MiB encoding: a
# hard-linked OUT (and a FIFO's reader) still has exactly the old bytes, and the spool
# in TMPDIR is gone.
mkdir spool
echo old > inpl; ln inpl inpl.link; cp inpl inpl.before
{ (ulimit -f 256 && TMPDIR=$tmp/spool exec "$tool" encode rnd2m inpl); } 2> /dev/null; rc=$?
[ "$rc" = $((128 + $(kill -l XFSZ))) ] || fail "encode under ulimit -f: exit status $rc, expected SIGXFSZ"
cmp inpl inpl.before || fail "a failed in-place write changed OUT (it was written before the result was complete)"
[ -z "$(ls -A spool)" ] || fail "spool file left in TMPDIR: $(ls -A spool)"
TMPDIR=$tmp/spool "$tool" encode rnd2m inpl || fail "encode of 2 MiB into a hard-linked OUT"
cmp inpl.link rnd2m.ssz && [ -z "$(ls -A spool)" ] || fail "2 MiB in place through the spool differs (or the spool stayed)"
printf '\x00\x00\x00\x00\x01\x00\x00\x00\x0c\x00\x00\x00' > claim4g.ssz
TMPDIR=$tmp/spool "$tool" decode claim4g.ssz inpl || fail "decode of a 4 GiB Empty cap into a hard-linked OUT"
[ "$(stat -c %s inpl.link)" = 4294967296 ] && [ "$(stat -c %b inpl.link)" -lt 2048 ] ||
  fail "4 GiB Empty cap in place: size $(stat -c %s inpl.link), $(stat -c %b inpl.link) blocks (not a hole)"
rm -f inpl inpl.link
mkfifo badfifo
timeout 20 cat badfifo > frombad &
reader=$!; bg+=("$reader")
if timeout 20 "$tool" decode trunc.ssz badfifo 2> /dev/null; then fail "decode of a truncated encoding into a FIFO exited 0"; fi
wait "$reader"
[ ! -s frombad ] || fail "a rejected input wrote $(stat -c %s frombad) bytes into a FIFO OUT"

# As an unprivileged user (setpriv): a root-owned 0444 OUT in a world-writable directory is
# refused, as cp refuses it; a root-owned 0666 OUT keeps its owner (written in place, since
# the owner cannot be given to a new file); a writable OUT in an unwritable directory is
# written in place.
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups true; then
  as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
  chmod 711 "$tmp"; mkdir pub; chmod 777 pub
  cp "$tool" pub/capmem; cp abc.bin trunc.ssz pub/; chmod 755 pub/capmem; chmod 644 pub/abc.bin pub/trunc.ssz
  echo old > pub/ro; chmod 444 pub/ro
  if as_nobody pub/capmem encode pub/abc.bin pub/ro 2> err; then fail "nobody replaced a root-owned 0444 OUT"; fi
  grep -q 'Permission denied' err || fail "0444 OUT: error does not say why: $(cat err)"
  [ "$(cat pub/ro)" = old ] && [ "$(stat -c %u pub/ro)" = 0 ] || fail "0444 OUT was changed"
  [ "$(leftovers pub)" = 0 ] || fail "0444 OUT: temp file left behind"
  echo old > pub/shared; chmod 666 pub/shared
  as_nobody pub/capmem encode pub/abc.bin pub/shared || fail "nobody could not write a 0666 OUT"
  cmp pub/shared abc.ssz || fail "0666 OUT does not hold the encoding"
  [ "$(stat -c %u:%g pub/shared)" = 0:0 ] || fail "OUT's owner silently changed to $(stat -c %u:%g pub/shared)"
  # Its own new OUT, then replacing it (O_TMPFILE linked in through /proc/self/fd, as an
  # unprivileged linkat(AT_EMPTY_PATH) is refused): by rename, a new inode.
  as_nobody pub/capmem encode pub/abc.bin pub/newf || fail "nobody could not make a new OUT"
  ino=$(inode pub/newf)
  as_nobody pub/capmem encode pub/abc.bin pub/newf || fail "nobody could not replace its own OUT"
  cmp pub/newf abc.ssz && [ "$(stat -c %u pub/newf)" = 65534 ] && [ "$(inode pub/newf)" != "$ino" ] ||
    fail "nobody's own OUT was not replaced by rename"
  [ "$(leftovers pub)" = 0 ] || fail "nobody: temp file left behind"
  mkdir pub/rodir; echo old > pub/rodir/mine; chown 65534:65534 pub/rodir/mine; chmod 555 pub/rodir
  as_nobody pub/capmem encode pub/abc.bin pub/rodir/mine || fail "writable OUT in an unwritable directory failed"
  cmp pub/rodir/mine abc.ssz || fail "writable OUT in an unwritable directory does not hold the encoding"
  if as_nobody pub/capmem decode pub/trunc.ssz pub/rodir/mine 2> /dev/null; then fail "truncated input accepted"; fi
  cmp pub/rodir/mine abc.ssz || fail "a rejected input changed an OUT in an unwritable directory"
  chmod 755 pub/rodir
else
  skip "unprivileged-user cases: need root and setpriv (util-linux)"
fi

# /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N (and a symlink to one) are that
# descriptor: a pipe gets the bytes, a file opened to append is appended to, not replaced.
"$tool" encode abc.bin /dev/stdout | cat > viaout || fail "encode to /dev/stdout (a pipe) failed"
cmp viaout abc.ssz || fail "encode to /dev/stdout (a pipe) differs"
{ "$tool" encode abc.bin /dev/stderr 2>&1 > /dev/null | cat > viaerr; } || fail "encode to /dev/stderr failed"
cmp viaerr abc.ssz || fail "encode to /dev/stderr (a pipe) differs"
"$tool" encode abc.bin /proc/self/fd/3 3>&1 | cat > via3 || fail "encode to /proc/self/fd/3 failed"
cmp via3 abc.ssz || fail "encode to /proc/self/fd/3 (a pipe) differs"
"$tool" encode abc.bin /dev/fd/3 3> viafd || fail "encode to /dev/fd/3 failed"
cmp viafd abc.ssz || fail "encode to /dev/fd/3 (a file) differs"
ln -s /dev/stdout tostdout
"$tool" encode abc.bin tostdout | cat > viasym || fail "encode to a symlink to /dev/stdout failed"
cmp viasym abc.ssz && [ -L tostdout ] || fail "encode to a symlink to /dev/stdout differs"
echo head > app; ino=$(inode app)
"$tool" encode abc.bin /dev/stdout >> app || fail "encode to /dev/stdout appending to a file failed"
{ echo head; cat abc.ssz; } | cmp - app || fail "/dev/stdout opened to append: the file was not appended to"
[ "$(inode app)" = "$ino" ] || fail "/dev/stdout: the shell's open file was renamed over"
"$tool" decode mixed.ssz /dev/stdout > viadec || fail "decode to /dev/stdout (a file)"
cmp -n "$(stat -c %s mixed.bin)" viadec mixed.bin || fail "decode to /dev/stdout differs"
if "$tool" encode abc.bin /proc/self/fd/9 2> err; then fail "encode to a closed /proc/self/fd/9 exited 0"; fi
grep -q 'Bad file descriptor' err || fail "closed /proc/self/fd/9: error not named: $(cat err)"

# A closed descriptor 0, 1 or 2 at start: nothing the tool writes lands in OUT, and a
# rejected input leaves an in-place (hard-linked) OUT byte-identical.
cp abc.ssz keep; chmod u+w keep; ln keep keep.link
for fd in 0 1 2; do
  case $fd in
    0) ( exec <&- "$tool" decode trunc.ssz keep ) 2> /dev/null; rc=$? ;;
    1) ( exec >&- "$tool" decode trunc.ssz keep ) 2> /dev/null; rc=$? ;;
    2) ( exec 2>&- "$tool" decode trunc.ssz keep ); rc=$? ;;
  esac
  [ "$rc" = 1 ] || fail "fd $fd closed: a truncated encoding gave exit status $rc"
  cmp keep abc.ssz || fail "fd $fd closed: the in-place OUT changed (an error message landed in it?)"
  case $fd in
    0) ( exec <&- "$tool" encode mixed.bin keep ); rc=$? ;;
    1) ( exec >&- "$tool" encode mixed.bin keep ); rc=$? ;;
    2) ( exec 2>&- "$tool" encode mixed.bin keep ); rc=$? ;;
  esac
  [ "$rc" = 0 ] && cmp keep mixed.ssz || fail "fd $fd closed: encode into an in-place OUT (rc $rc)"
  cat abc.ssz > keep
done
if (exec >&- "$tool" root abc.bin) 2> err; then fail "root with standard output closed exited 0"; fi
grep -q 'Bad file descriptor' err || fail "root with standard output closed: error not named: $(cat err)"

# Every catchable terminating signal removes the temp file, OUT is not created, and the
# tool dies of the signal. The handler matters where the temp has a name
# (CAPMEM_NO_TMPFILE=1: the path taken where O_TMPFILE does not work); with O_TMPFILE
# (INT, TERM, HUP above; SIGKILL below) nothing is ever named.
mkfifo slow2
for sig in INT TERM HUP QUIT PIPE ALRM USR1 USR2 XCPU VTALRM PROF; do
  d=$tmp/s$sig; mkdir "$d"
  sleep 60 > slow2 &
  writer=$!; bg+=("$writer")
  env --default-signal="$sig" CAPMEM_NO_TMPFILE=1 "$tool" encode slow2 "$d/out" &
  pid=$!; bg+=("$pid")
  for _ in $(seq 200); do [ "$(leftovers "$d")" = 1 ] && break; sleep 0.05; done
  [ "$(leftovers "$d")" = 1 ] || fail "SIG$sig: no named temp file while the tool waited (CAPMEM_NO_TMPFILE=1)"
  kill -"$sig" "$pid"
  wait "$pid" 2> /dev/null; rc=$?
  kill "$writer" 2> /dev/null; wait "$writer" 2> /dev/null
  [ "$rc" = $((128 + $(kill -l "$sig"))) ] || fail "SIG$sig: exit status $rc, expected death by the signal"
  [ -z "$(ls -A "$d")" ] || fail "SIG$sig left files behind: $(ls -A "$d")"
done
for named in "" 1; do
  # SIGXFSZ from `ulimit -f` while the temp file is written.
  d=$tmp/sXFSZ$named; mkdir "$d"
  { (ulimit -f 256 && exec env ${named:+CAPMEM_NO_TMPFILE=1} "$tool" encode rnd2m "$d/out"); } 2> /dev/null; rc=$?
  [ "$rc" = $((128 + $(kill -l XFSZ))) ] || fail "SIGXFSZ${named:+ (named)}: exit status $rc"
  [ -z "$(ls -A "$d")" ] || fail "SIGXFSZ${named:+ (named temp)} left files behind: $(ls -A "$d")"
done
# SIGKILL cannot be caught: with O_TMPFILE there is still nothing to leave behind (no
# named temp is visible while the tool works).
mkdir sKILL
sleep 60 > slow2 &
writer=$!; bg+=("$writer")
"$tool" encode slow2 sKILL/out &
pid=$!; bg+=("$pid")
for _ in $(seq 200); do holds_file_in "$pid" sKILL && break; sleep 0.05; done
holds_file_in "$pid" sKILL || fail "SIGKILL: the tool made no temp file while it waited for input"
[ -z "$(ls -A sKILL)" ] || fail "O_TMPFILE: a named temp is visible: $(ls -A sKILL)"
kill -KILL "$pid"; wait "$pid" 2> /dev/null
kill "$writer" 2> /dev/null; wait "$writer" 2> /dev/null
[ -z "$(ls -A sKILL)" ] || fail "SIGKILL left files behind: $(ls -A sKILL)"

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

# === Thin caps and page stores (issue 22; rules 8.6, 8.7; docs/page-store.md) ===========
# A page's rule 1.2 root, computed by the full encoder (a one-page encoding holds it at
# bytes 17..48), itself checked against the vectors' FIRST_PAGE_ROOTS.
page_root() { # FILE: the root of its first 4096 bytes (zero-padded)
  head -c 4096 "$1" | "$tool" encode - - | tail -c +18 | head -c 32 | od -An -tx1 | tr -d ' \n'
}
[ "$(page_root abc.bin)" = "$(grep ' abc.bin$' "$vectors/FIRST_PAGE_ROOTS" | cut -c1-64)" ] ||
  fail "page_root helper disagrees with FIRST_PAGE_ROOTS"
entry() { echo "$1/$(echo "$2" | cut -c1-2)/$(echo "$2" | cut -c3-)"; } # DIR ROOT: the entry's path
mkdir thin && cd thin || exit 1
# Pages: A B zero C A(again) D(1000 bytes, zero-padded): 5 non-zero pages, 4 distinct.
head -c 4096 /dev/urandom > pA; head -c 4096 /dev/urandom > pB; head -c 4096 /dev/urandom > pC
head -c 1000 /dev/urandom > pD; head -c 3096 /dev/zero >> pD # page D as stored: zero-padded
{ cat pA pB; head -c 4096 /dev/zero; cat pC pA; head -c 1000 pD; } > thin.bin
rA=$(page_root pA) rB=$(page_root pB) rC=$(page_root pC) rD=$(page_root pD)
# The all-zero page's root (rule 1.2: 128 zero chunks merkleized), which is never stored.
rZ=$(perl -MDigest::SHA=sha256 -e '$h = "\0" x 32; $h = sha256($h . $h) for 1 .. 7; print unpack("H*", $h)')
want_root=$("$tool" root thin.bin | cut -c1-64)
size=$(stat -c %s thin.bin)
# encode --thin --store: same root as `capmem root` and the full encoding; every non-zero
# page travels as Missing; the store holds exactly the 4 distinct pages, 4096 bytes each.
"$tool" encode --thin --store st thin.bin thin.ssz 2> err || fail "encode --thin --store: $(cat err)"
"$tool" encode thin.bin full.ssz || fail "encode (full)"
"$tool" inspect thin.ssz > insp || fail "inspect of a thin encoding"
grep -q "^root:    $want_root\$" insp || fail "thin encoding: root is not capmem root's: $(cat insp)"
grep -q "^pages:   1 empty, 0 loaded, 5 missing\$" insp && grep -q '^thin:    5 missing$' insp ||
  fail "inspect of a thin encoding: $(cat insp)"
grep -q "^root:    $want_root\$" <("$tool" inspect full.ssz) || fail "full encoding: root differs"
! grep -q '^thin:' <("$tool" inspect full.ssz) || fail "inspect of a full encoding says thin"
# 12 + 4 * 6 offsets + 5 Missing slots (33 bytes) + 1 Empty (1 byte).
[ "$(stat -c %s thin.ssz)" = $((12 + 24 + 5 * 33 + 1)) ] || fail "thin encoding size $(stat -c %s thin.ssz)"
[ "$(find st -type f | wc -l)" = 4 ] || fail "store holds $(find st -type f | wc -l) entries, not 4: $(find st)"
for p in A B C D; do
  r=$(eval echo "\$r$p"); e=$(entry st "$r")
  cmp -s "p$p" "$e" || fail "store entry of page $p missing or wrong: $e"
done
[ ! -e "$(entry st "$rZ")" ] || fail "the zero page was stored"
[ "$(leftovers "$(dirname "$(entry st "$rA")")")" = 0 ] || fail "temp files left in the store"
# decode --store: the original bytes; the decoded file has the same root.
"$tool" decode --store st thin.ssz out 2> err || fail "decode --store DIR: $(cat err)"
cmp -n "$size" out thin.bin && [ "$(stat -c %s out)" = 24576 ] || fail "decode --store DIR: bytes differ"
[ "$("$tool" root out | cut -c1-64)" = "$want_root" ] || fail "decode --store DIR: root differs"
"$tool" decode --store=st -- thin.ssz - | cmp -s - out || fail "decode --store=DIR -- IN - differs"
# Plain decode of a thin encoding: rule 5.2, and the hint.
if "$tool" decode thin.ssz out2 2> err; then fail "decode of a thin encoding without --store exited 0"; fi
grep -q 'rule 5.2); a thin encoding (rule 8.6) decodes with --store' err || fail "thin without --store: $(cat err)"
[ ! -e out2 ] || fail "decode of a thin encoding without --store created OUT"
# From a pipe: the same bytes and the same store.
cat thin.bin | "$tool" encode --thin --store stp - thinp.ssz || fail "encode --thin --store from a pipe"
cmp thinp.ssz thin.ssz && diff -r st stp > /dev/null || fail "encode --thin --store from a pipe differs"
# Entries are made as OUT is: 0666 less the umask; directories 0777 less the umask.
(umask 027 && "$tool" encode --thin --store stu thin.bin /dev/null) || fail "encode --thin --store under umask 027"
[ "$(stat -c %a "$(entry stu "$rA")")" = 640 ] && [ "$(stat -c %a stu)" = 750 ] ||
  fail "store modes under umask 027: $(stat -c %a "$(entry stu "$rA")") $(stat -c %a stu)"
# A damaged entry is rewritten by the next encode --store (each entry compared first).
flip_byte "$(entry stu "$rB")" 9
"$tool" encode --thin --store stu thin.bin /dev/null && cmp -s pB "$(entry stu "$rB")" ||
  fail "encode --store did not repair a damaged entry"

# A signal while OUT's named temp and store entries' temps are made (CAPMEM_NO_TMPFILE=1): the
# handler knows every temp at once, so none is left. SIGXFSZ from `ulimit -f 8` comes when OUT
# (held in memory until then) is written at commit, after 600 store entries came and went.
mkdir sx; head -c $((600 * 4096)) /dev/urandom > x600
{ (ulimit -f 8 && exec env CAPMEM_NO_TMPFILE=1 "$tool" encode --thin --store sx/st x600 sx/out); } 2> /dev/null; rc=$?
[ "$rc" = $((128 + $(kill -l XFSZ))) ] || fail "encode --thin --store under ulimit -f 8: exit status $rc"
[ ! -e sx/out ] && [ "$(leftovers sx)" = 0 ] || fail "a signal after store writes left OUT's temp: $(ls -A sx)"
[ "$(find sx/st -type f | wc -l)" = 600 ] && [ -z "$(find sx/st -name '.*')" ] || fail "store after SIGXFSZ: $(find sx/st -name '.*')"
rm -rf sx x600

# --keep-first N: N = 0 is the default; pages 0..N-1 keep their bytes and are not stored;
# an Empty page stays Empty; N at or past the page count (and the largest N) is the full
# encoding byte for byte, nothing stored.
"$tool" encode --thin --keep-first 0 thin.bin k0.ssz && cmp k0.ssz thin.ssz || fail "--keep-first 0 differs from --thin"
"$tool" encode --thin --keep-first 2 --store st2 thin.bin k2.ssz || fail "--keep-first 2"
"$tool" inspect k2.ssz | grep -q '^pages:   1 empty, 2 loaded, 3 missing$' || fail "--keep-first 2: $("$tool" inspect k2.ssz)"
[ ! -e "$(entry st2 "$rB")" ] && [ -e "$(entry st2 "$rA")" ] && [ "$(find st2 -type f | wc -l)" = 3 ] ||
  fail "--keep-first 2: kept page B stored, or A (also page 4, Missing) not: $(find st2 -type f)"
"$tool" encode --thin --keep-first 3 thin.bin k3.ssz || fail "--keep-first 3"
"$tool" inspect k3.ssz | grep -q '^pages:   1 empty, 2 loaded, 3 missing$' || fail "--keep-first 3 (page 2 Empty)"
"$tool" decode --store st2 k2.ssz k2.out && cmp -n "$size" k2.out thin.bin || fail "decode of --keep-first 2"
for n in 6 7 18446744073709551615; do
  "$tool" encode --thin --keep-first "$n" --store "stk$n" thin.bin "k$n.ssz" || fail "--keep-first $n"
  cmp "k$n.ssz" full.ssz || fail "--keep-first $n is not the full encoding"
  [ -z "$(ls -A "stk$n")" ] || fail "--keep-first $n stored pages: $(find "stk$n")"
done
for bad in -1 18446744073709551616 x ""; do
  if "$tool" encode --thin --keep-first "$bad" thin.bin kb.ssz 2> err; then fail "--keep-first '$bad' accepted"; fi
  grep -qF "'$bad'" err || fail "--keep-first '$bad': not named: $(cat err)"
done
if "$tool" encode --keep-first 2 thin.bin kb.ssz 2> err; then fail "--keep-first without --thin accepted"; fi
grep -q 'add --thin' err || fail "--keep-first without --thin: $(cat err)"
if "$tool" encode --store st thin.bin kb.ssz 2> err; then fail "--store without --thin accepted"; fi
if "$tool" encode thin.bin kb.ssz --thin 2> err; then fail "an option after the operands was taken"; fi
grep -q 'expected FILE OUT' err && [ ! -e kb.ssz ] || fail "encode FILE OUT --thin: $(cat err)"
# An empty file and an all-zero file: nothing Missing, nothing stored.
head -c 12288 /dev/zero > z3
"$tool" encode --thin --store stz z3 z3.ssz && cmp z3.ssz "$vectors/zero-3-pages.ssz" && [ -z "$(ls -A stz)" ] ||
  fail "thin encoding of an all-zero file"

# decode --store: a missing or corrupt page is exit 1 naming the page index and root; OUT
# is not created, or (existing, here hard-linked so it would be written in place, and a
# plain file that would be replaced) left byte-identical.
cp -r st stm; rm "$(entry stm "$rC")"
cp -r st stc; flip_byte "$(entry stc "$rC")" 100
cp -r st sts; head -c 4095 pC > "$(entry sts "$rC")"
cp -r st stf; rm "$(entry stf "$rC")"; mkfifo "$(entry stf "$rC")"
echo precious > keep1; ln keep1 keep1.link; echo precious > keep2; ino2=$(inode keep2)
for c in m c s f; do
  case $c in
    m) want="capmem: thin.ssz: page 3 (root $rC): not in the store stm" ;;
    c) want="capmem: thin.ssz: page 3 (root $rC): $(entry stc "$rC"): its bytes do not hash to that root (HashMismatch, rule 8.4)" ;;
    s) want="capmem: thin.ssz: page 3 (root $rC): $(entry sts "$rC"): 4095 bytes, not 4096 (BadLength, rule 8.4)" ;;
    f) want="capmem: thin.ssz: page 3 (root $rC): $(entry stf "$rC"): not a regular file" ;;
  esac
  for o in new keep1 keep2; do
    timeout 20 "$tool" decode --store "st$c" thin.ssz "$o" 2> err; rc=$?
    [ "$rc" = 1 ] || fail "decode --store st$c into $o: exit $rc"
    [ "$(cat err)" = "$want" ] || fail "decode --store st$c: message $(cat err), want $want"
  done
  [ ! -e new ] || fail "decode --store st$c created OUT"
  [ "$(cat keep1.link)" = precious ] && [ "$(cat keep2)" = precious ] && [ "$(inode keep2)" = "$ino2" ] ||
    fail "decode --store st$c changed an existing OUT"
done
[ "$(leftovers .)" = 0 ] || fail "failed decode --store left temp files"

# pack DIR OUT: roots sorted (the index is the store's names in byte order), each page's
# bytes at pages_offset + 4096 x index; inspect checks it; unpack gives the store back.
"$tool" pack st st.pak 2> err || fail "pack: $(cat err)"
[ "$(stat -c %s st.pak)" = $((4096 + 4 * 4096)) ] || fail "pack size $(stat -c %s st.pak)"
[ "$(head -c 8 st.pak)" = CAPMPAK1 ] || fail "pack magic"
sorted=$(printf '%s\n' "$rA" "$rB" "$rC" "$rD" | LC_ALL=C sort)
[ "$(tail -c +25 st.pak | head -c 128 | od -An -tx1 | tr -d ' \n')" = "$(echo "$sorted" | tr -d '\n')" ] ||
  fail "pack index is not the sorted roots"
i=0
for r in $sorted; do
  cmp -s -i $((4096 + 4096 * i)):0 -n 4096 st.pak "$(entry st "$r")" || fail "pack page $i is not $r's bytes"
  i=$((i + 1))
done
"$tool" inspect st.pak > insp 2> err || fail "inspect of a pack: $(cat err)"
grep -q '(page pack)' insp && grep -q '^pages:   4, index strictly increasing, pages from byte offset 4096$' insp ||
  fail "inspect of a pack: $(cat insp)"
"$tool" inspect - < st.pak | grep -q '^pages:   4,' || fail "inspect of a pack on standard input"
"$tool" inspect --raw st.pak | grep -q '(raw bytes)' || fail "inspect --raw of a pack"
"$tool" unpack st.pak stu2 && diff -r st stu2 > /dev/null || fail "unpack does not give the store back"
"$tool" unpack - stu3 < st.pak && diff -r st stu3 > /dev/null || fail "unpack of a pack on standard input"
"$tool" decode --store st.pak thin.ssz outp && cmp outp out || fail "decode --store PACK differs"
"$tool" decode --store - thin.ssz outq < st.pak && cmp outq out || fail "decode --store - (a pack on stdin) differs"
if "$tool" decode --store - - outs < st.pak 2> err; then fail "decode --store - - accepted"; fi
grep -q 'the store and IN cannot both be standard input' err || fail "decode --store - -: $(cat err)"
if "$tool" encode --thin --store thin.bin thin.bin nodir.ssz 2> err; then fail "--store a file accepted"; fi
[ "$(cat err)" = "capmem: thin.bin: Not a directory (a page store directory)" ] && [ ! -e nodir.ssz ] ||
  fail "encode --store FILE: $(cat err)"
# ... and from a pipe (spooled as far as the header says the pack reaches).
cat st.pak | "$tool" inspect - | grep -q '^pages:   4,' || fail "inspect of a pack from a pipe"
cat st.pak | "$tool" unpack - stu4 && diff -r st stu4 > /dev/null || fail "unpack of a pack from a pipe"
cat st.pak | "$tool" decode --store - thin.ssz outr && cmp outr out || fail "decode --store - (a pack from a pipe)"
head -c -1 st.pak | "$tool" inspect - 2> err > /dev/null
grep -q 'invalid pack at byte offset 20479' err || fail "a truncated pack from a pipe: $(cat err)"
"$tool" pack st - | cmp -s - st.pak || fail "pack DIR - differs"
"$tool" pack st /dev/stdout | cmp -s - st.pak || fail "pack DIR /dev/stdout differs"
mkdir -- -d && cp -r st/. -- -d/ && "$tool" pack -- -d dash.pak && cmp dash.pak st.pak || fail "pack -- -d OUT"
# FIFOs: pack into a FIFO (its reader gets the pack; it stays a FIFO), unpack from one.
mkfifo packfifo
timeout 20 cat packfifo > frompackfifo &
reader=$!; bg+=("$reader")
timeout 20 "$tool" pack st packfifo || fail "pack into a FIFO"
wait "$reader"; [ -p packfifo ] && cmp frompackfifo st.pak || fail "pack into a FIFO: the reader did not get the pack"
timeout 20 sh -c 'exec cat st.pak > packfifo' &
writer=$!; bg+=("$writer")
timeout 20 "$tool" unpack packfifo stfifo && diff -r st stfifo > /dev/null || fail "unpack from a FIFO"
wait "$writer"
mkdir empty && "$tool" pack empty empty.pak || fail "pack of an empty store"
[ "$(stat -c %s empty.pak)" = 4096 ] && "$tool" inspect empty.pak | grep -q '^pages:   0,' || fail "empty pack"
# pack rejects bad entries, naming them; OUT is not created / left as it was.
cp -r st bad1; touch bad1/junk
cp -r st bad2; mkdir bad2/zz
cp -r st bad3; u=$(entry bad3 "$rA"); mv "$u" "$(dirname "$u")/$(basename "$u" | tr a-f A-F)"
cp -r st bad4; head -c 4095 pB > "$(entry bad4 "$rB")"
cp -r st bad5; flip_byte "$(entry bad5 "$rB")" 7
cp -r st bad6; cp pA "$(entry bad6 "$rB")"
for b in 1 2 3 4 5 6; do
  case $b in
    1) want="capmem: bad1/junk: not a page store entry (DIR/<2 hex>/<62 hex>, lowercase)" ;;
    2) want="capmem: bad2/zz: not a page store entry (DIR/<2 hex>/<62 hex>, lowercase)" ;;
    3) want="capmem: $(dirname "$u")/$(basename "$u" | tr a-f A-F): not a page store entry (DIR/<2 hex>/<62 hex>, lowercase)" ;;
    4) want="capmem: $(entry bad4 "$rB"): 4095 bytes, not 4096 (BadLength, rule 8.4)" ;;
    5 | 6) want="capmem: $(entry "bad$b" "$rB"): its bytes do not hash to that root (HashMismatch, rule 8.4)" ;;
  esac
  if "$tool" pack "bad$b" bad.pak 2> err; then fail "pack of bad$b exited 0"; fi
  [ "$(cat err)" = "$want" ] || fail "pack bad$b: $(cat err), want $want"
  if "$tool" pack "bad$b" keep1 2> /dev/null; then fail "pack of bad$b into keep1 exited 0"; fi
done
[ ! -e bad.pak ] && [ "$(cat keep1.link)" = precious ] && [ "$(leftovers .)" = 0 ] || fail "a rejected pack wrote OUT"
# A corrupt page in a pack, a lying index (two pages' bytes swapped, the index kept), a
# truncated pack: inspect, unpack and decode --store each exit 1 naming the page.
pos() { echo "$sorted" | grep -n "$1" | cut -d: -f1; } # 1-based index position of a root
iC=$(($(pos "$rC") - 1)) iA=$(($(pos "$rA") - 1)) iB=$(($(pos "$rB") - 1))
cp st.pak corrupt.pak; flip_byte corrupt.pak $((4096 + 4096 * iC + 5))
want="corrupt.pak: index entry $iC (root $rC, bytes at offset $((4096 + 4096 * iC))): its bytes do not hash to that root (HashMismatch, rule 8.4)"
if "$tool" inspect corrupt.pak > /dev/null 2> err; then fail "inspect of a corrupt pack exited 0"; fi
[ "$(cat err)" = "capmem: $want" ] || fail "inspect corrupt pack: $(cat err)"
if "$tool" unpack corrupt.pak stx 2> err; then fail "unpack of a corrupt pack exited 0"; fi
[ "$(cat err)" = "capmem: $want" ] || fail "unpack corrupt pack: $(cat err)"
[ ! -e "$(entry stx "$rC")" ] || fail "unpack stored the corrupt page"
if "$tool" decode --store corrupt.pak thin.ssz keep1 2> err; then fail "decode --store of a corrupt pack exited 0"; fi
[ "$(cat err)" = "capmem: thin.ssz: page 3 (root $rC): $want" ] || fail "decode --store corrupt pack: $(cat err)"
cp st.pak lie.pak
dd if=st.pak of=lie.pak bs=4096 skip=$((1 + iA)) seek=$((1 + iB)) count=1 conv=notrunc 2> /dev/null
dd if=st.pak of=lie.pak bs=4096 skip=$((1 + iB)) seek=$((1 + iA)) count=1 conv=notrunc 2> /dev/null
first=$([ "$iA" -lt "$iB" ] && echo A || echo B)  # inspect meets the lower index first
fi_=$(eval echo "\$i$first") fr=$(eval echo "\$r$first")
if "$tool" inspect lie.pak > /dev/null 2> err; then fail "inspect of a lying pack exited 0"; fi
[ "$(cat err)" = "capmem: lie.pak: index entry $fi_ (root $fr, bytes at offset $((4096 + 4096 * fi_))): its bytes do not hash to that root (HashMismatch, rule 8.4)" ] ||
  fail "inspect lying pack: $(cat err)"
if "$tool" decode --store lie.pak thin.ssz keep1 2> err; then fail "decode --store of a lying pack exited 0"; fi
[ "$(cat err)" = "capmem: thin.ssz: page 0 (root $rA): lie.pak: index entry $iA (root $rA, bytes at offset $((4096 + 4096 * iA))): its bytes do not hash to that root (HashMismatch, rule 8.4)" ] ||
  fail "decode --store lying pack: $(cat err)"
head -c -1 st.pak > trunc.pak
want="trunc.pak: invalid pack at byte offset 20479: page pack length is not pages_offset + 4096 x count (rule 8.7)"
for cmd in inspect unpack decode; do
  case $cmd in
    inspect) "$tool" inspect trunc.pak > /dev/null 2> err; rc=$? ;;
    unpack) "$tool" unpack trunc.pak sty 2> err; rc=$? ;;
    decode) "$tool" decode --store trunc.pak thin.ssz keep1 2> err; rc=$? ;;
  esac
  [ "$rc" = 1 ] && [ "$(cat err)" = "capmem: $want" ] || fail "$cmd of a truncated pack: rc $rc: $(cat err)"
done
[ ! -e sty ] || [ -z "$(ls -A sty)" ] || fail "unpack of a truncated pack wrote pages"
[ "$(cat keep1.link)" = precious ] || fail "a failed decode --store PACK changed OUT"
# Bounded memory: encode --thin --store, pack and decode --store of 20 MiB (5120 pages).
head -c $((20 << 20)) /dev/urandom > big
timed "$tool" encode --thin --store stbig big big.ssz 2> err || fail "encode --thin --store of 20 MiB: $(cat err)"
peak_ok "encode --thin --store of 20 MiB"
timed "$tool" pack stbig big.pak 2> err || fail "pack of 5120 pages: $(cat err)"
peak_ok "pack of 5120 pages"
timed "$tool" decode --store stbig big.ssz big.out 2> err && cmp big big.out || fail "decode --store DIR of 20 MiB"
peak_ok "decode --store DIR of 20 MiB"
timed "$tool" decode --store big.pak big.ssz big.out 2> err && cmp big big.out || fail "decode --store PACK of 20 MiB"
peak_ok "decode --store PACK of 20 MiB"
cd "$tmp" || exit 1

[ "$failures" = 0 ] || { echo "tool-files: $failures checks failed"; exit 1; }
echo "tool-files: all checks passed"
