#!/usr/bin/env node
// `npm test`: type-check, then every test file under Deno and under Bun, then
// one line that sums both: "N passed, N failed" (", N skipped" when any were).
// Exits non-zero if anything failed, if any test was skipped, ignored, todo or
// filtered out (CI must not go green on tests that did not run), or — for the
// whole suite — if a runtime ran fewer tests than its floor in test/floor.json.
// Usage: node scripts/test.mjs [deno|bun] [test files…]
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => `${root}node_modules/.bin/${name}`;
const argv = process.argv.slice(2);
const only = ["deno", "bun"].includes(argv[0]) ? argv.shift() : null;
const files = argv.length ? argv : ["test/"];
const wholeSuite = !argv.length;
const FLOOR_FILE = "test/floor.json";

function run(label, cmd, args) {
  return new Promise((resolve) => {
    process.stderr.write(`\n=== ${label}: ${[cmd.replace(root, ""), ...args].join(" ")}\n`);
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
    let out = "";
    const tee = (stream) => (d) => {
      out += d;
      stream.write(d);
    };
    child.stdout.on("data", tee(process.stdout));
    child.stderr.on("data", tee(process.stderr));
    child.on("close", (code) => resolve({ code, out }));
  });
}

const results = [];
let failed = false;

const check = await run("type-check (deno check, with bun-types for the Bun adapter)", bin("deno"), ["check", "src/", "test/", "bench/"]);
if (check.code !== 0) failed = true;

if (only !== "bun") {
  const r = await run("deno test", bin("deno"), [
    "test", "--allow-net", "--allow-read", "--allow-env", "--allow-run", "--allow-write", "--allow-sys", ...files,
  ]);
  // "ok | 41 passed | 0 failed (12s)", "FAILED | 40 passed | 1 failed (12s)",
  // "ok | 1 passed | 0 failed | 4 ignored (8ms)", "… | 4 filtered out (7ms)"
  const m = [...r.out.matchAll(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed((?: \| \d+ [a-z ]+?)*) \(/g)].pop();
  const rest = m?.[3] ?? "";
  const skipped = sum(rest, /(\d+) ignored/g) + sum(rest, /(\d+) filtered out/g);
  results.push({ runtime: "deno", passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 1, skipped, code: r.code, counted: !!m });
}
if (only !== "deno") {
  const r = await run("bun test", bin("bun"), ["test", "--timeout", "120000", ...files.map((f) => (f.startsWith(".") || f.startsWith("/") ? f : `./${f}`))]);
  // " 41 pass\n 0 fail"
  const p = [...r.out.matchAll(/^\s*(\d+) pass$/gm)].pop();
  const f = [...r.out.matchAll(/^\s*(\d+) fail$/gm)].pop();
  // " 2 skip", " 1 todo", " 4 filtered out" (the last summary only)
  const tail = p ? r.out.slice(r.out.lastIndexOf(p[0])) : "";
  const skipped = sum(tail, /^\s*(\d+) (?:skip|todo|filtered out)$/gm);
  results.push({ runtime: "bun", passed: p ? Number(p[1]) : 0, failed: f ? Number(f[1]) : 1, skipped, code: r.code, counted: !!p });
}

function sum(text, re) {
  let n = 0;
  for (const m of text.matchAll(re)) n += Number(m[1]);
  return n;
}

/** The committed minimum number of tests per runtime for the whole suite: a shrinking suite fails CI. */
function floors() {
  try {
    return JSON.parse(readFileSync(root + FLOOR_FILE, "utf8"));
  } catch (e) {
    console.log(`cannot read ${FLOOR_FILE}: ${e.message}`);
    return null;
  }
}

let passed = 0, failures = 0, skips = 0;
const floor = wholeSuite ? floors() : null;
if (wholeSuite && !floor) failed = true;
console.log("");
for (const r of results) {
  const note = r.counted ? "" : " (no summary found: counted as 1 failure)";
  console.log(`${r.runtime}: ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped (exit ${r.code})${note}`);
  passed += r.passed;
  failures += r.failed;
  skips += r.skipped;
  if (r.code !== 0 || r.failed > 0 || !r.counted) failed = true;
  if (r.skipped > 0) {
    failed = true;
    console.log(`${r.runtime}: ${r.skipped} test(s) did not run (skip, todo, ignore or filtered out): every test must run; fix or delete them`);
  }
  const min = floor?.[r.runtime];
  if (floor && r.counted) {
    const ran = r.passed + r.failed;
    if (typeof min !== "number") {
      failed = true;
      console.log(`${r.runtime}: no floor for this runtime in ${FLOOR_FILE}; add "${r.runtime}": ${ran}`);
    } else if (ran < min) {
      failed = true;
      console.log(`${r.runtime}: the suite shrank: ${ran} tests ran, fewer than the floor of ${min} in ${FLOOR_FILE}. ` +
        `A test was deleted, skipped or stopped loading; if that was meant, lower "${r.runtime}" in ${FLOOR_FILE} to ${ran} in the same commit and say why`);
    } else if (ran > min) {
      console.log(`${r.runtime}: ${ran} tests ran, above the floor of ${min}: raise "${r.runtime}" in ${FLOOR_FILE} to ${ran} so that losing them fails CI`);
    }
  }
}
if (check.code !== 0) console.log("type-check: FAILED");
console.log(`${passed} passed, ${failures} failed${skips ? `, ${skips} skipped` : ""}`);
process.exit(failed || failures > 0 ? 1 : 0);
