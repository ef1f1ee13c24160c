/**
 * Operating holdup: the admin API (status, pause/resume/stop, reload, metrics,
 * token), the deploy sequence, and graceful shutdown — against the real process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { freePort, startProxy, startUpstream, until } from "./helpers.ts";

// parse-prometheus-text-format ships no types.
interface Sample {
  value?: string;
  labels?: Record<string, string>;
  count?: string;
  sum?: string;
}
interface Family {
  name: string;
  type: string;
  metrics: Sample[];
}
const parsePrometheusTextFormat = parsePrometheus as unknown as (text: string) => Family[];

const named = (name: string) => (_req: unknown, res: { end(s: string): void }) => res.end(name);

test("GET /status describes config, sources, mode, held count and each upstream", async () => {
  const up = await startUpstream(named("a"));
  const dead = await freePort();
  const proxy = await startProxy(["-u", up.url, "-u", `:${dead}`, "--try-interval", "100ms"]);
  try {
    assert.equal((await fetch(proxy.url + "/")).status, 200);
    const s = await proxy.status();
    assert.equal(s.configVersion, 1);
    assert.equal(s.mode, "running");
    assert.equal(s.paused, false);
    assert.equal(s.held, 0);
    assert.match(String(s.holdup), /^\d+\.\d+\.\d+/);
    const config = s.config as Record<string, unknown>;
    assert.deepEqual(config.upstreams, [up.url, `http://127.0.0.1:${dead}`]);
    assert.equal(config.tryInterval, "100ms");
    assert.equal((s.sources as Record<string, string>).tryInterval, "flag");
    assert.equal((s.sources as Record<string, string>).tryDuration, "default");
    const [a, b] = s.upstreams;
    assert.equal(a.reachable, true);
    assert.equal(a.inFlight, 0);
    // The dead one was probed when the first request looked for a ready upstream.
    await until("dead upstream marked unreachable", async () => (await proxy.status()).upstreams[1].status === "down");
    const b2 = (await proxy.status()).upstreams[1];
    assert.equal(b2.reachable, false);
    assert.match(String(b2.lastError), /refused|ECONNREFUSED|connect/i);
    assert.equal(b.url, `http://127.0.0.1:${dead}`);
    const health = await proxy.admin("GET", "/healthz");
    assert.equal(health.status, 200);
    const missing = await proxy.admin("GET", "/nope");
    assert.equal(missing.status, 404);
    assert.ok((await missing.json()).endpoints.includes("POST /pause"));
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("pause holds requests although the upstream is up; resume releases them at once", async () => {
  const up = await startUpstream(named("app"));
  const proxy = await startProxy(["-u", up.url, "--try-interval", "20s"]);
  try {
    const paused = await (await proxy.admin("POST", "/pause")).json();
    assert.equal(paused.paused, true);
    const reqs = Array.from({ length: 5 }, (_, i) => fetch(`${proxy.url}/p${i}`).then(async (r) => ({ status: r.status, text: await r.text() })));
    await until("5 held", async () => (await proxy.status()).held === 5);
    assert.equal(up.received.length, 0, "nothing reaches the upstream while paused");
    const t0 = performance.now();
    const resumed = await (await proxy.admin("POST", "/resume")).json();
    assert.equal(resumed.mode, "running");
    for (const r of await Promise.all(reqs)) assert.deepEqual(r, { status: 200, text: "app" });
    assert.ok(performance.now() - t0 < 3000, "released at once, not at an interval tick");
    await proxy.waitForLine("pause log", (l) => String(l.msg).startsWith("paused"));
    await proxy.waitForLine("resume log", (l) => String(l.msg).startsWith("resumed"));
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("paused past a request's deadline answers 503 with Retry-After", async () => {
  const up = await startUpstream(named("app"));
  const proxy = await startProxy(["-u", up.url, "--try-duration", "500ms"]);
  try {
    await proxy.admin("POST", "/pause");
    const r = await fetch(proxy.url + "/late");
    assert.equal(r.status, 503);
    assert.equal(r.headers.get("retry-after"), "5", "delay-seconds: the same 5 s as any request held past its deadline");
    assert.match(await r.text(), /paused/);
    assert.equal(up.received.length, 0);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("deploy sequence: pause, swap the upstream, resume — every held request reaches the new one", async () => {
  const oldUp = await startUpstream(named("old"));
  const newUp = await startUpstream(named("new"));
  const proxy = await startProxy(["-u", oldUp.url, "--try-interval", "20s"]);
  try {
    assert.equal(await (await fetch(proxy.url + "/before")).text(), "old");
    await proxy.admin("POST", "/pause");
    const reqs = Array.from({ length: 6 }, (_, i) =>
      fetch(`${proxy.url}/during${i}`, { method: i % 2 ? "POST" : "GET", body: i % 2 ? `body${i}` : undefined })
        .then(async (r) => ({ status: r.status, text: await r.text() }))
    );
    await until("6 held", async () => (await proxy.status()).held === 6);
    const reload = await (await proxy.admin("POST", "/reload", { upstreams: [newUp.url] })).json();
    assert.equal(reload.paused, true, "a reload while paused stays paused");
    assert.equal(reload.held, 6);
    assert.equal(newUp.received.length, 0);
    await proxy.admin("POST", "/resume");
    for (const r of await Promise.all(reqs)) assert.deepEqual(r, { status: 200, text: "new" });
    assert.equal(newUp.received.length, 6);
    assert.deepEqual(oldUp.received.map((r) => r.url), ["/before"]);
    assert.deepEqual(newUp.received.filter((r) => r.method === "POST").map((r) => r.body.toString()).sort(), ["body1", "body3", "body5"]);
  } finally {
    await proxy.stop();
    await oldUp.close();
    await newUp.close();
  }
});

test("stop answers 503 with the operator's message (HTML for browsers) until resume", async () => {
  const up = await startUpstream(named("app"));
  const proxy = await startProxy(["-u", up.url]);
  try {
    const bad = await proxy.admin("POST", "/stop", { msg: "typo" });
    assert.equal(bad.status, 400);
    const s = await (await proxy.admin("POST", "/stop", { message: "Back at 10:00 <UTC>" })).json();
    assert.equal(s.stopped, true);
    const plain = await fetch(proxy.url + "/x");
    assert.equal(plain.status, 503);
    assert.equal(plain.headers.get("retry-after"), "30", "delay-seconds: maintenance asks for 30 s");
    assert.match(await plain.text(), /^Back at 10:00 <UTC>\nrequest id: \S{24,}\n$/);
    const html = await fetch(proxy.url + "/x", { headers: { accept: "text/html,application/xhtml+xml" } });
    assert.equal(html.status, 503);
    assert.match(html.headers.get("content-type")!, /text\/html/);
    assert.match(await html.text(), /Back at 10:00 &#60;UTC&#62;/);
    assert.equal(up.received.length, 0);
    await proxy.admin("POST", "/resume");
    assert.equal(await (await fetch(proxy.url + "/x")).text(), "app");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("with a token, every admin call needs Authorization: Bearer", async () => {
  const up = await startUpstream(named("app"));
  const fromFlag = await startProxy(["-u", up.url, "--admin-token", "s3cret"]);
  const fromEnv = await startProxy(["-u", up.url], { env: { HOLDUP_ADMIN_TOKEN: "env-token" } });
  try {
    for (const [p, token] of [[fromFlag, "s3cret"], [fromEnv, "env-token"]] as const) {
      assert.equal((await p.admin("GET", "/status")).status, 401);
      assert.equal((await p.admin("POST", "/pause", undefined, { authorization: "Bearer wrong" })).status, 401);
      assert.equal((await p.admin("POST", "/pause", undefined, { authorization: `Bearer ${token}x` })).status, 401);
      const ok = await p.admin("GET", "/status", undefined, { authorization: `Bearer ${token}` });
      assert.equal(ok.status, 200);
      assert.equal((await ok.json()).config.admin.token, "(set)", "the token is never shown");
    }
    // Admin paths are not reachable through the proxy listener: they go upstream.
    const through = await fetch(fromFlag.url + "/status");
    assert.equal(await through.text(), "app");
    assert.equal(up.received.at(-1)!.url, "/status");
  } finally {
    await fromFlag.stop();
    await fromEnv.stop();
    await up.close();
  }
});

test("GET /metrics is valid Prometheus text with requests, held, hold time, attempts and reloads", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--try-interval", "50ms"]);
  let up: Awaited<ReturnType<typeof startUpstream>> | undefined;
  try {
    const held = fetch(proxy.url + "/held");
    await until("1 held", async () => (await proxy.status()).held === 1);
    const during = parsePrometheusTextFormat(await (await proxy.admin("GET", "/metrics")).text());
    const gauge = during.find((m) => m.name === "holdup_held_requests")!;
    assert.equal(Number(gauge.metrics[0].value), 1);
    up = await startUpstream(named("app"), port);
    assert.equal((await held).status, 200);
    assert.equal((await fetch(proxy.url + "/fast")).status, 200);
    await proxy.admin("POST", "/reload", { tryInterval: "1s" });
    await proxy.admin("POST", "/reload", { tryInterval: "nope" });

    const text = await (await proxy.admin("GET", "/metrics")).text();
    const families = parsePrometheusTextFormat(text);
    const family = (name: string) => {
      const f = families.find((m) => m.name === name);
      assert.ok(f, `${name} is exported`);
      return f!;
    };
    const requests = family("holdup_requests_total");
    assert.equal(requests.type, "COUNTER");
    const ok200 = requests.metrics.find((m) => m.labels?.code === "200");
    assert.equal(Number(ok200?.value), 2);
    assert.equal(ok200?.labels?.class, "2xx");
    const hist = family("holdup_hold_seconds");
    assert.equal(hist.type, "HISTOGRAM");
    // parse-prometheus-text-format drops _count and _sum of a labelled histogram: the +Inf bucket is the
    // count by definition, and the sum is read from the text.
    assert.equal(Number((hist.metrics[0] as { buckets?: Record<string, string> }).buckets?.["+Inf"]), 1, "one request was held");
    assert.ok(Number(/^holdup_hold_seconds_sum\{app="default"\} (\S+)$/m.exec(text)?.[1]) > 0);
    const attempts = family("holdup_upstream_attempts_total");
    assert.ok(Number(attempts.metrics[0].value) >= 2);
    assert.equal(attempts.metrics[0].labels?.upstream, `http://127.0.0.1:${port}`);
    assert.ok(Number(family("holdup_upstream_failures_total").metrics[0].value) >= 1);
    const reloads = family("holdup_reloads_total").metrics;
    assert.equal(Number(reloads.find((m) => m.labels?.result === "ok")?.value), 1);
    assert.equal(Number(reloads.find((m) => m.labels?.result === "failed")?.value), 1);
    assert.equal(Number(family("holdup_config_version").metrics[0].value), 2);
    assert.equal(Number(family("holdup_held_requests").metrics[0].value), 0);
  } finally {
    await proxy.stop();
    await up?.close();
  }
});

test("SIGTERM: held requests get 503 at once, in-flight ones finish, new connections are refused, exit 0", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const up = await startUpstream((_req, res) => {
    void released.then(() => res.end("slow done"));
  });
  const dead = await freePort();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const inflight = fetch(proxy.url + "/slow").then(async (r) => ({ status: r.status, text: await r.text() }));
    await until("in flight upstream", () => up.received.length === 1);
    // A second proxy's worth of held request: swap to a dead upstream for one request path.
    await proxy.admin("POST", "/reload", { upstreams: [`http://127.0.0.1:${dead}`] });
    const held = fetch(proxy.url + "/held").then(async (r) => ({ status: r.status, text: await r.text() }));
    await until("1 held", async () => (await proxy.status()).held === 1);
    proxy.signal("SIGTERM");
    const h = await held;
    assert.equal(h.status, 503);
    assert.match(h.text, /shutting down/);
    await proxy.waitForLine("shutdown log", (l) => String(l.msg).startsWith("shutting down"));
    await until("new connections refused", async () => {
      try {
        await fetch(proxy.url + "/new");
        return false;
      } catch {
        return true;
      }
    });
    assert.equal(proxy.child.exitCode, null, "still running while a request is in flight");
    release();
    assert.deepEqual(await inflight, { status: 200, text: "slow done" });
    assert.equal(await proxy.exited, 0);
  } finally {
    release();
    await proxy.stop();
    await up.close();
  }
});
