/**
 * GET /metrics families that test/admin.test.ts does not read, after real
 * traffic through two apps with shared state in Redis: upstream up and in
 * flight, WebSockets opened, draining and their bytes, deploys by result,
 * paused per app, and the shared-state engine's connection and version.
 * Parsed with parse-prometheus-text-format.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheus from "parse-prometheus-text-format";
import { freePort, type Proxy, startProxy, startRedis, startUpstream, until } from "./helpers.ts";
import { open, websocketd } from "./ws-helpers.ts";

// parse-prometheus-text-format ships no types.
interface Family {
  name: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string> }>;
}
const parse = parsePrometheus as unknown as (text: string) => Family[];

/** The value of `name` whose labels include `labels`; fails when the family or the series is missing. */
async function metrics(p: Proxy): Promise<(name: string, labels?: Record<string, string>) => number> {
  const families = parse(await (await p.admin("GET", "/metrics")).text());
  return (name, labels = {}) => {
    const f = families.find((x) => x.name === name);
    assert.ok(f, `${name} is exported`);
    const m = f!.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
    assert.ok(m, `${name}${JSON.stringify(labels)} in ${JSON.stringify(f!.metrics)}`);
    const v = Number(m!.value);
    assert.ok(Number.isFinite(v) && v >= 0, `${name}: ${m!.value}`);
    return v;
  };
}

test("metrics after traffic: upstream up and in flight, WebSockets opened/draining/bytes, deploys by result, paused per app, shared state", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const web = await startUpstream((req, res) => {
    if (req.url === "/slow") void released.then(() => res.end("slow"));
    else res.end("web");
  });
  const [liveA, liveB] = [await websocketd(), await websocketd()];
  const redis = await startRedis();
  const dead = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "holdup-metrics-"));
  const file = join(dir, "holdup.json");
  await writeFile(file, JSON.stringify({
    apps: [
      { name: "web", upstreams: [web.url, `http://127.0.0.1:${dead}`] },
      { name: "live", pathPrefix: "/live", upstreams: [liveA.url] },
    ],
  }));
  const proxy = await startProxy(["-c", file, "--state", redis.url]);
  try {
    let m = await metrics(proxy);
    assert.equal(m("holdup_state_connected"), 1);
    const version0 = m("holdup_state_version");

    // A request in flight on web; the dead upstream is found down.
    const slow = fetch(proxy.url + "/slow").then((r) => r.text());
    await until("in flight", () => web.received.some((r) => r.url === "/slow"));
    m = await metrics(proxy);
    assert.equal(m("holdup_upstream_in_flight", { app: "web", upstream: web.url }), 1);
    assert.equal(m("holdup_upstream_up", { app: "web", upstream: web.url }), 1);
    assert.equal(m("holdup_upstream_up", { app: "web", upstream: `http://127.0.0.1:${dead}` }), 0);
    release();
    assert.equal(await slow, "slow");
    m = await metrics(proxy);
    assert.equal(m("holdup_upstream_in_flight", { app: "web", upstream: web.url }), 0);

    // A WebSocket on live: opened, bytes both ways (frames: at least the payloads).
    const c = await open(`ws://127.0.0.1:${proxy.port}/live/socket`);
    const msgs = ["hello", "x".repeat(1000)];
    for (const s of msgs) assert.equal(await c.echo(s), s);
    m = await metrics(proxy);
    assert.equal(m("holdup_websockets_opened_total", { app: "live" }), 1);
    assert.equal(m("holdup_websockets_open", { app: "live", upstream: liveA.url }), 1);
    const payload = msgs.reduce((n, s) => n + s.length + 1, 0); // websocketd's lines end with \n
    const up = m("holdup_websocket_bytes_total", { app: "live", direction: "to_upstream" });
    const down = m("holdup_websocket_bytes_total", { app: "live", direction: "to_client" });
    assert.ok(up >= payload - msgs.length && up < payload + 100, `to_upstream ${up} bytes for ${payload} of payload`);
    assert.ok(down >= payload - msgs.length && down < payload + 100, `to_client ${down} bytes for ${payload} of payload`);
    assert.equal(m("holdup_websockets_draining", { app: "live" }), 0);

    // Deploys: one that never becomes healthy (failed), one to liveB (ok): the WebSocket on liveA drains.
    const bad = await proxy.admin("POST", "/deploy", { app: "live", upstreams: [`http://127.0.0.1:${dead}`], deployTimeout: "300ms" });
    assert.equal(bad.status, 422);
    const ok = await proxy.admin("POST", "/deploy", { app: "live", upstreams: [liveB.url], drainTimeout: "30s" });
    assert.equal(ok.status, 200, await ok.text());
    m = await metrics(proxy);
    assert.equal(m("holdup_deploys_total", { result: "ok" }), 1);
    assert.equal(m("holdup_deploys_total", { result: "failed" }), 1);
    assert.equal(m("holdup_websockets_draining", { app: "live" }), 1);
    assert.equal(m("holdup_websockets_open", { app: "live", upstream: liveA.url }), 1, "a draining WebSocket is still open on its removed upstream");
    assert.equal(m("holdup_upstream_up", { app: "live", upstream: liveB.url }), 1);

    // Pause web only.
    assert.equal((await proxy.admin("POST", "/pause?app=web")).status, 200);
    m = await metrics(proxy);
    assert.equal(m("holdup_paused", { app: "web" }), 1);
    assert.equal(m("holdup_paused", { app: "live" }), 0);
    assert.ok(m("holdup_state_version") > version0, "the deploy and the pause went through the shared state");

    c.ws.close(1000, "bye");
    await c.closed;
    await until("the drained WebSocket gone", async () => (await metrics(proxy))("holdup_websockets_draining", { app: "live" }) === 0);
    m = await metrics(proxy);
    assert.equal(m("holdup_websockets_open", { app: "live", upstream: liveB.url }), 0);
    assert.equal(m("holdup_websocket_closes_total", { app: "live", code: "1000" }), 1);

    // Redis gone: the gauge says so.
    await redis.stop();
    await until("state_connected 0", async () => (await metrics(proxy))("holdup_state_connected") === 0, 20_000, 100);
  } finally {
    release();
    await proxy.stop();
    await web.close();
    await liveA.stop();
    await liveB.stop();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
