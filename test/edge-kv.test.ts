/**
 * Deno KV at the edge: the edge entry under `deno serve --parallel` with two
 * workers (isolates) and HOLDUP_STATE=kv:PATH. Deno KV exists only on Deno, so
 * under `bun test` this spawns node_modules/.bin/deno as well; on Bun the edge
 * entry refuses kv with a message that says to use Redis.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, nodeGet, ROOT, run, startProxy, startUpstream, until } from "./helpers.ts";

const DENO = `${ROOT}node_modules/.bin/deno`;
const BUN = `${ROOT}node_modules/.bin/bun`;
const TOKEN = "kv-test-token";
const auth = { authorization: `Bearer ${TOKEN}` };

interface EdgeStatus {
  held: number;
  config: { upstreams: string[] };
  state: { instance: string; connected: boolean; version: number };
}

/** GET /_holdup/status over `agent` (a kept-alive connection sticks to one isolate) or a fresh connection. */
function status(port: number, agent: http.Agent | false = false): Promise<EdgeStatus> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/_holdup/status", headers: auth, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => body += d);
      res.on("end", () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(e);
        }
      });
    }).on("error", reject);
  });
}

function reload(port: number, agent: http.Agent, body: unknown): Promise<{ status: number; json: EdgeStatus }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: "/_holdup/reload", method: "POST", headers: { ...auth, "content-type": "application/json" }, agent }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => text += d);
      res.on("end", () => resolve({ status: res.statusCode!, json: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

test("Deno KV at the edge: under deno serve --parallel, a reload that lands on one isolate reaches the requests held in the other", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-kv-"));
  const port = await freePort();
  const dead = await freePort();
  const up = await startUpstream((req, res) => res.end(`new ${req.url}`));
  const env = {
    DENO_JOBS: "2",
    HOLDUP_STATE: `kv:${join(dir, "state.kv")}`,
    HOLDUP_UPSTREAMS: `http://127.0.0.1:${dead}`,
    HOLDUP_TRY_INTERVAL: "60s",
    HOLDUP_TRY_DURATION: "50s",
    HOLDUP_ADMIN_TOKEN: TOKEN,
    HOLDUP_LOG: "json",
  };
  const args = ["serve", "--unstable-kv", "--parallel", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "--host", "127.0.0.1", "--port", String(port), "src/edge.ts"];
  const p = await startProxy([], { command: [DENO, args], rawArgs: true, port, env });
  const sticky = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const answers: Array<Promise<{ status: number; body: string }>> = [];
  try {
    // Both isolates started, each on the shared KV.
    await p.waitForLine("the second isolate", () => p.lines.filter((l) => l.msg === "holdup started (edge)").length === 2, 20_000);
    const here = (await status(port, sticky)).state.instance;
    // Requests held on fresh connections until the other isolate holds some.
    const seen = new Map<string, number>();
    const other = await until("a request held in the other isolate", async () => {
      for (let i = 0; i < 2; i++) {
        const n = answers.length;
        answers.push(nodeGet(`${p.url}/held${n}`).then((r) => ({ status: r.status, body: r.body.toString() })));
      }
      for (let i = 0; i < 4; i++) {
        const s = await status(port);
        seen.set(s.state.instance, s.held);
      }
      return [...seen].find(([id, held]) => id !== here && held > 0)?.[0];
    }, 30_000, 50);
    assert.notEqual(other, here);
    // The reload lands on `here` (the kept-alive connection): the held requests everywhere go to the new upstream.
    const r = await reload(port, sticky, { upstreams: [up.url] });
    assert.equal(r.status, 200);
    assert.equal(r.json.state.instance, here);
    const got = await Promise.all(answers);
    for (const [i, a] of got.entries()) assert.deepEqual([a.status, a.body], [200, `new /held${i}`]);
    // And the other isolate says so itself.
    await until("the other isolate on the new config", async () => {
      const s = await status(port);
      return s.state.instance === other && s.config.upstreams[0] === up.url && s.held === 0;
    }, 15_000, 10);
    assert.ok(p.lines.some((l) => l.msg === "reloaded" && String(l.trigger).startsWith("shared reload")), "the other isolate applied the shared reload");
  } finally {
    sticky.destroy();
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("Deno KV is refused clearly where it cannot work: on Bun, and by the command-line proxy (use Redis)", async () => {
  const bun = await run(BUN, ["src/edge.ts"], { env: { HOLDUP_STATE: "kv", HOLDUP_LOG: "json", PORT: String(await freePort()) } });
  assert.notEqual(bun.code, 0);
  assert.match(bun.stderr, /Bun has no Deno KV.*HOLDUP_STATE=redis:\/\//s);
  const cli = await run(DENO, ["run", "--allow-net", "--allow-read", "--allow-env", "src/proxy.ts", "--state", "kv", "--listen", "127.0.0.1:0"]);
  assert.equal(cli.code, 2);
  assert.match(cli.stderr, /edge entry only.*--state redis:\/\/host:6379/s);
  const noFlag = await run(DENO, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "src/edge.ts"], { env: { HOLDUP_STATE: "kv", HOLDUP_LOG: "json" } });
  assert.notEqual(noFlag.code, 0);
  assert.match(noFlag.stderr, /--unstable-kv/);
});
