// The holding benchmark: N requests held on a dead upstream, then released by the
// upstream coming back ("restart") or by a reload naming another one ("reload").
import http from "node:http";
import net from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  log, sleep, now, freePort, spawnGroup, waitPort, rssSampler, percentile, table, fmtMs, fmtMB,
  httpRequest, tempDir, BENCH_DIR, have, clip,
} from "./util.mjs";
import { startTarget, caddyfile, caddyEnv } from "./servers.mjs";

export const HOLD_PROXIES = ["holdup-bun", "holdup-deno", "caddy"];
const TRY_DURATION = "30s", TRY_INTERVAL_MS = 1000, TRY_INTERVAL = "1s";

// ---------- the origin ----------
async function startUpstream(port, name) {
  const p = spawnGroup(`upstream-${name}`, process.execPath, [join(BENCH_DIR, "upstream.mjs"), String(port), name], { stdin: "pipe" });
  let buf = "";
  const waiters = [];
  p.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
    }
  });
  const next = (ms = 10000) => Promise.race([new Promise((r) => waiters.push(r)), sleep(ms).then(() => "TIMEOUT")]);
  const first = await next();
  if (!first.startsWith("LISTENING")) { await p.stop(); throw new Error(`upstream ${name} failed: ${first} ${p.tail()}`); }
  return {
    port, proc: p, upAt: Number(first.split(" ")[1]),
    async stats() { p.child.stdin.write("stats\n"); const l = await next(3000); return l.startsWith("STATS") ? JSON.parse(l.slice(6)) : { conns: NaN, reqs: NaN }; },
    stop: () => p.stop(),
  };
}

/**
 * A proxy in production has forwarded requests before its upstream goes away: send it
 * `count` GETs (32 keep-alive loops) through a short-lived origin on the port that is
 * about to die, so the release below runs on JIT-compiled code, not a cold process.
 */
async function warmUp(proxyPort, upstreamPort, count) {
  const up = await startUpstream(upstreamPort, "warm");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  let left = count;
  const one = () => new Promise((resolve) => {
    http.get({ host: "127.0.0.1", port: proxyPort, path: "/warm", agent }, (res) => {
      res.resume();
      res.on("end", resolve);
    }).on("error", resolve);
  });
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (left-- > 0) await one();
  }));
  agent.destroy();
  await up.stop();
}

// ---------- SYN counter (tcpdump) ----------
async function startSynCapture(port) {
  if (!have("tcpdump")) return null;
  const filter = `tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and dst port ${port}`;
  const p = spawnGroup("tcpdump", "tcpdump", ["-i", "lo", "-nn", "-tt", "-q", "-l", "--immediate-mode", "-B", "65536", filter]);
  const times = [];
  let buf = "";
  p.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const m = buf.slice(0, i).match(/^(\d+\.\d+)\s/); buf = buf.slice(i + 1);
      if (m) times.push(Number(m[1]) * 1000);
    }
  });
  const end = Date.now() + 5000;
  while (!/listening on/.test(p.output()) && Date.now() < end && !p.exited) await sleep(20);
  if (p.exited || !/listening on/.test(p.output())) { log(`tcpdump did not start: ${p.tail()}`); await p.stop(); return null; }
  await sleep(100);
  return {
    times,
    async stop() { await sleep(200); await p.stop("SIGINT", 2000); const m = p.output().match(/(\d+) packets? dropped by kernel/); return { dropped: m ? Number(m[1]) : 0 }; },
  };
}

