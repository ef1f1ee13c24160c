// Steady-state throughput: wrk against the origin directly and through every proxy.
import { log, spawnGroup, rssSampler, median, table, fmtInt, fmtMs, fmtMB, sleep, clip } from "./util.mjs";
import { startNginxOrigin, startTarget, checkTarget, STEADY_TARGETS, BODY_64K } from "./servers.mjs";

export const SCENARIOS = [
  { id: "small-c64", label: "6 B body, 64 connections", path: "/", c: 64, bytes: 6 },
  { id: "64k-c64", label: "64 KiB body, 64 connections", path: "/64k.bin", c: 64, bytes: BODY_64K },
  { id: "small-c256", label: "6 B body, 256 connections", path: "/", c: 256, bytes: 6 },
  { id: "64k-c256", label: "64 KiB body, 256 connections", path: "/64k.bin", c: 256, bytes: BODY_64K },
];

const UNIT = { us: 1e-3, ms: 1, s: 1e3, m: 60e3 };
export function parseWrk(out) {
  const num = (re) => { const m = out.match(re); return m ? Number(m[1]) : NaN; };
  const lat = (p) => { const m = out.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m")); return m ? Number(m[1]) * UNIT[m[2]] : NaN; };
  const se = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const socketErrors = se ? se.slice(1).reduce((s, x) => s + Number(x), 0) : 0;
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return {
    requests: num(/(\d+) requests in/), rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: lat(50), p99: lat(99), socketErrors, non2xx, errors: socketErrors + non2xx,
  };
}

/** One wrk run against `url`; throws with wrk's output when it did not measure anything. */
export async function wrk(url, { c, seconds, threads = 2 }) {
  const p = spawnGroup("wrk", "wrk", [`-t${threads}`, `-c${c}`, `-d${seconds}s`, "--latency", "--timeout", "5s", url]);
  await p.exitPromise;
  const out = p.output();
  const r = parseWrk(out);
  if (p.exitCode !== 0 || !Number.isFinite(r.rps) || !(r.requests > 0)) throw new Error(`wrk failed (exit ${p.exitCode}): ${p.tail(300)}`);
  return r;
}

/**
 * Run all steady scenarios, interleaved: every target is started once and stays up; each
 * round runs every scenario against every target in turn, so drift on a shared machine
 * (another process, thermal, the page cache) lands on all targets alike, and each row is
 * the median of its rounds. Returns { scenarios:[{...scenario, rows:[...]}], settings }.
 */
export async function runSteady(opts) {
  const seconds = opts.duration ?? (opts.quick ? 3 : 10);
  const warm = opts.quick ? 1 : 2;
  const runs = opts.runs ?? 3;
  const targets = opts.targets ?? STEADY_TARGETS;
  const scen = SCENARIOS.filter((s) => !opts.scenarios || opts.scenarios.includes(s.id));
  const origin = await startNginxOrigin();
  await checkTarget(origin.port, "/", 6);
  await checkTarget(origin.port, "/64k.bin", BODY_64K);
  /** name → { t, rss, failed?, per scenario: { rs: wrk results, peak } } */
  const live = new Map();
  try {
    for (const name of targets) {
      let t;
      try {
        t = await startTarget(name, origin.port, opts);
        await checkTarget(t.port, "/", 6);
        await checkTarget(t.port, "/64k.bin", BODY_64K);
        live.set(name, { t, rss: t.proc ? rssSampler(t.proc.pid) : null, by: new Map(scen.map((s) => [s.id, { rs: [], peak: 0 }])) });
      } catch (e) {
        const reason = clip(e);
        log(`FAILED ${name}: ${reason}`);
        if (t) await t.stop();
        live.set(name, { failed: reason });
      }
    }
    for (let i = 0; i <= runs; i++) {
      for (const s of scen) {
        for (const [name, e] of live) {
          if (e.failed) continue;
          const url = `http://127.0.0.1:${e.t.port}${s.path}`;
          const cell = e.by.get(s.id);
          if (cell.failed) continue;
          try {
            if (i === 0) {
              log(`wrk ${warm}s warm-up against ${name} (${s.id})…`);
              await wrk(url, { c: s.c, seconds: warm });
              continue;
            }
            e.rss?.reset();
            log(`wrk ${seconds}s against ${name} (${s.id}, -c${s.c}) round ${i}/${runs}…`);
            cell.rs.push(await wrk(url, { c: s.c, seconds }));
            if (e.rss) cell.peak = Math.max(cell.peak, e.rss.peakMB());
            if (e.t.proc?.exited) throw new Error(`${name} exited during the run: ${e.t.proc.tail(300)}`);
          } catch (err) {
            cell.failed = clip(err);
            log(`FAILED ${name} ${s.id}: ${cell.failed}`);
            if (e.t.proc?.exited) e.failed = "process exited earlier";
          }
          await sleep(200);
        }
      }
    }
  } finally {
    for (const e of live.values()) { e.rss?.stop(); await e.t?.stop(); }
    await origin.stop();
  }
  const rowOf = (name, s) => {
    const e = live.get(name), cell = e.by?.get(s.id);
    if (!cell || cell.failed || !cell.rs.length) return { target: name, failed: cell?.failed ?? e.failed };
    const rs = cell.rs;
    const row = {
      target: name, runs: rs.length,
      rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)),
      errors: rs.reduce((a, r) => a + r.errors, 0), requests: rs.reduce((a, r) => a + r.requests, 0),
      rssMB: e.rss ? cell.peak : NaN,
    };
    log(`  ${name} ${s.id}: ${fmtInt(row.rps)} req/s, p50 ${fmtMs(row.p50)}, p99 ${fmtMs(row.p99)}, errors ${row.errors}, peak RSS ${fmtMB(row.rssMB)}`);
    return row;
  };
  return {
    settings: { seconds, runs, warm, threads: 2 },
    scenarios: scen.map((s) => ({ ...s, rows: targets.map((name) => rowOf(name, s)) })),
  };
}

