/**
 * Deploys beyond the happy path (test/apps.test.ts has the health gate, the
 * switch and the drain): a second deploy of the same app while one runs (409)
 * and of another app (runs), a POST cut by the drain (502, never resent),
 * WebSockets on the replaced upstream closed with 1012, and a deploy sent to
 * one holdup of a fleet sharing Redis switching the other.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, type Proxy, rawRequest, startProxy, startRedis, startUpstream, type Upstream, until } from "./helpers.ts";
import { open, websocketd } from "./ws-helpers.ts";

/** An upstream named `name` whose /up answers 503 until `healthy()`. */
async function gated(name: string): Promise<Upstream & { healthy(): void }> {
  let ok = false;
  const up = await startUpstream((req, res) => {
    if (req.url === "/up") {
      res.writeHead(ok ? 200 : 503);
      return res.end(ok ? "up" : "starting");
    }
    res.end(`${name} ${req.url}`);
  });
  return Object.assign(up, { healthy: () => void (ok = true) });
}

const deploy = (p: Proxy, body: Record<string, unknown>) =>
  p.admin("POST", "/deploy", body).then(async (r) => ({ status: r.status, body: await r.json() }));

test("deploys are serialised per app: a second deploy of the same app while one runs gets 409 and changes nothing; another app's runs", async () => {
  const [web1, api1, api2] = await Promise.all(["web1", "api1", "api2"].map((n) => startUpstream((req, res) => res.end(`${n} ${req.url}`))));
  const web2 = await gated("web2");
  const dir = await mkdtemp(join(tmpdir(), "holdup-deploy-"));
  const file = join(dir, "holdup.json");
  await writeFile(file, JSON.stringify({
    apps: [
      { name: "web", hosts: ["web.test"], upstreams: [web1.url] },
      { name: "api", hosts: ["api.test"], upstreams: [api1.url] },
    ],
  }));
  const proxy = await startProxy(["-c", file]);
  try {
    const first = deploy(proxy, { app: "web", upstreams: [web2.url], healthPath: "/up" });
    await until("the first deploy waits for health", async () =>
      ((await proxy.status()).apps as Array<{ name: string; deploying: { phase: string } | null }>).find((a) => a.name === "web")!.deploying?.phase === "health");
    const second = await deploy(proxy, { app: "web", upstreams: [api2.url] });
    assert.equal(second.status, 409);
    assert.match(second.body.error, /a deploy of web is already running \(health\)/);
    // Another app deploys meanwhile.
    const other = await deploy(proxy, { app: "api", upstreams: [api2.url] });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    web2.healthy();
    const done = await first;
    assert.equal(done.status, 200, JSON.stringify(done.body));
    // web went where the first deploy said, never where the refused one did.
    const get = async (host: string, path: string) => (await rawRequest(proxy.port, `GET ${path} HTTP/1.1\nHost: ${host}\nConnection: close`)).body.toString();
    assert.equal(await get("web.test", "/w"), "web2 /w");
    assert.equal(await get("api.test", "/a"), "api2 /a");
    assert.ok(!api2.received.some((r) => r.headers.host === "web.test"), "the refused deploy sent web's requests nowhere");
  } finally {
    await proxy.stop();
    for (const u of [web1, api1, api2, web2]) await u.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a POST cut by the drain is answered 502 and never resent to the new upstream", async () => {
  const old = await startUpstream((req, res) => {
    if (req.url !== "/pay") res.end(`old ${req.url}`); // /pay: never answered
  });
  const next = await startUpstream((req, res) => res.end(`new ${req.url}`));
  const proxy = await startProxy(["-u", old.url]);
  try {
    const pay = fetch(proxy.url + "/pay", { method: "POST", body: "amount=10" }).then(async (r) => [r.status, await r.text()]);
    await until("the POST reached the old upstream", () => old.received.some((r) => r.url === "/pay"));
    const d = await deploy(proxy, { app: "default", upstreams: [next.url], drainTimeout: "300ms" });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.deepEqual([d.body.drained, d.body.cut], [0, 1]);
    const [status, text] = await pay;
    assert.equal(status, 502);
    assert.match(text as string, /^holdup: /);
    assert.equal(old.received.filter((r) => r.url === "/pay").length, 1);
    assert.equal(next.received.filter((r) => r.url === "/pay").length, 0, "a POST that may have been processed is not resent");
    const line = await proxy.waitForLine("the 502 access line", (l) => l.msg === "request" && l.path === "/pay");
    assert.equal(line.status, 502);
  } finally {
    await proxy.stop();
    await old.close();
    await next.close();
  }
});

test("a deploy closes the WebSockets on the replaced upstream with 1012 after drainTimeout; a reconnect lands on the new one", async () => {
  const a = await websocketd();
  const b = await websocketd(undefined, "sed", "-u", "s/^/B:/");
  const proxy = await startProxy(["-u", a.url]);
  try {
    const ws = `ws://127.0.0.1:${proxy.port}/live`;
    const c = await open(ws);
    assert.equal(await c.echo("before"), "before");
    const t0 = performance.now();
    const d = await deploy(proxy, { app: "default", upstreams: [b.url], drainTimeout: "500ms" });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    // Still on A until the drain ends.
    assert.equal(await c.echo("during"), "during");
    const closed = await c.closed;
    assert.equal(closed.code, 1012);
    // The deploy's drainTimeout (500 ms), not the config's 30 s: well before it, spread included (5 s).
    assert.ok(closed.at - t0 >= 450 && closed.at - t0 < 20_000, `closed ${Math.round(closed.at - t0)} ms after the deploy`);
    const line = await proxy.waitForLine("its log line", (l) => l.msg === "websocket" && l.close_code === 1012);
    assert.equal(line.closed_by, "holdup");
    assert.equal(line.upstream, a.url);
    const again = await open(ws);
    assert.equal(await again.echo("after"), "B:after");
    again.ws.close();
    await again.closed;
  } finally {
    await proxy.stop();
    await a.stop();
    await b.stop();
  }
});

test("fleet: a deploy sent to one holdup switches the other (shared Redis): its held and new requests go to the new upstream", async () => {
  const redis = await startRedis();
  const dead = await freePort();
  const next = await startUpstream((req, res) => res.end(`new ${req.url}`));
  const ps = await Promise.all([0, 1].map(() => startProxy(["-u", `:${dead}`, "--try-interval", "10s", "--state", redis.url])));
  try {
    const held = ps.map((p, i) => fetch(`${p.url}/held${i}`).then(async (r) => [r.status, await r.text()]));
    await until("one held on each", async () => (await Promise.all(ps.map((p) => p.status()))).every((s) => s.held === 1));
    const d = await deploy(ps[0], { app: "default", upstreams: [next.url] });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.deepEqual(await Promise.all(held), [[200, "new /held0"], [200, "new /held1"]]);
    const s1 = await ps[1].status();
    assert.deepEqual((s1.config as { upstreams: string[] }).upstreams, [next.url]);
    assert.equal(await (await fetch(ps[1].url + "/later")).text(), "new /later");
  } finally {
    await Promise.all(ps.map((p) => p.stop()));
    await next.close();
    await redis.stop();
  }
});
