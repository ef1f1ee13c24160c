/**
 * Examples that cannot rot: every shell example in `holdup --help` and in each command's
 * help (`holdup help COMMAND`) is extracted from the real output and run, as written,
 * against real holdups and upstreams. Only the ports change: the examples use the
 * defaults a reader has (:8080, :8003, :8004, the admin API on 2019), the test free ones.
 * A client command or curl must exit 0 (curl with --fail-with-body); an example that
 * starts holdup must serve a request. Examples that cannot run here are listed in SKIP
 * with the reason.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { freePort, nodeGet, type Proxy, ROOT, RUNTIME, run, startProxy, startUpstream, type Upstream, until } from "./helpers.ts";

const COMMANDS = ["deploy", "pause", "resume", "stop", "status", "reload", "restart"];
/** Example prefixes that need what a test box lacks, and why. */
const SKIP: Array<[string, string]> = [
  ["holdup --acme ", "needs port 80 reachable from a public ACME CA (covered with pebble in test/acme.test.ts)"],
];
/** Words that mark a usage line, not an example. */
const PLACEHOLDER = /\[options\]|\b(?:APP|URL|FILE|ADDR|COMMAND|ARGS|DUR|TEXT|TOKEN|NAME|EMAIL|DIR|PATH|SIZE|N|P)\b|\[[A-Z]/;

/** `holdup` in an example: this runtime on src/proxy.ts, from any directory. */
const HOLDUP_FN = RUNTIME === "deno"
  ? `holdup() { "${process.execPath}" run --allow-net --allow-read --allow-env --allow-run --config "${ROOT}/deno.json" "${ROOT}/src/proxy.ts" "$@"; }`
  : `holdup() { "${process.execPath}" "${ROOT}/src/proxy.ts" "$@"; }`;

interface Example {
  from: string;
  text: string;
}

async function helpOf(args: string[]): Promise<string> {
  const r = await run("sh", ["-c", `${HOLDUP_FN}; holdup "$@"`, "sh", ...args], { env: { NO_COLOR: "1" } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** Shell lines in a help text: indented two spaces, holdup with a flag or command (not prose), curl or echo, without placeholders. */
const SHELL = new RegExp(`^  (holdup (-|(${COMMANDS.join("|")})\\b)|curl |echo )`);

function examplesIn(text: string, from: string): Example[] {
  return text.split("\n")
    .filter((l) => SHELL.test(l) && !PLACEHOLDER.test(l.replace(/#.*$/, "")))
    .map((l) => ({ from, text: l.trim() }));
}

let dir = "";
let u3: Upstream, u4: Upstream;
let proxy: Proxy, runner: Proxy;
let ports: Record<string, number>;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "holdup-examples-"));
  [u3, u4] = await Promise.all([startUpstream(), startUpstream()]);
  proxy = await startProxy(["-u", `127.0.0.1:${u3.port}`]);
  runner = await startProxy(["--", "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]);
  ports = { "8003": u3.port, "8004": u4.port };
});

after(async () => {
  await proxy?.stop();
  await runner?.stop();
  await u3?.close();
  await u4?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function localise(text: string, listen: number): string {
  return text
    .replace(/localhost:2019/g, `127.0.0.1:${proxy.adminPort}`)
    .replace(/:(8003|8004)\b/g, (_, p) => `:${ports[p]}`)
    .replace(/:8080\b/g, `:${listen}`)
    .replace(/^curl /, "curl -sS --fail-with-body ");
}

/** An example that starts holdup: it must serve a request on its --listen port, then it is stopped. */
async function runServer(ex: Example, listen: number): Promise<void> {
  const child = spawn("sh", ["-c", `${HOLDUP_FN}; ${localise(ex.text, listen).replace(/^holdup /, "holdup --admin off ")}`], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", HOLDUP_ADMIN_TOKEN: "" },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr!.on("data", (d) => stderr += d);
  try {
    const status = await until(`${ex.text} to serve`, async () => {
      if (child.exitCode !== null) throw new Error(`${ex.text} exited ${child.exitCode}:\n${stderr}`);
      return await nodeGet(`http://127.0.0.1:${listen}/`).then((r) => r.status).catch(() => 0);
    }, 20_000, 100);
    assert.equal(status, 200, `${ex.text}\n${stderr}`);
  } finally {
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch { /* gone */ }
  }
}

test("every shell example in holdup --help and each command's help runs", async () => {
  const examples = examplesIn(await helpOf(["--help"]), "holdup --help");
  for (const c of COMMANDS) examples.push(...examplesIn(await helpOf(["help", c]), `holdup help ${c}`));
  // Enough found that a change to the help's layout cannot silently skip them all.
  assert.ok(examples.length >= 12, `only ${examples.length} examples found:\n${examples.map((e) => e.text).join("\n")}`);
  const ran: string[] = [];
  for (const ex of examples) {
    if (SKIP.some(([prefix]) => ex.text.startsWith(prefix))) continue;
    const client = /^holdup (deploy|pause|resume|stop|status|reload|restart)\b/.test(ex.text) || /holdup reload/.test(ex.text);
    if (/^holdup /.test(ex.text) && !client) {
      await runServer(ex, await freePort());
    } else {
      const admin = /^holdup restart\b/.test(ex.text) ? runner.adminPort : proxy.adminPort;
      const r = await run("sh", ["-c", `${HOLDUP_FN}; ${localise(ex.text, 0)}`], {
        cwd: dir,
        timeoutMs: 60_000,
        env: { NO_COLOR: "1", HOLDUP_ADMIN: `127.0.0.1:${admin}`, HOLDUP_ADMIN_TOKEN: "" },
      });
      assert.equal(r.code, 0, `${ex.from}: ${ex.text}\nexit ${r.code}\n${r.stdout}\n${r.stderr}`);
    }
    ran.push(`${ex.from}: ${ex.text}`);
  }
  // Leave the proxy serving, whatever the examples did (a stop, a pause).
  assert.equal((await proxy.admin("POST", "/resume")).status, 200);
  console.log(`ran ${ran.length} examples:\n  ${ran.join("\n  ")}`);
});
