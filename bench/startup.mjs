#!/usr/bin/env node
// Start-up time of each way to run holdup: from spawn until its port accepts a
// connection. Median of --runs (default 7). Run `npm run build` and
// `npm run compile` first. Usage: node bench/startup.mjs [--runs N]
import { spawn } from "node:child_process";
import net from "node:net";
import { existsSync, statSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { runs: { type: "string", default: "7" } } });
const runs = Number(values.runs);
const root = new URL("..", import.meta.url).pathname;
const bin = (n) => `${root}node_modules/.bin/${n}`;
const perms = ["--allow-net", "--allow-read", "--allow-env"];

const free = () => new Promise((r) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => r(p));
  });
});
const accepts = (port) => new Promise((r) => {
  const s = net.connect(port, "127.0.0.1");
  s.on("connect", () => (s.destroy(), r(true)));
  s.on("error", () => r(false));
});

const flags = (port) => ["-l", `127.0.0.1:${port}`, "--admin", "off", "--log", "off", "-u", ":1"];
const targets = [
  ["deno src/proxy.ts", (p) => [bin("deno"), ["run", ...perms, "src/proxy.ts", ...flags(p)]]],
  ["bun src/proxy.ts", (p) => [bin("bun"), ["src/proxy.ts", ...flags(p)]]],
  ["deno dist/proxy.js", (p) => [bin("deno"), ["run", ...perms, "dist/proxy.js", ...flags(p)]]],
  ["bun dist/proxy.js", (p) => [bin("bun"), ["dist/proxy.js", ...flags(p)]]],
  ["dist/holdup (compiled)", (p) => [`${root}dist/holdup`, flags(p)]],
  ["deno serve dist/edge.js", (p) => [bin("deno"), ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(p), "dist/edge.js"]]],
  ["bun dist/edge.js", (p) => [bin("bun"), ["dist/edge.js"]]],
];

console.log(`| how | median start-up (ms) | min | max | runs |\n|---|--:|--:|--:|--:|`);
for (const [name, cmd] of targets) {
  if (name.startsWith("dist/holdup") && !existsSync(`${root}dist/holdup`)) {
    console.log(`| ${name} | (not built: npm run compile) | | | |`);
    continue;
  }
  const times = [];
  for (let i = 0; i < runs; i++) {
    const port = await free();
    const [c, a] = cmd(port);
    const t0 = performance.now();
    const child = spawn(c, a, { cwd: root, stdio: "ignore", env: { ...process.env, PORT: String(port), HOLDUP_UPSTREAMS: ":1", HOLDUP_LOG: "off" } });
    while (!(await accepts(port))) await new Promise((r) => setTimeout(r, 2));
    times.push(performance.now() - t0);
    child.kill("SIGKILL");
    await new Promise((r) => child.on("close", r));
  }
  times.sort((a, b) => a - b);
  const f = (x) => x.toFixed(0);
  console.log(`| ${name} | ${f(times[Math.floor(times.length / 2)])} | ${f(times[0])} | ${f(times.at(-1))} | ${runs} |`);
}
for (const f of ["dist/proxy.js", "dist/edge.js", "dist/holdup"]) {
  if (existsSync(`${root}${f}`)) console.log(`${f}: ${(statSync(`${root}${f}`).size / 1024).toFixed(1)} KiB`);
}
