/**
 * Imported first by src/proxy.ts, so in the bundle (dist/proxy.js) it runs before any
 * module touches the Deno or Bun globals: under Node, one line saying how to run holdup,
 * exit 1 — instead of a minified stack trace and "Bun is not defined".
 */
const g = globalThis as { Deno?: unknown; Bun?: unknown; process?: { exit(code: number): never } };
if (!g.Deno && !g.Bun) {
  console.error(
    "holdup runs on Deno or Bun, not Node.js: use the holdup command (npm install -g holdup brings Deno), or run deno run -A dist/proxy.js, or bun dist/proxy.js",
  );
  g.process?.exit(1);
}
export {};
