/**
 * The dashboard's operator additions (issue 27), in headless Chromium: the
 * proxy's address and uptime; with -- COMMAND the app's instance, pid,
 * restarts and last exit, and a Restart button that restarts the app with no
 * failed request under a client loop; each app's oldest held request against
 * its deadline; buttons that cannot apply disabled; charts with a time axis.
 * HOLDUP_SCREENSHOT=1 writes docs/dashboard-app.png (1280 px) and
 * docs/dashboard-app-phone.png (390 px).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { Browser } from "./browser.ts";
import { ROOT, startProxy, until } from "./helpers.ts";

const APP = join(ROOT, "test/fixtures/app.py");
const shots = process.env.HOLDUP_SCREENSHOT === "1";

test("dashboard in Chromium with -- COMMAND: address, uptime, the app's instance and Restart (0 failed requests under a loop), oldest held vs deadline, disabled buttons, time axis", async () => {
  const p = await startProxy(["--try-duration", "20s", "--", "python3", APP, "{port}"]);
  const browser = await Browser.launch();
  let looping = true;
  const tally = { ok: 0, failed: [] as string[] };
  let loop: Promise<void> | null = null;
  try {
    await until("the app serving", async () => (await p.status()).app && ((await p.status()).app as { phase: string }).phase === "running", 20_000);
    const page = await browser.newPage(1280, 1000);
    await page.goto(p.adminUrl + "/");
    await page.waitText("conn", (t) => t === "live", "the page to connect to /events");

    // Where the proxy listens, and for how long.
    assert.equal(await page.text("proxy"), `127.0.0.1:${p.port}`);
    await page.waitText("uptime", (t) => /^\d+ s$/.test(t), "the uptime");
    // The app process.
    const app1 = (await p.status()).app as { pid: number };
    assert.equal(await page.eval(`document.getElementById("appbox").hidden`), false);
    await page.waitText("appinstance", (t) => t === "#1", "instance #1");
    assert.equal(await page.text("apppid"), String(app1.pid));
    assert.equal(await page.text("apprestarts"), "0");
    assert.equal(await page.text("appexit"), "none");
    // Buttons that cannot apply: Resume while running, Reload without a config file.
    const disabled = (id: string) => page.eval(`document.getElementById(${JSON.stringify(id)}).disabled`);
    assert.equal(await disabled("resume"), true);
    assert.equal(await disabled("pause"), false);
    assert.equal(await disabled("reload"), true, "no config file: POST /reload without a body would be 409");
    assert.equal(await page.eval(`document.getElementById("reloadnote").hidden`), false);
    assert.equal(await disabled("restart"), false);
    // The time axis under each chart.
    assert.equal(await page.text("held-from"), "−60 s");
    assert.match(await page.eval(`document.querySelector("#rps-chart + .axis").textContent`), /−60 s\s*−30 s\s*now/);

    // Restart pressed in the page while a client loops: every request answered 200.
    loop = (async () => {
      while (looping) {
        try {
          const r = await fetch(p.url + "/loop");
          const body = await r.text();
          if (r.status === 200) tally.ok++;
          else tally.failed.push(`${r.status} ${body.slice(0, 80)}`);
        } catch (e) {
          tally.failed.push(String(e));
        }
      }
    })();
    await until("the loop to run", () => tally.ok >= 5, 10_000);
    await page.click("restart");
    await page.waitText("result", (t) => t.startsWith("restart: done, instance #2"), "the restart result on the page", 30_000);
    await page.waitText("appinstance", (t) => t === "#2", "instance #2");
    await page.waitText("apprestarts", (t) => t === "1", "1 restart");
    await page.waitText("appexit", (t) => /^instance #1 (exit code|killed by)/.test(t), "instance #1's exit", 15_000);
    const before = tally.ok;
    await until("requests answered by the new instance", () => tally.ok >= before + 5, 10_000);
    looping = false;
    await loop;
    assert.deepEqual(tally.failed, [], "no request failed during the restart");
    assert.ok(tally.ok > 10, `only ${tally.ok} requests`);

    // Paused: Pause disabled, Resume enabled; a held request's age against its 20 s deadline.
    await page.click("pause");
    await page.waitText("mode", (t) => t === "paused", "paused");
    assert.equal(await disabled("pause"), true);
    assert.equal(await disabled("resume"), false);
    const held = fetch(p.url + "/held").then((r) => r.status);
    const oldest = () => page.eval(`document.querySelector("#apps tr td:nth-child(5)").textContent`);
    await until("the oldest held request's age on the page", async () => /^\d+\.\d s of 20 s$/.test(await oldest()), 8000, 50);
    await until("the age to grow past 1 s", async () => Number(/^(\d+\.\d) s/.exec(await oldest())?.[1]) >= 1, 8000, 50);
    if (shots) await writeFile(join(ROOT, "docs", "dashboard-app.png"), await page.screenshot());

    // A phone: nothing wider than 390 px.
    await page.send("Emulation.setDeviceMetricsOverride", { width: 390, height: 1400, deviceScaleFactor: 2, mobile: true });
    await until("the narrow layout", async () => await page.eval("innerWidth") === 390, 3000, 50);
    assert.ok(await page.eval("document.documentElement.scrollWidth <= innerWidth"), "no sideways scrolling at 390 px");
    if (shots) await writeFile(join(ROOT, "docs", "dashboard-app-phone.png"), await page.screenshot());

    await page.pressWithKeyboard("resume");
    assert.equal(await held, 200);
    await page.waitText("mode", (t) => t === "running", "running again");
    await page.waitText("apps", (t) => t.includes("none held (deadline 20 s)"), "nothing held");
  } finally {
    looping = false;
    await loop;
    await browser.close();
    await p.stop();
  }
});
