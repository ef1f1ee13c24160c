/**
 * A real browser through holdup: headless Chromium, driven over the DevTools
 * protocol (a WebSocket from this runtime to the browser), opens a WebSocket
 * through holdup while the upstream is down; the upstream (websocketd) starts
 * once holdup reports the handshake held; the page's socket opens and echoes.
 *
 * Needs `chromium` (Debian package; CI installs it). Missing chromium fails
 * the test: it is never skipped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { canConnect, freePort, startProxy, until } from "./helpers.ts";

interface Browser {
  child: ChildProcess;
  /** ws://127.0.0.1:PORT/devtools/browser/ID */
  endpoint: string;
  stderr(): string;
}

/** Starts headless Chromium in its own process group; resolves with its DevTools endpoint. */
async function startChromium(profile: string): Promise<Browser> {
  const child = spawn("chromium", [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    "about:blank",
  ], { detached: true, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const failed = new Promise<never>((_, reject) => {
    child.on("error", (e) => reject(new Error(`could not start chromium (apt-get install -y chromium): ${e.message}`)));
    child.on("exit", (code) => reject(new Error(`chromium exited (${code}) before listening:\n${err.slice(-2000)}`)));
  });
  failed.catch(() => {});
  child.stderr!.on("data", (d) => err += d);
  const browser: Browser = { child, endpoint: "", stderr: () => err };
  browser.endpoint = await Promise.race([
    until("chromium's DevTools endpoint", () => /DevTools listening on (ws:\/\/\S+)/.exec(err)?.[1], 30_000, 50),
    failed,
  ]) as string;
  return browser;
}

/** Kills the browser's whole process group (renderers, GPU, zygote) and waits for it. */
async function killChromium(b: Browser): Promise<void> {
  const exited = b.child.exitCode !== null || b.child.signalCode !== null ? Promise.resolve() : once(b.child, "exit");
  try {
    process.kill(-b.child.pid!, "SIGKILL");
  } catch (e) {
    if ((e as { code?: string }).code !== "ESRCH") throw e;
  }
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
}

/** A minimal DevTools protocol client over the runtime's global WebSocket (flattened sessions). */
class CDP {
  private next = 1;
  private pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  readonly opened: Promise<void>;

  constructor(readonly ws: WebSocket) {
    this.opened = new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("DevTools WebSocket error"));
    });
    ws.onmessage = (e) => {
      const msg = JSON.parse(String(e.data));
      const p = msg.id !== undefined && this.pending.get(msg.id);
      if (!p) return; // events
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`DevTools: ${JSON.stringify(msg.error)}`));
      else p.resolve(msg.result);
    };
    ws.onclose = () => {
      for (const p of this.pending.values()) p.reject(new Error("DevTools WebSocket closed"));
      this.pending.clear();
    };
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }
}


test("Chromium: a page's WebSocket to a down upstream is held, opens once the upstream starts, and echoes", async () => {
  const upPort = await freePort();
  const profile = await mkdtemp(join(tmpdir(), "holdup-chromium-"));
  let browser: Browser | undefined;
  let cdp: CDP | undefined;
  let upstream: ChildProcess | undefined;
  const proxy = await startProxy(["-u", `:${upPort}`, "--try-duration", "30s", "--try-interval", "100ms"]);
  try {
    browser = await startChromium(profile);
    cdp = new CDP(new WebSocket(browser.endpoint));
    await cdp.opened;
    const { targetInfos } = await cdp.send("Target.getTargets");
    const page = targetInfos.find((t: { type: string }) => t.type === "page");
    assert.ok(page, `no page target in ${JSON.stringify(targetInfos)}`);
    const { sessionId } = await cdp.send("Target.attachToTarget", { targetId: page.targetId, flatten: true });

    // The page opens a WebSocket through holdup, sends once open, and resolves with the echo.
    const script = `new Promise((resolve, reject) => {
      const t0 = performance.now();
      const ws = new WebSocket("ws://127.0.0.1:${proxy.port}/live?from=browser");
      globalThis.openedAt = 0;
      ws.onopen = () => { globalThis.openedAt = Date.now(); ws.send("hello from chromium"); };
      ws.onmessage = (e) => { resolve(JSON.stringify({ echo: e.data, openedAt: globalThis.openedAt, userAgent: navigator.userAgent })); ws.close(1000, "done"); };
      ws.onerror = () => reject(new Error("page WebSocket error"));
      ws.onclose = (e) => reject(new Error("page WebSocket closed " + e.code));
      setTimeout(() => reject(new Error("page WebSocket: no echo in 25 s")), 25000);
    })`;
    const evaluated = cdp.send("Runtime.evaluate", { expression: script, awaitPromise: true, returnByValue: true }, sessionId);
    evaluated.catch(() => {});

    // holdup holds the browser's handshake; start the upstream only then.
    await until("the browser's handshake to be held", async () => (await proxy.status()).held === 1, 15_000, 50);
    // A while for a socket opened too early to show; then, in order: the page's socket is not open, the upstream starts.
    await new Promise((r) => setTimeout(r, 1000));
    const notYet = await cdp.send("Runtime.evaluate", { expression: "globalThis.openedAt", returnByValue: true }, sessionId);
    assert.equal(notYet.result.value, 0, "the page's socket opened while the upstream was down");
    assert.equal((await proxy.status()).held, 1);
    const startedAt = Date.now();
    upstream = spawn("websocketd", ["--port", String(upPort), "--address", "127.0.0.1", "--loglevel", "error", "cat"], {
      detached: true,
      stdio: "ignore",
    });
    await until("websocketd to listen", () => canConnect(upPort), 10_000);

    const result = await evaluated;
    assert.equal(result.exceptionDetails, undefined, JSON.stringify(result.exceptionDetails));
    const got = JSON.parse(result.result.value);
    assert.equal(got.echo, "hello from chromium");
    assert.ok(got.openedAt >= startedAt, `the page's socket opened ${startedAt - got.openedAt} ms before the upstream started`);
    assert.match(got.userAgent, /HeadlessChrome|Chrome/);

    // holdup's view: one 101 after holding, and one WebSocket log line when the page closed it.
    const access = await proxy.waitForLine("101 access line", (l) => l.msg === "request" && l.status === 101);
    assert.equal(access.path, "/live?from=browser");
    assert.ok((access.held_ms as number) >= 1000, `held_ms ${access.held_ms}: it counts the whole hold`);
    const line = await proxy.waitForLine("websocket log line", (l) => l.msg === "websocket");
    assert.equal(line.close_code, 1000);
    assert.equal(line.closed_by, "client");
    assert.equal(line.messages_to_upstream, 1);
    assert.equal(line.messages_to_client, 1);
  } finally {
    try {
      cdp?.ws.close();
    } catch { /* already closed */ }
    if (browser) await killChromium(browser);
    if (upstream && upstream.exitCode === null && upstream.signalCode === null) {
      const gone = once(upstream, "exit");
      try {
        process.kill(-upstream.pid!, "SIGKILL");
      } catch { /* gone */ }
      await gone;
    }
    await proxy.stop();
    await rm(profile, { recursive: true, force: true });
  }
});
