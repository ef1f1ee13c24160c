#!/usr/bin/env node
// HTTPS at the front door, side by side: steady requests/s through holdup (Bun, Deno) and
// Caddy, each terminating TLS with the same self-signed certificate in front of the same
// nginx origin (6-byte body), over HTTP/1.1 (wrk) and HTTP/2 (h2load); then the time from
// starting holdup to its first ACME certificate from Pebble, per runtime.
//
//   node bench/tls.mjs [--seconds 8] [--rounds 2] [--acme-runs 3]
//
// Targets are loaded in turn, the order reversed every round (ABC, CBA, …), and the median
// per target is reported with its ratio to Caddy's in the same run. The machine is shared:
// compare ratios from one run, not absolute numbers across runs.
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { BIN, log, tempDir, freePort, spawnGroup, waitPort, installCleanup, median, table, fmtInt, fmtMs, ensureFdLimit, sleep } from "./lib/util.mjs";
import { startNginxOrigin } from "./lib/servers.mjs";
import { wrk } from "./lib/steady.mjs";

ensureFdLimit(4096);
installCleanup();
const { values: opt } = parseArgs({
  options: { seconds: { type: "string", default: "8" }, rounds: { type: "string", default: "2" }, "acme-runs": { type: "string", default: "3" } },
});
const SECONDS = Number(opt.seconds), ROUNDS = Number(opt.rounds), ACME_RUNS = Number(opt["acme-runs"]);
const CONNS = 64;

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const dir = tempDir("tls");
const cert = join(dir, "cert.pem"), key = join(dir, "key.pem");
sh("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
  "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);

const holdupCmd = (rt) => rt === "bun"
  ? [BIN.bun, ["src/proxy.ts"]]
  : [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "src/proxy.ts"]];

async function startTarget(name, up) {
  const port = await freePort();
  let proc;
  if (name === "caddy") {
    const file = join(dir, "Caddyfile");
    writeFileSync(file, `{\n\tadmin off\n\tauto_https disable_redirects\n\tlog {\n\t\toutput discard\n\t}\n}\n\n` +
      `https://127.0.0.1:${port} {\n\tbind 127.0.0.1\n\ttls ${cert} ${key}\n\treverse_proxy 127.0.0.1:${up} {\n` +
      `\t\ttransport http {\n\t\t\tkeepalive_idle_conns 64\n\t\t\tkeepalive_idle_conns_per_host 64\n\t\t}\n\t}\n}\n`);
    proc = spawnGroup("caddy", "caddy", ["run", "--config", file, "--adapter", "caddyfile"],
      { env: { HOME: dir, XDG_CONFIG_HOME: join(dir, "config"), XDG_DATA_HOME: join(dir, "data") } });
  } else {
    const [cmd, args] = holdupCmd(name.slice(7));
    proc = spawnGroup(name, cmd, [...args, "-l", `127.0.0.1:${port}`, "-u", `http://127.0.0.1:${up}`,
      "--tls-cert", cert, "--tls-key", key, "--admin", "off", "--log", "off"]);
  }
  await waitPort(port, { proc, timeoutMs: 20000 });
  // One request over each protocol, checked, before any load.
  for (const v of ["--http1.1", "--http2"]) {
    const body = sh("curl", ["-sS", v, "--cacert", cert, `https://127.0.0.1:${port}/`]);
    if (body !== "hello\n") throw new Error(`${name} answered ${JSON.stringify(body)} over ${v}`);
  }
  return { name, port, proc };
}

async function load(kind, port) {
  if (kind === "h1") {
    const r = await wrk(`https://127.0.0.1:${port}/`, { c: CONNS, seconds: SECONDS });
    return { rps: r.rps, p99: r.p99, errors: r.errors };
  }
  // h2load: 64 connections, one stream each, the same concurrency as wrk's.
  const p = spawnGroup("h2load", "h2load", ["-t2", `-c${CONNS}`, "-m1", "-D", String(SECONDS), "--warm-up-time=1", `https://127.0.0.1:${port}/`]);
  await p.exitPromise;
  const out = p.output();
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1]);
  const failed = Number(/requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed/.exec(out)?.[1] ?? NaN);
  const p99 = NaN; // h2load prints mean/sd/max, not percentiles
  if (!Number.isFinite(rps)) throw new Error(`h2load: ${p.tail(300)}`);
  return { rps, p99, errors: failed };
}

const TARGETS = ["holdup-bun", "holdup-deno", "caddy"];
const origin = await startNginxOrigin();
const results = { h1: new Map(TARGETS.map((t) => [t, []])), h2: new Map(TARGETS.map((t) => [t, []])) };
try {
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...TARGETS].reverse() : TARGETS;
    for (const name of order) {
      const t = await startTarget(name, origin.port);
      try {
        for (const kind of ["h1", "h2"]) {
          if (kind === "h1") await load("h1", t.port).catch(() => {}); // warm-up (h2load warms up itself)
          log(`round ${round + 1}/${ROUNDS}: ${name} ${kind === "h1" ? "HTTP/1.1 (wrk)" : "h2 (h2load)"} ${SECONDS}s…`);
          const r = await load(kind, t.port);
          log(`  ${fmtInt(r.rps)} req/s, errors ${r.errors}`);
          results[kind].get(name).push(r);
        }
      } finally {
        await t.proc.stop();
        await sleep(300);
      }
    }
  }
} finally {
  await origin.stop();
}

