#!/usr/bin/env python3
"""Writes the seed corpora of the DataCap and page pack fuzz targets (tests/fuzz/corpus/{slot_decode,
cap_decode,cap_ops,pack_parse}/). Independent of the C++ code: page hashes (rule 1.2) and encodings
(rules 2.4, 5.1) are computed here from the rules (docs/rules.md) with hashlib. The
cap_decode corpus also takes the reference encodings tests/vectors/*.ssz (all of them: a
missing or empty tests/vectors is an error, never a smaller corpus).

Usage: tests/fuzz/gen_seeds.py   (from anywhere; rewrites the four corpus directories)
"""
import argparse
import hashlib
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors")
PAGE = 4096


def page_hash(content: bytes) -> bytes:
    """Rule 1.2: SSZ ByteVector[4096] root, a binary SHA-256 tree over 128 chunks."""
    content = content.ljust(PAGE, b"\0")
    level = [content[i:i + 32] for i in range(0, PAGE, 32)]
    while len(level) > 1:
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def slot_empty() -> bytes:
    return b"\0"


def slot_loaded(content: bytes, hash_override: bytes = None) -> bytes:
    content = content.ljust(PAGE, b"\0")
    h = hash_override if hash_override is not None else page_hash(content)
    return b"\1" + h + struct.pack("<I", 36) + content


def slot_missing(h: bytes) -> bytes:
    return b"\2" + h


def cap(size: int, slots) -> bytes:
    """Rule 5.1: u64le(size) ++ u32le(12) ++ offsets ++ slots."""
    out = struct.pack("<QI", size, 12)
    off = 4 * len(slots)
    for s in slots:
        out += struct.pack("<I", off)
        off += len(s)
    return out + b"".join(slots)


def pack(pages, pages_offset: int = None, roots=None) -> bytes:
    """Rule 8.7's page pack: "CAPMPAK1" ++ u32le(count) ++ u32le(0) ++ u64le(pages_offset) ++
    roots (sorted) ++ zero pad ++ pages. `roots` overrides the index (for bad seeds)."""
    pages = sorted(pages, key=page_hash)
    if roots is None:
        roots = [page_hash(p) for p in pages]
    index_end = 24 + 32 * len(roots)
    if pages_offset is None:
        pages_offset = (index_end + PAGE - 1) // PAGE * PAGE
    head = b"CAPMPAK1" + struct.pack("<IIQ", len(roots), 0, pages_offset) + b"".join(roots)
    return head.ljust(pages_offset, b"\0") + b"".join(p.ljust(PAGE, b"\0") for p in pages)


def lcg_page(seed: int) -> bytes:
    x, out = seed | 1, bytearray(PAGE)
    for i in range(PAGE):
        x = (x * 1664525 + 1013904223) & 0xffffffff
        out[i] = x >> 24
    return bytes(out)


def write(corpus: str, name: str, data: bytes) -> None:
    with open(os.path.join(HERE, "corpus", corpus, name), "wb") as f:
        f.write(data)


