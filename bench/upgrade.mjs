#!/usr/bin/env node
// Restarting holdup itself, or its app, under a steady load: what clients see.
// Node built-ins only (and bench/lib). Everything stays on 127.0.0.1. Prints a markdown table.
//
//   node bench/upgrade.mjs [--clients 8] [--seconds 6] [--runtimes deno,bun]
//                          [--cases serial,upgrade,activation] [--rounds 3]
//
// Load: `clients` loops of keep-alive GETs (one connection each, http.Agent) plus one
// loop opening a new connection per GET (Connection: close), for `seconds`; the event
// fires `rounds` times, evenly spaced. Cases:
//   serial      holdup --restart serial --release 'sleep 0.5' -- python3 app.py; SIGHUP
//   upgrade     holdup -u UPSTREAM; SIGUSR2 (self-upgrade; each round upgrades the newest)
//   activation  Deno only: systemd-socket-activate -l PORT sh -c 'loop: holdup'; SIGTERM to
//               holdup, the loop starts the next one on the same passed socket
// Reports: requests, failed (non-2xx or an error), of which resets (ECONNRESET) and
// refused (ECONNREFUSED), and the longest request, per loop kind.
import { spawn, spawnSync } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import os from "node:os";
import { freePort, sleep } from "./lib/util.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values: o } = parseArgs({
  options: {
    clients: { type: "string", default: "8" },
    seconds: { type: "string", default: "6" },
    runtimes: { type: "string", default: "deno,bun" },
    cases: { type: "string", default: "serial,upgrade,activation" },
    rounds: { type: "string", default: "3" },
  },
});
const clients = Number(o.clients), seconds = Number(o.seconds), rounds = Number(o.rounds);
const APP = ["python3", `${root}test/fixtures/app.py`, "{port}"];