const rows = [];
for (const kind of ["h1", "h2"]) {
  const caddy = median(results[kind].get("caddy").map((r) => r.rps));
  for (const name of TARGETS) {
    const rs = results[kind].get(name);
    const rps = median(rs.map((r) => r.rps));
    rows.push([kind === "h1" ? "HTTP/1.1 (wrk)" : "h2 (h2load)", name, fmtInt(rps), (rps / caddy).toFixed(2),
      kind === "h1" ? fmtMs(median(rs.map((r) => r.p99))) : "—", String(rs.reduce((a, r) => a + r.errors, 0))]);
  }
}

// Start to first certificate: Pebble (its own TLS certificate, challtestsrv as DNS answering
// 127.0.0.1), holdup spawned with --acme; the clock stops at its "certificate issued" log line.
async function firstCertificate(rt) {
  const pdir = tempDir("pebble");
  const pcert = join(pdir, "tls.crt"), pkey = join(pdir, "tls.key");
  sh("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pkey, "-out", pcert,
    "-days", "1", "-subj", "/CN=pebble", "-addext", "subjectAltName=IP:127.0.0.1"]);
  const [listen, mgmt, dns, dnsMgmt, httpPort, tlsPort, proxyPort] = await Promise.all(Array.from({ length: 7 }, freePort));
  writeFileSync(join(pdir, "pebble.json"), JSON.stringify({ pebble: {
    listenAddress: `127.0.0.1:${listen}`, managementListenAddress: `127.0.0.1:${mgmt}`, certificate: pcert, privateKey: pkey,
    httpPort, tlsPort, ocspResponderURL: "", externalAccountBindingRequired: false,
  } }));
  const cts = spawnGroup("challtestsrv", "pebble-challtestsrv", ["-dns01", `127.0.0.1:${dns}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
    "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${dnsMgmt}`]);
  const pebble = spawnGroup("pebble", "pebble", ["-config", join(pdir, "pebble.json"), "-dnsserver", `127.0.0.1:${dns}`], { env: { PEBBLE_VA_NOSLEEP: "1" } });
  try {
    await waitPort(dns, { proc: cts });
    await waitPort(listen, { proc: pebble });
    const [cmd, args] = holdupCmd(rt);
    const began = Date.now();
    const h = spawnGroup(`holdup-${rt}`, cmd, [...args, "-l", `127.0.0.1:${proxyPort}`, "-u", `http://127.0.0.1:${origin.port}`, "--admin", "off", "--log", "json",
      "--acme", "ops@holdup.test", "--acme-host", "app.holdup.test", "--acme-directory", `https://127.0.0.1:${listen}/dir`, "--acme-ca", pcert,
      "--acme-state-dir", join(pdir, "state"), "--redirect-http", `127.0.0.1:${httpPort}`]);
    try {
      for (const end = Date.now() + 30000; Date.now() < end; await sleep(10)) {
        const line = h.output().split("\n").find((l) => l.includes("acme: certificate issued"));
        if (line) return { total: (Date.parse(JSON.parse(line).time) - began) / 1000, order: JSON.parse(line).seconds };
        if (h.exited) throw new Error(`holdup-${rt} exited: ${h.tail()}`);
      }
      throw new Error(`holdup-${rt}: no certificate after 30 s: ${h.tail()}`);
    } finally {
      await h.stop();
    }
  } finally {
    await pebble.stop();
    await cts.stop();
  }
}

const acmeRows = [];
for (const rt of ["bun", "deno"]) {
  const runs = [];
  for (let i = 0; i < ACME_RUNS; i++) runs.push(await firstCertificate(rt));
  acmeRows.push([`holdup-${rt}`, runs.map((r) => r.total.toFixed(2)).join(", "), median(runs.map((r) => r.total)).toFixed(2), median(runs.map((r) => r.order)).toFixed(2)]);
}

const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
console.log(`\nHTTPS steady state, ${CONNS} connections, 6 B body, ${SECONDS}s per run, ${ROUNDS} rounds (median), same self-signed P-256 certificate, nginx origin; ${cpu}\n`);
console.log(table(["protocol", "proxy", "req/s", "÷ Caddy", "p99", "errors"], rows));
console.log(`\nStart to first ACME certificate from Pebble (seconds, holdup spawned → "certificate issued"; the order itself in the last column)\n`);
console.log(table(["runtime", "runs", "median", "order alone"], acmeRows));