// ---------- the clients ----------
/** Open N raw HTTP/1.1 connections to PORT (ramping, ≤256 connecting at once), one GET each. */
function fireHeld(port, n, { deadlineMs = 60000, defer = false } = {}) {
  const res = new Array(n);
  let done = 0, written = 0, started = 0, connecting = 0;
  let resolveAll, resolveWritten;
  const all = new Promise((r) => (resolveAll = r));
  const allWritten = new Promise((r) => (resolveWritten = r));
  const sockets = [];
  const request = (i) => `GET /held/${i} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`;
  const finish = (i, f) => {
    if (res[i].final) return;
    Object.assign(res[i], f, { final: true });
    if (++done === n) resolveAll();
  };
  const wrote = () => { if (++written === n) resolveWritten(); };
  const open = () => {
    while (connecting < 256 && started < n) {
      const i = started++;
      connecting++;
      res[i] = { i, sentAt: NaN };
      const s = net.connect({ port, host: "127.0.0.1" });
      sockets.push(s);
      let head = "", connected = false;
      s.setNoDelay(true);
      s.on("connect", () => {
        connected = true; connecting--; open();
        if (defer) { s.heldIndex = i; wrote(); return; }
        s.write(request(i), () => { res[i].sentAt = now(); wrote(); });
      });
      s.on("data", (d) => {
        if (res[i].final) return;
        if (!res[i].firstByte) res[i].firstByte = now();
        head += d.toString("latin1");
        const e = head.indexOf("\r\n\r\n");
        if (e < 0) return;
        const lines = head.slice(0, e).split("\r\n");
        const status = Number(lines[0].split(" ")[1]);
        const up = lines.find((l) => /^x-upstream:/i.test(l))?.split(":")[1]?.trim() ?? null;
        finish(i, { status, upstream: up, at: res[i].firstByte });
        s.destroy();
      });
      s.on("error", (e) => {
        if (!connected) { connecting--; wrote(); open(); }
        finish(i, { status: null, error: e.code || e.message, at: now() });
      });
      s.on("close", () => finish(i, { status: null, error: connected ? "closed without response" : "not connected", at: now() }));
    }
  };
  open();
  const timer = setTimeout(() => { for (let i = 0; i < n; i++) if (res[i] && !res[i].final) finish(i, { status: null, error: "client timeout", at: now() }); if (done < n) resolveAll(); }, deadlineMs);
  return {
    res, allWritten, all: all.then(() => clearTimeout(timer)),
    /** with defer: send every request at once on the already open connections */
    sendAll() { for (const s of sockets) if (s.heldIndex != null && !s.destroyed) s.write(request(s.heldIndex)); },
    destroy() { clearTimeout(timer); for (const s of sockets) s.destroy(); },
  };
}

// ---------- proxies ----------
async function startHoldProxy(name, deadPort) {
  const admin = await freePort();
  if (name === "caddy") {
    const port = await freePort();
    const dir = tempDir("caddy-hold");
    const file = join(dir, "Caddyfile");
    const conf = (up) => caddyfile({ port, up, admin: `localhost:${admin}`, tryDuration: TRY_DURATION, tryInterval: TRY_INTERVAL });
    writeFileSync(file, conf(deadPort));
    log(`starting caddy on :${port} (admin localhost:${admin}, upstream dead :${deadPort})`);
    const proc = spawnGroup("caddy", "caddy", ["run", "--config", file, "--adapter", "caddyfile"], { env: caddyEnv(dir) });
    await waitPort(port, { proc, timeoutMs: 20000 });
    return {
      name, port, proc, heldCount: null, stop: () => proc.stop(),
      async reload(newUp) {
        const f2 = join(dir, "Caddyfile.reload");
        writeFileSync(f2, conf(newUp));
        const r = spawnGroup("caddy-reload", "caddy", ["reload", "--config", f2, "--adapter", "caddyfile", "--address", `localhost:${admin}`], { env: caddyEnv(dir) });
        await r.exitPromise;
        if (r.exitCode !== 0) throw new Error(`caddy reload exit ${r.exitCode}: ${r.tail(300)}`);
      },
    };
  }
  const t = await startTarget(name, deadPort, {
    holdupArgs: ["--try-duration", TRY_DURATION, "--try-interval", TRY_INTERVAL, "--admin", `127.0.0.1:${admin}`, "--log", "off"],
  });
  const base = `http://127.0.0.1:${admin}`;
  await waitPort(admin, { proc: t.proc, timeoutMs: 10000 }).catch((e) => log(`admin API not reachable: ${e.message}`));
  return {
    ...t,
    async heldCount() {
      try {
        const r = await httpRequest(`${base}/status`, { timeoutMs: 2000 });
        return r.status === 200 ? findHeld(JSON.parse(r.body.toString())) : null;
      } catch { return null; }
    },
    async reload(newUp) {
      const r = await httpRequest(`${base}/reload`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ upstreams: [`http://127.0.0.1:${newUp}`] }), timeoutMs: 10000,
      });
      if (r.status !== 200) throw new Error(`POST /reload answered ${r.status}: ${r.body.toString().slice(0, 200)}`);
    },
  };
}