def vector_encodings():
    """The names of the reference encodings in tests/vectors (docs/rules.md section 6)."""
    try:
        names = sorted(f for f in os.listdir(VECTORS) if f.endswith(".ssz"))
    except OSError as e:
        sys.exit("gen_seeds.py: cannot read the reference vectors %s: %s" % (os.path.normpath(VECTORS), e.strerror))
    if not names:
        sys.exit("gen_seeds.py: no .ssz encodings in %s" % os.path.normpath(VECTORS))
    return names


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog="Takes no arguments; rewrites tests/fuzz/corpus/{slot_decode,cap_decode,cap_ops,pack_parse}/.").parse_args()
    vector_encodings()  # before anything is removed: a missing vectors directory loses no seed
    for c in ("slot_decode", "cap_decode", "cap_ops", "pack_parse"):
        d = os.path.join(HERE, "corpus", c)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)

    ff = b"\xff" * PAGE
    abc = b"abc"
    rnd = lcg_page(7)
    sparse = bytearray(PAGE)
    sparse[4095] = 1

    # --- slot_decode: every kind, valid and each rule 2.5 rejection once.
    write("slot_decode", "empty", slot_empty())
    write("slot_decode", "missing", slot_missing(page_hash(ff)))
    write("slot_decode", "missing-zero-hash", slot_missing(b"\0" * 32))
    write("slot_decode", "loaded-ff", slot_loaded(ff))
    write("slot_decode", "loaded-abc", slot_loaded(abc))
    write("slot_decode", "loaded-lcg", slot_loaded(rnd))
    write("slot_decode", "loaded-last-byte", slot_loaded(bytes(sparse)))
    write("slot_decode", "loaded-zero", slot_loaded(b""))  # valid for a lone slot (5.2 rejects it in a cap)
    write("slot_decode", "bad-forged", slot_loaded(ff, page_hash(abc)))
    write("slot_decode", "bad-offset", slot_loaded(ff)[:33] + struct.pack("<I", 37) + ff)
    write("slot_decode", "bad-short-payload", slot_loaded(ff)[:-1])
    write("slot_decode", "bad-trailing", slot_empty() + b"\0")
    write("slot_decode", "bad-selector", b"\3")
    write("slot_decode", "bad-missing-short", slot_missing(page_hash(ff))[:20])

    # --- cap_decode: the reference vectors plus a few shapes.
    for f in vector_encodings():
        with open(os.path.join(VECTORS, f), "rb") as src:
            write("cap_decode", "vector-" + f[:-4], src.read())
    write("cap_decode", "one-page-zero", cap(PAGE, []))
    write("cap_decode", "bad-size-zero", cap(0, []))  # rule 5.2: 3.6 makes at least one page
    write("cap_decode", "max-size-empty", cap(1 << 32, []))
    write("cap_decode", "hole-hole-page", cap(4 * PAGE, [slot_empty(), slot_empty(), slot_loaded(rnd)]))
    write("cap_decode", "two-pages", cap(2 * PAGE, [slot_loaded(abc), slot_loaded(bytes(sparse))]))
    write("cap_decode", "far-page", cap(1 << 32, [slot_empty()] * 40 + [slot_loaded(ff)]))
    # More than 64 pages, and pages across tree-node boundaries (32 pages per leaf, 1024 per
    # level-1 node): shapes the cap_ops programs (at most 64 pages) never reach. Sparse, so
    # they stay near 25 KB (libFuzzer's -max_len is the largest seed's length).
    write("cap_decode", "leaf-edges-70", cap(70 * PAGE, [slot_loaded(lcg_page(200 + i)) if i in (0, 31, 32, 63, 64, 69)
                                                         else slot_empty() for i in range(70)]))
    write("cap_decode", "node-edges-1100", cap(1 << 32, [slot_loaded(lcg_page(300 + i)) if i in (1023, 1024, 1099)
                                                        else slot_empty() for i in range(1100)]))
    write("cap_decode", "bad-trailing-empty", cap(2 * PAGE, [slot_loaded(ff), slot_empty()]))
    write("cap_decode", "bad-zero-loaded", cap(PAGE, [slot_loaded(b"")]))
    write("cap_decode", "bad-missing", cap(PAGE, [slot_missing(page_hash(ff))]))
    write("cap_decode", "bad-too-many", cap(PAGE, [slot_empty(), slot_loaded(ff)]))
    write("cap_decode", "bad-forged", cap(PAGE, [slot_loaded(ff, page_hash(abc))]))
    # Thin caps (rule 8.6): Loaded pages travelling as Missing(root); the fuzz target decodes
    # every input in both modes. The two hashes thin mode refuses: zero(32) and the all-zero
    # page's root (page_hash of no bytes, i.e. of 4096 zeros).
    write("cap_decode", "thin-all-missing", cap(4 * PAGE, [slot_missing(page_hash(abc)), slot_empty(),
                                                            slot_missing(page_hash(rnd))]))
    write("cap_decode", "thin-keep-first", cap(70 * PAGE, [slot_loaded(ff), slot_empty(), slot_missing(page_hash(abc))]
                                                          + [slot_empty()] * 30 + [slot_missing(page_hash(lcg_page(i)))
                                                                                 for i in (33, 34)]
                                                          + [slot_loaded(bytes(sparse))]))
    # More than one batch of Loaded pages (the decoders verify and hand out 16 at a time):
    # 17 Loaded pages, then a Missing slot (thin mode hands the batch out before it; full mode
    # refuses it), an Empty one and a Loaded one. The largest seed (75 KB): it sets -max_len.
    write("cap_decode", "thin-batch-17", cap(20 * PAGE, [slot_loaded(lcg_page(400 + i)) for i in range(17)]
                                             + [slot_missing(page_hash(lcg_page(417))), slot_empty(),
                                                slot_loaded(lcg_page(419))]))
    write("cap_decode", "bad-thin-zero-hash", cap(2 * PAGE, [slot_loaded(abc), slot_missing(b"\0" * 32)]))
    write("cap_decode", "bad-thin-zero-page", cap(2 * PAGE, [slot_missing(page_hash(b"")), slot_loaded(abc)]))

    # --- pack_parse: packs of 0-3 pages, a longer pad, and one of each rejection.
    three = [ff, abc.ljust(PAGE, b"\0"), rnd]
    write("pack_parse", "empty", pack([]))
    write("pack_parse", "one-page", pack([rnd]))
    write("pack_parse", "three-pages", pack(three))
    write("pack_parse", "wide-pad", pack([bytes(sparse)], pages_offset=2 * PAGE))
    good = pack(three)
    write("pack_parse", "bad-magic", b"CAPMPAK0" + good[8:])
    write("pack_parse", "bad-flags", good[:12] + struct.pack("<I", 1) + good[16:])
    write("pack_parse", "bad-count", good[:8] + struct.pack("<I", 0xffffffff) + good[12:])
    write("pack_parse", "bad-pages-offset", good[:16] + struct.pack("<Q", PAGE + 24) + good[24:])
    roots = sorted(page_hash(p) for p in three)
    write("pack_parse", "bad-unsorted", pack(three, roots=[roots[1], roots[0], roots[2]]))
    write("pack_parse", "bad-pad", good[:200] + b"\1" + good[201:])
    write("pack_parse", "bad-length", good[:-1])

    # --- cap_ops: programs in the format of fuzz_cap_ops.cpp. Opcodes:
    W_PAGE, W_BYTES, W_EMPTY, W_MISSING, PUT, PLACE, COPY, SWAP, FLUSH, TRIP, READ, ROOT, RESOLVE, INJECT = range(14)
    fill = lambda v: bytes([1, v])           # gen_page: a fill byte
    zero = bytes([0])                        # gen_page: zeros
    lcg = lambda s: bytes([4]) + struct.pack("<I", s)
    progs = {
        # 4 pages from create: writes, flush, round trip, read.
        "write-flush-trip": bytes([3, 0,
                                   W_PAGE, 1]) + fill(0x11) + bytes([1, 0, 0,
                                   W_BYTES, 2]) + struct.pack("<HH", 100, 50) + bytes([0x22, 1,
                                   FLUSH, TRIP, 1, READ]) + struct.pack("<IH", 4000, 300) + bytes([ROOT]),
        # 8 pages from bytes; copy, write over it, swap, place the snapshot, flush.
        "copy-swap-place": bytes([7, 1, 3, 0]) + lcg(5) + bytes([3]) + fill(0xee) + bytes([6]) + zero + bytes([
                                   COPY, W_PAGE, 0]) + fill(0x33) + bytes([0, 1, 5,
                                   SWAP, PLACE, 1, 2, 1, FLUSH, TRIP, 0]),
        # Missing in the overlay: read fails, flush fails, then overwrite and flush.
        "missing": bytes([1, 0, W_MISSING, 0]) + fill(0x44) + bytes([READ]) + struct.pack("<IH", 0, 10) + bytes([
                                   FLUSH, W_PAGE, 0]) + fill(0x45) + bytes([1, 0, 0, FLUSH, TRIP, 1]),
        # put_page under an overlay entry, explicit Empty entries, self place_shared.
        "put-place-self": bytes([5, 0, W_PAGE, 2]) + fill(0x55) + bytes([0, 0, 0, PUT, 2]) + fill(0x66) + bytes([1,
                                   W_EMPTY, 3, PUT, 0]) + fill(0x77) + bytes([2, PUT, 1]) + zero + bytes([2,
                                   PLACE, 0, 3, 1, FLUSH, TRIP, 1]),
        # Allocation failures injected before writes, copies, flushes and place_shared.
        "inject": bytes([9, 1, 2, 0]) + fill(1) + bytes([4]) + lcg(9) + bytes([
                                   INJECT, 0, W_PAGE, 0]) + fill(2) + bytes([0, 1, 3,
                                   INJECT, 1, COPY, INJECT, 2, FLUSH, W_BYTES, 4]) + struct.pack("<HH", 0, 4096) + bytes([9, 1,
                                   INJECT, 3, PLACE, 2, 0, 1, 2]) + fill(8) + fill(9) + zero + bytes([0,
                                   INJECT, 0, FLUSH, INJECT, 1, TRIP, 1]),
        # Rule 8.4: Missing in the overlay and (placed from a copy) in the backing, resolved with
        # wrong, short and unhashed offers first, then the right bytes and by reference.
        "resolve": bytes([3, 0, W_MISSING, 1]) + fill(0x31) + bytes([RESOLVE, 1, 1]) + fill(0x32) + bytes([
                                   RESOLVE, 1, 4, RESOLVE, 1, 3, RESOLVE, 1, 0, RESOLVE, 1, 0,
                                   W_MISSING, 2]) + fill(0x41) + bytes([COPY, SWAP, PLACE, 1, 0, 0,
                                   INJECT, 0, RESOLVE, 2, 2, INJECT, 1, RESOLVE, 2, 0, RESOLVE, 2, 2, RESOLVE, 3, 0]) + zero + bytes([
                                   FLUSH, TRIP, 1]),
        # 64 pages (count byte >= 192), short tail through from_bytes with a target size.
        "big-tail": bytes([255, 2, 2, 63]) + lcg(3) + bytes([0]) + fill(0x99) + struct.pack("<H", 1000) + bytes([
                                   W_PAGE, 62]) + lcg(11) + bytes([0, 0, 0, FLUSH, TRIP, 0,
                                   PLACE, 0, 32, 1, FLUSH]),
    }
    for name, prog in progs.items():
        write("cap_ops", name, prog)


if __name__ == "__main__":
    main()
