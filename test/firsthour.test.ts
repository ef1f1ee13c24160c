/**
 * The first hour with holdup: the command line explains itself (holdup help [COMMAND],
 * COMMAND --help, "did you mean"), HOLDUP_ADMIN, a bare port as an upstream, one line
 * per missing Deno permission, a warning for an app that ignores its port, and what is
 * wrong at start (every upstream probed once: down at once; the dashboard's URL).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { freePort, type ProcResult, ROOT, run, runtimeCommand, startProxy, startUpstream, until } from "./helpers.ts";

function holdup(args: string[], env: Record<string, string> = {}): Promise<ProcResult> {
  const [cmd, argv] = runtimeCommand("src/proxy.ts", args);
  return run(cmd, argv, { timeoutMs: 15_000, env: { NO_COLOR: "1", HOLDUP_ADMIN_TOKEN: "", HOLDUP_ADMIN: "", ...env } });
}

const COMMANDS = ["deploy", "pause", "resume", "stop", "status", "reload", "restart"];

test("every flag the command line accepts is in its help: adding a flag without documenting it fails here", async () => {
  const { OPTIONS } = await import("../src/cli/flags.ts");
  const { OPTIONS: CLIENT_OPTIONS } = await import("../src/cli/client.ts");
  const full = (await holdup(["--help"])).stdout;
  for (const [name, o] of Object.entries(OPTIONS)) {
    assert.ok(full.includes(`--${name}`), `--${name} is not in holdup --help`);
    if ("short" in o) assert.ok(full.includes(`-${o.short}, --${name}`), `-${o.short} is not in holdup --help`);
  }
  for (const c of COMMANDS) {
    const text = (await holdup(["help", c])).stdout;
    // Each command documents the flags it uses, and the client options every command takes.
    for (const name of ["admin", "admin-token", "json", "help"]) assert.ok(text.includes(`--${name}`), `holdup help ${c} lacks --${name}`);
  }
  const all = (await Promise.all(COMMANDS.map((c) => holdup(["help", c])))).map((r) => r.stdout).join("\n");
  for (const name of Object.keys(CLIENT_OPTIONS)) assert.ok(all.includes(`--${name}`), `no command's help has --${name}`);
});

test("holdup help is --help; holdup help COMMAND and COMMAND --help give that command's own help", async () => {
  const full = await holdup(["--help"]);
  const help = await holdup(["help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.equal(help.stdout, full.stdout);
  const texts = new Set<string>();
  for (const c of COMMANDS) {
    const a = await holdup(["help", c]);
    const b = await holdup([c, "--help"]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(a.stdout, b.stdout, `holdup help ${c} and holdup ${c} --help differ`);
    assert.match(a.stdout, new RegExp(`^Usage: holdup ${c}\\b`));
    assert.match(a.stdout, /Example/);
    assert.ok(!a.stdout.includes("--try-duration"), `holdup help ${c} is the whole help`);
    texts.add(a.stdout);
  }
  assert.equal(texts.size, COMMANDS.length, "each command has its own text");
  assert.match((await holdup(["deploy", "-h"])).stdout, /--deploy-timeout DUR/);
});

test("did you mean: a mistyped command, proxy flag, client flag or help topic names the nearest", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["deplyo"], /unknown command "deplyo" \(did you mean "deploy"\?\)/],
    [["stauts", "web"], /unknown command "stauts" \(did you mean "status"\?\)/],
    [["help", "deplyo"], /unknown command "deplyo" \(did you mean "deploy"\?\)/],
    [["--try-duraton", "5s"], /Unknown option '--try-duraton' \(did you mean --try-duration\?\)/],
    [["--upstraem", ":1"], /did you mean --upstream\?/],
    [["--admin", "off", "deplyo"], /did you mean the command deploy\? it comes first/],
    [["status", "--jsn"], /Unknown option '--jsn' \(did you mean --json\?\)/],
    [["deploy", "web", "--upstreams", ":1"], /did you mean --upstream\?/],
  ];
  for (const [args, says] of cases) {
    const r = await holdup(args);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, says, args.join(" "));
    assert.equal(r.stdout, "");
  }
  // Nothing near: no guess.
  const far = await holdup(["--zzzzzzzz"]);
  assert.equal(far.code, 2);
  assert.doesNotMatch(far.stderr, /did you mean/);
});

test("HOLDUP_ADMIN sets the client's --admin; --admin wins; a bad one is named", async () => {
  const proxy = await startProxy(["-u", `127.0.0.1:${await freePort()}`]);
  try {
    const admin = `127.0.0.1:${proxy.adminPort}`;
    const r = await holdup(["status"], { HOLDUP_ADMIN: admin });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^config version 1/);
    const over = await holdup(["status", "--admin", admin], { HOLDUP_ADMIN: `127.0.0.1:${await freePort()}` });
    assert.equal(over.code, 0, over.stderr);
    const bad = await holdup(["status"], { HOLDUP_ADMIN: "nonsense" });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /HOLDUP_ADMIN "nonsense" is not an address/);
  } finally {
    await proxy.stop();
  }
});

test("a bare port number as an upstream means 127.0.0.1:PORT", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", String(up.port)]);
  try {
    assert.deepEqual((await proxy.status()).config, { ...(await proxy.status()).config as object, upstreams: [`http://127.0.0.1:${up.port}`] });
    const res = await fetch(proxy.url + "/x");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(up.received.length, 1);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("each missing Deno permission is one line naming its flag, exit 1", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "holdup-perm-"));
  try {
    const config = path.join(dir, "holdup.json");
    await writeFile(config, JSON.stringify({ upstreams: [":1"] }));
    const deno = path.join(ROOT, "node_modules/.bin/deno");
    const base = ["--listen", "127.0.0.1:0", "--admin", "off"];
    const cases: Array<[string[], string[], RegExp]> = [
      [[], base, /--allow-env permission is missing \(env access to "HOLDUP_/],
      [["--allow-env"], base, /--allow-net permission is missing \(net access to "127\.0\.0\.1:0"\)/],
      [["--allow-env", "--allow-net"], ["-c", config, ...base], /--allow-read permission is missing \(read access to ".*holdup\.json"\)/],
      [["--allow-env", "--allow-net", "--allow-read"], [...base, "--", "sleep", "5"], /--allow-run permission/],
      [["--allow-env", "--allow-net", "--allow-read"], [...base, "--acme", "a@example.com", "--acme-host", "example.com", "--redirect-http", "127.0.0.1:0", "--acme-directory", "https://127.0.0.1:1/dir"], /--acme needs Deno's --allow-write permission/],
      [["--allow-env", "--allow-net", "--allow-read", "--allow-write"], [...base, "--acme", "a@example.com", "--acme-host", "example.com", "--redirect-http", "127.0.0.1:0", "--acme-directory", "https://127.0.0.1:1/dir", "--acme-state-dir", dir], /--acme needs Deno's --allow-sys permission/],
      [["--allow-env"], ["status"], /--allow-net permission is missing \(net access to "127\.0\.0\.1:2019"\)/],
      [["--allow-net"], ["status"], /--allow-env permission is missing/],
    ];
    for (const [perms, args, says] of cases) {
      const r = await run(deno, ["run", ...perms, "src/proxy.ts", ...args], { timeoutMs: 15_000, env: { NO_COLOR: "1", HOLDUP_ADMIN: "" } });
      const what = `deno run ${perms.join(" ")} src/proxy.ts ${args.join(" ")}`;
      assert.equal(r.code, 1, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, `${what}: not one line:\n${r.stderr}`);
      assert.match(r.stderr, says, what);
      assert.doesNotMatch(r.stderr, /cannot be read|\bat .*:\d+:\d+/, what);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("an app without {port} that does not listen on $PORT gets one warning after 5 s; one that reads $PORT gets none", async () => {
  const deaf = await startProxy(["--", "python3", "-c", "import time; time.sleep(60)"]);
  const reads = await startProxy(["--", "sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 $PORT"]);
  try {
    const started = Date.now();
    const w = await deaf.waitForLine("the port warning", (l) => /not listening on its port/.test(l.msg), 20_000);
    assert.ok(Date.now() - started >= 4_000, "warned before 5 s");
    assert.match(w.msg, /\{port\}/);
    assert.match(w.msg, /\$PORT/);
    assert.equal(w.level, "warn");
    await until("the other app to serve", async () => (await fetch(reads.url + "/").then((r) => (r.body?.cancel(), r.status)).catch(() => 0)) === 200, 20_000, 100);
    await new Promise((r) => setTimeout(r, Math.max(0, 6_000 - (Date.now() - started))));
    assert.equal(deaf.lines.filter((l) => /not listening on its port/.test(l.msg)).length, 1, "one warning");
    assert.equal(reads.lines.filter((l) => /not listening on its port/.test(l.msg)).length, 0, reads.stderr);
  } finally {
    await deaf.stop();
    await reads.stop();
  }
});

test("every upstream is probed at start: a dead one is a warning at once and down in /status, a live one up; the start line names the dashboard", async () => {
  const up = await startUpstream();
  const dead = await freePort();
  const proxy = await startProxy(["-u", `127.0.0.1:${up.port}`, "-u", `127.0.0.1:${dead}`]);
  try {
    const started = proxy.lines.find((l) => String(l.msg).startsWith("holdup started"))!;
    assert.equal(started.dashboard, `http://127.0.0.1:${proxy.adminPort}/`);
    const page = await fetch(String(started.dashboard));
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    await page.body?.cancel();
    // No request has been sent: the start-up probe alone finds both.
    const warn = await proxy.waitForLine("the unreachable warning", (l) => l.level === "warn" && String(l.upstream) === `http://127.0.0.1:${dead}`, 5_000);
    assert.match(String(warn.msg), /unreachable/);
    const s = await until("both upstreams probed", async () => {
      const s = await proxy.status();
      return s.upstreams.every((u) => u.status !== "unknown") ? s : null;
    }, 5_000);
    assert.deepEqual(s!.upstreams.map((u) => [u.url, u.status]), [[`http://127.0.0.1:${up.port}`, "up"], [`http://127.0.0.1:${dead}`, "down"]]);
    assert.equal(up.received.length, 0, "a probe without healthPath sends no request");
    // The dashboard's stream says the same from its first message.
    const events = await fetch(proxy.adminUrl + "/events");
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const helloData = /^event: hello\ndata: (.*)\n\n/m;
    while (!helloData.test(buf)) buf += (await reader.read()).value ?? "";
    await reader.cancel();
    const hello = JSON.parse(helloData.exec(buf)![1]);
    const shown = (hello.status.apps[0].upstreams as Array<{ url: string; status: string }>).map((u) => [u.url, u.status]);
    assert.deepEqual(shown, [[`http://127.0.0.1:${up.port}`, "up"], [`http://127.0.0.1:${dead}`, "down"]]);
  } finally {
    await proxy.stop();
    await up.close();
  }
});
