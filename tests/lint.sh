#!/usr/bin/env bash
# Lint: clang-format (no diff allowed) and clang-tidy (.clang-tidy, warnings are errors)
# over the project's C++ sources. Usage: tests/lint.sh [BUILD_DIR_WITH_compile_commands.json]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
mapfile -t files < <(git ls-files '*.cpp' '*.h' | grep -v '^tests/fuzz/corpus/')
rc=0
echo "lint: clang-format on ${#files[@]} files"
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/capmem-format.$$; then
  head -50 /tmp/capmem-format.$$
  echo "lint: clang-format found differences (run: clang-format -i \$(git ls-files '*.cpp' '*.h'))"
  rc=1
fi
rm -f /tmp/capmem-format.$$
if [ -f "$build/compile_commands.json" ]; then
  mapfile -t tidy < <(printf '%s\n' "${files[@]}" | grep -E '^(kernel/core|hostsim)/.*\.cpp$')
  echo "lint: clang-tidy on ${#tidy[@]} files"
  if ! clang-tidy -p "$build" --quiet "${tidy[@]}" >/tmp/capmem-tidy.$$ 2>&1; then
    grep -E 'warning:|error:' /tmp/capmem-tidy.$$ | head -50
    echo "lint: clang-tidy findings"
    rc=1
  fi
  rm -f /tmp/capmem-tidy.$$
else
  echo "lint: no $build/compile_commands.json; configure a build first"
  rc=1
fi
[ $rc -eq 0 ] && echo "lint: clean"
exit $rc
