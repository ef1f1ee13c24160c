#!/usr/bin/env node
// `npm run mutants`: the mutation check. Each entry below plants one named bug
// (a small textual replacement in a file under src/) in a scratch copy of the
// repository and runs the safety test(s) that guard against it, on Deno and on
// Bun. Every mutant must be killed (its test must FAIL) on both runtimes: a
// surviving mutant means a safety test stopped biting, and the check fails. A
// replacement whose text is not found exactly once fails the check too, so a
// refactor that moves the guarded code has to update the mutant with it.
// Type-checking is npm test's job: the tests run here with deno test --no-check.
// Usage: node scripts/mutants.mjs [deno|bun] [mutant name substrings…]
// The last line: "mutants: K killed, S survived, B broken (Ns)".
import { spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * name: the bug, as a reviewer would say it. file: under src/. from/to: the
 * replacement (from must occur exactly once). tests: the files that must fail;
 * filter: a regular expression over test names (deno --filter /re/, bun -t re).
 * runtimes: for a bug in one runtime's adapter, the runtime it runs on.
 */
const MUTANTS = [
  {
    name: "a pause of holdup's own (every release attempt delayed alike) cuts the release window as a dropped SYN would",
    file: "src/apps/release-window.ts",
    from: "if (now - started <= after || t > this.lastDone) break;",
    to: "if (now - started <= after) break;",
    tests: ["test/unit/release-window.test.ts"],
    filter: "a pause that delays every attempt alike",
  },
  {
    name: "a release attempt whose SYN was dropped keeps its slot in the release window (the rest wait a second for it)",
    file: "src/apps/release-window.ts",
    from: "return this.flying.size - this.stuck.size;",
    to: "return this.flying.size;",
    tests: ["test/unit/release-window.test.ts"],
    filter: "a dropped SYN",
  },
  {
    name: "resend a POST after a failure that may have reached the upstream",
    file: "src/http/hold.ts",
    from: "if (resendable && out.failure === \"after-send\")",
    to: "if (replayable && out.failure === \"after-send\")",
    tests: ["test/hold.test.ts"],
    filter: "a flapping upstream never receives a POST twice|a POST that reached the upstream is never resent",
  },
  {
    name: "send a POST on a pooled keep-alive connection (the runtime may resend it silently)",
    file: "src/http/hold.ts",
    from: "const fresh = replayable && !idempotent;",
    to: "const fresh = false;",
    tests: ["test/upstreams.test.ts"],
    filter: "a POST goes on a connection of its own",
  },
  {
    name: "Deno's upstream client sends a fresh request on the keep-alive pool",
    file: "src/runtime/node-client.ts",
    from: "agent: init.fresh ? false : init.released ? releasePool[origin.protocol] : pooled[origin.protocol],",
    to: "agent: init.released ? releasePool[origin.protocol] : pooled[origin.protocol],",
    tests: ["test/upstreams.test.ts"],
    filter: "a POST goes on a connection of its own",
    runtimes: ["deno"], // the Deno adapter's client
  },
  {
    name: "a client that leaves does not cancel its in-flight upstream request (only held ones)",
    file: "src/http/hold.ts",
    from: "        signal: req.signal,\n",
    to: "        signal: wasHeld ? req.signal : new AbortController().signal,\n",
    tests: ["test/cancel.test.ts"],
    filter: "HTTP/1.1: a client that leaves mid-request cancels",
  },
  {
    name: "Deno's upstream client resends a request it aborted (its pooled socket closed before a head)",
    file: "src/runtime/node-client.ts",
    from: "      noResend(req);\n      req.on(\"socket\", (s) => s.destroy());\n",
    to: "",
    tests: ["test/cancel.test.ts"],
    filter: "HTTP/1.1: a client that leaves mid-request cancels",
    runtimes: ["deno"],
  },
  {
    name: "Deno's upstream client retries a streamed body on a new connection (never settles)",
    file: "src/runtime/node-client.ts",
    from: "    if (init.body instanceof ReadableStream) noResend(req);\n",
    to: "",
    tests: ["test/hold.test.ts"],
    filter: "a streamed body \\(past maxBodyBuffer\\)",
    runtimes: ["deno"],
  },
  {
    name: "the TLS server behind the front door does not count as listening (Deno drops kept-alive connections)",
    file: "src/serve/front-door.ts",
    from: "  Object.defineProperty(tls, \"listening\", { get: () => door.listening, configurable: true });\n",
    to: "",
    tests: ["test/tls.test.ts"],
    filter: "plain HTTP sent to the HTTPS port gets a 400",
    runtimes: ["deno"], // Bun's server keeps them alive either way
  },
  {
    name: "Bun's upstream fetch keeps a fresh request's connection alive (pooled)",
    file: "src/runtime/bun.ts",
    from: "keepalive: !init.fresh,",
    to: "keepalive: true,",
    tests: ["test/upstreams.test.ts"],
    filter: "a POST goes on a connection of its own",
    runtimes: ["bun"],
  },
  {
    name: "resume when the shared state (Redis) is lost",
    file: "src/fleet/fleet.ts",
    from: "        this.lastError = error;\n        this.markFirst();",
    to: "        this.lastError = error;\n        d.control.resume();\n        this.markFirst();",
    tests: ["test/fleet.test.ts"],
    filter: "Redis killed while requests are held",
  },
  {
    name: "release held requests to the old upstream after a reload",
    file: "src/http/hold.ts",
    from: "  for (;;) {\n    snap = state.current;\n",
    to: "  for (;;) {\n    snap = { ...state.current, upstreams: snap.upstreams };\n",
    tests: ["test/hold.test.ts"],
    // Held until tryDuration (30 s) with the bug: the slowest mutant; one test is enough.
    filter: "POST /reload moves held requests to the new upstream",
  },
  {
    name: "replay a held request's body without its bytes (zeroed)",
    file: "src/http/hold.ts",
    from: "target, method: req.method, headers, body, fresh,",
    to: "target, method: req.method, headers, fresh,\n        body: wasHeld && body.kind === \"buffered\" ? { kind: \"buffered\" as const, bytes: new Uint8Array(body.bytes.byteLength) } : body,",
    tests: ["test/hold.test.ts"],
    filter: "held requests \\(GET and POST\\) are answered when the upstream starts",
  },
  {
    name: "round-robin stuck on the first ready upstream",
    file: "src/apps/state.ts",
    from: "this.rr = (this.rr + i + 1) % list.length;",
    to: "this.rr = 0;",
    tests: ["test/upstreams.test.ts"],
    filter: "round-robin",
  },
  {
    name: "a down upstream is not probed while another carries the traffic (never rejoins)",
    file: "src/apps/state.ts",
    from: "        return u;\n      }\n      u.ensureProbe();\n",
    to: "        return u;\n      }\n",
    tests: ["test/upstreams.test.ts"],
    filter: "failover",
  },
  {
    name: "a refused connection counted as 'may have been sent' (a POST fails instead of failing over or being held)",
    file: "src/http/errors.ts",
    from: "if (CONNECT_CODES.has(code)) return \"connect\";",
    to: "if (CONNECT_CODES.has(code)) return \"after-send\";",
    tests: ["test/upstreams.test.ts"],
    filter: "failover",
    // Bun reports refused with a code; Deno's node:http client too (ECONNREFUSED).
  },
  {
    name: "the edge entry leaves Deno KV's watch open on SIGTERM (deno serve never exits)",
    file: "src/edge.ts",
    from: "      fleet?.close();\n",
    to: "",
    tests: ["test/edge-kv.test.ts"],
    filter: "reaches the requests held in the other",
    runtimes: ["deno"], // the edge runs under deno serve whichever runtime runs the test; once is enough
  },
  {
    name: "maxHeld not enforced",
    file: "src/http/hold.ts",
    from: "if (state.held >= snap.config.maxHeld) {",
    to: "if (false && state.held >= snap.config.maxHeld) {",
    tests: ["test/hold.test.ts"],
    filter: "past maxHeld",
  },
];

const argv = process.argv.slice(2);
const only = ["deno", "bun"].includes(argv[0]) ? argv.shift() : null;
const runtimes = only ? [only] : ["deno", "bun"];
const chosen = argv.length ? MUTANTS.filter((m) => argv.some((a) => m.name.includes(a))) : MUTANTS;
const bin = (name) => `${root}node_modules/.bin/${name}`;

function run(cmd, args, cwd) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
    let out = "";
    child.stdout.on("data", (d) => out += d);
    child.stderr.on("data", (d) => out += d);
    child.on("close", (code) => resolve({ code, out }));
  });
}

