#!/usr/bin/env bash
# Lint: clang-format (no diff allowed) and clang-tidy (.clang-tidy, warnings are errors).
#
# Usage: tests/lint.sh [-B BUILD_DIR] [-j JOBS] [--format-only | --tidy-only] [--no-cache] [FILE...]
#        tests/lint.sh BUILD_DIR            (same as -B BUILD_DIR)
#
#   -B DIR      meson build directory with compile_commands.json (default: $CAPMEM_LINT_BUILD,
#               else 'build'). Configure it with -Dkernel=true: the core is then linted with
#               the kernel's freestanding flags, and kernel/image and the in-kernel tests are covered.
#   -j N        clang-tidy processes in parallel (default 2: ./dev test's budget is 2 cores).
#   --no-cache  lint every file. By default a file is skipped when its preprocessed text,
#               flags, .clang-tidy and clang-tidy version are those of its last clean run
#               (cache: DIR/lint-cache).
#   FILE...     lint only these files (repo-relative). Default: every tracked .cpp/.h for
#               clang-format; for clang-tidy every .cpp under kernel/core, kernel/image,
#               hostsim, tests/demo, tests/kernel and tests/bench/kernel that
#               compile_commands.json compiles (the rest of tests/ is not linted).
#
# Output: one line per finding, 'path:line:col: check: message' (clang-tidy) or
# 'path: N lines differ from clang-format', then one summary line, 'lint: clean (Ns)' or
# 'lint: N findings (Ns)'. Exit 0 clean, 1 findings, 2 setup error.
# Compile-database filtering (duplicates, GCC-only flags) is in tests/lint_tidy.py; extra
# clang arguments and why are in .clang-tidy (ExtraArgs).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=${CAPMEM_LINT_BUILD:-build}
jobs=2
do_format=1
do_tidy=1
use_cache=1
files=()
while [ $# -gt 0 ]; do
  case $1 in
    -B) build=${2:?-B needs a directory}; shift 2 ;;
    -B*) build=${1#-B}; shift ;;
    -j) jobs=${2:?-j needs a number}; shift 2 ;;
    -j*) jobs=${1#-j}; shift ;;
    --format-only) do_tidy=0; shift ;;
    --tidy-only) do_format=0; shift ;;
    --no-cache) use_cache=0; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "lint: unknown option $1 (see tests/lint.sh --help)" >&2; exit 2 ;;
    *)
      if [ ${#files[@]} -eq 0 ] && [ -d "$1" ]; then build=$1; else files+=("$1"); fi
      shift ;;
  esac
done
case $jobs in ''|*[!0-9]*|0) echo "lint: -j needs a positive number" >&2; exit 2 ;; esac

tidy_bin=$(command -v clang-tidy-14 || command -v clang-tidy || true)
format_bin=$(command -v clang-format-14 || command -v clang-format || true)
start=$(date +%s)
tmp=$(mktemp -d /tmp/capmem-lint.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
nfind=0
rc=0

# ---- clang-format -------------------------------------------------------------------
if [ $do_format -eq 1 ]; then
  if [ -z "$format_bin" ]; then echo "lint: clang-format not found" >&2; exit 2; fi
  if [ ${#files[@]} -eq 0 ]; then
    mapfile -t fmt < <(git ls-files '*.cpp' '*.h' | grep -v '^tests/fuzz/corpus/')
  else
    mapfile -t fmt < <(printf '%s\n' "${files[@]}" | grep -E '\.(cpp|h)$')
  fi
  echo "lint: clang-format on ${#fmt[@]} files"
  if [ ${#fmt[@]} -gt 0 ]; then
    # clang-format prints 'file:line:col: warning: code should be clang-formatted' per line.
    "$format_bin" --dry-run "${fmt[@]}" 2>"$tmp/format.log" >/dev/null
    while read -r n f; do
      echo "$f: $n lines differ from clang-format"
      nfind=$((nfind + 1))
    done < <(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$tmp/format.log" | cut -d: -f1 | sort | uniq -c)
    if grep -qE '^(error|clang-format):' "$tmp/format.log"; then
      grep -E '^(error|clang-format):' "$tmp/format.log" | head -5
      rc=2
    fi
  fi
fi

# ---- clang-tidy ---------------------------------------------------------------------
if [ $do_tidy -eq 1 ]; then
  if [ -z "$tidy_bin" ]; then echo "lint: clang-tidy not found" >&2; exit 2; fi
  if [ ! -f "$build/compile_commands.json" ]; then
    echo "lint: no $build/compile_commands.json; configure first (meson setup $build -Dkernel=true)" >&2
    exit 2
  fi
  cache=$build/lint-cache
  mkdir -p "$tmp/db" "$cache"
  printf '%s\n' "${files[@]}" >"$tmp/only"
  python3 tests/lint_tidy.py db "$root" "$build/compile_commands.json" "$tmp/db/compile_commands.json" \
    "$tmp/only" "$jobs" "$use_cache" "$("$tidy_bin" --version 2>&1)" >"$tmp/tidy-files" || exit 2
  ntidy=$(grep -c . "$tmp/tidy-files")
  : >"$tmp/tidy-todo"
  ncached=0
  while read -r f k; do
    # '-' for no key: xargs -L would join a line ending in a blank with the next one.
    if [ -n "${k:-}" ] && [ -f "$cache/$k" ]; then ncached=$((ncached + 1)); else echo "$f ${k:--}" >>"$tmp/tidy-todo"; fi
  done <"$tmp/tidy-files"
  echo "lint: clang-tidy on $ntidy files ($ncached unchanged since clean; -j$jobs, build $build)"
  if [ -s "$tmp/tidy-todo" ]; then
    export tidy_bin tmp cache
    # One log per file. A clean file (exit 0, no diagnostic) goes into the cache; a file
    # whose clang-tidy fails without any diagnostic is reported below.
    xargs -a "$tmp/tidy-todo" -L 1 -P "$jobs" sh -c '
      log="$tmp/tidy-$(echo "$1" | tr / _).log"
      if "$tidy_bin" -p "$tmp/db" --quiet "$1" >"$log" 2>&1; then
        if [ "$2" != - ] && ! grep -qE "(warning|error): " "$log"; then : >"$cache/$2"; fi
      else
        echo "$1" >>"$tmp/tidy-failed"
      fi' _
    cat "$tmp"/tidy-*.log 2>/dev/null | python3 tests/lint_tidy.py findings "$root" "$build" >"$tmp/tidy-findings"
    cat "$tmp/tidy-findings"
    nfind=$((nfind + $(grep -c . "$tmp/tidy-findings")))
    if [ -f "$tmp/tidy-failed" ]; then
      while read -r f; do
        if ! grep -qE "(warning|error): " "$tmp/tidy-$(echo "$f" | tr / _).log"; then
          echo "$f: clang-tidy failed without a diagnostic:"
          tail -3 "$tmp/tidy-$(echo "$f" | tr / _).log" | sed 's/^/  /'
          nfind=$((nfind + 1))
        fi
      done <"$tmp/tidy-failed"
    fi
  fi
  # A full run forgets cache entries of files that are no longer in that form.
  if [ ${#files[@]} -eq 0 ] && [ $use_cache -eq 1 ]; then
    awk 'NF == 2 { print $2 }' "$tmp/tidy-files" | sort >"$tmp/keys"
    (cd "$cache" && ls | sort | comm -23 - "$tmp/keys" | xargs -r rm -f)
  fi
fi

secs=$(($(date +%s) - start))
if [ $nfind -eq 0 ] && [ $rc -eq 0 ]; then
  echo "lint: clean (${secs}s)"
  exit 0
fi
echo "lint: $nfind findings (${secs}s)"
[ $rc -ne 0 ] && exit $rc
exit 1
