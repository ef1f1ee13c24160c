#!/usr/bin/env node
// Releasing held requests, A/B: N raw `Connection: close` GETs held by holdup on a dead
// upstream, then released by `POST /reload` to a live one (bench/upstream.mjs). Holdup from
// a baseline checkout (HOLDUP_BASELINE=DIR) and from this tree run alternately, a fresh
// process each run, so a loaded machine's drift lands on both. Per run: reload call → last
// answered, holdup's CPU during the release (user + system over all its threads, from
// /proc/PID/task/*/schedstat, ns), and peak RSS of its process tree.
//
//   HOLDUP_BASELINE=/tmp/base node bench/release.mjs [--runtime deno|bun] [--n 1000] [--pairs 5]
//     [--mode burst]            no hold: N connections opened, then N GETs written at once to holdup with its upstream up
//     [--passthrough]           with --mode burst: bench/passthrough.ts (bare fetch() on Deno.serve/Bun.serve) instead of holdup
//     [--keepalive]             the clients send no `Connection: close` (and keep their connections to the end)
//     [--warm K]                K requests forwarded (upstream up) before a reload to the dead upstream: a warm process
//     [--only after]            (no baseline: this tree only)
//     [--prof DIR]              CPU profile of each release into DIR (Bun: --cpu-prof; Deno: the
//                               inspector, started just before the reload and stopped after the last answer;
//                               its node:http client then also reports to the inspector: drop those frames)
//                               Summarize with bench/profile.mjs.
//     [--perf DIR]              `perf record -g` of the release (Deno with --perf-basic-prof; its binary has no symbols)
import net from "node:net";
import { parseArgs } from "node:util";
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "node:child_process";
import {
  BIN, BENCH_DIR, REPO_DIR, log, sleep, freePort, spawnGroup, waitPort, rssSampler, median, httpRequest, installCleanup, ensureFdLimit,
} from "./lib/util.mjs";

const { values: o } = parseArgs({
  options: {
    runtime: { type: "string", default: "deno" }, n: { type: "string", default: "1000" },
    pairs: { type: "string", default: "5" }, mode: { type: "string", default: "reload" }, warm: { type: "string", default: "0" },
    keepalive: { type: "boolean", default: false }, passthrough: { type: "boolean", default: false },
    only: { type: "string" }, prof: { type: "string" }, perf: { type: "string" },
  },
});
const N = Number(o.n);
ensureFdLimit(N + 1024);
installCleanup();

/** CPU ns of every thread of PID so far. */
function cpuNs(pid) {
  let sum = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      sum += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch { /* thread gone */ }
  }
  return sum;
}

function fire(port, n, defer = false) {
  let done = 0, written = 0, last = 0, ok = 0;
  let resolveAll, resolveWritten;
  const all = new Promise((r) => (resolveAll = r));
  const allWritten = new Promise((r) => (resolveWritten = r));
  const sockets = [];
  let started = 0, connecting = 0;
  const open = () => {
    while (connecting < 256 && started < n) {
      const i = started++;
      connecting++;
      const s = net.connect({ port, host: "127.0.0.1" });
      sockets.push(s);
      let fin = false, head = "";
      const finish = (good) => {
        if (fin) return;
        fin = true;
        last = performance.now();
        if (good) ok++;
        if (++done === n) resolveAll();
      };
      s.on("connect", () => {
        connecting--;
        open();
        const send = (cb) => s.write(`GET /held/${i} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${o.keepalive ? "" : "Connection: close\r\n"}\r\n`, cb);
        if (defer) {
          s.send = send;
          if (++written === n) resolveWritten();
        } else send(() => { if (++written === n) resolveWritten(); });
      });
      s.on("data", (d) => {
        head += d.toString("latin1");
        if (head.includes("\r\n\r\n")) { finish(head.startsWith("HTTP/1.1 200") && /x-upstream: B/i.test(head)); if (!o.keepalive) s.destroy(); }
      });
      s.on("error", () => finish(false));
      s.on("close", () => finish(false));
    }
  };
  open();
  return { all, allWritten, sendAll: () => sockets.forEach((s) => s.send()), get last() { return last; }, get ok() { return ok; }, destroy: () => sockets.forEach((s) => s.destroy()) };
}

