#!/usr/bin/env bash
# kernel-symbols: the kernel image links freestanding.
#   - nothing undefined (`nm -u` is empty);
#   - no libc / libstdc++ / libgcc_eh / unwinder symbol is defined in it: a C++ runtime
#     pulled in by accident (exceptions, RTTI, heap new/delete, guarded statics, atexit,
#     stack protector) shows up here by name;
#   - no unwind or exception tables, no dynamic linking, no interpreter;
#   - the PVH note (QEMU -kernel) and the Multiboot2 header (GRUB) are there.
#   check-symbols.sh KERNEL [NM] [READELF]
set -u
kernel=$1
nm=${2:-nm}
readelf=${3:-readelf}
fail=0

[ -f "$kernel" ] || { echo "no kernel image at $kernel"; exit 1; }

undef=$("$nm" -u "$kernel")
if [ -n "$undef" ]; then
  echo "FAIL: undefined symbols in the kernel image:"
  echo "$undef"
  fail=1
fi

# Every symbol name, defined or not (C++ names left mangled: _Znwm is operator new(unsigned long)).
syms=$("$nm" -a "$kernel" | awk '{print $NF}' | sed 's/@.*//')
# Runtime entry points by name. Header-only std:: templates instantiated in the image are
# fine; these are the symbols that only a libc/libstdc++/libsupc++/libgcc(_eh) provides.
# Placement new (_ZnwmPv) is an inline header function and is not listed.
forbidden='^(__cxa_.*|__gxx_personality.*|__gcc_personality_v0|_Unwind_.*|__register_frame.*|__deregister_frame.*|_ZT[VIS]St.*|_ZT[VIS]N10__cxxabiv1.*|_ZT[VIS]N9__gnu_cxx.*|_Znw[jm]|_Zna[jm]|_Zn[wa][jm]RKSt9nothrow_t|_Zn[wa][jm]St11align_val_t.*|_Zd[la]Pv|_Zd[la]Pv[jm]|_Zd[la]PvSt11align_val_t|_Zd[la]Pv[jm]St11align_val_t|_Zd[la]PvRKSt9nothrow_t|_ZSt[0-9]+__throw_.*|_ZSt9terminatev|_ZSt7nothrow|_ZSt11_Hash_bytes.*|_ZNSt9exception.*|_ZNSt9bad_alloc.*|__stack_chk_fail|__stack_chk_guard|malloc|calloc|realloc|free|posix_memalign|aligned_alloc|abort|atexit|exit|_exit|printf|puts|fprintf|vfprintf|sprintf|snprintf|strlen|strcmp|write|__libc_.*|__errno_location|__assert_fail|__dso_handle|__tls_get_addr|_GLOBAL_OFFSET_TABLE_|__udivti3|__umodti3|__divti3|__modti3|__popcountdi2|__atomic_.*)$'
bad=$(printf '%s\n' "$syms" | grep -E "$forbidden" | sort -u)
if [ -n "$bad" ]; then
  echo "FAIL: runtime symbols in the kernel image:"
  echo "$bad"
  fail=1
fi

sections=$("$readelf" -S -W "$kernel")
for s in .eh_frame .eh_frame_hdr .gcc_except_table .interp .dynamic .dynsym .got .got.plt .plt .tbss .tdata; do
  if grep -qE "[[:space:]]\\${s}[[:space:]]" <<<"$sections"; then
    echo "FAIL: section $s present in the kernel image"
    fail=1
  fi
done

# The PVH note QEMU boots from must be there (XEN_ELFNOTE_PHYS32_ENTRY = 0x12).
if ! "$readelf" -n -W "$kernel" | grep -qE 'Xen[[:space:]]+0x0+8[[:space:]]+.*0x0*12|Xen .*Unknown note type: \(0x00000012\)|Xen[[:space:]].*PHYS32'; then
  echo "FAIL: no Xen PHYS32_ENTRY (PVH) note in the kernel image"
  "$readelf" -n -W "$kernel"
  fail=1
fi

# The Multiboot2 header GRUB boots from (Multiboot2 spec 3.1): magic 0xe85250d6 at an 8-byte
# aligned offset in the first 32 KiB of the file, magic + arch + length + checksum = 0 mod
# 2^32, and an entry-address tag (type 3) holding mb2_entry.
mb2_entry=$("$nm" "$kernel" | awk '$3 == "mb2_entry" { print $1 }')
[ -n "$mb2_entry" ] && mb2_entry=$((16#$mb2_entry))
words=$(od -A n -t u4 -v -N 32768 "$kernel" | tr -s ' \n' ' ')
mb2=$(awk -v entry="${mb2_entry:-0}" '{
  for (i = 1; i + 3 <= NF; i += 2)            # 32-bit words; i odd = 8-byte aligned offset
    if ($i == 3897708758) {                   # 0xe85250d6
      if (($i + $(i + 1) + $(i + 2) + $(i + 3)) % 4294967296 != 0) { print "bad-checksum"; exit }
      end = i + $(i + 2) / 4
      for (t = i + 4; t + 1 < end; ) {        # tags: u16 type, u16 flags, u32 size
        type = $t % 65536; size = $(t + 1)
        if (type == 0) break
        if (type == 3) { print ($(t + 2) == entry ? "ok" : "bad-entry"); exit }
        t += int((size + 7) / 8) * 2
      }
      print "no-entry-tag"; exit
    }
  print "no-header"
}' <<<"$words")
if [ "$mb2" != ok ] || [ -z "$mb2_entry" ]; then
  echo "FAIL: Multiboot2 header: $mb2 (mb2_entry=${mb2_entry:-missing})"
  fail=1
fi

if [ $fail = 0 ]; then
  echo "kernel image $kernel: no undefined symbols, no runtime symbols, no unwind/dynamic sections, PVH note and Multiboot2 header present"
fi
exit $fail
