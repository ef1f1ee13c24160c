/**
 * Headless Chromium over the DevTools protocol, for the dashboard tests: a
 * real browser loads the page, clicks, types and takes screenshots.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { until } from "./helpers.ts";

// ---------------------------------------------------------------- Chromium over the DevTools protocol

/** Debian's chromium (or $CHROMIUM). Missing is a failure, not a skip: .ci/run installs it. */
export function chromiumPath(): string {
  const found = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
    .find((p) => p && existsSync(p));
  if (!found) throw new Error("chromium is not installed (apt-get install -y chromium); this test needs a real browser and does not skip");
  return found;
}

export class Browser {
  private id = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; method: string }>();

  private constructor(private child: ChildProcess, private ws: WebSocket, private dir: string) {
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
    };
  }

  static async launch(): Promise<Browser> {
    const dir = await mkdtemp(join(tmpdir(), "holdup-chromium-"));
    const child = spawn(chromiumPath(), [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
      "--no-default-browser-check", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
      "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", `--user-data-dir=${dir}`, "about:blank",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`chromium printed no DevTools URL:\n${err}`)), 15_000);
      child.stderr!.on("data", (d) => {
        err += d;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      });
      child.on("exit", (code) => reject(new Error(`chromium exited with ${code}:\n${err}`)));
    });
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("cannot connect to chromium's DevTools WebSocket"));
    });
    return new Browser(child, ws, dir);
  }

  // deno-lint-ignore no-explicit-any
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }

  async newPage(width = 1000, height = 1200): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId);
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    await page.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
    return page;
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.send("Browser.close"), new Promise((r) => setTimeout(r, 2000))]);
    } catch { /* gone */ }
    this.ws.close();
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
    await rm(this.dir, { recursive: true, force: true }).catch(() => {});
  }
}

export class Page {
  constructor(private browser: Browser, private sessionId: string) {}

  // deno-lint-ignore no-explicit-any
  send(method: string, params: Record<string, unknown> = {}): Promise<any> {
    return this.browser.send(method, params, this.sessionId);
  }

  async goto(url: string): Promise<void> {
    await this.send("Page.navigate", { url });
    await until(`${url} to load`, async () => (await this.eval("document.readyState")) === "complete", 10_000, 50);
  }

  // deno-lint-ignore no-explicit-any
  async eval(expression: string): Promise<any> {
    const r = await this.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }

  text(id: string): Promise<string> {
    return this.eval(`document.getElementById(${JSON.stringify(id)})?.textContent ?? ""`);
  }

  async waitText(id: string, pred: (t: string) => boolean, what: string, ms = 8000): Promise<string> {
    let last = "";
    try {
      return await until<string>(what, async () => pred(last = await this.text(id)) ? last || " " : "", ms, 50);
    } catch (e) {
      throw new Error(`${(e as Error).message} (#${id} reads ${JSON.stringify(last)})`);
    }
  }

  /** A real mouse click in the middle of the element. */
  async click(id: string): Promise<void> {
    const box = await this.eval(`(() => { const r = document.getElementById(${JSON.stringify(id)}).getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; })()`);
    for (const type of ["mousePressed", "mouseReleased"]) {
      await this.send("Input.dispatchMouseEvent", { type, x: box.x, y: box.y, button: "left", clickCount: 1 });
    }
  }

  /** Moves keyboard focus with Tab until the element has it, then presses Enter: the page works without a mouse. */
  async pressWithKeyboard(id: string): Promise<void> {
    await this.eval("document.activeElement?.blur(); window.focus()");
    for (let i = 0; i < 30; i++) {
      await this.key("Tab", "Tab", 9);
      if (await this.eval(`document.activeElement?.id`) === id) return await this.key("Enter", "Enter", 13, "\r");
    }
    throw new Error(`#${id} cannot be reached with Tab`);
  }

  private async key(key: string, code: string, keyCode: number, text?: string): Promise<void> {
    await this.send("Input.dispatchKeyEvent", { type: text ? "keyDown" : "rawKeyDown", key, code, windowsVirtualKeyCode: keyCode, ...(text ? { text } : {}) });
    await this.send("Input.dispatchKeyEvent", { type: "keyUp", key, code, windowsVirtualKeyCode: keyCode });
  }

  async screenshot(): Promise<Uint8Array> {
    const { data } = await this.send("Page.captureScreenshot", { format: "png", captureBeyondViewport: false });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }
}
