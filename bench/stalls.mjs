#!/usr/bin/env node
// Numbers the tests used to assert and now only order (test/dashboard.test.ts,
// test/run.test.ts): on Deno and on Bun,
// - a dashboard client that never reads its /events stream: holdup's RSS
//   (process tree) before and after --flips (340) pause/resume pairs with 1,000
//   upstreams (each status snapshot ~150 KB), and whether the stream was dropped;
// - `holdup -- python3 -m http.server`: ms from holdup's SIGKILL until the app
//   is gone (the wrapper notices the closed pipe).
//
//   node bench/stalls.mjs [--flips 340]
import http from "node:http";
import net from "node:net";
import { parseArgs } from "node:util";
import { BIN, freePort, installCleanup, log, sleep, spawnGroup, table, treeRssKB, waitPort } from "./lib/util.mjs";

const { values: o } = parseArgs({ options: { flips: { type: "string" } } });
const FLIPS = Number(o.flips ?? 340);
installCleanup();

const runtimeArgs = (rt) => rt === "bun" ? [BIN.bun, ["src/proxy.ts"]] : [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", "src/proxy.ts"]];

function post(admin, path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ port: admin, host: "127.0.0.1", path, method: "POST" }, (r) => r.resume().on("end", resolve));
    req.on("error", reject);
    req.end();
  });
}

function getJson(admin, path) {
  return new Promise((resolve, reject) => {
    http.get({ port: admin, host: "127.0.0.1", path }, (r) => {
      let b = "";
      r.on("data", (d) => b += d).on("end", () => resolve(JSON.parse(b)));
    }).on("error", reject);
  });
}

/** The status in a new /events stream's hello (it carries the dashboard's own counters). */
function hello(admin) {
  return new Promise((resolve, reject) => {
    const req = http.get({ port: admin, host: "127.0.0.1", path: "/events" }, (r) => {
      let b = "";
      r.setEncoding("utf8");
      r.on("data", (d) => {
        b += d;
        const m = /event: hello\ndata: (.*)\n\n/.exec(b);
        if (m) {
          req.destroy();
          resolve(JSON.parse(m[1]).status);
        }
      });
    });
    req.on("error", reject);
  });
}

async function stalledStream(rt) {
  const [port, admin] = [await freePort(), await freePort()];
  const many = Array.from({ length: 1000 }, (_, i) => ["-u", `http://127.0.0.1:${20000 + i}`]).flat();
  const [cmd, args] = runtimeArgs(rt);
  const h = spawnGroup(`holdup-${rt}`, cmd, [...args, "-l", `127.0.0.1:${port}`, "--admin", `127.0.0.1:${admin}`, ...many, "--log", "off"]);
  try {
    await waitPort(admin, { proc: h });
    const sock = net.connect(admin, "127.0.0.1");
    await new Promise((r) => sock.once("connect", r));
    sock.pause();
    sock.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${admin}\r\n\r\n`);
    await sleep(300);
    const before = treeRssKB(h.pid);
    for (let i = 0; i < FLIPS; i++) {
      await post(admin, "/pause");
      await post(admin, "/resume");
    }
    const after = treeRssKB(h.pid);
    const dropped = (await hello(admin)).dashboard?.dropped ?? "?";
    sock.destroy();
    return [rt, `${(before / 1024).toFixed(1)} MB`, `${(after / 1024).toFixed(1)} MB`, `${((after - before) / 1024).toFixed(1)} MB`, String(dropped)];
  } finally {
    await h.stop();
  }
}

async function appGone(rt) {
  const [port, admin] = [await freePort(), await freePort()];
  const [cmd, args] = runtimeArgs(rt);
  const h = spawnGroup(`holdup-${rt}`, cmd, [...args, "-l", `127.0.0.1:${port}`, "--admin", `127.0.0.1:${admin}`, "--log", "json", "--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
  await waitPort(admin, { proc: h });
  let pid = null;
  for (let i = 0; i < 200 && !pid; i++) {
    pid = (await getJson(admin, "/status")).app?.pid ?? null;
    if (!pid) await sleep(50);
  }
  process.kill(h.pid, "SIGKILL"); // holdup itself (exec'd by the group's bash), not its group
  const t0 = performance.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    if (performance.now() - t0 > 10_000) break;
    await sleep(2);
  }
  const ms = performance.now() - t0;
  await h.stop();
  return [rt, `${ms.toFixed(0)} ms`];
}

const stalled = [], gone = [];
for (const rt of ["deno", "bun"]) {
  log(`${rt}: stalled /events stream, ${FLIPS} pause/resume pairs`);
  stalled.push(await stalledStream(rt));
  log(`${rt}: app gone after holdup's SIGKILL`);
  gone.push(await appGone(rt));
}
console.log(`### A dashboard client that never reads (${FLIPS} pause/resume pairs, 1,000 upstreams)\n`);
console.log(table(["runtime", "RSS before", "RSS after", "growth", "streams dropped"], stalled));
console.log(`\n### holdup SIGKILLed: its app gone after\n`);
console.log(table(["runtime", "app gone"], gone));
