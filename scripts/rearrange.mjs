#!/usr/bin/env node
// The folder rearrangement of issue 23 as a re-runnable codemod (docs/ARCHITECTURE.md).
// Moves every file still at an old path (MOVES, then FOLDERS for files it does not
// name) and rewrites the paths that pointed at it: relative specifiers in src/, test/,
// bench/, scripts/ (resolved from the file's old place if the file moved), and
// root-relative "src/…" mentions in those files and in README.md and docs/.
// Idempotent: on a rearranged tree it only fixes what was added against the old layout.
// Usage: node scripts/rearrange.mjs [--dry]   (prints what it did; exit 1 if a path is left dangling)
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dry = process.argv.includes("--dry");

// old path → new path (repo-relative). src/proxy.ts, src/edge.ts and src/holdup.ts stay.
export const MOVES = {
  "src/main.ts": "src/cli/main.ts",
  "src/cli.ts": "src/cli/flags.ts",
  "src/client.ts": "src/cli/client.ts",
  "src/apps.ts": "src/apps/apps.ts",
  "src/state.ts": "src/apps/state.ts",
  "src/upstream.ts": "src/apps/upstream.ts",
  "src/ws/registry.ts": "src/apps/websockets.ts",
  "src/app.ts": "src/http/handler.ts",
  "src/hold.ts": "src/http/hold.ts",
  "src/forward/attempt.ts": "src/http/attempt.ts",
  "src/forward/body.ts": "src/http/body.ts",
  "src/forward/headers.ts": "src/http/headers.ts",
  "src/forward/errors.ts": "src/http/errors.ts",
  "src/forward/deadlines.ts": "src/util/deadlines.ts",
  "src/gate.ts": "src/util/gate.ts",
  "src/drain.ts": "src/util/drain.ts",
  "src/log.ts": "src/observe/log.ts",
  "src/metrics.ts": "src/observe/metrics.ts",
  "src/control.ts": "src/control/control.ts",
  "src/admin.ts": "src/admin/api.ts",
  "src/dashboard/page.ts": "src/admin/dashboard.ts",
  "src/dashboard/events.ts": "src/admin/events.ts",
  "src/dashboard/client.ts": "src/admin/browser.ts",
  "src/fleet/shared.ts": "src/fleet/fleet.ts",
  // Added by the third wave's fixes, written against the old layout:
  "src/health.ts": "src/apps/health.ts",
  "src/suggest.ts": "src/util/suggest.ts",
  "src/commands.ts": "src/cli/commands.ts",
  "src/during.ts": "src/cli/during.ts",
  "src/pages.ts": "src/http/pages.ts",
  "src/templates.ts": "src/http/templates.ts",
  "src/metrics-port.ts": "src/observe/metrics-port.ts",
  "src/rollback.ts": "src/control/rollback.ts",
};
// Old folders that no longer exist: a file the map does not name moves by folder.
const FOLDERS = { "src/forward/": "src/http/", "src/dashboard/": "src/admin/" };
const ROOT_DOORS = new Set(["src/proxy.ts", "src/edge.ts", "src/holdup.ts"]);
const CODE_DIRS = ["src", "test", "bench", "scripts"];
const TEXT_FILES = ["README.md", "package.json", "deno.json"];
const TEXT_DIRS = ["docs"];

