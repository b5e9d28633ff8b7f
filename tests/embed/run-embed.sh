#!/usr/bin/env bash
# The embed suite (meson test `embed`, suite `embed`; docs/embedding.md): capmem taken by an
# outside project exactly as docs/embedding.md describes, from a packed copy of this working
# tree. tests/embed/consumer is that project; capmem's own meson.build never enters it.
#
#   run-embed.sh SRC_ROOT CAPMEM_TOOL VECTORS_DIR WORKDIR
#
# Steps (each prints one "ok: ..." line, or "FAIL: ..." and the suite fails):
#   pack      the working tree as subprojects/packagefiles/capmem-embed.tar.gz behind a
#             [wrap-file] without URL; configure with --wrap-mode=nodownload
#             --force-fallback-for=capmem, -Db_sanitize=address, werror=true
#   configure the log shows no GoogleTest, Google Benchmark, QEMU, Bochs or GRUB lookup
#   E1        hosted program on dependency('capmem'): roots of the fixed inputs equal
#             `capmem root` of the same bytes, and the vectors' ROOTS
#   E2        freestanding link on dependency('capmem-kernel') in the top 2 GiB: nothing
#             undefined but the seam and mem*, no runtime/sanitizer symbol, no .init_array;
#             without env::tlb_shootdown the link fails naming it
#   E3        the exported sources compiled with the consumer's flags (small code model), its
#             own _start, no libc, run as a static process: E1's roots
#   headers   every public header alone in a freestanding TU (capmem's kernel flags)
#   install   top-level build, `meson install --destdir`: exactly the documented files;
#             pkg-config answers; a CMake project on pkg_check_modules(IMPORTED_TARGET capmem)
#             prints E1's roots (skipped with a message without cmake)
#   options   -Dcapmem:max_cpus=128 -Dcapmem:kernel_code_model=large (with clang++-14 when
#             installed, so both compilers build capmem with werror): E1 and E2 again
# CAPMEM_NO_EMBED=1 skips the suite (exit 77).
set -uo pipefail

if [ "${CAPMEM_NO_EMBED:-0}" = 1 ]; then
  echo "embed: skipped (CAPMEM_NO_EMBED=1)"
  exit 77
