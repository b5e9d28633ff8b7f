// capmem benchmark peer: page roots (docs/rules.md 1.2, the SSZ root of a ByteVector[4096])
// computed by hashtree through its npm package @chainsafe/hashtree.
//
//   node hashtree_pages.js [PAGES [REPS]]      defaults: 4096 pages, 20 repetitions
//
// All PAGES pages are hashed together, one tree level at a time: hashInto() turns every
// 64-byte pair of the level below into its 32-byte parent, so 7 calls take PAGES * 128
// chunks down to PAGES roots. This batch shape is the fastest way the package's API offers
// to get many page roots, which is the comparison capmem's BM_PageRoot is held to.
// Before timing, the roots of the first and last page are checked against SHA-256 from
// node:crypto, so the figure is known to be for the right computation.
//
// Prints one JSON line for tests/bench/run-bench.sh (it reads "ns_per_page_best"):
//   {"peer":"hashtree","pages":4096,"reps":20,"ns_per_page_best":5800,"first_root":"<hex>"}
// ns_per_page_best is the wall-clock time of the fastest repetition divided by PAGES.
"use strict";

const crypto = require("node:crypto");
const { hashInto } = require("@chainsafe/hashtree");

const PAGE = 4096;
const CHUNK = 32;

function positiveInt(text, what, fallback) {
  if (text === undefined) return fallback;
  if (!/^[1-9][0-9]{0,8}$/.test(text)) {
    console.error(`hashtree_pages.js: ${what} must be a positive integer, not "${text}"`);
    process.exit(2);
  }
  return Number(text);
}

const pages = positiveInt(process.argv[2], "PAGES", 4096);
const reps = positiveInt(process.argv[3], "REPS", 20);
if (process.argv.length > 4) {
  console.error("usage: node hashtree_pages.js [PAGES [REPS]]");
  process.exit(2);
}

const input = crypto.randomBytes(pages * PAGE);
// One output buffer per level: PAGES * 2048 bytes, then 1024, ... down to PAGES * 32.
const levels = [];
for (let bytes = (pages * PAGE) / 2; bytes >= pages * CHUNK; bytes /= 2) levels.push(new Uint8Array(bytes));

function pageRoots() {
  let below = input;
  for (const level of levels) {
    hashInto(below, level);
    below = level;
  }
  return below;  // PAGES roots of 32 bytes, in page order
}

// Rule 1.2 on one page with node:crypto: 128 chunks, pairwise SHA-256, 7 levels.
function referenceRoot(page) {
  let nodes = [];
  for (let at = 0; at < PAGE; at += CHUNK) nodes.push(page.subarray(at, at + CHUNK));
  while (nodes.length > 1) {
    const up = [];
    for (let i = 0; i < nodes.length; i += 2) {
      up.push(crypto.createHash("sha256").update(nodes[i]).update(nodes[i + 1]).digest());
    }
    nodes = up;
  }
  return Buffer.from(nodes[0]);
}

const roots = pageRoots();  // also the warm-up
for (const i of new Set([0, pages - 1])) {
  const got = Buffer.from(roots.subarray(i * CHUNK, (i + 1) * CHUNK));
  const want = referenceRoot(input.subarray(i * PAGE, (i + 1) * PAGE));
  if (!got.equals(want)) {
    console.error(`hashtree_pages.js: page ${i}: hashtree gives ${got.toString("hex")}, SHA-256 gives ${want.toString("hex")}`);
    process.exit(1);
  }
}

let bestNs = Infinity;
for (let r = 0; r < reps; r++) {
  const start = process.hrtime.bigint();
  pageRoots();
  const ns = Number(process.hrtime.bigint() - start);
  if (ns < bestNs) bestNs = ns;
}

console.log(JSON.stringify({
  peer: "hashtree",
  pages,
  reps,
  ns_per_page_best: Math.round(bestNs / pages),
  first_root: Buffer.from(roots.subarray(0, CHUNK)).toString("hex"),
}));