/** A CDP client (run by Deno: Node 20 has no WebSocket) that profiles a Deno process between "start" and "stop" on stdin. */
const CDP = `
const [port, out] = Deno.args;
const list = await (await fetch("http://127.0.0.1:" + port + "/json/list")).json();
const ws = new WebSocket(list[0].webSocketDebuggerUrl);
await new Promise((r) => ws.onopen = r);
let id = 0; const pending = new Map();
ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.id && pending.has(m.id)) { pending.get(m.id)(m.result); pending.delete(m.id); } };
const call = (method, params = {}) => new Promise((r) => { pending.set(++id, r); ws.send(JSON.stringify({ id, method, params })); });
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 250 });
console.log("ready");
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let buf = "";
for await (const chunk of lines) {
  buf += chunk;
  if (buf.includes("start")) { buf = buf.replace("start", ""); await call("Profiler.start"); console.log("started"); }
  if (buf.includes("stop")) { const { profile } = await call("Profiler.stop"); await Deno.writeTextFile(out, JSON.stringify(profile)); console.log("written"); break; }
}
ws.close();
Deno.exit(0);
`;

function cdpSays(child, word) {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`profiler: no "${word}" (${out})`)), 20000);
    const on = (d) => {
      out += d;
      if (out.includes(word)) {
        clearTimeout(timer);
        child.stdout.off("data", on);
        resolve();
      }
    };
    child.stdout.on("data", on);
  });
}

async function runOnce(tag, rt, upPort, k) {
  const root = tag === "before" ? process.env.HOLDUP_BASELINE : REPO_DIR;
  const entry = join(root, "src/proxy.ts");
  const dead = await freePort(), port = await freePort(), admin = await freePort();
  const profFile = o.prof ? join(o.prof, `${rt}-${tag}-${N}-${k}.cpuprofile`) : null;
  const inspect = profFile && rt === "deno" ? await freePort() : null;
  const rtArgs = rt === "bun"
    ? [...(profFile ? ["--cpu-prof", `--cpu-prof-dir=${o.prof}`, `--cpu-prof-name=${rt}-${tag}-${N}-${k}.cpuprofile`] : []), entry]
    : ["run", "--allow-net", "--allow-read", "--allow-env", ...(inspect ? [`--inspect=127.0.0.1:${inspect}`] : []), ...(o.perf ? ["--v8-flags=--perf-basic-prof"] : []), entry];
  const burst = o.mode === "burst";
  const warm = Number(o.warm);
  const proc = o.passthrough
    ? spawnGroup(`passthrough-${rt}`, BIN[rt], rt === "bun" ? [join(BENCH_DIR, "passthrough.ts")] : ["run", "--allow-net", "--allow-env", join(BENCH_DIR, "passthrough.ts")],
      { env: { PORT: String(port), UPSTREAM: `http://127.0.0.1:${upPort}` } })
    : spawnGroup(`holdup-${rt}-${tag}`, BIN[rt], [...rtArgs, "-l", `127.0.0.1:${port}`, "-u", `http://127.0.0.1:${burst || warm ? upPort : dead}`,
    "--admin", `127.0.0.1:${admin}`, "--log", "off", "--try-duration", "60s", "--try-interval", "1s", "--max-held", String(N * 2)]);
  let cdp = null;
  try {
    await waitPort(port, { proc, timeoutMs: 20000 });
    if (!o.passthrough) await waitPort(admin, { proc, timeoutMs: 20000 });
    if (inspect) {
      const script = join(o.prof, "cdp.ts");
      writeFileSync(script, CDP);
      cdp = spawn(BIN.deno, ["run", "-A", script, String(inspect), profFile], { stdio: ["pipe", "pipe", "inherit"] });
      await cdpSays(cdp, "ready");
    }
    if (warm) {
      // A process that has forwarded requests before (as in production), not one that meets the forwarding code first in the release.
      for (let done = 0; done < warm; done += 500) {
        const w = fire(port, Math.min(500, warm - done));
        await w.all;
        w.destroy();
      }
      const r = await httpRequest(`http://127.0.0.1:${admin}/reload`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ upstreams: [`http://127.0.0.1:${dead}`] }), timeoutMs: 20000,
      });
      if (r.status !== 200) throw new Error(`reload ${r.status}`);
    }
    if (burst) {
      // Warm the upstream connection pool and the code paths, as a release finds them after a probe.
      const w = fire(port, 64);
      await w.all;
      w.destroy();
    }
    const c = fire(port, N, burst);
    await c.allWritten;
    for (const end = Date.now() + 30000; !burst && Date.now() < end;) {
      const r = await httpRequest(`http://127.0.0.1:${admin}/status`);
      if (JSON.parse(r.body.toString()).held >= N) break;
      await sleep(50);
    }
    await sleep(300);
    if (cdp) {
      cdp.stdin.write("start\n");
      await cdpSays(cdp, "started");
    }
    let perf = null;
    if (o.perf) {
      mkdirSync(o.perf, { recursive: true });
      perf = spawn("perf", ["record", "-F", "1999", "-g", "-p", String(proc.pid), "-o", join(o.perf, `${rt}-${tag}-${N}-${k}.data`)], { stdio: "ignore" });
      await sleep(500);
    }
    const rss = rssSampler(proc.pid, 20);
    const c0 = cpuNs(proc.pid);
    const t0 = performance.now();
    if (burst) c.sendAll();
    else {
      const r = await httpRequest(`http://127.0.0.1:${admin}/reload`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ upstreams: [`http://127.0.0.1:${upPort}`] }), timeoutMs: 20000,
      });
      if (r.status !== 200) throw new Error(`reload ${r.status}`);
    }
    await Promise.race([c.all, sleep(30000)]);
    const last = c.last - t0;
    const cpu = (cpuNs(proc.pid) - c0) / 1e6;
    const peak = rss.stop();
    c.destroy();
    if (perf) {
      perf.kill("SIGINT");
      await new Promise((r) => perf.on("exit", r));
    }
    if (cdp) {
      cdp.stdin.write("stop\n");
      await cdpSays(cdp, "written");
    }
    return { last, cpu, peak, ok: c.ok };
  } finally {
    await proc.stop();
  }
}

