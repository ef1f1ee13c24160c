// docs/ARCHITECTURE.md's floors, kept true: no src/ file imports a floor above its own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const src = join(root, "src");
// Lowest first; a unit may import its own floor's other units (none do today) or any floor below.
const FLOORS = [
  ["config/", "util/"],
  ["serve/", "runtime/"],
  ["apps/", "acme/"],
  ["observe/"],
  ["http/", "control/"],
  ["ws/", "admin/", "fleet/", "run/"],
  ["holdup.ts"],
  ["cli/", "edge.ts"],
  ["proxy.ts"],
];
const floorOf = new Map(FLOORS.flatMap((units, i) => units.map((u) => [u, i] as const)));

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []);
}
const unitOf = (file: string) => {
  const parts = relative(src, file).split(/[\\/]/);
  return parts.length > 1 ? `${parts[0]}/` : parts[0];
};

test("layout: every unit of src/ has a floor, and no import runs upward", () => {
  const upward: string[] = [];
  for (const f of files(src)) {
    const from = unitOf(f);
    assert.ok(floorOf.has(from), `src/${from} has no floor in docs/ARCHITECTURE.md (and this test): place it`);
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s*["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g)) {
      const target = resolve(dirname(f), m[1] ?? m[2]);
      if (!target.startsWith(src)) continue;
      const to = unitOf(target);
      if (to === from) continue;
      if ((floorOf.get(to) ?? -1) > floorOf.get(from)!) upward.push(`${relative(root, f)} → ${relative(root, target)}`);
    }
  }
  assert.deepEqual(upward, []);
});

test("layout: src/ holds only the doors and folders", () => {
  const rootFiles = readdirSync(src, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
  assert.deepEqual(rootFiles, ["edge.ts", "holdup.ts", "proxy.ts"]);
});
