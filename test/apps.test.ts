/**
 * Several apps behind one holdup (routing by host and path prefix, each with
 * its own mode) and the deploy flow: health gate, atomic switch, drain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, rawRequest, startProxy, startUpstream, type Upstream, until } from "./helpers.ts";

type AppStatus = { name: string; held: number; deploying: { phase: string } | null };
const appsOf = async (p: Awaited<ReturnType<typeof startProxy>>) => (await p.status()).apps as AppStatus[];

const named = (name: string) => (req: { url?: string }, res: { end(t: string): void }) => res.end(`${name} ${req.url}`);

async function withConfig<T>(config: unknown, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "holdup-apps-"));
  const file = join(dir, "holdup.json");
  await writeFile(file, JSON.stringify(config));
  try {
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function get(port: number, host: string, path = "/"): Promise<[number, string]> {
  const r = await rawRequest(port, `GET ${path} HTTP/1.1\nHost: ${host}\nConnection: close`);
  return [r.status, r.body.toString()];
}

test("apps by host, wildcard host and path prefix; unknown host 404; pausing one app never holds another", async () => {
  const [web, api, docs, any] = await Promise.all(["web", "api", "docs", "any"].map((n) => startUpstream(named(n))));
  const config = {
    // The top-level upstream is every app's default: a lookup that fell back to a default app would reach it.
    upstreams: [any.url],
    apps: [
      { name: "web", hosts: ["example.com", "www.example.com"], upstreams: [web.url] },
      { name: "api", hosts: ["example.com"], pathPrefix: "/api", stripPrefix: true, upstreams: [api.url] },
      { name: "docs", hosts: ["*.docs.example.com"], upstreams: [docs.url], tryDuration: "2s" },
    ],
  };
  await withConfig(config, async (file) => {
    const proxy = await startProxy(["-c", file]);
    try {
      assert.deepEqual(await get(proxy.port, "example.com", "/x"), [200, "web /x"]);
      assert.deepEqual(await get(proxy.port, "WWW.example.com:8080", "/"), [200, "web /"]);
      assert.deepEqual(await get(proxy.port, "example.com", "/api/users?id=1"), [200, "api /users?id=1"]);
      assert.deepEqual(await get(proxy.port, "example.com", "/apix"), [200, "web /apix"], "a prefix matches whole segments");
      assert.deepEqual(await get(proxy.port, "v2.docs.example.com", "/guide"), [200, "docs /guide"]);
      const seen = [web, api, docs, any].map((u) => u.received.length);
      const [status, body] = await get(proxy.port, "unknown.example", "/");
      assert.equal(status, 404);
      assert.match(body, /no app answers host "unknown.example"/);
      assert.deepEqual([web, api, docs, any].map((u) => u.received.length), seen, "the unknown host reached no upstream");
      assert.ok(![web, api, docs, any].some((u) => u.received.some((r) => r.headers.host === "unknown.example")));

      // Pause web only: its requests are held, the others are served at once.
      const paused = await proxy.admin("POST", "/pause?app=web");
      assert.equal(paused.status, 200);
      const held = get(proxy.port, "example.com", "/held");
      await until("web holds one", async () => (await appsOf(proxy)).find((a) => a.name === "web")!.held === 1);
      assert.deepEqual(await get(proxy.port, "example.com", "/api/ok"), [200, "api /ok"]);
      assert.deepEqual(await get(proxy.port, "a.docs.example.com", "/ok"), [200, "docs /ok"]);
      const s = await proxy.status();
      assert.equal(s.mode, "mixed");
      assert.equal((await proxy.admin("POST", "/pause?app=nope")).status, 404);
      await proxy.admin("POST", "/resume?app=web");
      assert.deepEqual(await held, [200, "web /held"]);

      // Metrics carry the app label.
      const metrics = await (await proxy.admin("GET", "/metrics")).text();
      assert.match(metrics, /holdup_requests_total\{app="api",code="200",class="2xx"\} 2/);
      assert.match(metrics, /holdup_requests_total\{app="",code="404",class="4xx"\} 1/);
    } finally {
      await proxy.stop();
    }
  });
  for (const u of [web, api, docs, any]) await u.close();
});

test("POST /pause, /resume and /stop act on the app named in the JSON body or ?app=, never on every app by accident", async () => {
  const config = { apps: [{ name: "a", hosts: ["a.example"], upstreams: ["http://127.0.0.1:9"] }, { name: "b", hosts: ["b.example"], upstreams: ["http://127.0.0.1:9"] }] };
  await withConfig(config, async (file) => {
    const proxy = await startProxy(["-c", file]);
    const modes = async () => Object.fromEntries((await appsOf(proxy)).map((a) => [a.name, (a as unknown as { mode: string }).mode]));
    try {
      assert.equal((await proxy.admin("POST", "/pause", { app: "a" })).status, 200);
      assert.deepEqual(await modes(), { a: "paused", b: "running" }, "the body's app only");
      assert.equal((await proxy.admin("POST", "/stop", { app: "b", message: "back soon" })).status, 200);
      assert.deepEqual(await modes(), { a: "paused", b: "stopped" });
      assert.equal((await proxy.admin("POST", "/resume", { app: "a" })).status, 200);
      assert.deepEqual(await modes(), { a: "running", b: "stopped" });
      assert.equal((await proxy.admin("POST", "/resume?app=b", { app: "b" })).status, 200, "both name the same app");
      assert.deepEqual(await modes(), { a: "running", b: "running" });

      // Refused, nothing changes: unknown keys, a name that is not one, two different names, an unknown app.
      const refused: Array<[string, unknown, number, RegExp]> = [
        ["/pause", { ap: "a" }, 400, /unknown key "ap"/],
        ["/pause", { app: "a", message: "x" }, 400, /unknown key "message"/],
        ["/stop", { app: "a", force: true }, 400, /unknown key "force"/],
        ["/pause", { app: 1 }, 400, /app: must be an app's name/],
        ["/pause", { app: "" }, 400, /app: must be an app's name/],
        ["/pause", ["a"], 400, /expected a JSON object/],
        ["/pause?app=a", { app: "b" }, 400, /name different apps/],
        ["/resume", { app: "nope" }, 404, /no app named "nope"; apps: a, b/],
        ["/stop", { app: "nope" }, 404, /no app named "nope"/],
        ["/pause?app=nope", undefined, 404, /no app named "nope"/],
      ];
      for (const [path, body, status, error] of refused) {
        const r = await proxy.admin("POST", path, body);
        assert.equal(r.status, status, `${path} ${JSON.stringify(body)}`);
        assert.match((await r.json()).error, error);
      }
      const plain = await proxy.admin("POST", "/pause", '{"app": "a"}', { "content-type": "text/plain" });
      assert.equal(plain.status, 415, "a body that is not declared JSON is refused, not ignored");
      assert.deepEqual(await modes(), { a: "running", b: "running" }, "no refused call changed anything");

      // Without an app anywhere: every app, as before.
      assert.equal((await proxy.admin("POST", "/pause")).status, 200);
      assert.deepEqual(await modes(), { a: "paused", b: "paused" });
      assert.equal((await proxy.admin("POST", "/resume", {})).status, 200);
      assert.deepEqual(await modes(), { a: "running", b: "running" });
    } finally {
      await proxy.stop();
    }
  });
});

test("an app's own healthPath is answered 200 by holdup while the app is paused", async () => {
  const up = await startUpstream(named("app"));
  const proxy = await startProxy(["-u", up.url, "--health-path", "/up"]);
  try {
    await proxy.admin("POST", "/pause");
    const [status, body] = await get(proxy.port, "a", "/up");
    assert.equal(status, 200);
    assert.match(body, /paused/);
    assert.equal(up.received.filter((r) => r.url === "/up" && r.headers["user-agent"] !== "holdup health check").length, 0);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

/** An upstream whose /up answers 503 until `healthy()` is called. */
async function gated(name: string, port = 0): Promise<Upstream & { healthy(): void }> {
  let ok = false;
  const up = await startUpstream((req, res) => {
    if (req.url === "/up") {
      res.writeHead(ok ? 200 : 503);
      return res.end(ok ? "up" : "starting");
    }
    res.end(`${name} ${req.url}`);
  }, port);
  return Object.assign(up, { healthy: () => void (ok = true) });
}

