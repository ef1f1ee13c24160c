/**
 * The README's examples cannot rot: every fenced `sh`/`bash`/`console` block in README.md
 * runs here, against real holdups, upstreams and processes, and fails the build when it
 * fails. `holdup` in a block is a shim on PATH that runs this repository's holdup on the
 * test's runtime. Only ports change (8080, 8443, 8003, 8004, 2019, 6379, 9180 become free ones).
 *
 * - The Quick start's blocks run as ONE script, top to bottom, with `bash -e -o pipefail`,
 *   on fresh ports of its own; its output must show both versions and 0 failed requests.
 * - A block whose every command is `holdup -…` (a holdup that serves) runs each command
 *   and must serve a request on its --listen port.
 * - Any other block is a script (`bash -e -o pipefail`) against a fixture holdup in front
 *   of two upstreams (the client commands reach it through HOLDUP_ADMIN; `holdup restart`
 *   reaches one that runs an app); curl gets --fail-with-body.
 * - A block that cannot run here is preceded by `<!-- not run: REASON -->`; the test counts
 *   and prints them. A fence without a language fails, so nothing is skipped silently.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { freePort, nodeGet, type Proxy, ROOT, RUNTIME, startProxy, startRedis, startUpstream, type Upstream, until } from "./helpers.ts";

const SHELL_LANGS = new Set(["sh", "bash", "console", "shell"]);
const OTHER_LANGS = new Set(["json", "ini", "yaml", "nginx", "caddyfile", "text"]);
/** The ports the README uses; each is replaced by a free one. */
const PORTS = ["8080", "8443", "8003", "8004", "2019", "6379", "9180"];
const CLIENT = /\bholdup (deploy|pause|resume|stop|status|reload|restart|help)\b/;

interface Block {
  section: string;
  line: number;
  lang: string;
  text: string;
  notRun?: string;
}