/** Find the held count in a /status document ({held: n} or {held: {count|now: n}} or heldCount…). */
export function findHeld(o, depth = 0) {
  if (!o || typeof o !== "object" || depth > 3) return null;
  for (const [k, v] of Object.entries(o)) {
    if (/^held(count|now)?$/i.test(k)) {
      if (typeof v === "number") return v;
      if (v && typeof v === "object") for (const kk of ["count", "now", "current", "total"]) if (typeof v[kk] === "number") return v[kk];
    }
  }
  for (const v of Object.values(o)) { const r = findHeld(v, depth + 1); if (r != null) return r; }
  return null;
}

/** Wait until N are held (admin count) or, without a count, for a fixed settle time. */
async function waitHeld(proxy, n, clients) {
  await Promise.race([clients.allWritten, sleep(30000)]);
  if (proxy.heldCount) {
    const end = Date.now() + 15000;
    let last = null;
    while (Date.now() < end) {
      last = await proxy.heldCount();
      if (last == null) break;
      if (last >= n) return `${last}/${n} (/status)`;
      await sleep(100);
    }
    if (last != null) return `only ${last}/${n} after 15 s (/status)`;
  }
  const settle = Math.round(1000 + n * 0.2);
  await sleep(settle);
  return `no count: ${(settle / 1000).toFixed(1)} s settle`;
}

function summarize(res, t0) {
  const statuses = {};
  let ok = 0;
  const lags = [];
  let last = -Infinity;
  for (const r of res) {
    if (!r) continue;
    if (r.status >= 200 && r.status < 300 && r.upstream) { ok++; lags.push(r.at - t0); }
    else { const k = r.status ? String(r.status) : `err:${r.error}`; statuses[k] = (statuses[k] || 0) + 1; }
    if (r.at - t0 > last) last = r.at - t0;
  }
  return { ok, statuses, lags, last };
}

const fmtStatuses = (s) => Object.entries(s).map(([k, v]) => `${k}×${v}`).join(", ") || "none";
const mark = (ok) => (ok ? " ✓" : " ✗");

// ---------- one run ----------
async function runOne(name, n, variant, opts) {
  const dead = await freePort();
  const out = { name, n, variant };
  let proxy, clients, upstream, syn, rss;
  try {
    proxy = await startHoldProxy(name, dead);
    if (opts.warm > 0) {
      log(`${name}: warming up with ${opts.warm} requests through a short-lived origin on :${dead}…`);
      await warmUp(proxy.port, dead, opts.warm);
    }
    rss = rssSampler(proxy.proc.pid);
    syn = variant === "restart" ? await startSynCapture(dead) : null;
    const t0 = now();
    log(`${name}: firing ${n} concurrent GETs at :${proxy.port} (upstream :${dead} closed, ${variant})…`);
    clients = fireHeld(proxy.port, n, { deadlineMs: 75000 });
    out.held = await waitHeld(proxy, n, clients);
    log(`${name}: ${out.held}`);
    const early = clients.res.filter((r) => r?.final).length;
    if (early) out.answeredEarly = early;
    if (variant === "restart") {
      await sleep(opts.outageMs);
      upstream = await startUpstream(dead, "A");
      const tUp = upstream.upAt;
      log(`${name}: upstream started on :${dead} (outage ${((tUp - t0) / 1000).toFixed(1)} s); waiting for releases…`);
      await Promise.race([clients.all, sleep(45000)]);
      const s = summarize(clients.res, tUp);
      Object.assign(out, s);
      out.lagP50 = percentile(s.lags, 50); out.lagP99 = percentile(s.lags, 99); out.lagMax = s.lags.length ? Math.max(...s.lags) : NaN;
      if (syn) {
        const { dropped } = await syn.stop();
        const during = syn.times.filter((t) => t < tUp);
        const full = Math.floor((tUp - t0) / TRY_INTERVAL_MS);
        const buckets = Array.from({ length: full }, (_, k) => during.filter((t) => t >= t0 + k * TRY_INTERVAL_MS && t < t0 + (k + 1) * TRY_INTERVAL_MS).length);
        out.syn = { total: during.length, outageS: (tUp - t0) / 1000, buckets, max: buckets.length ? Math.max(...buckets) : NaN, after: syn.times.length - during.length, dropped };
      }
      out.upstream = await upstream.stats();
    } else {
      const b = await freePort();
      upstream = await startUpstream(b, "B");
      await sleep(200);
      const tReload = now();
      log(`${name}: reloading to upstream B :${b}…`);
      try { await proxy.reload(b); } catch (e) { out.reloadError = String(e.message || e).slice(0, 200); log(`${name}: reload failed: ${out.reloadError}`); }
      out.reloadCallMs = now() - tReload;
      await Promise.race([clients.all, sleep(45000)]);
      const s = summarize(clients.res, tReload);
      Object.assign(out, s);
      out.lagP50 = percentile(s.lags, 50);
      out.okB = clients.res.filter((r) => r?.upstream === "B" && r.status >= 200 && r.status < 300).length;
      out.upstream = await upstream.stats();
    }
    out.rssMB = rss.peakMB();
    out.unanswered = clients.res.filter((r) => r?.error === "client timeout").length;
  } catch (e) {
    out.failed = clip(e);
    log(`FAILED ${name} N=${n} ${variant}: ${out.failed}`);
  } finally {
    clients?.destroy();
    rss?.stop();
    if (syn) await syn.stop().catch(() => {});
    await upstream?.stop();
    await proxy?.stop();
    await sleep(500);
  }
  return out;
}