const deploy = (proxy: Awaited<ReturnType<typeof startProxy>>, body: Record<string, unknown>) =>
  proxy.admin("POST", "/deploy", { app: "default", healthPath: "/up", ...body }).then(async (r) => ({ status: r.status, body: await r.json() }));

test("deploy while 100 requests are held: every one is answered by the new upstream, with no probe between the gate and them", async () => {
  const dead = await freePort();
  // A 60 s interval: held requests that waited for the new upstream's next probe would still be waiting.
  const proxy = await startProxy(["-u", `:${dead}`, "--try-interval", "60s"]);
  const next = await gated("new");
  next.healthy();
  try {
    const held = Array.from({ length: 100 }, (_, i) => fetch(`${proxy.url}/r${i}`).then(async (r) => [r.status, await r.text()]));
    await until("100 held", async () => (await proxy.status()).held === 100);
    const d = await proxy.admin("POST", "/deploy", { app: "default", upstreams: [next.url], healthPath: "/up" });
    assert.equal(d.status, 200);
    const answers = await Promise.all(held);
    assert.ok(answers.every(([s, t], i) => s === 200 && t === `new /r${i}`), "all 100 answered by the new upstream");
    // In the order the new upstream saw them: the gate's one probe, then the held requests (the switch marks it ready:
    // no second probe before them).
    const urls = next.received.map((r) => r.url);
    assert.deepEqual(urls.slice(0, urls.findIndex((u) => u.startsWith("/r"))), ["/up"], urls.slice(0, 5).join(" "));
    assert.equal(urls.filter((u) => u.startsWith("/r")).length, 100);
  } finally {
    await proxy.stop();
    await next.close();
  }
});