const abs = (p) => path.join(root, p);
const rel = (p) => path.relative(root, p).split(path.sep).join("/");
const exists = (p) => fs.existsSync(abs(p)) && fs.statSync(abs(p)).isFile();
function mapped(p) {
  if (MOVES[p]) return MOVES[p];
  for (const [from, to] of Object.entries(FOLDERS)) if (p.startsWith(from)) return to + p.slice(from.length);
  return null;
}
function walk(dir, out = []) {
  if (!fs.existsSync(abs(dir))) return out;
  for (const e of fs.readdirSync(abs(dir), { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}
const tracked = new Set(execFileSync("git", ["ls-files"], { cwd: root, encoding: "utf8" }).split("\n"));

// 1. Move what is still at an old path.
const movedNow = new Map(); // new path → old path, for this run
for (const p of walk("src")) {
  const to = mapped(p);
  if (!to) continue;
  if (exists(to)) throw new Error(`${p} → ${to}: the target exists already; merge the two by hand`);
  movedNow.set(to, p);
  console.log(`move ${p} → ${to}`);
  if (dry) continue;
  fs.mkdirSync(path.dirname(abs(to)), { recursive: true });
  if (tracked.has(p)) execFileSync("git", ["mv", p, to], { cwd: root });
  else fs.renameSync(abs(p), abs(to));
}
for (const d of [...Object.keys(FOLDERS)]) {
  if (!dry && fs.existsSync(abs(d)) && fs.readdirSync(abs(d)).length === 0) fs.rmdirSync(abs(d));
}
// In a dry run the tree did not change: answer "exists" as if it had.
const existsAfter = (p) => (dry ? (exists(p) && !mapped(p)) || movedNow.has(p) : exists(p));

// 2. Rewrite relative specifiers (any quoted "./…" or "../…" string that names a file).
const dangling = [];
let rewrites = 0;
const self = rel(fileURLToPath(import.meta.url)); // its own table names old paths: leave it
const code = CODE_DIRS.flatMap((d) => walk(d)).filter((p) => /\.(ts|tsx|mjs|js)$/.test(p) && p !== self);
const codeNow = dry ? code.map((p) => mapped(p) ?? p) : code;
for (const p of codeNow) {
  const oldP = movedNow.get(p) ?? p;
  const file = dry ? abs(oldP) : abs(p);
  let text = fs.readFileSync(file, "utf8");
  const before = text;
  text = text.replace(/(["'])(\.\.?\/[^"'\n]*?)\1/g, (all, q, spec) => {
    const target = rel(path.resolve(path.dirname(abs(oldP)), spec));
    const now = mapped(target) ?? target;
    if (!existsAfter(now)) {
      if (/\.(ts|tsx|mjs|js|json)$/.test(spec) && !existsAfter(rel(path.resolve(path.dirname(abs(p)), spec)))) {
        dangling.push(`${p}: ${spec}`);
      }
      return all;
    }
    let next = path.relative(path.dirname(abs(p)), abs(now)).split(path.sep).join("/");
    if (!next.startsWith(".")) next = `./${next}`;
    if (next === spec) return all;
    rewrites++;
    console.log(`  ${p}: ${spec} → ${next}`);
    return `${q}${next}${q}`;
  });
  // Root-relative mentions ("src/hold.ts" in a comment or a spawn argument).
  text = rewriteRootPaths(text, p);
  if (text !== before && !dry) fs.writeFileSync(file, text);
}

// 3. Root-relative mentions in the docs and manifests.
function rewriteRootPaths(text, where) {
  return text.replace(/(?<![\w./-])src\/[\w./-]+\.(?:ts|mjs|js)(?![\w])/g, (m) => {
    const to = mapped(m);
    if (!to) return m;
    rewrites++;
    console.log(`  ${where}: ${m} → ${to}`);
    return to;
  });
}
for (const p of [...TEXT_FILES, ...TEXT_DIRS.flatMap((d) => walk(d)).filter((f) => /\.(md|json)$/.test(f))]) {
  if (!exists(p)) continue;
  const before = fs.readFileSync(abs(p), "utf8");
  const text = rewriteRootPaths(before, p);
  if (text !== before && !dry) fs.writeFileSync(abs(p), text);
}

// 4. What a human must place: files at the src root that are neither doors nor mapped.
const strays = walk("src").filter((p) => p.split("/").length === 2 && !ROOT_DOORS.has(p) && !mapped(p));
for (const s of strays) console.log(`place by hand: ${s} (a new file at the src/ root; add it to MOVES)`);
for (const d of dangling) console.log(`dangling: ${d}`);
console.log(`${movedNow.size} moved, ${rewrites} paths rewritten, ${strays.length} to place, ${dangling.length} dangling${dry ? " (dry run)" : ""}`);
process.exit(dangling.length ? 1 : 0);