/**
 * Calibration: N connections opened straight to the Node origin, then N GETs written at
 * once. Time until all are answered is what this client + origin need on this machine,
 * with no proxy: a floor under the "reload → all answered" numbers.
 */
async function clientFloor(n) {
  const port = await freePort();
  const up = await startUpstream(port, "floor");
  try {
    const c = fireHeld(port, n, { deadlineMs: 30000, defer: true });
    await c.allWritten;
    await sleep(200);
    const t = now();
    c.sendAll();
    await c.all;
    c.destroy();
    const s = summarize(c.res, t);
    return { ok: s.ok, p50: percentile(s.lags, 50), max: s.last };
  } finally {
    await up.stop();
  }
}

export async function runHold(opts) {
  const ns = opts.ns ?? [100, 1000, 10000];
  const proxies = opts.proxies ?? HOLD_PROXIES;
  const variants = opts.variants ?? ["restart", "reload"];
  const results = [];
  const floors = {};
  for (const n of ns) {
    floors[n] = await clientFloor(n);
    log(`floor: ${n} GETs straight to the Node origin on open connections: ${floors[n].ok}/${n} answered, p50 ${fmtMs(floors[n].p50)}, all ${fmtMs(floors[n].max)}`);
  }
  for (const n of ns) for (const name of proxies) for (const v of variants) {
    const r = await runOne(name, n, v, { outageMs: opts.outageMs ?? 4000, warm: opts.warm ?? 3000 });
    results.push(r);
    process.stderr.write(`[bench]   → ${JSON.stringify({ ...r, lags: undefined, res: undefined })}\n`);
  }
  return { ns, proxies, variants, results, floors, warm: opts.warm ?? 3000 };
}

