/**
 * --metrics-listen (issue 27): a listener that serves GET /metrics without a
 * token while the admin API asks for one; nothing else there (the admin
 * endpoints are 404). The families operators asked for: holdup_build_info,
 * per-app held-time histograms (holdup_hold_seconds), and with -- COMMAND the
 * app's restarts and serving instance.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Proxy, ROOT, RUNTIME, startProxy, startUpstream, until } from "./helpers.ts";

const TOKEN = "metrics-port-token";
const auth = { authorization: `Bearer ${TOKEN}` };
const metricsUrl = (p: Proxy) => String(p.lines.find((l) => String(l.msg).startsWith("holdup started"))!.metrics);

/** A sample's value, or NaN when the series is missing. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

test("--metrics-listen: GET /metrics without a token there, 401 on the admin API; everything else 404", async () => {
  const up = await startUpstream((_req, res) => res.end("ok"));
  const p = await startProxy(["--upstream", up.url, "--admin-token", TOKEN, "--metrics-listen", "127.0.0.1:0", "--try-duration", "20s"]);
  try {
    const url = metricsUrl(p);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const base = url.slice(0, -"/metrics".length);
    assert.equal((await fetch(p.adminUrl + "/metrics")).status, 401, "the admin API still wants its token");

    // A held request, for the histogram: paused, sent, resumed.
    assert.equal((await p.admin("POST", "/pause", undefined, auth)).status, 200);
    const held = fetch(p.url + "/held");
    await until("the request to be held", async () => (await (await p.admin("GET", "/status", undefined, auth)).json()).held === 1);
    await p.admin("POST", "/resume", undefined, auth);
    assert.equal((await held).status, 200);

    const r = await fetch(url);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
    assert.equal(sample(text, `holdup_build_info{version="${version}",runtime="${RUNTIME}"}`), 1, text);
    assert.match(text, /# TYPE holdup_hold_seconds histogram/);
    assert.equal(sample(text, `holdup_hold_seconds_count{app="default"}`), 1, text);
    assert.equal(sample(text, `holdup_hold_seconds_bucket{app="default",le="+Inf"}`), 1);
    assert.ok(sample(text, `holdup_hold_seconds_sum{app="default"}`) > 0);
    assert.equal(sample(text, `holdup_requests_total{app="default",code="200",class="2xx"}`), 1);
    // Buckets never decrease.
    const buckets = text.split("\n").filter((l) => l.startsWith('holdup_hold_seconds_bucket{app="default"')).map((l) => Number(l.split(" ").pop()));
    assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b));
    assert.doesNotMatch(text, /holdup_app_restarts_total/, "no app is run here");
    // The same text the admin API gives (with its token).
    const admin = await (await p.admin("GET", "/metrics", undefined, auth)).text();
    assert.equal(sample(admin, `holdup_hold_seconds_count{app="default"}`), 1);

    for (const [method, path] of [["GET", "/"], ["GET", "/status"], ["POST", "/pause"], ["POST", "/stop"], ["POST", "/reload"], ["GET", "/events"], ["GET", "/metrics/x"], ["POST", "/metrics"], ["GET", "/healthz"]]) {
      const res = await fetch(base + path, { method, headers: auth });
      assert.equal(res.status, 404, `${method} ${path}`);
      await res.body?.cancel();
    }
    assert.equal((await (await p.admin("GET", "/status", undefined, auth)).json()).mode, "running", "nothing there paused or stopped holdup");
    assert.equal((await fetch(url + "?x=1")).status, 200, "a query is fine");
  } finally {
    await p.stop();
    await up.close();
  }
});

test("--metrics-listen with -- COMMAND: holdup_app_instance and holdup_app_restarts_total follow a restart", async () => {
  const p = await startProxy(["--metrics-listen", "127.0.0.1:0", "--", "python3", join(ROOT, "test/fixtures/app.py"), "{port}"]);
  try {
    const url = metricsUrl(p);
    const scrape = async () => await (await fetch(url)).text();
    await until("instance #1 serving", async () => sample(await scrape(), "holdup_app_instance") === 1, 20_000);
    let text = await scrape();
    assert.equal(sample(text, `holdup_app_restarts_total{result="ok"}`), 0);
    const r = await p.admin("POST", "/restart");
    assert.equal(r.status, 200, await r.clone().text());
    text = await scrape();
    assert.equal(sample(text, "holdup_app_instance"), 2, text);
    assert.equal(sample(text, `holdup_app_restarts_total{result="ok"}`), 1);
    assert.equal(sample(text, `holdup_app_restarts_total{result="failed"}`), 0);
  } finally {
    await p.stop();
  }
});

