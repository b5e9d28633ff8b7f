#!/usr/bin/env bash
# core-no-demo / kernel-core-no-demo: the demo scenario (tests/demo, namespace capmem::demo)
# is test content; the core library an embedder links, and a kernel image built without the
# tests (capmem-kernel-bench), hold none of its symbols.
#   check-no-demo.sh NM CONTROL FILE...
# CONTROL is a binary that does link the demo (libcapmem_demo.a, capmem-kernel): it must
# show the symbols, so a pattern that matches nothing cannot pass the check. Each FILE (a
# static library or an executable) must show none.
set -u
[ $# -ge 3 ] || { echo "usage: $0 NM CONTROL FILE..." >&2; exit 2; }
nm=$1
control=$2
shift 2
# Any symbol in namespace capmem::demo, whatever its kind (function, variable, vtable,
# local static): its mangled name holds the nested-name prefix 6capmem4demo.
pattern='6capmem4demo'
fail=0

demo_syms() { "$nm" -a "$1" 2>/dev/null | awk '{print $NF}' | grep -E "$pattern" | sort -u; }

[ -f "$control" ] || { echo "FAIL: no control binary at $control"; exit 1; }
if [ -z "$(demo_syms "$control")" ]; then
  echo "FAIL: no capmem::demo symbol found in the control $control (the check would see none anywhere)"
  exit 1
fi
for f in "$@"; do
  [ -f "$f" ] || { echo "FAIL: no file at $f"; fail=1; continue; }
  found=$(demo_syms "$f")
  if [ -n "$found" ]; then
    echo "FAIL: $f holds capmem::demo symbols (the demo is test content, tests/demo):"
    printf '%s\n' "$found" | head -n 20
    fail=1
  else
    echo "ok: $f holds no capmem::demo symbol"
  fi
done
exit $fail