// ---------- tables ----------
export function holdTables(h) {
  const out = [];
  const get = (name, n, v) => h.results.find((r) => r.name === name && r.n === n && r.variant === v);
  for (const n of h.ns) {
    const rowsR = [], rowsL = [];
    const cols = h.proxies;
    const cell = (name, v, f) => { const r = get(name, n, v); return !r ? "—" : r.failed ? `FAILED: ${r.failed.slice(0, 60)}` : f(r); };
    const allOk = (r) => r.ok === n;
    if (h.variants.includes("restart")) {
      const tgt1000 = n === 1000;
      rowsR.push(["held before upstream start", ...cols.map((c) => cell(c, "restart", (r) => r.held)), ""]);
      rowsR.push(["answered 2xx by upstream", ...cols.map((c) => cell(c, "restart", (r) => `${r.ok}/${n}` + (n >= 1000 ? mark(allOk(r)) : ""))), n >= 1000 ? "all" : ""]);
      rowsR.push(["other statuses / errors", ...cols.map((c) => cell(c, "restart", (r) => fmtStatuses(r.statuses))), ""]);
      rowsR.push(["release lag p50 (after up)", ...cols.map((c) => cell(c, "restart", (r) => fmtMs(r.lagP50))), ""]);
      rowsR.push(["release lag p99", ...cols.map((c) => cell(c, "restart", (r) => fmtMs(r.lagP99))), ""]);
      rowsR.push(["up → all released (max)", ...cols.map((c) => cell(c, "restart", (r) => (allOk(r) ? fmtMs(r.lagMax) : `not all (${fmtMs(r.lagMax)})`) + (tgt1000 ? mark(allOk(r) && r.lagMax <= TRY_INTERVAL_MS + 250) : ""))), tgt1000 ? "≤ 1250 ms" : ""]);
      rowsR.push(["SYNs to dead port (outage)", ...cols.map((c) => cell(c, "restart", (r) => (r.syn ? `${r.syn.total} in ${r.syn.outageS.toFixed(1)} s` + (r.syn.dropped ? ` (${r.syn.dropped} dropped)` : "") : "no tcpdump"))), ""]);
      rowsR.push(["SYNs per 1 s interval (max)", ...cols.map((c) => cell(c, "restart", (r) => (r.syn ? `${r.syn.max}` + (tgt1000 ? mark(r.syn.max <= 2) : "") : "—"))), tgt1000 ? "≤ 2" : ""]);
      rowsR.push(["SYNs in each full interval", ...cols.map((c) => cell(c, "restart", (r) => (r.syn ? r.syn.buckets.join(",") : "—"))), ""]);
      rowsR.push(["upstream conns / requests", ...cols.map((c) => cell(c, "restart", (r) => `${r.upstream?.conns} / ${r.upstream?.reqs}`)), ""]);
      rowsR.push(["peak RSS of proxy", ...cols.map((c) => cell(c, "restart", (r) => fmtMB(r.rssMB) + (n === 10000 && c.startsWith("holdup") ? mark(r.rssMB < 150) : ""))), n === 10000 ? "< 150 MB" : ""]);
      out.push(`### N = ${n}: upstream restarts on the same port (try-duration ${TRY_DURATION}, try-interval ${TRY_INTERVAL})\n`);
      out.push(table(["metric", ...cols, "target"], rowsR), "");
    }
    if (h.variants.includes("reload")) {
      const tgt = n === 100 ? 50 : n === 1000 ? 250 : null;
      rowsL.push(["answered 2xx by B", ...cols.map((c) => cell(c, "reload", (r) => `${r.okB}/${n}` + (n >= 1000 ? mark(r.okB === n) : ""))), n >= 1000 ? "all" : ""]);
      rowsL.push(["other statuses / errors", ...cols.map((c) => cell(c, "reload", (r) => fmtStatuses(r.statuses) + (r.reloadError ? ` (reload failed: ${r.reloadError.slice(0, 50)})` : ""))), ""]);
      rowsL.push(["reload call took", ...cols.map((c) => cell(c, "reload", (r) => fmtMs(r.reloadCallMs))), ""]);
      rowsL.push(["reload → answered p50", ...cols.map((c) => cell(c, "reload", (r) => fmtMs(r.lagP50))), ""]);
      rowsL.push(["reload → last answered (any status)", ...cols.map((c) => cell(c, "reload", (r) => fmtMs(r.last))), ""]);
      rowsL.push(["reload → all answered 2xx by B", ...cols.map((c) => cell(c, "reload", (r) => (r.okB === n ? fmtMs(r.last) : "not all") + (tgt ? mark(r.okB === n && r.last <= tgt) : ""))), tgt ? `≤ ${tgt} ms` : ""]);
      rowsL.push(["upstream B conns / requests", ...cols.map((c) => cell(c, "reload", (r) => `${r.upstream?.conns} / ${r.upstream?.reqs}`)), ""]);
      rowsL.push(["peak RSS of proxy", ...cols.map((c) => cell(c, "reload", (r) => fmtMB(r.rssMB) + (n === 10000 && c.startsWith("holdup") ? mark(r.rssMB < 150) : ""))), n === 10000 ? "< 150 MB" : ""]);
      out.push(`### N = ${n}: reload to a new upstream B while held on dead port A\n`);
      out.push(table(["metric", ...cols, "target"], rowsL), "");
      const f = h.floors?.[n];
      if (f) out.push(`Floor without any proxy: ${n} GETs written at once on open connections straight to the Node origin: ${f.ok}/${n} answered, p50 ${fmtMs(f.p50)}, last ${fmtMs(f.max)}.`, "");
    }
  }
  return out.join("\n");
}
