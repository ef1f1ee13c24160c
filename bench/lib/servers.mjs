// Starting the servers under test: the nginx origin for steady runs, and every
// proxy target (holdup on Bun/Deno, bare fetch passthrough, Caddy, nginx, HAProxy).
import { writeFileSync, mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { BIN, BENCH_DIR, REPO_DIR, log, tempDir, spawnGroup, waitPort, freePort, httpRequest } from "./util.mjs";

export const BODY_64K = 64 * 1024;

/** nginx origin: GET / -> "hello\n", GET /64k.bin -> 64 KiB static file. */
export async function startNginxOrigin() {
  const dir = tempDir("origin");
  const port = await freePort();
  mkdirSync(join(dir, "www"), { recursive: true });
  writeFileSync(join(dir, "www/64k.bin"), Buffer.alloc(BODY_64K, "x"));
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, `
daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  sendfile on;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = / { return 200 "hello\\n"; }
    location = /64k.bin { root ${dir}/www; default_type application/octet-stream; }
  }
}
`);
  log(`starting nginx origin on 127.0.0.1:${port}`);
  const proc = spawnGroup("nginx-origin", "nginx", ["-p", dir, "-c", conf]);
  await waitPort(port, { proc });
  return { name: "origin", port, proc, url: `http://127.0.0.1:${port}`, stop: () => proc.stop() };
}

const holdupEntry = (opts) => opts.entry || "src/proxy.ts";

function runtimeCmd(runtime, file) {
  if (runtime === "bun") return [BIN.bun, ["run", file]];
  return [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", file]];
}

export const STEADY_TARGETS = ["direct", "holdup-bun", "holdup-deno", "holdup-bun-w2", "holdup-deno-w2", "passthrough-bun", "passthrough-deno", "caddy", "nginx", "haproxy"];

/**
 * Start target NAME proxying to origin port UP. Returns { name, port, proc|null, stop }.
 * Throws with a readable reason if it cannot start.
 */
export async function startTarget(name, up, opts = {}) {
  if (name === "direct") return { name, port: up, proc: null, stop: async () => {} };
  const port = await freePort();
  let proc;
  if (name.startsWith("holdup-")) {
    // "holdup-bun@before": the same entry from another checkout (HOLDUP_BASELINE=DIR), to
    // measure a change against its parent in one run.
    // "holdup-bun-w2": with --workers 2 (one process per core, sharing the port).
    const [target, tag] = name.split("@");
    const [, rt, workers] = /^holdup-(bun|deno)(?:-w(\d+))?$/.exec(target) ?? [];
    if (!rt) throw new Error(`unknown target ${name}`);
    const root = tag ? process.env.HOLDUP_BASELINE : REPO_DIR;
    if (tag && !root) throw new Error(`${name} needs HOLDUP_BASELINE=DIR (a checkout of the baseline commit)`);
    const entry = join(root, holdupEntry(opts));
    if (!existsSync(entry)) throw new Error(`${entry} does not exist yet`);
    if (!existsSync(BIN[rt])) throw new Error(`${BIN[rt]} missing (run npm install)`);
    const [cmd, args] = runtimeCmd(rt, entry);
    if (workers && rt === "deno") args.splice(1, 0, "--allow-run"); // the parent starts its workers
    const extra = opts.holdupArgs || ["--admin", "off", "--log", "off"];
    log(`starting ${name} on :${port} (${entry})`);
    proc = spawnGroup(name, cmd, [...args, "-l", `127.0.0.1:${port}`, "-u", `http://127.0.0.1:${up}`, ...(workers ? ["--workers", workers] : []), ...extra]);
  } else if (name.startsWith("edge-")) {
    // "edge-deno": dist/edge.js under `deno serve`; "edge-bun": under Bun's auto-serve. Config from the environment.
    const rt = name.slice(5);
    const entry = join(REPO_DIR, "dist/edge.js");
    if (!existsSync(BIN[rt])) throw new Error(`${BIN[rt]} missing (run npm install)`);
    const [cmd, args] = rt === "deno"
      ? [BIN.deno, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), entry]]
      : [BIN.bun, [entry]];
    log(`starting ${name} on :${port} (${entry})`);
    proc = spawnGroup(name, cmd, args, { env: { PORT: String(port), HOLDUP_UPSTREAMS: `http://127.0.0.1:${up}`, HOLDUP_LOG: "off" } });
  } else if (name.startsWith("passthrough-")) {
    const rt = name.slice(12);
    if (!existsSync(BIN[rt])) throw new Error(`${BIN[rt]} missing (run npm install)`);
    const [cmd, args] = runtimeCmd(rt, join(BENCH_DIR, "passthrough.ts"));
    log(`starting ${name} on :${port}`);
    proc = spawnGroup(name, cmd, args, { env: { PORT: String(port), UPSTREAM: `http://127.0.0.1:${up}` } });
  } else if (name.startsWith("ladder-")) {
    // "ladder-bun-listener": a step of bench/ladder.ts (holdup's own modules, one layer at a time).
    const [, rt, step] = name.split("-");
    const [cmd, args] = runtimeCmd(rt, join(BENCH_DIR, "ladder.ts"));
    log(`starting ${name} on :${port}`);
    proc = spawnGroup(name, cmd, args, { env: { PORT: String(port), UPSTREAM: `http://127.0.0.1:${up}`, STEP: step } });
  } else if (name === "caddy") {
    const dir = tempDir("caddy");
    const file = join(dir, "Caddyfile");
    writeFileSync(file, caddyfile({ port, up, admin: "off", idleConns: 64 }));
    log(`starting caddy on :${port}`);
    proc = spawnGroup("caddy", "caddy", ["run", "--config", file, "--adapter", "caddyfile"], { env: caddyEnv(dir) });
  } else if (name === "nginx") {
    const dir = tempDir("nginx");
    const conf = join(dir, "nginx.conf");
    writeFileSync(conf, `
daemon off;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  upstream origin { server 127.0.0.1:${up}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`);
    log(`starting nginx proxy on :${port}`);
    proc = spawnGroup("nginx", "nginx", ["-p", dir, "-c", conf]);
  } else if (name === "haproxy") {
    const dir = tempDir("haproxy");
    const conf = join(dir, "haproxy.cfg");
    writeFileSync(conf, `
global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server origin 127.0.0.1:${up}
`);
    log(`starting haproxy on :${port}`);
    proc = spawnGroup("haproxy", "haproxy", ["-db", "-f", conf]);
  } else {
    throw new Error(`unknown target ${name}`);
  }
  try {
    await waitPort(port, { proc, timeoutMs: 20000 });
  } catch (e) {
    await proc.stop("SIGKILL", 500);
    throw e;
  }
  return { name, port, proc, stop: () => proc.stop() };
}

