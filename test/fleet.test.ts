/**
 * A fleet of holdups sharing one real redis-server: three processes (one
 * Deno, two Bun — whichever runtime runs the test), each holding requests;
 * a change sent to one reaches the requests held by all of them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort, type Proxy, ROOT, startProxy, startRedis, startUpstream, until } from "./helpers.ts";

const BIN = { deno: `${ROOT}node_modules/.bin/deno`, bun: `${ROOT}node_modules/.bin/bun` };
const PERMS = ["--allow-net", "--allow-read", "--allow-env"];

/** Three instances: one Deno, two Bun, all with `args`. */
async function fleet(args: (i: number) => string[]): Promise<Proxy[]> {
  const runtimes = ["deno", "bun", "bun"] as const;
  return await Promise.all(runtimes.map((rt, i) => {
    const entry = "src/proxy.ts";
    const command: [string, string[]] = rt === "deno" ? [BIN.deno, ["run", ...PERMS, entry]] : [BIN.bun, [entry]];
    return startProxy(args(i), { command });
  }));
}

const held = (p: Proxy) => p.status().then((s) => s.held);

test("a reload, a pause/resume and a stop sent to one instance reach the requests held by all three", async () => {
  const redis = await startRedis();
  const dead = await freePort();
  const up = await startUpstream((req, res) => res.end(`new ${req.url}`));
  const ps = await fleet(() => ["-u", `:${dead}`, "--try-interval", "10s", "--state", redis.url]);
  try {
    // Held on every instance, for a dead upstream.
    const answers = ps.map((p, i) => fetch(`${p.url}/held${i}`).then(async (r) => [r.status, await r.text()]));
    await until("one held on each", async () => (await Promise.all(ps.map(held))).every((n) => n === 1));
    // A reload with a body sent to the second one moves all three.
    const r = await ps[1].admin("POST", "/reload", { upstreams: [up.url] });
    assert.equal(r.status, 200);
    assert.deepEqual(await Promise.all(answers), [[200, "new /held0"], [200, "new /held1"], [200, "new /held2"]]);
    for (const p of ps) assert.deepEqual(((await p.status()).config as { upstreams: string[] }).upstreams, [up.url]);

    // Pause on the third: all three hold; resume on the first: all three release.
    assert.equal((await ps[2].admin("POST", "/pause")).status, 200);
    await until("paused everywhere", async () => (await Promise.all(ps.map((p) => p.status()))).every((s) => s.mode === "paused"));
    const pausedAnswers = ps.map((p) => fetch(`${p.url}/p`).then((r) => r.status));
    await until("one held on each", async () => (await Promise.all(ps.map(held))).every((n) => n === 1));
    assert.equal((await ps[0].admin("POST", "/resume")).status, 200);
    assert.deepEqual(await Promise.all(pausedAnswers), [200, 200, 200]);

    // Stop with a message on the first: every instance answers 503 with it.
    assert.equal((await ps[0].admin("POST", "/stop", { message: "Back soon" })).status, 200);
    await until("stopped everywhere", async () => (await Promise.all(ps.map((p) => p.status()))).every((s) => s.mode === "stopped"));
    for (const p of ps) {
      const s = await fetch(`${p.url}/x`);
      assert.equal(s.status, 503);
      assert.match(await s.text(), /Back soon/);
    }
    assert.equal((await ps[1].admin("POST", "/resume")).status, 200);
    await until("running everywhere", async () => (await Promise.all(ps.map((p) => p.status()))).every((s) => s.mode === "running"));
  } finally {
    await Promise.all(ps.map((p) => p.stop()));
    await up.close();
    await redis.stop();
  }
});

test("an upstream that comes up is probed by one instance and releases the requests held on all three", async () => {
  const redis = await startRedis();
  const port = await freePort();
  // Only the first instance probes often; the others would wait 60 s for their next probe.
  const ps = await fleet((i) => ["-u", `:${port}`, "--try-interval", i === 0 ? "100ms" : "60s", "--try-duration", "50s", "--state", redis.url]);
  let up;
  try {
    const answers = ps.map((p, i) => fetch(`${p.url}/r${i}`).then(async (r) => [r.status, await r.text()]));
    await until("one held on each", async () => (await Promise.all(ps.map(held))).every((n) => n === 1));
    const t0 = performance.now();
    up = await startUpstream((req, res) => res.end(`up ${req.url}`), port);
    assert.deepEqual(await Promise.all(answers), [[200, "up /r0"], [200, "up /r1"], [200, "up /r2"]]);
    assert.ok(performance.now() - t0 < 20_000, "released long before the others' own next probe");
  } finally {
    await Promise.all(ps.map((p) => p.stop()));
    await up?.close();
    await redis.stop();
  }
});

test("Redis killed while requests are held and a pause is in force: with the upstream up, they stay held and the mode stays paused; restarted, the instances resynchronise", async () => {
  const redis = await startRedis();
  // The upstream is up the whole time: only the pause holds requests, so losing it would release them.
  const up = await startUpstream((_q, res) => res.end("ok"));
  const ps = await fleet(() => ["-u", up.url, "--try-interval", "100ms", "--try-duration", "60s", "--state", redis.url]);
  let redis2;
  const modes = async () => (await Promise.all(ps.map((p) => p.status()))).map((s) => s.mode).join();
  try {
    assert.deepEqual(await Promise.all(ps.map((p) => fetch(`${p.url}/before`).then((r) => r.status))), [200, 200, 200]);
    assert.equal((await ps[0].admin("POST", "/pause")).status, 200);
    await until("paused everywhere", async () => (await modes()) === "paused,paused,paused");
    const answers = ps.map((p, i) => fetch(`${p.url}/k${i}`).then((r) => r.status));
    await until("one held on each", async () => (await Promise.all(ps.map(held))).every((n) => n === 1));
    await redis.stop();
    await until("every instance noticed", async () =>
      (await Promise.all(ps.map((p) => p.status()))).every((s) => (s.state as { connected: boolean }).connected === false));
    // A change sent while the engine is away is refused, not applied here only.
    const refused = await ps[1].admin("POST", "/resume");
    assert.equal(refused.status, 503);
    assert.match((await refused.json()).error, /unreachable/);
    // Requests that arrive during the outage are held too; nothing reached the upstream since the pause.
    const during = ps.map((p, i) => fetch(`${p.url}/during${i}`).then((r) => r.status));
    await until("two held on each", async () => (await Promise.all(ps.map(held))).every((n) => n === 2), 5_000);
    assert.equal(await modes(), "paused,paused,paused", "the mode stays paused on the last known state");
    assert.equal((await Promise.all(ps.map(held))).join(), "2,2,2", "held requests stay held on the last known state");
    assert.equal(up.received.filter((r) => r.url !== "/before").length, 0, "nothing was released to the upstream");
    // Back: the instances resynchronise, and a resume sent to any of them reaches all.
    redis2 = await startRedis(redis.port);
    await until("every instance reconnected", async () =>
      (await Promise.all(ps.map((p) => p.status()))).every((s) => (s.state as { connected: boolean }).connected === true), 15_000);
    assert.equal(await modes(), "paused,paused,paused");
    assert.equal((await ps[2].admin("POST", "/resume")).status, 200);
    assert.deepEqual(await Promise.all(answers), [200, 200, 200]);
    assert.deepEqual(await Promise.all(during), [200, 200, 200]);
  } finally {
    await Promise.all(ps.map((p) => p.stop()));
    await up.close();
    await redis2?.stop();
    await redis.stop();
  }
});
