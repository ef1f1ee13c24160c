import { test } from "node:test";
import assert from "node:assert/strict";
import { formatDuration, parseDuration, parseSize } from "../src/config/units.ts";
import { parseListen, parseUpstream } from "../src/config/address.ts";
import { validatePartial } from "../src/config/schema.ts";
import { defaultLayer, resolve } from "../src/config/layers.ts";
import { envLayers } from "../src/config/env.ts";

test("durations and sizes: parses the contract's durations", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("1s"), 1000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h"), 3_600_000);
});
test("durations and sizes: rejects durations without a unit, with a hint", () => {
  for (const bad of ["30", "3x", "", "-1s", "1.s"]) {
    const r = parseDuration(bad);
    assert.equal(typeof r, "string", bad);
    assert.match(r as string, /250ms, 1.5s, 2m/);
  }
});
test("durations and sizes: parses the contract's sizes", () => {
  assert.equal(parseSize("512"), 512);
  assert.equal(parseSize("64KiB"), 65536);
  assert.equal(parseSize("1MiB"), 1048576);
  assert.equal(parseSize("1MB"), 1_000_000);
  assert.equal(typeof parseSize("1 parsec"), "string");
});
test("durations and sizes: formats durations back", () => {
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(1500), "1.5s");
  assert.equal(formatDuration(120_000), "2m");
});

test("addresses: parses [host]:port", () => {
  assert.deepEqual(parseListen(":8080"), { hostname: "0.0.0.0", port: 8080 });
  assert.deepEqual(parseListen("127.0.0.1:9"), { hostname: "127.0.0.1", port: 9 });
  assert.deepEqual(parseListen("[::1]:8080"), { hostname: "::1", port: 8080 });
  assert.deepEqual(parseListen("8080"), { hostname: "0.0.0.0", port: 8080 });
  assert.equal(typeof parseListen("localhost"), "string");
  assert.equal(typeof parseListen(":70000"), "string");
});
test("addresses: normalises upstreams to http:// origins with an optional base path", () => {
  assert.deepEqual(parseUpstream(":8003"), { url: "http://127.0.0.1:8003" });
  assert.deepEqual(parseUpstream("localhost:8003"), { url: "http://localhost:8003" });
  assert.deepEqual(parseUpstream("http://127.0.0.1:8003/app/"), { url: "http://127.0.0.1:8003/app" });
  assert.deepEqual(parseUpstream("https://example.test"), { url: "https://example.test" });
  assert.match(parseUpstream("ftp://x") as string, /only http/);
  assert.match(parseUpstream("http://x/?q=1") as string, /query/);
});

test("config validation: names every bad field", () => {
  const r = validatePartial({ tryDuration: "3x", upstreams: [":8003", "ftp://x"], admin: { listen: 5, hosts: ["*.ok.example", "no*wildcard.example"] }, log: "yaml" });
  assert.ok("errors" in r);
  const fields = r.errors.map((e) => e.field).sort();
  assert.deepEqual(fields, ["admin.hosts[1]", "admin.listen", "log", "tryDuration", "upstreams[1]"]);
});
test("config validation: rejects unknown keys and suggests the right one", () => {
  const r = validatePartial({ upstream: [":8003"] });
  assert.ok("errors" in r);
  assert.equal(r.errors[0].field, "upstream");
  assert.match(r.errors[0].problem, /unknown key.*upstreams/);
});
test("config validation: merges defaults, file and flags, later wins, and remembers where each came from", () => {
  const r = resolve([
    defaultLayer({ stderrIsTTY: false }),
    { source: "file", label: "config file x.json", raw: { tryDuration: "10s", upstreams: [":9000"] } },
    { source: "flag", label: "flags", raw: { tryDuration: "5s" } },
  ]);
  assert.ok("effective" in r);
  assert.equal(r.effective.config.tryDuration, 5000);
  assert.deepEqual(r.effective.config.upstreams, ["http://127.0.0.1:9000"]);
  assert.equal(r.effective.sources.tryDuration, "flag");
  assert.equal(r.effective.sources.upstreams, "file");
  assert.equal(r.effective.sources.tryInterval, "default");
  assert.deepEqual(r.effective.shadowed, ["tryDuration"]);
  assert.equal(r.effective.config.log, "json");
});
test("config validation: refuses an admin API beyond loopback without a token", () => {
  const r = resolve([defaultLayer({ stderrIsTTY: false }), { source: "flag", label: "flags", raw: { admin: { listen: "0.0.0.0:2019" } } }]);
  assert.ok("errors" in r);
  assert.equal(r.errors[0].field, "admin.token");
  const ok = resolve([defaultLayer({ stderrIsTTY: false }), { source: "flag", label: "flags", raw: { admin: { listen: "0.0.0.0:2019", token: "s3cret" } } }]);
  assert.ok("effective" in ok);
});

test("edge config from the environment: HOLDUP_CONFIG, then one variable per key", () => {
  const r = envLayers({
    HOLDUP_CONFIG: JSON.stringify({ tryDuration: "5s", upstreams: [":1"] }),
    HOLDUP_UPSTREAMS: "localhost:8003, :8004",
    HOLDUP_MAX_HELD: "7",
    HOLDUP_LISTEN: ":9999",
  });
  assert.ok("layers" in r);
  assert.deepEqual(r.ignored, ["HOLDUP_LISTEN"]);
  const resolved = resolve([defaultLayer({ stderrIsTTY: false }), ...r.layers]);
  assert.ok("effective" in resolved);
  const c = resolved.effective.config;
  assert.deepEqual(c.upstreams, ["http://localhost:8003", "http://127.0.0.1:8004"], "the single variable wins over HOLDUP_CONFIG");
  assert.equal(c.tryDuration, 5000);
  assert.equal(c.maxHeld, 7);
  assert.equal(resolved.effective.sources.tryDuration, "env");
});

test("edge config from the environment: a typo or bad JSON is named", () => {
  const typo = envLayers({ HOLDUP_TRY_DURATON: "5s" });
  assert.ok("errors" in typo);
  assert.equal(typo.errors[0].field, "HOLDUP_TRY_DURATON");
  assert.match(typo.errors[0].problem, /HOLDUP_TRY_DURATION/);
  const bad = envLayers({ HOLDUP_CONFIG: "{nope" });
  assert.ok("errors" in bad);
  assert.equal(bad.errors[0].where, "HOLDUP_CONFIG");
});
