// Shared helpers for the holdup benchmarks: logging, ports, child processes
// (each in its own process group, all killed on exit), RSS sampling, stats.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, mkdtempSync, rmSync, existsSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import net from "node:net";
import http from "node:http";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_DIR = resolve(BENCH_DIR, "..");
export const BIN = {
  deno: join(REPO_DIR, "node_modules/.bin/deno"),
  bun: join(REPO_DIR, "node_modules/.bin/bun"),
};

export const log = (...a) => process.stderr.write(`[bench] ${a.join(" ")}\n`);
/**
 * Makes sure this process may open `need` files: when the soft limit is lower,
 * re-runs this same script under a raised `ulimit -n` (up to the hard limit)
 * and exits with its status. Returns when no re-run was needed.
 */
export function ensureFdLimit(need) {
  if (process.env.HOLDUP_BENCH_REEXEC) return;
  const soft = Number(readFileSync("/proc/self/limits", "utf8").match(/Max open files\s+(\S+)/)?.[1]) || Infinity;
  if (soft >= need) return;
  log(`open files limit ${soft} < ${need}: re-running under a raised ulimit -n`);
  const r = spawnSync("bash", ["-c", `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`, "bash", process.execPath, ...process.argv.slice(1)], {
    stdio: "inherit", env: { ...process.env, HOLDUP_BENCH_REEXEC: "1" },
  });
  process.exit(r.status ?? 1);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.timeOrigin + performance.now(); // wall clock, sub-ms

// ---------- temp dirs ----------
const tmpDirs = [];
export function tempDir(tag) {
  const d = mkdtempSync(join(tmpdir(), `holdup-bench-${tag}-`));
  tmpDirs.push(d);
  chmodSync(d, 0o755); // nginx workers run as an unprivileged user when started by root
  return d;
}

// ---------- ports ----------
export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export function canConnect(port, host = "127.0.0.1") {
  return new Promise((res) => {
    const s = net.connect({ port, host });
    const done = (ok) => { s.destroy(); res(ok); };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

/** Wait until PORT accepts TCP connections; fail early if proc exits. */
export async function waitPort(port, { proc, timeoutMs = 15000, host = "127.0.0.1" } = {}) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (proc && proc.exited) throw new Error(`process exited (code ${proc.exitCode}) before listening on ${port}: ${proc.tail()}`);
    if (await canConnect(port, host)) return;
    await sleep(50);
  }
  throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms${proc ? ": " + proc.tail() : ""}`);
}

/** Small HTTP client: resolves {status, headers, body} or rejects. */
export function httpRequest(url, { method = "GET", body, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((res, rej) => {
    const req = http.request(url, { method, headers, agent: false, timeout: timeoutMs }, (r) => {
      const chunks = [];
      r.on("data", (c) => chunks.push(c));
      r.on("end", () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on("error", rej);
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", rej);
    req.end(body);
  });
}

// ---------- child processes ----------
const children = new Set();

/**
 * Spawn CMD in its own process group (detached), with `ulimit -n` raised as far
 * as the hard limit allows. Returns a handle with pid, exited, tail(), stop().
 */
export function spawnGroup(name, cmd, args, { cwd = REPO_DIR, env = {}, quiet = true, nofile = 65536, stdin = "ignore" } = {}) {
  const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`;
  const child = spawn("bash", ["-c", script, "bash", cmd, ...args], {
    cwd, env: { ...process.env, ...env }, detached: true, stdio: [stdin, "pipe", "pipe"],
  });
  let out = "";
  const keep = (d) => { out += d.toString(); if (out.length > 8000) out = out.slice(-4000); };
  const h = {
    name, child, pid: child.pid, exited: false, exitCode: null,
    stdout: child.stdout, stderr: child.stderr,
    tail: (n = 600) => out.slice(-n).trim().replace(/\s+/g, " "),
    output: () => out,
    exitPromise: null,
    stop: (sig = "SIGTERM", graceMs = 3000) => stopGroup(h, sig, graceMs),
  };
  child.stdout.on("data", (d) => { keep(d); if (!quiet) process.stderr.write(`  [${name}] ${d}`); });
  child.stderr.on("data", (d) => { keep(d); if (!quiet) process.stderr.write(`  [${name}] ${d}`); });
  h.exitPromise = new Promise((r) => child.on("exit", (code, sig) => {
    h.exited = true; h.exitCode = code ?? sig; children.delete(h); r();
  }));
  child.on("error", (e) => { keep(String(e)); h.exited = true; h.exitCode = "spawn-error"; children.delete(h); });
  children.add(h);
  return h;
}

async function stopGroup(h, sig, graceMs) {
  if (!h.exited) { try { process.kill(-h.pid, sig); } catch {} }
  const t = sleep(graceMs).then(() => "timeout");
  if ((await Promise.race([h.exitPromise, t])) === "timeout") {
    try { process.kill(-h.pid, "SIGKILL"); } catch {}
    await Promise.race([h.exitPromise, sleep(1000)]);
  }
  // the group may still hold stragglers (e.g. nginx workers)
  try { process.kill(-h.pid, "SIGKILL"); } catch {}
}

export function killAllSync() {
  for (const h of children) { try { process.kill(-h.pid, "SIGKILL"); } catch {} }
  children.clear();
  for (const d of tmpDirs) { try { rmSync(d, { recursive: true, force: true }); } catch {} }
}

let handlersInstalled = false;
export function installCleanup() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", killAllSync);
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(s, () => { log(`${s}: killing children`); killAllSync(); process.exit(130); });
  }
  process.on("uncaughtException", (e) => { log("fatal:", e?.stack || e); killAllSync(); process.exit(1); });
  process.on("unhandledRejection", (e) => { log("fatal (rejection):", e?.stack || e); killAllSync(); process.exit(1); });
}