fi
[ $# -eq 4 ] || { echo "usage: $0 SRC_ROOT CAPMEM_TOOL VECTORS_DIR WORKDIR" >&2; exit 2; }
src=$(realpath "$1")
tool=$(realpath "$2")
vectors=$(realpath -m "$3")
work=$(realpath -m "$4")
fails=0
[ -f "$vectors/ROOTS" ] || echo "FAIL: no reference vectors at $vectors (no ROOTS file): the E1 vector checks below fail"
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FAIL: $*"; echo "embed: stopped"; exit 1; }
step_log() { echo "  (log: $1)"; tail -n 30 "$1" | sed 's/^/  | /'; }

# The four mem* functions and the seam's functions (namespace capmem::env, _ZN6capmem3env).
seam_re='^(_ZN6capmem3env[0-9A-Za-z_]*|memcpy|memset|memmove|memcmp)$'
# What only a libc/libstdc++/libsupc++/libgcc(_eh) provides (as tests/qemu/check-symbols.sh).
runtime_re='^(__cxa_.*|__gxx_personality.*|__gcc_personality_v0|_Unwind_.*|__register_frame.*|__deregister_frame.*|_ZT[VIS]St.*|_ZT[VIS]N10__cxxabiv1.*|_ZT[VIS]N9__gnu_cxx.*|_Znw[jm]|_Zna[jm]|_Zn[wa][jm]RKSt9nothrow_t|_Zn[wa][jm]St11align_val_t.*|_Zd[la]Pv|_Zd[la]Pv[jm]|_Zd[la]PvSt11align_val_t|_Zd[la]Pv[jm]St11align_val_t|_Zd[la]PvRKSt9nothrow_t|_ZSt[0-9]+__throw_.*|_ZSt9terminatev|_ZSt7nothrow|_ZNSt9exception.*|_ZNSt9bad_alloc.*|__stack_chk_fail|__stack_chk_guard|malloc|calloc|realloc|free|abort|atexit|exit|_exit|printf|puts|strlen|write|__libc_.*|__errno_location|__assert_fail|__dso_handle|__tls_get_addr|__udivti3|__umodti3|__divti3|__modti3|__popcountdi2|__atomic_.*)$'
sanitizer_re='^(__asan_.*|__ubsan_.*|__tsan_.*|__msan_.*|__sanitizer_.*|__gcov_.*|__llvm_gcov_.*|__llvm_profile_.*)$'

sym_names() { nm -a "$@" 2>/dev/null | awk 'NF >= 2 {print $NF}' | sed 's/@.*//' | sort -u; }
undefined_in_archive() {  # names an archive uses and none of its members defines
  local a=$1
  comm -23 <(nm -u "$a" 2>/dev/null | awk 'NF >= 2 {print $NF}' | sort -u) \
    <(nm --defined-only "$a" 2>/dev/null | awk 'NF >= 3 {print $3}' | sort -u)
}

# ---- pack the working tree as a wrap --------------------------------------------------------
version=embed
mkdir -p "$work"
consumer=$work/consumer
rm -rf "$consumer"
cp -r "$src/tests/embed/consumer" "$consumer" || die "cannot copy the consumer project"
mkdir -p "$consumer/subprojects/packagefiles"
tarball=$consumer/subprojects/packagefiles/capmem-$version.tar.gz
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked (not ignored) files as they are now, deleted ones left out.
  (cd "$src" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"; done) > "$work/files"
else
  (cd "$src" && find . -path ./.git -prune -o -path './build*' -prune -o -type f -print0) > "$work/files"
fi
tar -C "$src" --null -T "$work/files" --transform "s,^\(\./\)\?,capmem-$version/," -czf "$tarball" ||
  die "cannot pack the working tree"
cat > "$consumer/subprojects/capmem.wrap" <<EOF
[wrap-file]
directory = capmem-$version
source_filename = capmem-$version.tar.gz
source_hash = $(sha256sum "$tarball" | cut -d' ' -f1)

[provide]
dependency_names = capmem, capmem-kernel, capmem-hostsim
EOF
ok "packed $(tr -cd '\0' < "$work/files" | wc -c) files of the working tree as a [wrap-file] (subprojects/packagefiles, no URL)"

wrap_args=(--wrap-mode=nodownload --force-fallback-for=capmem,capmem-kernel,capmem-hostsim
           -Db_sanitize=address -Dwerror=true -Dcapmem:werror=true -Doptimization=2 -Ddebug=false)

# ---- build A: the consumer, default options ---------------------------------------------------
A=$work/a
rm -rf "$A"
if ! meson setup "$A" "$consumer" "${wrap_args[@]}" > "$work/a-setup.log" 2>&1; then
  step_log "$work/a-setup.log"; die "consumer configure failed"
fi
lookups=$(grep -iE 'gtest|googletest|benchmark|qemu|bochs|grub' "$A/meson-logs/meson-log.txt")
if [ -n "$lookups" ]; then
  fail "the subproject configure looked up test-only tools:"; printf '%s\n' "$lookups" | head -n 10
else
  ok "configure: no GoogleTest, Google Benchmark, QEMU, Bochs or GRUB lookup in meson-log.txt"
fi
if ! meson compile -C "$A" > "$work/a-build.log" 2>&1; then
  step_log "$work/a-build.log"; die "consumer build failed (werror=true, -Db_sanitize=address)"
fi
ok "consumer built with werror=true and -Db_sanitize=address (capmem with -Dcapmem:werror=true)"
sub=$consumer/subprojects/capmem-$version
libk=$(find "$A/subprojects" -name libcapmem_kernel.a | head -n 1)
libh=$(find "$A/subprojects" -name libcapmem.a | head -n 1)
[ -f "$libk" ] && [ -f "$libh" ] || die "libcapmem.a / libcapmem_kernel.a not built"

# ---- E1 ------------------------------------------------------------------------------------------
names=(abc.bin empty.bin one-page-ff.bin zero-3-pages.bin pattern.bin sparse.bin)
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 "$A/e1" > "$work/e1.out" 2> "$work/e1.err" ||
  { cat "$work/e1.err"; die "E1 failed"; }
[ "$(wc -l < "$work/e1.out")" -eq ${#names[@]} ] || die "E1 printed $(wc -l < "$work/e1.out") lines, want ${#names[@]}"
rm -rf "$work/inputs"; mkdir -p "$work/inputs"
"$A/e1" --write "$work/inputs" || die "E1 --write failed"
(cd "$work/inputs" && "$tool" root "${names[@]}") > "$work/tool.out" || die "capmem root failed"
if diff -u "$work/tool.out" "$work/e1.out"; then ok "E1: roots of ${#names[@]} fixed inputs equal \`capmem root\` of the same bytes"
else fail "E1 disagrees with capmem root"; fi
matched=0
for n in "${names[@]}"; do
  [ -f "$vectors/$n" ] || continue
  cmp -s "$work/inputs/$n" "$vectors/$n" || { fail "E1's input $n differs from the vector of that name"; continue; }
  want=$(grep " $n\$" "$vectors/ROOTS"); got=$(grep " $n\$" "$work/e1.out")
  [ -n "$want" ] && [ "$want" = "$got" ] || fail "E1's root of $n: '$got', ROOTS says '$want'"
  matched=$((matched + 1))
done
[ $matched -ge 3 ] && ok "E1: $matched fixed inputs are reference vectors, their roots equal ROOTS" ||
  fail "only $matched of E1's inputs found among the vectors in $vectors"
(cd "$vectors" && "$A/e1" *.bin) > "$work/e1-vectors.out" || fail "E1 on the vectors failed"
if diff -u "$vectors/ROOTS" "$work/e1-vectors.out"; then ok "E1: the roots of every vector file equal ROOTS"
else fail "E1 on the vectors disagrees with ROOTS"; fi
"$A/e1-hostsim" > "$work/e1h.out" || fail "e1-hostsim (dependency('capmem-hostsim')) failed"
diff -u "$work/e1.out" "$work/e1h.out" >/dev/null && ok "capmem-hostsim: a consumer's hosted program on it prints E1's roots" ||
  fail "e1-hostsim's roots differ from E1's"
hostsim_lib=$(find "$A/subprojects" -name libcapmem_hostsim.a | head -n 1)
if [ -n "$(sym_names "$hostsim_lib" | grep 6capmem4demo)" ]; then fail "libcapmem_hostsim.a holds demo symbols"
else ok "capmem-hostsim holds no demo symbol"; fi

# ---- E2 ------------------------------------------------------------------------------------------
e2=$A/e2
undef=$(undefined_in_archive "$libk")
extra=$(printf '%s\n' "$undef" | grep -vE "$seam_re" | grep -v '^$')
[ -z "$extra" ] && ok "E2: libcapmem_kernel.a needs nothing but the seam and mem* ($(printf '%s\n' "$undef" | grep -c .) symbols)" ||
  { fail "libcapmem_kernel.a needs symbols outside the seam and mem*:"; printf '%s\n' "$extra" | c++filt | head -n 20; }
printf '%s\n' "$undef" | grep -q '^_ZN6capmem3env9log_writeEPKcm$' || fail "the undefined-symbol check sees no env::log_write (broken check)"
[ -z "$(nm -u "$e2")" ] || { fail "E2 has undefined symbols:"; nm -u "$e2" | head; }
bad=$(sym_names "$e2" "$libk" | grep -E "$runtime_re")
[ -z "$bad" ] && ok "E2: no libc/libstdc++/unwinder/__cxa_*/operator new symbol in the link or the library" ||
  { fail "runtime symbols in E2 / libcapmem_kernel.a:"; printf '%s\n' "$bad" | head; }
[ -n "$(sym_names "$libh" | grep -E "$sanitizer_re")" ] || fail "the control libcapmem.a (built with -Db_sanitize=address) shows no sanitizer symbol: broken check"
san=$(sym_names "$e2" "$libk" | grep -E "$sanitizer_re")
[ -z "$san" ] && ok "E2: no -fsanitize code in libcapmem_kernel.a (the parent's b_sanitize=address stays out; libcapmem.a has it)" ||
  { fail "sanitizer symbols in libcapmem_kernel.a / E2:"; printf '%s\n' "$san" | head; }
if readelf -S -W "$libk" | grep -qE '\.(init_array|ctors|preinit_array)'; then fail "libcapmem_kernel.a has .init_array/.ctors sections"
elif readelf -S -W "$e2" | grep -qE '\.(init_array|ctors)'; then fail "E2 has an .init_array"
else ok "E2: no .init_array (no static constructor) from the library"; fi
entry=$(readelf -h "$e2" | awk '/Entry point/ {print $NF}')
[[ $entry == 0xffffffff8* ]] && ok "E2: linked in the top 2 GiB (entry $entry)" || fail "E2's entry $entry is not in the top 2 GiB"
if meson compile -C "$A" e2-missing-seam > "$work/e2-missing.log" 2>&1; then
  fail "E2 linked without env::tlb_shootdown"
elif grep -q "undefined reference to .capmem::env::tlb_shootdown" "$work/e2-missing.log"; then
  ok "E2 without env::tlb_shootdown: the link fails naming capmem::env::tlb_shootdown"
else
  step_log "$work/e2-missing.log"; fail "E2 without env::tlb_shootdown failed, but not naming it"
fi

# ---- E3 ------------------------------------------------------------------------------------------
e3=$A/e3
if readelf -l -W "$e3" | grep -qE 'INTERP|DYNAMIC'; then fail "E3 is not a static executable"; fi
bad=$(sym_names "$e3" | grep -E "$runtime_re|$sanitizer_re")
[ -z "$bad" ] || { fail "E3 holds runtime symbols:"; printf '%s\n' "$bad" | head; }
if "$e3" > "$work/e3.out" 2> "$work/e3.err"; then
  diff -u "$work/e1.out" "$work/e3.out" && ok "E3: exported sources, own flags (-mcmodel=small), own _start, no libc: E1's roots" ||
    fail "E3's roots differ from E1's"
else
  cat "$work/e3.out" "$work/e3.err"; fail "E3 exited $?"
fi

# ---- headers -----------------------------------------------------------------------------------
want=$(cd "$sub/include" && ls capmem/*.h capmem/internal/*.h | wc -l)
got=$(find "$A" -name 'tu_capmem_*.cpp' | wc -l)
[ "$got" -eq $((want + 1)) ] && ok "headers: all $want public headers and capmem/config.h compile alone, freestanding, with the kernel flags" ||
  fail "header TUs: $got, want $((want + 1)) (every header under include/ plus config.h)"

# ---- install, pkg-config, CMake -------------------------------------------------------------------
C=$work/c
D=$work/destdir
rm -rf "$C" "$D"
if meson setup "$C" "$sub" -Dtests=disabled -Dimage=disabled --prefix=/usr/local --buildtype=release > "$work/c-setup.log" 2>&1 &&
   meson compile -C "$C" > "$work/c-build.log" 2>&1 &&
   meson install -C "$C" --destdir "$D" > "$work/c-install.log" 2>&1; then
  libdir=$(meson introspect --buildoptions "$C" | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
  [[ $libdir == lib/* ]] || fail "libdir '$libdir' is not lib/<triplet>"
  {
    (cd "$sub/include" && ls capmem/*.h capmem/internal/*.h) | sed 's,^,include/,'
    echo include/capmem/config.h
    printf '%s\n' "$libdir/libcapmem.a" "$libdir/libcapmem_kernel.a" "$libdir/pkgconfig/capmem.pc" \
      "$libdir/pkgconfig/capmem-kernel.pc" share/doc/capmem/embedding.md bin/capmem
  } | sort > "$work/install.want"
  (cd "$D/usr/local" && find . -type f -o -type l) | sed 's,^\./,,' | sort > "$work/install.got"
  if diff -u "$work/install.want" "$work/install.got"; then ok "install: exactly the $(wc -l < "$work/install.want") documented files"
  else fail "meson install --destdir gives other files than documented"; fi
  export PKG_CONFIG_PATH=$D/usr/local/$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
  cm=$(pkg-config --variable=code_model capmem-kernel)
  [ "$cm" = kernel ] && ok "pkg-config --variable=code_model capmem-kernel: $cm" || fail "pkg-config code_model: '$cm'"
  for v in simd max_cpus kernel_cxxflags; do
    [ -n "$(pkg-config --variable=$v capmem-kernel)" ] || fail "capmem-kernel.pc has no $v"
  done
  [ "$(pkg-config --variable=max_cpus capmem-kernel)" = 64 ] || fail "capmem-kernel.pc max_cpus is not 64"
  (cd "$work/inputs" && "$D/usr/local/bin/capmem" root "${names[@]}") > "$work/installed-tool.out" 2>&1 &&
    diff -q "$work/tool.out" "$work/installed-tool.out" >/dev/null || fail "the installed bin/capmem disagrees"
  if command -v cmake >/dev/null; then
    rm -rf "$work/cmake"
    if cmake -S "$src/tests/embed/cmake" -B "$work/cmake" -DEMBED_CONSUMER="$consumer" > "$work/cmake.log" 2>&1 &&
       cmake --build "$work/cmake" >> "$work/cmake.log" 2>&1; then
      "$work/cmake/e1-cmake" > "$work/e1-cmake.out" || fail "the CMake-built E1 failed"
      diff -u "$work/e1.out" "$work/e1-cmake.out" && ok "CMake: pkg_check_modules(IMPORTED_TARGET capmem) builds E1, same roots" ||
        fail "the CMake-built E1 prints other roots"
    else
      step_log "$work/cmake.log"; fail "the CMake project on the installed capmem.pc failed"
    fi
  else
    echo "skipped: CMake project (cmake not installed; ./dev installs it)"
  fi
  unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
else
  step_log "$(ls -t "$work"/c-*.log | head -n 1)"; fail "top-level build and install (-Dtests=disabled -Dimage=disabled) failed"
fi

# ---- options: max_cpus=128, kernel_code_model=large (clang++-14 when installed) ---------------------
B=$work/b
rm -rf "$B"
cxx_b=()
command -v clang++-14 >/dev/null && cxx_b=(env CXX=clang++-14)
if "${cxx_b[@]}" meson setup "$B" "$consumer" "${wrap_args[@]}" -Dcapmem:max_cpus=128 -Dcapmem:kernel_code_model=large \
     > "$work/b-setup.log" 2>&1 && meson compile -C "$B" e1 e2 > "$work/b-build.log" 2>&1; then
  comp=$(grep -m1 'C++ compiler for the host' "$work/b-setup.log" | sed 's/.*(\(.*\))/\1/')
  ok "options build ($comp, werror, -Db_sanitize=address) with -Dcapmem:max_cpus=128 -Dcapmem:kernel_code_model=large"
  [ "$("$B/e1" --max-cpus)" = 128 ] && [ "$("$A/e1" --max-cpus)" = 64 ] &&
    grep -q '^#define CAPMEM_MAX_CPUS 128$' "$B/subprojects/capmem-$version/include/capmem/config.h" &&
    ok "max_cpus=128: capmem/config.h and the consumer's env::kMaxCpus say 128 (64 by default)" || fail "max_cpus=128 did not reach env::kMaxCpus"
  "$B/e1" > "$work/e1-b.out" && diff -u "$work/e1.out" "$work/e1-b.out" >/dev/null || fail "E1 (options build) roots differ"
  libk_b=$(find "$B/subprojects" -name libcapmem_kernel.a | head -n 1)
  # -mcmodel=kernel addresses data with sign-extended 32-bit relocations; large with 64-bit ones.
  r32a=$(readelf -r -W "$libk" | grep -c 'R_X86_64_32S')
  r32b=$(readelf -r -W "$libk_b" | grep -c 'R_X86_64_32S')
  r64b=$(readelf -r -W "$libk_b" | grep -c 'R_X86_64_64')
  [ "$r32a" -gt 0 ] && [ "$r32b" -eq 0 ] && [ "$r64b" -gt 0 ] &&
    ok "kernel_code_model=large: libcapmem_kernel.a has 64-bit absolute relocations only ($r64b; the kernel model: $r32a R_X86_64_32S)" ||
    fail "kernel_code_model=large not in the library (32S: kernel $r32a, large $r32b; 64: $r64b)"
  [ -z "$(nm -u "$B/e2")" ] && ok "E1 and E2 again with both options: same roots, E2 links" || fail "E2 (large) has undefined symbols"
else
  step_log "$(ls -t "$work"/b-*.log | head -n 1)"; fail "options build (-Dcapmem:max_cpus=128 -Dcapmem:kernel_code_model=large) failed"
fi

if [ $fails -gt 0 ]; then
  echo "embed: $fails check(s) failed"
  exit 1
fi
echo "embed: all checks passed"