function holdupCommand(runtime) {
  const bin = `${root}node_modules/.bin/${runtime}`;
  const entry = `${root}src/proxy.ts`;
  return runtime === "deno" ? [bin, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", entry]] : [bin, [entry]];
}

/** Starts a command; resolves once a stderr line matches `ready`. */
function launch(cmd, args, ready) {
  const child = spawn(cmd, args, { cwd: "/tmp", stdio: ["ignore", "ignore", "pipe"] });
  const lines = [];
  let buf = "";
  const waiters = [];
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  const wait = async (re, from = 0, ms = 30_000) => {
    const end = Date.now() + ms;
    for (;;) {
      const hit = lines.slice(from).find((l) => re.test(l));
      if (hit) return hit;
      if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${lines.slice(-5).join("\n")}`);
      await new Promise((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  return { child, lines, wait, started: wait(ready) };
}

function loadLoops(port) {
  const stats = { keepAlive: [], fresh: [] };
  let stop = false;
  const one = (agent, kind) =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.get({ host: "127.0.0.1", port, path: "/", agent, headers: agent ? {} : { connection: "close" } }, (res) => {
        res.resume();
        res.on("end", () => resolve({ kind, ok: res.statusCode === 200, status: res.statusCode, ms: performance.now() - t0 }));
        res.on("error", (e) => resolve({ kind, ok: false, code: e.code, ms: performance.now() - t0 }));
      });
      req.on("error", (e) => resolve({ kind, ok: false, code: e.code ?? String(e), ms: performance.now() - t0 }));
    });
  const loops = [
    ...Array.from({ length: clients }, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      while (!stop) stats.keepAlive.push(await one(agent, "keepAlive"));
      agent.destroy();
    }),
    (async () => {
      while (!stop) stats.fresh.push(await one(false, "fresh"));
    })(),
  ];
  return { stats, async end() {
    stop = true;
    await Promise.all(loops);
    return stats;
  } };
}

function summarize(list) {
  const failed = list.filter((r) => !r.ok);
  return {
    requests: list.length,
    failed: failed.length,
    resets: failed.filter((r) => r.code === "ECONNRESET").length,
    refused: failed.filter((r) => r.code === "ECONNREFUSED").length,
    longest: Math.round(Math.max(0, ...list.map((r) => r.ms))),
  };
}

function pidsOf(re) {
  const out = spawnSync("ps", ["-eo", "pid,args"], { encoding: "utf8" }).stdout;
  return out.split("\n").filter((l) => re.test(l)).map((l) => Number(l.trim().split(" ")[0]));
}

async function runCase(kind, runtime) {
  const [cmd, base] = holdupCommand(runtime);
  const port = await freePort();
  const admin = await freePort();
  const common = ["--listen", `127.0.0.1:${port}`, "--admin", `127.0.0.1:${admin}`, "--log", "text"];
  let up = null;
  let h;
  let fire;
  let cleanup = () => {};
  if (kind === "serial") {
    h = launch(cmd, [...base, ...common, "--restart", "serial", "--release", "sleep 0.5", "--", ...APP], /app instance serving/);
    await h.started;
    fire = async (i) => {
      const from = h.lines.length;
      process.kill(h.child.pid, "SIGHUP");
      await h.wait(new RegExp(`app instance serving.*instance=${i + 2}`), from);
    };
    cleanup = () => void h.child.kill("SIGTERM");
  } else if (kind === "upgrade") {
    up = http.createServer((_q, r) => r.end("ok")).listen(0, "127.0.0.1");
    await new Promise((r) => up.once("listening", r));
    h = launch(cmd, [...base, ...common, "-u", `127.0.0.1:${up.address().port}`], /holdup started/);
    await h.started;
    let current = h.child.pid;
    fire = async () => {
      const from = h.lines.length;
      process.kill(current, "SIGUSR2");
      const line = await h.wait(/upgrade: starting new holdup pid/, from);
      current = Number(/pid (\d+)/.exec(line)[1]);
      await h.wait(/upgrade: new holdup serving/, from);
    };
    cleanup = () => {
      try {
        process.kill(current, "SIGTERM");
      } catch { /* gone */ }
    };
  } else {
    const entry = `${root}src/proxy.ts`;
    const inner = `export LISTEN_PID=$$; exec ${cmd} run --allow-net --allow-read --allow-env --allow-run ${entry} ${common.slice(2).join(" ")} -u 127.0.0.1:UPSTREAM`;
    up = http.createServer((_q, r) => r.end("ok")).listen(0, "127.0.0.1");
    await new Promise((r) => up.once("listening", r));
    const loop = `while :; do sh -c '${inner.replace("UPSTREAM", up.address().port)}'; done`;
    h = launch("/usr/bin/systemd-socket-activate", ["-l", `127.0.0.1:${port}`, "sh", "-c", loop], /holdup started/);
    // It starts the command on the first connection.
    await h.wait(/Listening on/);
    http.get({ host: "127.0.0.1", port, path: "/" }, (r) => r.resume()).on("error", () => {});
    await h.started;
    // Not the shells (their command lines name the same arguments): the runtime itself.
    const holdups = () => pidsOf(new RegExp(`^\\s*\\d+ \\S+deno run .*src/proxy.ts --admin 127.0.0.1:${admin}`));
    fire = async () => {
      const from = h.lines.length;
      for (const pid of holdups()) process.kill(pid, "SIGTERM");
      await h.wait(/holdup started/, from);
    };
    cleanup = async () => {
      h.child.kill("SIGTERM");
      await sleep(100);
      for (const pid of holdups()) process.kill(pid, "SIGTERM");
    };
  }
  const load = loadLoops(port);
  const every = (seconds * 1000) / (rounds + 1);
  let fired = 0;
  for (let i = 0; i < rounds; i++) {
    await sleep(every);
    await fire(i);
    fired++;
  }
  await sleep(every);
  const stats = await load.end();
  await cleanup();
  up?.close();
  await sleep(300);
  return { fired, keepAlive: summarize(stats.keepAlive), fresh: summarize(stats.fresh) };
}

const migrate = (() => {
  try {
    return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
  } catch {
    return "n/a";
  }
})();
console.log(`${clients} keep-alive clients + 1 new-connection loop, ${seconds}s, ${rounds} events each; tcp_migrate_req=${migrate}; load ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}\n`);
console.log("| case | runtime | events | keep-alive: requests / failed (resets, refused) / longest ms | new connections: requests / failed (resets, refused) / longest ms |");
console.log("|---|---|---|---|---|");
for (const kind of o.cases.split(",")) {
  for (const runtime of o.runtimes.split(",")) {
    if (kind === "activation" && runtime !== "deno") continue; // Bun cannot serve a passed socket
    const r = await runCase(kind, runtime);
    const cell = (s) => `${s.requests} / ${s.failed} (${s.resets}, ${s.refused}) / ${s.longest}`;
    console.log(`| ${kind} | ${runtime} | ${r.fired} | ${cell(r.keepAlive)} | ${cell(r.fresh)} |`);
  }
}
process.exit(0);
