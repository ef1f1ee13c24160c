/**
 * --pages DIR (issue 27): the operator's templates for holdup's own pages,
 * placeholders filled and HTML-escaped (a stop message holding <script>);
 * JSON for a client that asks for application/json; a bad template refused
 * at start (naming the file) and on reload (the old set keeps serving).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, runtimeCommand, startProxy, startUpstream } from "./helpers.ts";

const STOP = `<!doctype html><title>{{app}} maintenance</title>
<main><p class="msg">{{ message }}</p><p>id={{requestId}} retry={{retryAfter}} app={{app}}</p></main>
`;
const P503 = `<h1>Busy (503)</h1><p>{{message}}</p><p>id={{requestId}} retry={{retryAfter}}</p>`;
const P504 = `<h1>Slow (504)</h1><p>id={{requestId}}</p>`;

async function pagesDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "holdup-pages-"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

const html = { accept: "text/html,application/xhtml+xml;q=0.9" };

test("--pages: templates filled and escaped for browsers, JSON for API clients, plain text for curl", async () => {
  const dir = await pagesDir({ "stop.html": STOP, "503.html": P503, "504.html": P504 });
  const up = await startUpstream((req, res) => {
    if (req.url === "/slow") return; // never answers: 504
    res.end("ok");
  });
  const p = await startProxy(["--upstream", up.url, "--pages", dir, "--try-duration", "300ms", "--response-timeout", "300ms"]);
  try {
    const message = `Back at 10:00 <script>alert("x")</script> & more`;
    assert.equal((await p.admin("POST", "/stop", { message })).status, 200);
    const page = await fetch(p.url + "/", { headers: { ...html, "x-request-id": "id-<1>" } });
    assert.equal(page.status, 503);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.equal(page.headers.get("x-request-id"), "id-<1>");
    const body = await page.text();
    assert.ok(body.startsWith("<!doctype html><title>default maintenance</title>"), body);
    assert.ok(body.includes(`<p class="msg">Back at 10:00 &#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; more</p>`), body);
    assert.ok(body.includes("id=id-&#60;1&#62; retry=30 app=default"), body);
    assert.doesNotMatch(body, /<script>/);

    const api = await fetch(p.url + "/", { headers: { accept: "application/json", "x-request-id": "api-1" } });
    assert.equal(api.status, 503);
    assert.equal(api.headers.get("content-type"), "application/json");
    assert.deepEqual(await api.json(), { error: "maintenance", message, requestId: "api-1", retryAfter: 30 });

    const axios = await fetch(p.url + "/", { headers: { accept: "application/json, text/plain, */*", "x-request-id": "axios-1" } });
    assert.equal(axios.headers.get("content-type"), "application/json", "a client naming JSON gets JSON, */* or not");
    assert.equal((await axios.json()).requestId, "axios-1");

    const curl = await fetch(p.url + "/", { headers: { accept: "*/*", "x-request-id": "curl-1" } });
    assert.match(curl.headers.get("content-type")!, /^text\/plain/);
    assert.equal(await curl.text(), `${message}\nrequest id: curl-1\n`);

    // Held past tryDuration (paused): 503.html; the upstream that never answers: 504.html.
    await p.admin("POST", "/pause");
    const busy = await fetch(p.url + "/", { method: "POST", headers: { ...html, "x-request-id": "busy-1" }, body: "x" });
    assert.equal(busy.status, 503);
    assert.equal(busy.headers.get("retry-after"), "5");
    const busyBody = await busy.text();
    assert.match(busyBody, /^<h1>Busy \(503\)<\/h1><p>holdup is paused; held for the whole tryDuration \(300ms\)<\/p><p>id=busy-1 retry=5<\/p>$/);
    await p.admin("POST", "/resume");
    const slow = await fetch(p.url + "/slow", { headers: { ...html, "x-request-id": "slow-1" } });
    assert.equal(slow.status, 504);
    assert.equal(await slow.text(), "<h1>Slow (504)</h1><p>id=slow-1</p>");
    const slowJson = await (await fetch(p.url + "/slow", { headers: { accept: "application/json" } })).json();
    assert.equal(slowJson.error, "gateway_timeout");
    assert.equal(slowJson.retryAfter, null);
    assert.ok(String(slowJson.requestId).length >= 24);
  } finally {
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("--pages: a bad template, an unreadable one or a missing directory stops holdup at start, naming the file", async () => {
  const bad = await pagesDir({ "stop.html": STOP, "502.html": "<p>{{message}} {{nope}}</p>" });
  const unclosed = await pagesDir({ "504.html": "<p>\n{{message</p>" });
  const empty = await pagesDir({ "index.html": "<p>not one of ours</p>" });
  const notFile = await pagesDir({});
  await mkdir(join(notFile, "503.html"));
  try {
    for (const [dir, file, why] of [
      [bad, join(bad, "502.html"), /unknown placeholder \{\{nope\}\}/],
      [unclosed, join(unclosed, "504.html"), /line 2: "\{\{" without a closing "\}\}"/],
      [join(bad, "missing"), join(bad, "missing"), /cannot read the directory/],
      [notFile, join(notFile, "503.html"), /is not a file/],
      [empty, empty, /holds none of stop\.html, waiting\.html, 502\.html, 503\.html, 504\.html/],
    ] as const) {
      const [cmd, args] = runtimeCommand("src/proxy.ts", ["--listen", "127.0.0.1:0", "--admin", "off", "--pages", dir]);
      const r = await run(cmd, args);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(file), r.stderr);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stderr, /holdup started/);
    }
  } finally {
    for (const d of [bad, unclosed, empty, notFile]) await rm(d, { recursive: true, force: true });
  }
});

test("--pages: a reload reads the templates again; a bad one refuses the reload and the old set keeps serving", async () => {
  const dir = await pagesDir({ "stop.html": "<p>v1 {{message}}</p>" });
  const up = await startUpstream((_req, res) => res.end("ok"));
  const p = await startProxy(["--upstream", up.url, "--pages", dir]);
  try {
    await p.admin("POST", "/stop", { message: "m" });
    const page = async () => await (await fetch(p.url + "/", { headers: html })).text();
    assert.equal(await page(), "<p>v1 m</p>");
    await writeFile(join(dir, "stop.html"), "<p>v2 {{mesage}}</p>");
    const refused = await p.admin("POST", "/reload", { tryDuration: "5s" });
    assert.equal(refused.status, 400);
    const errors = JSON.stringify(await refused.json());
    assert.ok(errors.includes(join(dir, "stop.html")), errors);
    assert.match(errors, /unknown placeholder \{\{mesage\}\}/);
    assert.equal(await page(), "<p>v1 m</p>", "the old set stays");
    assert.equal((await p.status()).configVersion, 1, "nothing of the refused reload is in force");
    await writeFile(join(dir, "stop.html"), "<p>v2 {{message}}</p>");
    const ok = await p.admin("POST", "/reload", { tryDuration: "5s" });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(await page(), "<p>v2 m</p>");
    assert.equal((await p.status()).configVersion, 2);
  } finally {
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});