/** Every fenced block of a markdown text, with its section and any `<!-- not run: … -->` mark. */
export function blocksOf(md: string): Block[] {
  const lines = md.split("\n");
  const blocks: Block[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const h = /^## (.+)$/.exec(lines[i]);
    if (h) section = h[1].trim();
    const fence = /^```(\S*)\s*$/.exec(lines[i]);
    if (!fence) continue;
    let prev = i - 1;
    while (prev >= 0 && lines[prev].trim() === "") prev--;
    const mark = prev >= 0 ? /^<!-- not run: (.+?) -->$/.exec(lines[prev].trim()) : null;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    assert.ok(i < lines.length, `README.md:${start + 1}: unclosed fence`);
    blocks.push({ section, line: start + 1, lang: fence[1], text: body.join("\n"), notRun: mark?.[1] });
  }
  return blocks;
}

/** A console block's commands (its `$ ` lines); any other block as written. */
function scriptOf(b: Block): string {
  if (b.lang !== "console") return b.text;
  return b.text.split("\n").filter((l) => l.startsWith("$ ")).map((l) => l.slice(2)).join("\n");
}

/** The commands of a script: continuation lines joined, comments and blank lines dropped. */
function commandsOf(script: string): string[] {
  return script.replace(/\\\n\s*/g, " ").split("\n").map((l) => l.replace(/(^|\s)#.*$/, "").trim()).filter(Boolean);
}

function localise(script: string, ports: Record<string, number>, admin: string, curlFail: boolean): string {
  let s = script.replace(new RegExp(`\\b(${PORTS.join("|")})\\b`, "g"), (p) => String(ports[p]));
  // A holdup that serves gets the admin address the test chose (the README's use the default).
  s = s.split("\n").map((l) => /(^|[;&|(]\s*)holdup -/.test(l) && !/--admin\b/.test(l) ? l.replace(/holdup -/, `holdup --admin ${admin} -`) : l).join("\n");
  if (curlFail) s = s.replace(/(^|[;&|(]\s*|\s)curl /gm, "$1curl -sS --fail-with-body ");
  // Nothing may reach a port the test did not choose (a real :80 or :443, say).
  const loose = /(?:\b(?:localhost|127\.0\.0\.1)|(?<![\w.:]))\:(\d{2,5})\b/g;
  const chosen = new Set(Object.values(ports).map(String));
  for (const m of s.matchAll(loose)) {
    assert.ok(chosen.has(m[1]), `a port the test does not replace: ${m[0]} in\n${script}`);
  }
  return s;
}

let dir = "";
let shimDir = "";
let u3: Upstream, u4: Upstream;
let proxy: Proxy, runner: Proxy;
let redis: Awaited<ReturnType<typeof startRedis>>;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "holdup-readme-"));
  shimDir = path.join(dir, "bin");
  await mkdir(shimDir);
  const entry = path.join(ROOT, "src/proxy.ts");
  const exec = RUNTIME === "deno"
    ? `exec "${process.execPath}" run --allow-net --allow-read --allow-env --allow-run --allow-write --allow-sys --config "${ROOT}/deno.json" "${entry}" "$@"`
    : `exec "${process.execPath}" "${entry}" "$@"`;
  await writeFile(path.join(shimDir, "holdup"), `#!/bin/sh\n# holdup from this repository, on ${RUNTIME}\n${exec}\n`);
  await chmod(path.join(shimDir, "holdup"), 0o755);
  [u3, u4, redis] = await Promise.all([startUpstream(), startUpstream(), startRedis()]);
  proxy = await startProxy(["-u", `127.0.0.1:${u3.port}`]);
  runner = await startProxy(["--", "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]);
});

after(async () => {
  await proxy?.stop();
  await runner?.stop();
  await u3?.close();
  await u4?.close();
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface ScriptResult {
  code: number | null;
  out: string;
  ms: number;
}

/** Runs a script in a process group of its own; once it exits, whatever it left running is stopped. */
async function runScript(script: string, env: Record<string, string>, timeoutMs = 90_000): Promise<ScriptResult> {
  const cwd = await mkdtemp(path.join(dir, "block-"));
  const t0 = performance.now();
  const child = spawn("bash", ["-e", "-o", "pipefail", "-c", script], {
    cwd,
    env: { ...process.env, PATH: `${shimDir}:${process.env.PATH}`, NO_COLOR: "1", HOLDUP_ADMIN_TOKEN: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  child.stdout!.on("data", (d) => out += d);
  child.stderr!.on("data", (d) => out += d);
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  const timer = setTimeout(() => kill(child.pid!, "SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  const ms = performance.now() - t0;
  clearTimeout(timer);
  kill(child.pid!, "SIGTERM");
  const grace = setTimeout(() => kill(child.pid!, "SIGKILL"), 10_000);
  await closed;
  clearTimeout(grace);
  return { code, out, ms };
}

function kill(pgid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pgid, signal);
  } catch { /* gone */ }
}

/** A holdup that serves: it must answer a request on its --listen port, then it is stopped. */
async function runServer(command: string, ports: Record<string, number>): Promise<void> {
  const cwd = await mkdtemp(path.join(dir, "server-"));
  const child = spawn("sh", ["-c", localise(command, ports, "off", false)], {
    cwd,
    env: { ...process.env, PATH: `${shimDir}:${process.env.PATH}`, NO_COLOR: "1", HOLDUP_ADMIN_TOKEN: "" },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr!.on("data", (d) => stderr += d);
  try {
    const status = await until(`${command} to serve`, async () => {
      if (child.exitCode !== null) throw new Error(`${command} exited ${child.exitCode}:\n${stderr}`);
      return await nodeGet(`http://127.0.0.1:${ports["8080"]}/`).then((r) => r.status).catch(() => 0);
    }, 30_000, 100);
    assert.equal(status, 200, `${command}\n${stderr}`);
  } finally {
    kill(child.pid!, "SIGTERM");
  }
}

async function freePorts(): Promise<Record<string, number>> {
  const ports: Record<string, number> = {};
  for (const p of PORTS) ports[p] = await freePort();
  return ports;
}

test("every shell example in the README runs: the Quick start as one script, the rest against real holdups", async () => {
  const blocks = blocksOf(await readFile(path.join(ROOT, "README.md"), "utf8"));
  for (const b of blocks) {
    assert.ok(b.lang, `README.md:${b.line}: a fence without a language (say sh, json, …) would never run`);
    assert.ok(SHELL_LANGS.has(b.lang) || OTHER_LANGS.has(b.lang), `README.md:${b.line}: unknown fence language ${b.lang}`);
    if (b.lang === "json") JSON.parse(b.text); // a config example at least parses
  }
  const shell = blocks.filter((b) => SHELL_LANGS.has(b.lang));
  const notRun = shell.filter((b) => b.notRun);
  const quick = shell.filter((b) => b.section === "Quick start");
  assert.ok(quick.length >= 3, `the Quick start has ${quick.length} shell blocks`);
  assert.ok(quick.every((b) => !b.notRun), "every Quick start block runs");
  const ran: string[] = [];

  // The Quick start, as a newcomer pastes it: one shell, top to bottom, on ports of its own.
  const qp = await freePorts();
  const script = localise(quick.map(scriptOf).join("\n"), qp, `127.0.0.1:${qp["2019"]}`, false);
  const q = await runScript(script, { HOLDUP_ADMIN: `127.0.0.1:${qp["2019"]}` });
  assert.equal(q.code, 0, `the Quick start failed (exit ${q.code}):\n${script}\n--- output\n${q.out}`);
  assert.match(q.out, /hello from v1/);
  assert.match(q.out, /hello from v2/);
  const during = /^(\d+) requests, 0 failed$/m.exec(q.out);
  assert.ok(during && Number(during[1]) >= 1, `no "N requests, 0 failed" line:\n${q.out}`);
  ran.push(`Quick start (${quick.length} blocks, README.md:${quick[0].line}–${quick.at(-1)!.line}) in ${(q.ms / 1000).toFixed(1)} s; ${during![1]} requests during the restart, 0 failed`);

  for (const b of shell) {
    if (b.notRun || b.section === "Quick start") continue;
    const commands = commandsOf(scriptOf(b));
    assert.ok(commands.length > 0, `README.md:${b.line}: an empty block`);
    const ports: Record<string, number> = {
      ...await freePorts(),
      "8080": proxy.port,
      "8003": u3.port,
      "8004": u4.port,
      "2019": proxy.adminPort,
      "6379": redis.port,
    };
    if (commands.every((c) => /^holdup -/.test(c) && !c.endsWith("&"))) {
      for (const c of commands) {
        await runServer(c, { ...ports, "8080": await freePort() });
        ran.push(`${b.section} (README.md:${b.line}): ${c}`);
      }
      continue;
    }
    const admin = CLIENT.test(b.text) && /holdup restart\b/.test(b.text) ? runner.adminPort : proxy.adminPort;
    const s = localise(scriptOf(b), { ...ports, "2019": admin }, "off", true);
    const r = await runScript(s, { HOLDUP_ADMIN: `127.0.0.1:${admin}` });
    assert.equal(r.code, 0, `README.md:${b.line} (${b.section}) failed (exit ${r.code}):\n${s}\n--- output\n${r.out}`);
    ran.push(`${b.section} (README.md:${b.line}): ${commands.length} command(s) in ${(r.ms / 1000).toFixed(1)} s`);
    // Leave the fixture as the next block expects it, whatever this one did (a deploy, a stop).
    assert.equal((await proxy.admin("POST", "/resume")).status, 200);
    assert.equal((await proxy.admin("POST", "/reload", { upstreams: [`127.0.0.1:${u3.port}`] })).status, 200);
  }
  console.log(`README: ran ${ran.length} example(s):\n  ${ran.join("\n  ")}`);
  console.log(`README: ${notRun.length} block(s) marked not run:\n  ${notRun.map((b) => `README.md:${b.line} (${b.section}): ${b.notRun}`).join("\n  ")}`);
  assert.ok(ran.length >= 10, `only ${ran.length} README examples ran`);
});

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");
}

test("the README's and docs/' links stay inside the repository and point at files and headings that exist", async () => {
  const { readdir } = await import("node:fs/promises");
  const files = ["README.md", ...(await readdir(path.join(ROOT, "docs"))).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
  const anchors = new Map<string, Set<string>>();
  const text = new Map<string, string>();
  for (const f of files) {
    const md = await readFile(path.join(ROOT, f), "utf8");
    text.set(f, md);
    anchors.set(f, new Set(md.split("\n").filter((l) => /^#{1,6} /.test(l)).map((l) => slug(l.replace(/^#+ /, "")))));
  }
  const bad: string[] = [];
  let checked = 0;
  for (const f of files) {
    const md = text.get(f)!.replace(/```[\s\S]*?```/g, "");
    for (const m of md.matchAll(/\]\(([^)\s]+)\)|<(https?:\/\/[^>]+)>/g)) {
      const target = m[1] ?? m[2];
      if (/^https?:\/\//.test(target)) continue;
      checked++;
      const [file, anchor] = target.split("#");
      const resolved = file ? path.posix.normalize(path.posix.join(path.posix.dirname(f), file)) : f;
      if (resolved.startsWith("..") || path.isAbsolute(file)) {
        bad.push(`${f}: ${target} leaves the repository`);
        continue;
      }
      const exists = await stat(path.join(ROOT, resolved)).then(() => true, () => false); // a file or a folder
      if (!exists) bad.push(`${f}: ${target}: no file ${resolved}`);
      else if (anchor && resolved.endsWith(".md") && !anchors.get(resolved)?.has(anchor)) bad.push(`${f}: ${target}: no heading #${anchor} in ${resolved}`);
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(checked >= 30, `only ${checked} links checked`);
});
