#!/usr/bin/env node
// Summarizes a .cpuprofile (Chrome format: Bun's --cpu-prof, or bench/release.mjs --prof):
// self and inclusive time by function, optionally within a window and for functions whose
// name or file contains FILTER. Deno profiles taken through the inspector include its
// network bridge (inspector_network_bridge, op_inspector_emit_protocol_event): discount it.
// Bun's profile is sparse in wall time (no samples while idle, gaps between samples):
// COUNT=1 counts samples instead of weighting them by the gap to the next.
//
//   node bench/profile.mjs FILE [top=40] [fromMs=0] [toMs=∞] [FILTER]
import { readFileSync } from "node:fs";

const [file, topS = "40", fromS = "0", toS = "1e12", filter = ""] = process.argv.slice(2);
const byCount = process.env.COUNT === "1";
const p = JSON.parse(readFileSync(file, "utf8"));
const nodes = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const key = (n) => {
  const f = n.callFrame;
  return `${f.functionName || "(anon)"} ${(f.url || "").replace(/^.*\/(src|ext|node|deno)\//, "$1/")}:${f.lineNumber + 1}`;
};
const self = new Map(), incl = new Map();
let total = 0, t = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i];
  const rel = (t - p.startTime) / 1000;
  if (rel < Number(fromS) || rel > Number(toS)) continue;
  const dt = byCount ? 1 : Math.min((p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000, 5);
  let id = p.samples[i];
  total += dt;
  const k = key(nodes.get(id));
  self.set(k, (self.get(k) ?? 0) + dt);
  const seen = new Set();
  for (; id !== undefined; id = parent.get(id)) {
    const kk = key(nodes.get(id));
    if (!seen.has(kk)) {
      seen.add(kk);
      incl.set(kk, (incl.get(kk) ?? 0) + dt);
    }
  }
}
console.log(`total ${total.toFixed(0)} ${byCount ? "samples" : "ms"}, ${p.samples.length} samples, span ${((p.endTime - p.startTime) / 1000).toFixed(0)} ms`);
const top = (m) => [...m].filter(([k]) => k.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, Number(topS));
for (const [name, m] of [["self", self], ["inclusive", incl]]) {
  console.log(`--- ${name}`);
  for (const [k, v] of top(m)) console.log(v.toFixed(1).padStart(8), `${(100 * v / total).toFixed(1)}%`.padStart(6), k);
}
