#!/usr/bin/env node
// `npm test`: type-check, then every test file under Deno and under Bun, then
// one line that sums both: "N passed, N failed". Exits non-zero if anything failed.
// Usage: node scripts/test.mjs [deno|bun] [test files…]
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => `${root}node_modules/.bin/${name}`;
const argv = process.argv.slice(2);
const only = ["deno", "bun"].includes(argv[0]) ? argv.shift() : null;
const files = argv.length ? argv : ["test/"];

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
  // "ok | 41 passed | 0 failed (12s)" or "FAILED | 40 passed | 1 failed (12s)"
  const m = [...r.out.matchAll(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].pop();
  results.push({ runtime: "deno", passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 1, code: r.code, counted: !!m });
}
if (only !== "deno") {
  const r = await run("bun test", bin("bun"), ["test", "--timeout", "120000", ...files.map((f) => (f.startsWith(".") || f.startsWith("/") ? f : `./${f}`))]);
  // " 41 pass\n 0 fail"
  const p = [...r.out.matchAll(/^\s*(\d+) pass$/gm)].pop();
  const f = [...r.out.matchAll(/^\s*(\d+) fail$/gm)].pop();
  results.push({ runtime: "bun", passed: p ? Number(p[1]) : 0, failed: f ? Number(f[1]) : 1, code: r.code, counted: !!p });
}

let passed = 0, failures = 0;
console.log("");
for (const r of results) {
  const note = r.counted ? "" : " (no summary found: counted as 1 failure)";
  console.log(`${r.runtime}: ${r.passed} passed, ${r.failed} failed (exit ${r.code})${note}`);
  passed += r.passed;
  failures += r.failed;
  if (r.code !== 0 || r.failed > 0 || !r.counted) failed = true;
}
if (check.code !== 0) console.log("type-check: FAILED");
console.log(`${passed} passed, ${failures} failed`);
process.exit(failed || failures > 0 ? 1 : 0);