/** Runs the mutant's tests on one runtime in `dir`; returns counts and the names of the failed tests. */
async function runTests(runtime, m, dir) {
  if (runtime === "deno") {
    const r = await run(bin("deno"), ["test", "-A", "--no-check", ...m.tests, "--filter", `/${m.filter}/`], dir);
    const s = [...r.out.matchAll(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].pop();
    const failures = r.out.includes(" FAILURES ") ? r.out.slice(r.out.lastIndexOf(" FAILURES ")) : "";
    const names = [...failures.matchAll(/^(.+?) => \.\/test\//gm)].map((x) => x[1]);
    return { code: r.code, passed: s ? Number(s[1]) : null, failed: s ? Number(s[2]) : null, names, out: r.out };
  }
  const r = await run(bin("bun"), ["test", "--timeout", "120000", ...m.tests.map((t) => `./${t}`), "-t", m.filter], dir);
  const p = [...r.out.matchAll(/^\s*(\d+) pass$/gm)].pop();
  const f = [...r.out.matchAll(/^\s*(\d+) fail$/gm)].pop();
  const names = [...r.out.matchAll(/^\(fail\) (.+?)(?: \[[\d.]+m?s\])?$/gm)].map((x) => x[1]);
  return { code: r.code, passed: p ? Number(p[1]) : null, failed: f ? Number(f[1]) : null, names, out: r.out };
}

async function scratchCopy() {
  const dir = await mkdtemp(join(tmpdir(), "holdup-mutant-"));
  for (const name of ["src", "test", "scripts", "package.json", "deno.json"]) {
    await cp(join(root, name), join(dir, name), { recursive: true });
  }
  await symlink(join(root, "node_modules"), join(dir, "node_modules"));
  return dir;
}

const t0 = performance.now();
let killed = 0, survived = 0, broken = 0;
const rows = [];
for (const m of chosen) {
  const dir = await scratchCopy();
  try {
    const path = join(dir, m.file);
    const text = await readFile(path, "utf8");
    const found = text.split(m.from).length - 1;
    if (found !== 1) {
      broken++;
      console.log(`BROKEN  ${m.name}: its text is found ${found} times in ${m.file} (must be exactly once); update the mutant in scripts/mutants.mjs\n        text: ${JSON.stringify(m.from)}`);
      continue;
    }
    await writeFile(path, text.replace(m.from, () => m.to));
    for (const rt of runtimes.filter((r) => !m.runtimes || m.runtimes.includes(r))) {
      const t = performance.now();
      const r = await runTests(rt, m, dir);
      const secs = ((performance.now() - t) / 1000).toFixed(1);
      if (r.passed === null || r.passed + r.failed === 0) {
        broken++;
        console.log(`BROKEN  [${rt}] ${m.name}: no test ran (filter ${JSON.stringify(m.filter)} on ${m.tests.join(" ")}, or the mutant does not load) (${secs}s)\n${r.out.slice(-1500)}`);
      } else if (r.code !== 0 && r.failed > 0) {
        killed++;
        console.log(`killed  [${rt}] ${m.name} (${secs}s) by: ${r.names.join("; ") || "?"}`);
        rows.push({ mutant: m.name, runtime: rt, killedBy: r.names, seconds: Number(secs) });
      } else {
        survived++;
        console.log(`SURVIVED [${rt}] ${m.name} (${secs}s): ${r.passed} test(s) of ${m.tests.join(" ")} /${m.filter}/ passed with this bug planted`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
const total = ((performance.now() - t0) / 1000).toFixed(0);
if (survived || broken) console.log("the mutation check failed: every planted bug must be caught by its test on both runtimes");
console.log(`mutants: ${killed} killed, ${survived} survived, ${broken} broken (${total}s)`);
process.exit(survived || broken ? 1 : 0);
