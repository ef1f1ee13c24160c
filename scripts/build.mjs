#!/usr/bin/env node
// `npm run build`: one ESM file per entry, with hono and zod inside, that runs
// on Deno and on Bun with no node_modules:
//   dist/proxy.js  the command-line proxy  (deno run … dist/proxy.js, bun dist/proxy.js)
//   dist/edge.js   export default { fetch } (deno serve dist/edge.js, bun dist/edge.js)
// Whitespace and syntax are minified, names are kept, so stack traces stay readable.
import { build } from "esbuild";
import { readFile, stat } from "node:fs/promises";
import { builtinModules } from "node:module";

const root = new URL("..", import.meta.url).pathname;
// `node scripts/build.mjs DIR` writes the bundles to DIR instead of dist/ (the package test builds into a temporary directory).
const outDir = process.argv[2] ? (await import("node:path")).resolve(process.argv[2]) : `${root}dist`;
const pkg = JSON.parse(await readFile(`${root}package.json`, "utf8"));
const banner = `// holdup ${pkg.version} — a reverse proxy for zero-downtime deploys (${pkg.license}).
// Built from src/ by \`npm run build\` (esbuild); source: ${pkg.repository?.url ?? "the holdup repository"}.
// Runs unchanged on Deno and Bun. Do not edit: change src/ and rebuild.`;

// acme-client (CommonJS, loaded by dynamic import only when ACME is configured) calls
// require("crypto") and friends: node's built-ins stay outside the bundle, and proxy.js
// gets a real `require` (esbuild's ESM stub throws "Dynamic require of "crypto" is not
// supported" on Deno).
const cjsRequire = `import { createRequire as __holdupCreateRequire } from "node:module";
const require = __holdupCreateRequire(import.meta.url);`;

for (const [entry, name] of [["src/proxy.ts", "proxy.js"], ["src/edge.ts", "edge.js"]]) {
  const out = `${outDir}/${name}`;
  await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    external: ["node:*", ...builtinModules],
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    banner: { js: name === "proxy.js" ? `${banner}\n${cjsRequire}` : banner },
    logLevel: "warning",
  });
  const { size } = await stat(out);
  console.log(`${out.replace(root, "")}: ${(size / 1024).toFixed(1)} KiB`);
}
