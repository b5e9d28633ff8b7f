#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_pt_ops and fuzz_fault_parity (tests/fuzz/corpus/pt_ops/
and tests/fuzz/corpus/fault_parity/). Each seed is one named scenario in the input format
described at the top of the target's source. Deterministic; rerun after a format change:
    python3 tests/fuzz/gen_corpus_pt_fault.py
"""
import os
import random
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))

# --- fuzz_pt_ops: 4-byte records {op, a, b, c} --------------------------------------------
MAP, UNMAP, PROTECT, WRITE, CLEAR, TEARDOWN, INJECT, EXHAUST, BAD, SWRITE = range(10)
# LeafFlags byte: 1 writable, 2 user, 4 nx, 8 global, 16 pwt, 32 pcd, 64 pat, 128 holds_ref
RW, RO, HR, NX, G = 0x03, 0x02, 0x80, 0x04, 0x08
# frame choice c: 0-3 pool frames, 4 zero frame, 5 unmanaged PA


def rec(op, a=0, b=0, c=0):
    return bytes([op, a, b, c])


PT_SEEDS = {
    "map-translate": rec(MAP, 0, RW | HR, 0) + rec(MAP, 1, RO | HR, 1) + rec(WRITE, 0) + rec(WRITE, 1),
    "all-paths": b"".join(rec(MAP, i, [RW | HR, RO, RW | NX, RO | G, RW | 0x30, RO | 0x40, RW | HR, 0x80][i], i % 4)
                         for i in range(8)),
    "protect-narrow-widen": rec(MAP, 0, RW | HR, 0) + rec(PROTECT, 0, HR) + rec(PROTECT, 0, RW | HR | NX)
    + rec(WRITE, 0) + rec(PROTECT, 0, RO | HR) + rec(SWRITE, 0) + rec(PROTECT, 0, 0x81) + rec(SWRITE, 0),
    "replace-unmap": rec(MAP, 0, RW | HR, 0) + rec(MAP, 0, RW | HR, 1) + rec(MAP, 0, RW, 4) + rec(UNMAP, 0)
    + rec(UNMAP, 0) + rec(MAP, 0, RW | HR, 4),
    "inject-pml4e": rec(INJECT, 1) + rec(MAP, 4, RW | HR, 0) + rec(MAP, 4, RW | HR, 0),
    "inject-pdpte": rec(MAP, 0, RW | HR, 0) + rec(INJECT, 1) + rec(MAP, 3, RW | HR, 1) + rec(MAP, 3, RW | HR, 1),
    "inject-third": rec(INJECT, 3) + rec(MAP, 6, RW | HR, 2) + rec(MAP, 7, RW | HR, 2) + rec(MAP, 5, RW | HR, 3),
    "exhausted": rec(EXHAUST, 1) + rec(MAP, 0, RW | HR, 0) + rec(EXHAUST, 0) + rec(MAP, 0, RW | HR, 0)
    + rec(EXHAUST, 1) + rec(MAP, 1, RW | HR, 1) + rec(MAP, 2, RW | HR, 1) + rec(EXHAUST, 0) + rec(MAP, 2, RW | HR, 1),
    "clear-remap": rec(MAP, 0, RW | HR, 0) + rec(MAP, 4, RW | HR, 1) + rec(WRITE, 4) + rec(CLEAR)
    + rec(MAP, 4, RO | HR, 2) + rec(WRITE, 4),
    "teardown-create-fails": rec(MAP, 5, RW | HR, 0) + rec(INJECT, 1) + rec(TEARDOWN) + rec(MAP, 5, RW | HR, 0)
    + rec(EXHAUST, 1) + rec(TEARDOWN) + rec(MAP, 0, RW, 0),
    "bad-arguments": b"".join(rec(BAD, (k << 3) | 1, RW | HR, 0) for k in range(6)) + rec(MAP, 1, RW | HR, 0)
    + rec(BAD, (5 << 3) | 1, RW) + rec(BAD, (1 << 3) | 1),
    "global-clear": rec(MAP, 6, RO | G, 0) + rec(WRITE, 6) + rec(CLEAR) + rec(MAP, 6, RW | G | HR, 1) + rec(WRITE, 6),
    "unmanaged-pa": rec(MAP, 3, RW, 5) + rec(MAP, 3, RW | HR, 5) + rec(PROTECT, 3, RO) + rec(UNMAP, 3),
}

# --- fuzz_fault_parity: 7-byte header + 8-byte ops -----------------------------------------
LOAD, STORE = 1, 2
COW, PINNED, CODE, EDGE, RAW, STRADDLE = 0, 1, 2, 3, 4, 7


def header(pages=16, empty=0x08, pin_first=4, pin_code=3, gas=255, inject=0, extra_code=1, seed=1, no_end=False):
    return bytes([pages - 1, empty, pin_first, pin_code, gas, inject, (extra_code & 3) | (seed & 31) << 2 | (0x80 if no_end else 0)])


def op(kind, width, region, page, off=0, value=0x1234):
    return struct.pack("<BBBBHH", kind, width, region, page, off, value)


BASIC_OPS = (op(LOAD, 8, COW, 0, 8) + op(STORE, 8, COW, 0, 8) + op(STORE, 1, COW, 3, 100) + op(LOAD, 4, PINNED, 0, 40)
             + op(LOAD, 2, CODE, 1, 4000) + op(LOAD, 8, COW, 0, 8) + op(STORE, 4, CODE, 0, 0))


def random_ops(seed, n):
    """Loads anywhere in the regions, stores only where they are allowed (the run goes on)."""
    rng = random.Random(seed)
    out = b""
    for _ in range(n):
        kind = rng.choice([LOAD, STORE])
        region = rng.choice([COW, COW, COW, PINNED, CODE] if kind == LOAD else [COW, COW, COW, COW, STRADDLE])
        out += op(kind, rng.choice([1, 2, 4, 8]), region, rng.randrange(256), rng.randrange(65536),
                  rng.choice([0, rng.randrange(1, 65536)]))
    return out


FP_SEEDS = {
    "basic": header() + BASIC_OPS,
    "out-of-gas-first-cow": header(gas=3) + BASIC_OPS,
    "out-of-gas-later": header(gas=9) + BASIC_OPS,
    "inject-first-frame": header(inject=1) + BASIC_OPS,   # the code cluster's first table
    "inject-fifth-frame": header(inject=5) + BASIC_OPS,   # the first copy-on-write frame
    "inject-seventh-frame": header(inject=7) + BASIC_OPS,   # during the second copy-on-write
    # the last op straddles past the end of mem (guest fault)
    "straddles": header(pages=8, pin_first=3, pin_code=1) + b"".join(
        op(k, w, STRADDLE, p, o) for p in (1, 2, 7) for k in (LOAD, STORE) for w in (2, 8) for o in (0, 5)),
    "straddle-into-pinned": header(pages=8, pin_first=3, pin_code=1) + op(LOAD, 8, STRADDLE, 2, 3) + op(STORE, 8, STRADDLE, 2, 3),
    # edges 0-7: code start, code end, data start, data end, 0, data + 2 MiB, code + 2 MiB, pinned start;
    # the accesses inside a region first, then one that is not
    "edges": header(pages=5, pin_first=4, pin_code=1) + b"".join(op(LOAD, 4, EDGE, p, o) for p, o in
                                                                 ((0, 8), (0, 15), (1, 0), (2, 12), (3, 4), (7, 0), (7, 6), (1, 6))),
    "edge-data-start": header(pages=5, pin_first=4, pin_code=1) + op(LOAD, 8, EDGE, 2, 4),
    "edge-wrap": header(pages=5, pin_first=4, pin_code=1) + op(LOAD, 8, EDGE, 4, 4),
    "edge-past-cluster": header(pages=5) + op(STORE, 8, EDGE, 5, 8),
    "zero-stores-empty-pages": header(pages=6, empty=0x3c, pin_code=0) + b"".join(
        op(STORE, 8, COW, p, o, 0) for p in range(6) for o in (0, 4088)),
    "raw-addresses": header() + b"".join(op(LOAD, 4, RAW, p, o, v) for p, o, v in
                                         ((0x10, 0x0040, 0), (0x10, 0, 0x10), (0x00, 0x4000, 1), (0xff, 0xffff, 0xfc), (0, 0, 0))),
    "code-clusters": header(extra_code=3, pin_first=0, pin_code=24, pages=24) + b"".join(
        op(LOAD, 8, r, p, 64) for r in (CODE, PINNED) for p in range(4)),
    "no-end-garbage-table": header(no_end=True, seed=9) + BASIC_OPS,
    "random-60": header(pages=24, empty=0x21, pin_first=10, pin_code=4) + random_ops(60, 60),
    "random-200-low-gas": header(pages=20, gas=40, pin_first=2, pin_code=2) + random_ops(200, 200),
}


def write(name, seeds):
    d = os.path.join(ROOT, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for k, v in seeds.items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(v)


write("pt_ops", PT_SEEDS)
write("fault_parity", FP_SEEDS)
