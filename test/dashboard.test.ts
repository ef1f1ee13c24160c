/**
 * The dashboard: the page and its event stream (GET / and GET /events on the
 * admin listener), its buttons from its own origin and from a foreign one, a
 * real headless Chromium driven over the DevTools protocol (a raw WebSocket:
 * the runtime's global WebSocket, no puppeteer), a client that never reads,
 * and a holdup restart under an open stream.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { freePort, type Proxy, ROOT, RUNTIME, startProxy, startUpstream, until } from "./helpers.ts";
import { clientFrame, rawHandshake, serverFrame, websocketd } from "./ws-helpers.ts";
import { Browser } from "./browser.ts";

// ---------------------------------------------------------------- helpers

interface SseMessage {
  event: string;
  // deno-lint-ignore no-explicit-any
  data: any;
}

/** GET /events read with fetch() and a stream reader, as the page does. */
async function openEvents(base: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const res = await fetch(base + "/events", { headers, signal: abort.signal });
  assert.equal(res.status, 200, `GET /events answered ${res.status}`);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const queue: SseMessage[] = [];
  let ended = false;
  const parse = () => {
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data) queue.push({ event, data: JSON.parse(data) });
    }
  };
  const read = async (ms: number): Promise<boolean> => {
    let t: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      reader.read(),
      new Promise<"timeout">((res) => t = setTimeout(() => res("timeout"), ms)),
    ]).catch(() => ({ done: true as const, value: undefined }));
    clearTimeout(t);
    if (r === "timeout") return true;
    if (r.done) {
      ended = true;
      return false;
    }
    buf += r.value;
    parse();
    return true;
  };
  return {
    /** The next message matching `pred` (earlier ones are skipped). */
    async next(what: string, pred: (m: SseMessage) => boolean, ms = 5000): Promise<SseMessage> {
      const end = Date.now() + ms;
      for (;;) {
        while (queue.length) {
          const m = queue.shift()!;
          if (pred(m)) return m;
        }
        if (ended) throw new Error(`the event stream ended before ${what}`);
        const left = end - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${what}`);
        await read(left);
      }
    },
    /** Resolves with how long the stream took to end, or throws after `ms`. */
    async ended(ms: number): Promise<number> {
      const t0 = Date.now();
      while (!ended) {
        if (Date.now() - t0 > ms) throw new Error(`the event stream did not end within ${ms}ms`);
        await read(ms);
        queue.length = 0;
      }
      return Date.now() - t0;
    },
    close() {
      abort.abort();
      reader.cancel().catch(() => {});
    },
  };
}

/** A POST through node:http, so Origin can be set to anything (fetch may refuse to). */
function post(port: number, path: string, headers: Record<string, string>, body = ""): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(body)) }, agent: false }, (res) => {
      let text = "";
      res.on("data", (d) => text += d);
      res.on("end", () => {
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(text);
        } catch { /* not JSON */ }
        resolve({ status: res.statusCode!, json });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** VmRSS of a process. Read through `cat`: Deno lets only --allow-all read /proc/PID (--allow-run is granted). */
function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(execFileSync("cat", [`/proc/${pid}/status`], { encoding: "utf8" }));
  return m ? Number(m[1]) : NaN;
}

async function configFile(upstreams: string[]): Promise<{ path: string; write(u: string[]): Promise<void>; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "holdup-dash-"));
  const path = join(dir, "holdup.json");
  const write = (u: string[]) => writeFile(path, JSON.stringify({ upstreams: u }));
  await write(upstreams);
  return { path, write, remove: () => rm(dir, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------- tests

test("dashboard: GET / is the page with its controls; GET /events streams a snapshot, then the pause event", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const page = await fetch(proxy.adminUrl + "/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /script-src 'nonce-[^']+'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    const body = await page.text();
    for (const control of ['id="pause"', 'id="resume"', 'id="reload"', 'id="stop"', 'id="stopmessage"', 'id="held"', 'id="events"', "<svg"]) {
      assert.ok(body.includes(control), `the page has ${control}`);
    }
    assert.ok(body.includes(up.url), "server-rendered: the upstream is in the HTML");
    assert.ok(body.includes("holdup started"), "server-rendered: the start-up event is listed");
    assert.doesNotMatch(body, /<script src=|<link /, "everything inline");

    const events = await openEvents(proxy.adminUrl);
    try {
      const hello = await events.next("hello", (m) => m.event === "hello");
      assert.equal(hello.data.status.mode, "running");
      assert.equal(hello.data.status.upstreams[0].url, up.url);
      assert.ok(Array.isArray(hello.data.history.held));
      assert.ok(hello.data.events.some((e: { msg: string }) => e.msg.startsWith("holdup started")));
      const tick = await events.next("a per-second status", (m) => m.event === "status" && m.data.sample);
      assert.equal(typeof tick.data.sample.rps, "number");
      assert.equal((await proxy.admin("POST", "/pause")).status, 200);
      const log = await events.next("the pause event", (m) => m.event === "log");
      assert.match(log.data.msg, /^paused/);
      assert.match(log.data.time, /^\d{4}-\d\d-\d\dT/);
      const after = await events.next("a status after the pause", (m) => m.event === "status");
      assert.equal(after.data.mode, "paused");
    } finally {
      events.close();
    }
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("dashboard: the buttons' calls work from the page's own origin; the same calls from another loopback port get 403; a token hides everything", async () => {
  const up = await startUpstream();
  const cfg = await configFile([up.url]);
  const proxy = await startProxy(["-c", cfg.path]);
  const other = await freePort();
  const own = { origin: `http://127.0.0.1:${proxy.adminPort}` };
  const foreign = { origin: `http://127.0.0.1:${other}` };
  const json = { "content-type": "application/json" };
  try {
    const calls: Array<[string, Record<string, string>, string]> = [
      ["/pause", {}, ""],
      ["/resume", {}, ""],
      ["/stop", json, JSON.stringify({ message: "deploying" })],
      ["/reload", {}, ""],
    ];
    for (const [path, headers, body] of calls) {
      const before = await proxy.status();
      const refused = await post(proxy.adminPort, path, { ...foreign, ...headers }, body);
      assert.equal(refused.status, 403, `${path} from ${foreign.origin}`);
      const afterRefusal = await proxy.status();
      assert.equal(afterRefusal.mode, before.mode, `${path} from a foreign origin changed nothing`);
      assert.equal(afterRefusal.configVersion, before.configVersion);
      // A foreign page's no-preflight form: text/plain. Refused too.
      assert.equal((await post(proxy.adminPort, path, { ...foreign, "content-type": "text/plain" }, body)).status, 403);
      const ok = await post(proxy.adminPort, path, { ...own, ...headers }, body);
      assert.equal(ok.status, 200, `${path} from the page's origin: ${JSON.stringify(ok.json)}`);
    }
    const s = await proxy.status();
    assert.equal(s.mode, "stopped");
    assert.equal(s.stopMessage, "deploying");
    assert.equal(s.configVersion, 2, "the reload button re-read the file");
    assert.equal((await post(proxy.adminPort, "/resume", own)).status, 200);
  } finally {
    await proxy.stop();
  }

  // With a token the page is a shell that asks for it; the stream and the buttons need it.
  const secret = "s3cret-dash-token";
  const locked = await startProxy(["-u", up.url], { env: { HOLDUP_ADMIN_TOKEN: secret } });
  try {
    const page = await fetch(locked.adminUrl + "/");
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.ok(!html.includes(up.url), "no upstream in the page without the token");
    assert.ok(!html.includes("holdup started"), "no events in the page without the token");
    assert.ok(html.includes('data-token="required"'));
    assert.equal((await fetch(locked.adminUrl + "/events")).status, 401);
    assert.equal((await post(locked.adminPort, "/pause", { origin: `http://127.0.0.1:${locked.adminPort}` })).status, 401);
    const events = await openEvents(locked.adminUrl, { authorization: `Bearer ${secret}` });
    try {
      const hello = await events.next("hello with the token", (m) => m.event === "hello");
      assert.equal(hello.data.status.upstreams[0].url, up.url);
    } finally {
      events.close();
    }
    // A foreign Host (DNS rebinding) cannot even load the shell.
    const rebound = await new Promise<number>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port: locked.adminPort, path: "/", headers: { host: `evil.example:${locked.adminPort}` }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }).on("error", reject);
    });
    assert.equal(rebound, 403);
  } finally {
    await locked.stop();
    await up.close();
    await cfg.remove();
  }
});