const up = await freePort();
const upstream = spawnGroup("upstream-B", process.execPath, [join(BENCH_DIR, "upstream.mjs"), String(up), "B"], { stdin: "pipe" });
await waitPort(up, { proc: upstream });
if (o.prof) mkdirSync(o.prof, { recursive: true });
const tags = o.only ? [o.only] : ["before", "after"];
const res = Object.fromEntries(tags.map((t) => [t, []]));
try {
  for (let i = 0; i < Number(o.pairs); i++) {
    const order = i % 2 ? [...tags].reverse() : tags;
    for (const t of order) {
      const r = await runOnce(t, o.runtime, up, i);
      res[t].push(r);
      const load = readFileSync("/proc/loadavg", "utf8").split(" ")[0];
      log(`${o.runtime} n=${N} pair ${i + 1} ${t}: last ${r.last.toFixed(0)} ms, CPU ${r.cpu.toFixed(0)} ms (${(r.cpu * 1000 / N).toFixed(0)} µs/req), peak RSS ${r.peak.toFixed(1)} MB, ok ${r.ok}/${N}, load ${load}`);
    }
  }
} finally {
  await upstream.stop();
}
const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
for (const t of tags) {
  const m = (k) => median(res[t].map((r) => r[k]));
  console.log(`${o.runtime} n=${N} ${t}: median last ${m("last").toFixed(0)} ms, CPU ${m("cpu").toFixed(0)} ms (${(m("cpu") * 1000 / N).toFixed(0)} µs/req), peak RSS ${m("peak").toFixed(1)} MB  [last: ${res[t].map((r) => r.last.toFixed(0)).join(", ")}] load ${load}`);
}