export function steadyTables(res) {
  const out = [];
  for (const s of res.scenarios) {
    out.push(`### ${s.label} (\`${s.id}\`: wrk -t2 -c${s.c} -d${res.settings.seconds}s, median of ${res.settings.runs} interleaved rounds)\n`);
    out.push(table(["target", "req/s", "p50", "p99", "errors", "peak RSS"], s.rows.map((r) => r.failed
      ? [r.target, "FAILED", "", "", "", ""]
      : [r.target, fmtInt(r.rps), fmtMs(r.p50), fmtMs(r.p99), fmtInt(r.errors), fmtMB(r.rssMB)])));
    const failed = s.rows.filter((r) => r.failed);
    if (failed.length) out.push("", ...failed.map((r) => `- ${r.target} failed: ${r.failed.replace(/\|/g, "/")}`));
    out.push("");
  }
  return out.join("\n");
}

export function ratioTable(res) {
  const rows = [];
  const ratio = (a, b) => (a && b && !a.failed && !b.failed && b.rps > 0 ? `${(a.rps / b.rps).toFixed(2)}× rps / ${(a.p99 / b.p99).toFixed(2)}× p99` : "n/a");
  for (const s of res.scenarios) {
    const g = (n) => s.rows.find((r) => r.target === n);
    for (const h of s.rows.filter((r) => /^holdup-(bun|deno)(-w\d+)?$/.test(r.target))) {
      const rt = h.target.split("-")[1];
      rows.push([`${s.id} ${h.target}`, ratio(h, g("caddy")), ratio(h, g("nginx")), ratio(h, g(`passthrough-${rt}`))]);
    }
  }
  return table(["scenario / runtime", "÷ Caddy", "÷ nginx", "÷ bare passthrough (same runtime)"], rows);
}