test("dashboard in headless Chromium: held rises live while the upstream is down, the buttons pause, reload and (by keyboard) resume", async () => {
  const v1 = await startUpstream((_req, res) => res.end("v1"));
  const cfg = await configFile([v1.url]);
  const proxy = await startProxy(["-c", cfg.path, "--try-interval", "100ms"]);
  const browser = await Browser.launch();
  const held: Array<Promise<{ status: number; text: string }>> = [];
  const through = () => held.push(fetch(proxy.url + "/orders").then(async (r) => ({ status: r.status, text: await r.text() })));
  let v2: Awaited<ReturnType<typeof startUpstream>> | null = null;
  try {
    const page = await browser.newPage();
    await page.goto(proxy.adminUrl + "/");
    await page.waitText("conn", (t) => t === "live", "the page to connect to /events");
    assert.equal(await page.text("held"), "0");
    // Some traffic before the deploy, for the requests/s chart (bounded: 1.5 s, 3000 requests at most).
    for (let i = 0, end = Date.now() + 1500; i < 3000 && Date.now() < end; i++) {
      assert.equal((await fetch(proxy.url + "/")).status, 200);
    }
    await page.waitText("rps-max", (t) => Number(t) > 0, "requests/s on the chart");

    // The deploy: v1 goes away; requests are held and the page shows it without a reload.
    await v1.close();
    through();
    through();
    await page.waitText("held", (t) => t === "2", "the page to show 2 held");
    await page.waitText("upstreams", (t) => t.includes("unreachable"), "the page to show the upstream unreachable");
    await page.waitText("events", (t) => t.includes("upstream unreachable"), "the upstream-down event on the page");

    await page.click("pause");
    await page.waitText("mode", (t) => t === "paused", "paused, clicked on the page");
    await page.waitText("apps", (t) => t.includes("default") && t.includes("paused"), "the app's row paused, rendered live");
    through();
    await page.waitText("held", (t) => t === "3", "the page to show 3 held");

    // v2 comes up on another port; the config file names it; Reload on the page.
    v2 = await startUpstream((_req, res) => res.end("v2"));
    await cfg.write([v2.url]);
    await page.click("reload");
    await page.waitText("result", (t) => t.startsWith("reload: done"), "the reload result on the page");
    await page.waitText("upstreams", (t) => t.includes(v2!.url), "v2 listed");
    await page.waitText("configversion", (t) => t === "v2", "config v2 on the page");
    await page.waitText("held-now", (t) => Number(t) >= 3, "the chart to have plotted the held requests");
    assert.equal(await page.text("held"), "3", "still held: paused");

    const png = await page.screenshot();
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG");
    // docs/dashboard.png is the README's screenshot: rewritten only when asked, so a test run leaves the tree clean.
    const out = process.env.HOLDUP_SCREENSHOT === "1" ? join(ROOT, "docs", "dashboard.png") : join(tmpdir(), `holdup-dashboard-${process.pid}.png`);
    await mkdir(join(out, ".."), { recursive: true });
    await writeFile(out, png);

    await page.pressWithKeyboard("resume");
    await page.waitText("mode", (t) => t === "running", "running again, resumed by keyboard");
    await page.waitText("held", (t) => t === "0", "the page to show 0 held");
    for (const r of await Promise.all(held)) assert.deepEqual(r, { status: 200, text: "v2" });
    await page.waitText("events", (t) => t.includes("resumed from paused") && t.includes("reloaded"), "the resume and reload events on the page");

    // Readable on a phone: nothing wider than a 390-pixel screen.
    await page.send("Emulation.setDeviceMetricsOverride", { width: 390, height: 844, deviceScaleFactor: 2, mobile: true });
    await until("the narrow layout", async () => await page.eval("innerWidth") === 390, 3000, 50);
    assert.ok(await page.eval("document.documentElement.scrollWidth <= innerWidth"), "no sideways scrolling at 390 px");
    if (process.env.HOLDUP_SCREENSHOT === "1") await writeFile(join(ROOT, "docs", "dashboard-phone.png"), await page.screenshot());

    // A page on another loopback port cannot pause holdup through this browser.
    const evil = await startUpstream((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<!doctype html><title>elsewhere</title>");
    });
    try {
      await page.goto(evil.url + "/");
      const sent = await page.eval(`fetch("${proxy.adminUrl}/pause", { method: "POST", mode: "no-cors", headers: { "content-type": "text/plain" }, body: "{}" }).then(() => "sent", (e) => String(e))`);
      assert.equal(sent, "sent");
      const read = await page.eval(`fetch("${proxy.adminUrl}/status").then((r) => r.text()).then(() => "read", (e) => "blocked")`);
      assert.equal(read, "blocked", "no CORS: a foreign page cannot read the admin API");
      assert.equal((await proxy.status()).mode, "running", "the foreign page's POST /pause changed nothing");
    } finally {
      await evil.close();
    }
  } finally {
    await browser.close();
    await proxy.stop();
    await v2?.close();
    await cfg.remove();
  }
});

