#!/usr/bin/env bash
# ktest-filter: `ktest=PREFIX[,PREFIX...]` on the command line runs exactly the cases whose
# names start with one of the prefixes; a prefix selecting nothing fails the boot.
#   ktest-filter.sh QEMU_RUN KERNEL NM
set -u
run=$1 kernel=$2 nm=$3
fail=0

out=$("$run" "$kernel" --timeout 90 -append "ktest=hash_sha,pt_" 2>&1)
rc=$?
echo "$out"
[ $rc = 0 ] || { echo "ktest-filter: FAIL: filtered run returned $rc, want 0"; fail=1; }
ran=$(printf '%s\n' "$out" | sed -n 's/^\[ RUN \] //p' | tr '\n' ' ')
# Independently: the registered cases are the image's ktest_case_<name> symbols (ktest.h),
# run in strcmp order.
all=$("$nm" "$kernel" | sed -nE 's/.*ktest_case_([A-Za-z0-9_]+)$/\1/p' | LC_ALL=C sort)
want=$(printf '%s\n' "$all" | grep -E '^(hash_sha|pt_)' | tr '\n' ' ')
[ -n "$want" ] || { echo "ktest-filter: FAIL: the full run has no hash_sha*/pt_* case"; fail=1; }
[ "$ran" = "$want" ] || { echo "ktest-filter: FAIL: ran '$ran', want '$want'"; fail=1; }
grep -qE "^ktest: filter \"hash_sha,pt_\" selects $(wc -w <<<"$want") of $(wc -l <<<"$all") cases$" <<<"$out" ||
  { echo "ktest-filter: FAIL: no 'selects N of M' line"; fail=1; }

out=$("$run" "$kernel" --timeout 60 -append "ktest=no_such_case" 2>&1)
rc=$?
echo "$out"
[ $rc = 1 ] || { echo "ktest-filter: FAIL: a filter matching nothing returned $rc, want 1 (failure)"; fail=1; }
grep -q '^0 passed, 1 failed$' <<<"$out" || { echo "ktest-filter: FAIL: no '0 passed, 1 failed'"; fail=1; }

# Every prefix must select a case: one that selects none fails the boot naming it, before
# any case runs, even when the other prefixes select some (a renamed case never leaves a
# lane green).
out=$("$run" "$kernel" --timeout 60 -append "ktest=hash_sha,no_such_case,pt_" 2>&1)
rc=$?
echo "$out"
[ $rc = 1 ] || { echo "ktest-filter: FAIL: a filter with a prefix matching nothing returned $rc, want 1"; fail=1; }
grep -qE '^\[ FAIL \] ktest filter: prefix "no_such_case" matches no case' <<<"$out" ||
  { echo "ktest-filter: FAIL: the unmatched prefix is not named"; fail=1; }
grep -q '^\[ RUN \]' <<<"$out" && { echo "ktest-filter: FAIL: cases ran despite the unmatched prefix"; fail=1; }
grep -q '^0 passed, 1 failed$' <<<"$out" || { echo "ktest-filter: FAIL: no '0 passed, 1 failed'"; fail=1; }
# An empty prefix (a doubled or trailing comma) selects nothing: refused the same way.
out=$("$run" "$kernel" --timeout 60 -append "ktest=hash_sha,,pt_" 2>&1)
rc=$?
echo "$out"
[ $rc = 1 ] || { echo "ktest-filter: FAIL: a filter with an empty prefix returned $rc, want 1"; fail=1; }
grep -qE '^\[ FAIL \] ktest filter: an empty prefix' <<<"$out" || { echo "ktest-filter: FAIL: the empty prefix is not named"; fail=1; }

[ $fail = 0 ] && echo "ktest-filter: ok"
exit $fail
