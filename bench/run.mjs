#!/usr/bin/env node
// holdup benchmarks. Node built-ins only.
//
//   node bench/run.mjs [steady|hold|all] [options]
//
// steady  wrk against an nginx origin directly and through holdup (Bun, Deno; -w2: --workers 2),
//         a bare fetch() passthrough (Bun, Deno), Caddy, nginx and HAProxy; 4 scenarios.
//   --quick            3 s runs (default 10 s)        --runs N     median of N rounds (default 3)
//   --duration S       seconds per wrk run            --targets a,b  subset of targets
//   --scenarios a,b    small-c64,64k-c64,small-c256,64k-c256
// hold    N requests held on a dead upstream, then released by the upstream coming back
//         ("restart") or by a reload to another upstream ("reload").
//   --n 100,1000,10000 --proxies holdup-bun,holdup-deno,caddy --variants restart,reload
//   --outage S         seconds the upstream stays down once all are held (default 4)
//   --warm K           requests each proxy forwards before the outage (default 3000; 0: cold)
// both    --entry FILE       holdup entry point (default src/proxy.ts; e.g. dist/proxy.js)
//
// Writes bench/RESULTS.md (and bench/results.svg for steady).
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { log, installCleanup, ensureTools, killAllSync, ensureFdLimit } from "./lib/util.mjs";

const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quick: { type: "boolean", default: false },
    runs: { type: "string" }, duration: { type: "string" },
    targets: { type: "string" }, scenarios: { type: "string" },
    n: { type: "string" }, proxies: { type: "string" }, variants: { type: "string" },
    outage: { type: "string" }, warm: { type: "string" }, entry: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
const mode = positionals[0] || "steady";
if (o.help || !["steady", "hold", "all"].includes(mode)) {
  process.stderr.write(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 18).map((l) => l.replace(/^\/\/ ?/, "")).join("\n") + "\n");
  process.exit(o.help ? 0 : 2);
}
const list = (s) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : undefined);

// The hold benchmark keeps N client sockets open in this process: make sure the fd
// limit allows it, re-executing under a raised `ulimit -n` when the hard limit permits.
if (mode !== "steady") ensureFdLimit(Math.max(...(list(o.n) ?? ["10000"]).map(Number)) + 1024);

installCleanup();
const { runSteady, steadyTables, ratioTable } = await import("./lib/steady.mjs");
const { runHold, holdTables } = await import("./lib/hold.mjs");
const { writeSection, writeSvg } = await import("./lib/report.mjs");

const need = mode === "hold" ? ["caddy", "tcpdump"] : mode === "steady" ? ["caddy", "nginx", "haproxy", "wrk"] : ["caddy", "nginx", "haproxy", "wrk", "tcpdump"];
const stillMissing = ensureTools(need);
if (stillMissing.length) log(`WARNING: could not install ${stillMissing.join(", ")}; those targets will fail`);

const started = Date.now();
const loadavg = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const load1 = Number(loadavg.split(" ")[0]);
const stamp = () => `Run started ${new Date(started).toISOString()}, load average then ${loadavg}.`;
if (load1 > 0.5) log(`WARNING: load average ${load1} — other processes are using the CPUs; numbers will be noisy`);
if (mode === "steady" || mode === "all") {
  const res = await runSteady({
    quick: o.quick, runs: o.runs ? Number(o.runs) : 3, duration: o.duration ? Number(o.duration) : undefined,
    targets: list(o.targets), scenarios: list(o.scenarios), entry: o.entry,
  });
  const md = `## steady state\n\n${stamp()}\n\nOrigin: nginx (1 worker) answering \`GET /\` with \`hello\\n\` (6 B) and \`GET /64k.bin\` (64 KiB static file).
Load: \`wrk -t2 -c64|-c256 -d${res.settings.seconds}s --latency\`, ${res.settings.warm} s warm-up, median of ${res.settings.runs} interleaved rounds (all targets stay up; each round runs every scenario against every target in turn); errors = non-2xx/3xx + socket errors, summed over runs.
Peak RSS: VmRSS of the proxy's process tree, sampled every 100 ms during the measured runs (the highest of the rounds).
Proxies: holdup \`--admin off --log off\` (\`-w2\`: with \`--workers 2\`, one process per core); bare passthrough = bench/passthrough.ts; Caddy \`reverse_proxy\` with \`keepalive_idle_conns(_per_host) 64\`;
nginx \`worker_processes auto\` + \`upstream { keepalive 64; }\`; HAProxy \`mode http\` defaults.

${steadyTables(res)}
### ratios (holdup ÷ peer: requests/s and p99 latency)

${ratioTable(res)}
`;
  process.stdout.write("\n" + md + "\n");
  log(`wrote ${writeSection("steady", md)} and ${writeSvg(res)}`);
}
if (mode === "hold" || mode === "all") {
  const h = await runHold({
    ns: list(o.n)?.map(Number), proxies: list(o.proxies), variants: list(o.variants),
    outageMs: o.outage ? Number(o.outage) * 1000 : undefined, warm: o.warm !== undefined ? Number(o.warm) : undefined,
  });
  const md = `## hold

${stamp()}

Proxies: holdup \`--try-duration 30s --try-interval 1s --admin 127.0.0.1:PORT --log off\`;
Caddy ${"`reverse_proxy`"} with \`lb_try_duration 30s\`, \`lb_try_interval 1s\`, admin on \`localhost:PORT\`.
Warm-up: each proxy first forwards ${h.warm} GETs (32 keep-alive loops) through a short-lived origin on the port
that then dies, as a proxy in production has (0: a cold process, whose first few hundred requests run unoptimised code).
Clients: N raw HTTP/1.1 connections (\`Connection: close\`), one GET each, opened ≤256 at a time.
"restart": upstream port A closed; once all are held (holdup's \`GET /status\` held count; Caddy has none,
so a fixed settle time) it stays closed ${(o.outage ? Number(o.outage) : 4)} s more, then a Node origin starts on A.
SYNs to A during the outage are counted with tcpdump on lo, in 1 s intervals from the first request.
Release lag = first response byte − the moment the origin listened.
"reload": held on dead port A; origin B starts; holdup \`POST /reload {"upstreams":["http://127.0.0.1:B"]}\`,
Caddy \`caddy reload\` with a Caddyfile naming B. Times are from the reload call.
✓/✗ compare with the targets in the last column (targets apply to holdup; Caddy shown for reference).

${holdTables(h)}`;
  process.stdout.write("\n" + md + "\n");
  log(`wrote ${writeSection("hold", md)}`);
}
log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
killAllSync();