test("dashboard: a client that never reads its /events stream costs bounded memory; other streams and the proxy go on", async () => {
  // 1000 upstreams (never contacted) make each status snapshot ~150 KB: an
  // unbounded queue would keep every one of them.
  const up = await startUpstream();
  const many = Array.from({ length: 1000 }, (_, i) => ["-u", `http://127.0.0.1:${20000 + i}`]).flat();
  const proxy = await startProxy(["-u", up.url, ...many]);
  const sock = net.connect(proxy.adminPort, "127.0.0.1");
  try {
    // Connects, asks for the stream, and never reads a byte.
    await new Promise((r) => sock.once("connect", r));
    sock.pause();
    sock.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${proxy.adminPort}\r\n\r\n`);
    const hello = async () => {
      const events = await openEvents(proxy.adminUrl);
      try {
        return (await events.next("hello", (m) => m.event === "hello")).data.status;
      } finally {
        events.close();
      }
    };
    await until("the stalled stream to be open", async () => (await hello()).dashboard.streams >= 1);
    // Each pause and each resume is an event followed by a ~150 KB snapshot. Until the stalled stream is
    // dropped, its queue never passes DROP_BYTES (256 KiB); then it is dropped, once.
    const rss0 = rssKiB(proxy.child.pid!);
    const samples: Array<{ streams: number; dropped: number; skipped: number; queuedBytes: number }> = [];
    let flips = 0;
    await until("the stalled stream to be dropped", async () => {
      await proxy.admin("POST", "/pause");
      await proxy.admin("POST", "/resume");
      flips++;
      samples.push((await hello()).dashboard);
      return samples.at(-1)!.dropped > 0;
    }, 60_000, 0);
    const status = await hello();
    const dash = status.dashboard;
    console.log(`stalled stream: dropped after ${flips} pause/resume pairs; RSS ${rss0} → ${rssKiB(proxy.child.pid!)} KiB; ${JSON.stringify(samples.slice(-3))}`);
    assert.ok(samples.every((d) => d.queuedBytes <= 256 * 1024), `at most DROP_BYTES queued for a stream: ${JSON.stringify(samples)}`);
    // (A hello's own stream is not in its snapshot, but the previous one's may still be, closing.)
    assert.ok(samples.slice(0, -1).every((d) => d.streams >= 1 && d.dropped === 0), "open until the drop");
    assert.equal(dash.dropped, 1, "dropped once");
    assert.equal(status.mode, "running");
    assert.equal((await fetch(proxy.url + "/")).status, 200, "the proxy still answers");
  } finally {
    sock.destroy();
    await proxy.stop();
    await up.close();
  }
});

test("dashboard: SIGTERM ends open /events streams at once, and a restarted holdup on the same port serves them again", async () => {
  const up = await startUpstream();
  const adminPort = await freePort();
  const args = ["-u", up.url, "--admin", `127.0.0.1:${adminPort}`];
  let proxy: Proxy = await startProxy(args);
  try {
    const base = `http://127.0.0.1:${adminPort}`;
    const first = await openEvents(base);
    const hello = await first.next("hello", (m) => m.event === "hello");
    await first.next("a status", (m) => m.event === "status");
    const t0 = Date.now();
    const stopped = proxy.stop();
    const endedMs = await first.ended(5000);
    await stopped;
    assert.ok(Date.now() - t0 < 5000, "holdup did not wait out the shutdown grace for the stream");
    // The page's reconnect: retry the same URL until the next holdup answers.
    proxy = await startProxy(args);
    const again = (await until("the stream to come back", async () => {
      try {
        return await openEvents(base);
      } catch {
        return null;
      }
    }))!;
    try {
      const hello2 = await again.next("hello from the new holdup", (m) => m.event === "hello");
      assert.ok(hello2.data.status.uptimeSeconds <= hello.data.status.uptimeSeconds + 1);
      assert.ok(hello2.data.events.some((e: { msg: string }) => e.msg.startsWith("holdup started")));
    } finally {
      again.close();
    }
    console.log(`stream ended ${endedMs} ms after SIGTERM`);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test(`dashboard at the edge: dist/edge.js under ${RUNTIME === "deno" ? "deno serve" : "Bun's auto-serve"} serves it at /_holdup/; its stream and buttons need the token, and another origin gets 403`, async () => {
  const up = await startUpstream();
  const port = await freePort();
  const token = "edge-dash-token";
  const command: [string, string[]] = RUNTIME === "deno"
    ? [process.execPath, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), join(ROOT, "dist/edge.js")]]
    : [process.execPath, [join(ROOT, "dist/edge.js")]];
  const edge = await startProxy([], { command, rawArgs: true, port, env: { HOLDUP_UPSTREAMS: up.url, HOLDUP_ADMIN_TOKEN: token, HOLDUP_LOG: "json", PORT: String(port) } });
  const base = `http://127.0.0.1:${port}/_holdup`;
  const auth = { authorization: `Bearer ${token}` };
  try {
    const page = await fetch(base + "/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);
    const body = await page.text();
    assert.ok(body.includes('id="pause"') && body.includes("<title>holdup dashboard</title>"));
    assert.ok(!body.includes(up.url), "without the token the page shows no data");
    assert.equal((await fetch(base + "/events")).status, 401);

    const events = await openEvents(base, auth);
    try {
      const hello = await events.next("hello", (m) => m.event === "hello");
      assert.equal(hello.data.status.mode, "running");
      // The page's own origin (the edge's) may press Pause; another origin may not, token or not.
      const foreign = await fetch(base + "/pause", { method: "POST", headers: { ...auth, origin: "http://127.0.0.1:1" } });
      assert.equal(foreign.status, 403);
      const own = await fetch(base + "/pause", { method: "POST", headers: { ...auth, origin: `http://127.0.0.1:${port}` } });
      assert.equal(own.status, 200, await own.text());
      const log = await events.next("the pause event", (m) => m.event === "log");
      assert.match(log.data.msg, /^paused/);
    } finally {
      events.close();
    }
  } finally {
    await edge.stop();
    await up.close();
  }
});

test("dashboard: every app has its row (what it answers, its own mode, held), and open WebSockets are counted, per upstream too", async () => {
  const web = await startUpstream((_q, res) => res.end("web"));
  const wsUp = await websocketd(); // a real WebSocket server: echoes each line
  const wsPort = wsUp.port;
  const dir = await mkdtemp(join(tmpdir(), "holdup-dash-apps-"));
  const file = join(dir, "holdup.json");
  await writeFile(file, JSON.stringify({
    apps: [
      { name: "web", hosts: ["example.com"], upstreams: [web.url] },
      { name: "live", hosts: ["example.com"], pathPrefix: "/live", upstreams: [`http://127.0.0.1:${wsPort}`] },
    ],
  }));
  const proxy = await startProxy(["-c", file]);
  let sock: net.Socket | undefined;
  try {
    const ws = await rawHandshake(proxy.port, "/live/socket", ["Host: example.com"]);
    sock = ws.socket;
    assert.equal(ws.status, 101, ws.head);
    sock.write(clientFrame("ping"));
    assert.equal((await serverFrame(ws)).toString(), "ping");
    await until("the WebSocket to be open", async () => ((await proxy.status()).websockets as { open: number }).open === 1);
    assert.equal((await proxy.admin("POST", "/pause?app=live")).status, 200);

    const body = await (await fetch(proxy.adminUrl + "/")).text();
    const rows = [...body.matchAll(/<tr><td>(web|live)<\/td><td class="note">([^<]*)<\/td><td><span class="mode (\w+)">/g)].map((m) => m.slice(1));
    assert.deepEqual(rows, [["web", "example.com", "running"], ["live", "example.com /live", "paused"]]);
    assert.match(body, /id="mode" class="mode mixed"/);
    assert.match(body, /WebSockets open <b id="wsopen">1<\/b>/);
    assert.ok(body.includes(`<tr><td class="url">http://127.0.0.1:${wsPort}</td><td>live</td><td><span class="state ready">ready</span></td><td>0</td><td>1</td>`), "the upstream's row counts its WebSocket");

    // The live stream carries the same, for the page's script to render.
    const events = await openEvents(proxy.adminUrl);
    try {
      const hello = await events.next("hello", (m) => m.event === "hello");
      assert.deepEqual(hello.data.status.apps.map((a: { name: string; mode: string }) => [a.name, a.mode]), [["web", "running"], ["live", "paused"]]);
      assert.deepEqual(hello.data.status.websockets, { open: 1, draining: 0 });
    } finally {
      events.close();
    }
  } finally {
    sock?.destroy();
    await proxy.stop();
    await web.close();
    await wsUp.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