export function caddyEnv(dir) {
  return { HOME: dir, XDG_CONFIG_HOME: join(dir, "config"), XDG_DATA_HOME: join(dir, "data") };
}

/** Caddyfile for a plain reverse proxy; with tryDuration, Caddy's own "holding". */
export function caddyfile({ port, up, admin = "off", tryDuration, tryInterval, idleConns }) {
  const inner = [
    tryDuration && `\t\tlb_try_duration ${tryDuration}\n\t\tlb_try_interval ${tryInterval}\n`,
    idleConns && `\t\ttransport http {\n\t\t\tkeepalive_idle_conns ${idleConns}\n\t\t\tkeepalive_idle_conns_per_host ${idleConns}\n\t\t}\n`,
  ].filter(Boolean).join("");
  const lb = inner ? ` {\n${inner}\t}` : "";
  return `{\n\tadmin ${admin}\n\tauto_https off\n\tlog {\n\t\toutput discard\n\t}\n}\n\n` +
    `http://127.0.0.1:${port} {\n\treverse_proxy 127.0.0.1:${up}${lb}\n}\n`;
}

/** One GET through the target to prove it works before loading it. */
export async function checkTarget(port, path, expectBytes) {
  const r = await httpRequest(`http://127.0.0.1:${port}${path}`, { timeoutMs: 5000 });
  if (r.status !== 200) throw new Error(`GET ${path} answered ${r.status}: ${r.body.toString().slice(0, 200)}`);
  if (expectBytes != null && r.body.length !== expectBytes) throw new Error(`GET ${path} returned ${r.body.length} bytes, expected ${expectBytes}`);
}

export { spawnSync };