test("deploy to an upstream that is not healthy yet: the old one serves meanwhile; after the switch every request goes to the new one", async () => {
  const old = await startUpstream(named("old"));
  const next = await gated("new");
  const proxy = await startProxy(["-u", old.url]);
  try {
    const pending = deploy(proxy, { upstreams: [next.url] });
    await until("the deploy waits for health", async () => (await appsOf(proxy))[0].deploying?.phase === "health");
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      assert.equal(await (await fetch(`${proxy.url}/during${i}`)).text(), `old /during${i}`);
      assert.ok(performance.now() - t0 < 1000, "served at once, not held");
    }
    next.healthy();
    const d = await pending;
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.deepEqual(d.body.replaced, [old.url]);
    for (let i = 0; i < 5; i++) assert.equal(await (await fetch(`${proxy.url}/after${i}`)).text(), `new /after${i}`);
    assert.equal(old.received.filter((r) => r.url.startsWith("/after")).length, 0);
    const s = await proxy.status();
    assert.deepEqual((s.config as { upstreams: string[] }).upstreams, [next.url]);
  } finally {
    await proxy.stop();
    await old.close();
    await next.close();
  }
});

test("deploy with the old upstream already gone: requests are held, then answered by the new one", async () => {
  const old = await startUpstream(named("old"));
  const next = await gated("new");
  const proxy = await startProxy(["-u", old.url, "--try-interval", "100ms"]);
  try {
    await old.close();
    const pending = deploy(proxy, { upstreams: [next.url] });
    await until("the deploy waits for health", async () => (await appsOf(proxy))[0].deploying?.phase === "health");
    const held = [1, 2, 3].map((i) => fetch(`${proxy.url}/h${i}`).then((r) => r.text()));
    await until("3 held", async () => (await proxy.status()).held === 3);
    next.healthy();
    assert.equal((await pending).status, 200);
    assert.deepEqual(await Promise.all(held), ["new /h1", "new /h2", "new /h3"]);
  } finally {
    await proxy.stop();
    await next.close();
  }
});

test("deploy to an upstream that never becomes healthy: 422 naming it, nothing changed, the old one still serves", async () => {
  const old = await startUpstream(named("old"));
  const next = await gated("new");
  const proxy = await startProxy(["-u", old.url]);
  try {
    const t0 = performance.now();
    const d = await deploy(proxy, { upstreams: [next.url], deployTimeout: "600ms" });
    assert.equal(d.status, 422);
    assert.equal(d.body.upstream, next.url);
    assert.match(d.body.error, /did not become healthy.*503.*nothing changed/);
    assert.ok(performance.now() - t0 < 5000);
    assert.equal(await (await fetch(`${proxy.url}/still`)).text(), "old /still");
    const s = await proxy.status();
    assert.equal(s.configVersion, 1);
    assert.equal(s.held, 0);
    assert.equal((await proxy.admin("POST", "/deploy", { app: "nope", upstreams: [next.url] })).status, 404);
    assert.equal((await proxy.admin("POST", "/deploy", { app: "default", upstreams: ["ftp://x"] })).status, 400);
  } finally {
    await proxy.stop();
    await old.close();
    await next.close();
  }
});

test("drain: a slow in-flight request finishes on the old upstream; one slower than drainTimeout is cut and resent", async () => {
  let releaseSlow!: () => void;
  const slowDone = new Promise<void>((r) => releaseSlow = r);
  const old = await startUpstream((req, res) => {
    if (req.url === "/slow") void slowDone.then(() => res.end("old slow"));
    else if (req.url === "/never") {/* never answers */}
    else res.end(`old ${req.url}`);
  });
  const next = await startUpstream(named("new"));
  const proxy = await startProxy(["-u", old.url]);
  try {
    // Finishes within the drain.
    const slow = fetch(`${proxy.url}/slow`).then((r) => r.text());
    await until("in flight", () => old.received.some((r) => r.url === "/slow"));
    const pending = proxy.admin("POST", "/deploy", { app: "default", upstreams: [next.url], drainTimeout: "10s" }).then((r) => r.json());
    await until("draining", async () => (await appsOf(proxy))[0].deploying?.phase === "drain");
    assert.equal(await (await fetch(`${proxy.url}/new-one`)).text(), "new /new-one", "new requests go to the new upstream during the drain");
    releaseSlow();
    assert.equal(await slow, "old slow");
    const d1 = await pending;
    assert.deepEqual([d1.drained, d1.cut], [1, 0]);

    // Cut after drainTimeout: a GET is resent to the new upstream within its deadline.
    await proxy.admin("POST", "/deploy", { app: "default", upstreams: [old.url] });
    const never = fetch(`${proxy.url}/never`).then((r) => r.text());
    await until("in flight to old", () => old.received.some((r) => r.url === "/never"));
    const d2 = await (await proxy.admin("POST", "/deploy", { app: "default", upstreams: [next.url], drainTimeout: "300ms" })).json();
    assert.deepEqual([d2.drained, d2.cut], [0, 1]);
    assert.equal(await never, "new /never");
  } finally {
    releaseSlow();
    await proxy.stop();
    await old.close();
    await next.close();
  }
});
