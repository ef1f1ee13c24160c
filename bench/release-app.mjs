#!/usr/bin/env node
// Held requests released to an app that starts late (the "restart" case with a real app server):
// N GETs held by holdup on a dead port, then the app starts there; prints when they were answered.
// Node built-ins only (and bench/lib).
//
//   node bench/release-app.mjs [deno|bun] [N=300] [http.server|node|gunicorn]
//   HOLDUP_BASELINE=DIR …   run the holdup of another checkout (its src/proxy.ts)
//
// http.server: `python3 -m http.server` (HTTP/1.0, listen backlog 5: a burst of connects past it
// has SYNs dropped and resent by the kernel 1 s, 3 s, 7 s… later); node: bench/upstream.mjs;
// gunicorn: 2 sync workers of python3-httpbin.
import http from "node:http";
import { spawn } from "node:child_process";
import { freePort, REPO_DIR, sleep } from "./lib/util.mjs";

const [rt = "deno", nStr = "300", server = "http.server"] = process.argv.slice(2);
const N = Number(nStr);
const repo = `${REPO_DIR}/`;
const root = process.env.HOLDUP_BASELINE ? process.env.HOLDUP_BASELINE.replace(/\/?$/, "/") : repo;
const [P, L, A] = [await freePort(), await freePort(), await freePort()];
const cmd = rt === "deno" ? [repo + "node_modules/.bin/deno", ["run", "-A", root + "src/proxy.ts"]] : [repo + "node_modules/.bin/bun", [root + "src/proxy.ts"]];
const holdup = spawn(cmd[0], [...cmd[1], "-l", `127.0.0.1:${L}`, "--admin", `127.0.0.1:${A}`, "--log", "off", "-u", `127.0.0.1:${P}`, "--try-duration", "60s", "--try-interval", "100ms"], { stdio: "inherit" });
const status = () => new Promise((r) => http.get(`http://127.0.0.1:${A}/status`, (res) => { let b = ""; res.on("data", (d) => b += d); res.on("end", () => r(JSON.parse(b))); }).on("error", () => r(null)));
while (!(await status())) await sleep(50);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const done = [];
for (let i = 0; i < N; i++) {
  http.get({ host: "127.0.0.1", port: L, path: `/r${i}`, agent }, (res) => {
    res.resume();
    res.on("end", () => done.push([performance.now(), res.statusCode]));
  }).on("error", (e) => done.push([performance.now(), e.code]));
}
while ((await status()).held < N) await sleep(50);
const t0 = performance.now();
const app = server === "node" ? spawn(process.execPath, [repo + "bench/upstream.mjs", String(P), "B"], { stdio: ["pipe", "ignore", "ignore"] })
  : server === "gunicorn" ? spawn("gunicorn", ["-w", "2", "-b", `127.0.0.1:${P}`, "httpbin:app"], { stdio: "ignore" })
  : spawn("python3", ["-m", "http.server", String(P), "--bind", "127.0.0.1", "--directory", "/tmp"], { stdio: "ignore" });
while (done.length < N) await sleep(20);
const ts = done.map(([t]) => t - t0).sort((a, b) => a - b);
const codes = {};
for (const [, c] of done) codes[c] = (codes[c] ?? 0) + 1;
console.log(`${rt} ${server} N=${N}${process.env.HOLDUP_BASELINE ? " (baseline)" : ""}, from the app's start: p50 ${ts[N >> 1].toFixed(0)} ms, p90 ${ts[Math.floor(N * 0.9)].toFixed(0)} ms, last ${ts[N - 1].toFixed(0)} ms; statuses ${JSON.stringify(codes)}`);
holdup.kill();
app.kill();
process.exit(0);