// ---------- RSS sampling ----------
function descendants(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks = [];
    try { tasks = readdirSync(`/proc/${out[i]}/task`); } catch { continue; }
    for (const t of tasks) {
      try {
        const c = readFileSync(`/proc/${out[i]}/task/${t}/children`, "utf8").trim();
        if (c) for (const p of c.split(/\s+/)) out.push(Number(p));
      } catch {}
    }
  }
  return out;
}

function statusKB(pid, key) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

/** Sum of VmRSS over PID and its descendants, in kB. */
export function treeRssKB(pid) {
  return descendants(pid).reduce((s, p) => s + statusKB(p, "VmRSS"), 0);
}

/** Sample tree RSS every 100 ms; .peakMB() and .stop(). Also folds in VmHWM of the root. */
export function rssSampler(pid, everyMs = 100) {
  let peak = 0;
  const tick = () => { const v = treeRssKB(pid); if (v > peak) peak = v; };
  tick();
  const iv = setInterval(tick, everyMs);
  return {
    reset() { peak = 0; tick(); },
    peakMB() { tick(); return peak / 1024; },
    stop() { clearInterval(iv); return peak / 1024; },
  };
}

// ---------- stats ----------
export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
export function percentile(xs, p) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const i = Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1));
  return v[i];
}

// ---------- formatting ----------
/** Shorten long error text, keeping its start and (where the cause usually is) its end. */
export const clip = (s, n = 300) => { s = String(s?.message ?? s); return s.length <= n ? s : s.slice(0, 90) + " … " + s.slice(-(n - 95)); };
export function table(headers, rows) {
  const all = [headers, ...rows].map((r) => r.map((c) => String(c ?? "")));
  const w = headers.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r) => "| " + r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ") + " |";
  const sep = "|" + w.map((x, i) => (i === 0 ? "-".repeat(x + 2) : "-".repeat(x + 1) + ":")).join("|") + "|";
  return [line(all[0]), sep, ...all.slice(1).map(line)].join("\n");
}
export const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "—");
export const fmtMs = (x) => (!Number.isFinite(x) ? "—" : x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`);
export const fmtMB = (x) => (Number.isFinite(x) && x > 0 ? `${x.toFixed(1)} MB` : "—");

// ---------- tools ----------
export function have(cmd) {
  return spawnSync("bash", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** Make sure Debian packages providing these commands are present. */
export function ensureTools(cmds) {
  const pkgOf = { caddy: "caddy", nginx: "nginx", haproxy: "haproxy", wrk: "wrk", tcpdump: "tcpdump" };
  const missing = cmds.filter((c) => !have(c));
  if (!missing.length) return [];
  const pkgs = [...new Set(missing.map((c) => pkgOf[c] || c))];
  const sudo = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  const apt = (args) => {
    log(`running: ${[...sudo, "apt-get", ...args].join(" ")}`);
    const [c, ...a] = [...sudo, "apt-get", ...args];
    return spawnSync(c, a, { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } }).status === 0;
  };
  log(`missing tools: ${missing.join(", ")}; installing Debian packages ${pkgs.join(" ")}`);
  if (!apt(["install", "-y", "--no-install-recommends", ...pkgs])) {
    apt(["update"]);
    apt(["install", "-y", "--no-install-recommends", ...pkgs]);
  }
  // a freshly installed distro nginx/caddy may have started a system service: we never rely on it
  return cmds.filter((c) => !have(c));
}

export function versionOf(cmd, args, re) {
  const r = spawnSync(cmd, args, { encoding: "utf8", cwd: REPO_DIR });
  if (r.error) return "not installed";
  const txt = `${r.stdout}\n${r.stderr}`;
  const m = re ? txt.match(re) : null;
  return (m ? m[1] || m[0] : txt.trim().split("\n")[0]).trim();
}

export function toolVersions() {
  return {
    node: process.version,
    bun: existsSync(BIN.bun) ? versionOf(BIN.bun, ["--version"]) : "not installed",
    deno: existsSync(BIN.deno) ? versionOf(BIN.deno, ["--version"], /deno (\S+)/) : "not installed",
    caddy: versionOf("caddy", ["version"]),
    nginx: versionOf("nginx", ["-v"], /nginx\/(\S+)/),
    haproxy: versionOf("haproxy", ["-v"], /version (\S+)/),
    wrk: versionOf("wrk", ["-v"], /wrk (\S+)/),
    tcpdump: versionOf("tcpdump", ["--version"], /tcpdump version (\S+)/),
  };
}

export function machineInfo() {
  let model = "unknown";
  try { model = readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.*)$/m)?.[1] ?? model; } catch {}
  const nproc = spawnSync("nproc", { encoding: "utf8" }).stdout?.trim();
  let memMB = NaN;
  try { memMB = Number(readFileSync("/proc/meminfo", "utf8").match(/MemTotal:\s+(\d+)/)[1]) / 1024; } catch {}
  const kernel = spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout?.trim();
  let nofile = "";
  try { nofile = readFileSync("/proc/self/limits", "utf8").match(/Max open files\s+(\S+)\s+(\S+)/).slice(1).join("/"); } catch {}
  let load = "";
  try { load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "); } catch {}
  return { nproc, model, memMB: Math.round(memMB), kernel, nofile, load };
}
