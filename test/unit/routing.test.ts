// Apps.route: the three host tiers, the longest path prefix, whole segments, stripPrefix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Apps } from "../../src/apps/apps.ts";
import { defaultLayer, type Layer, resolve } from "../../src/config/layers.ts";
import { runtime } from "../../src/runtime/index.ts";

function appsOf(raw: Layer["raw"]): Apps {
  const r = resolve([defaultLayer({ stderrIsTTY: false }), { source: "flag", label: "test", raw }]);
  if ("errors" in r) throw new Error(JSON.stringify(r.errors));
  return new Apps(r.effective.config, r.effective.sources, { runtime, events: () => ({ onUpstreamStatus() {} }) });
}

const apps = appsOf({
  apps: [
    { name: "exact", hosts: ["example.com"], upstreams: ["http://127.0.0.1:1"] },
    { name: "api", hosts: ["example.com"], pathPrefix: "/api", stripPrefix: true, upstreams: ["http://127.0.0.1:2"] },
    { name: "wild", hosts: ["*.example.com"], upstreams: ["http://127.0.0.1:3"] },
    { name: "any", upstreams: ["http://127.0.0.1:4"] },
    { name: "any-docs", pathPrefix: "/docs", upstreams: ["http://127.0.0.1:5"] },
  ],
} as Layer["raw"]);
const to = (host: string | null, target: string) => {
  const r = apps.route(host, target);
  return r && [r.app.name, r.target];
};

test("routing: an exact host wins over a wildcard, a wildcard over any host", () => {
  assert.deepEqual(to("example.com", "/x"), ["exact", "/x"]);
  assert.deepEqual(to("a.example.com", "/x"), ["wild", "/x"]);
  assert.deepEqual(to("a.b.example.com", "/x"), ["wild", "/x"], "a wildcard covers every depth");
  assert.deepEqual(to("elsewhere.test", "/x"), ["any", "/x"]);
  assert.deepEqual(to(null, "/x"), ["any", "/x"], "no Host: the any-host tier");
});

test("routing: a wildcard does not take the bare domain or a look-alike", () => {
  assert.deepEqual(to("example.com", "/"), ["exact", "/"]);
  assert.deepEqual(to("badexample.com", "/"), ["any", "/"]);
});

test("routing: host case, port and trailing dot do not matter", () => {
  assert.deepEqual(to("EXAMPLE.com:8080", "/"), ["exact", "/"]);
  assert.deepEqual(to("example.com.", "/"), ["exact", "/"]);
});

test("routing: within a tier the longest prefix wins, on whole segments, and stripPrefix removes it", () => {
  assert.deepEqual(to("example.com", "/api/users?id=1"), ["api", "/users?id=1"]);
  assert.deepEqual(to("example.com", "/api"), ["api", "/"]);
  assert.deepEqual(to("example.com", "/api?x=1"), ["api", "/?x=1"]);
  assert.deepEqual(to("example.com", "/apix"), ["exact", "/apix"], "a prefix matches whole segments only");
  assert.deepEqual(to("other.test", "/docs/a"), ["any-docs", "/docs/a"], "no stripPrefix: the target is kept");
});

test("routing: a host tier with no matching prefix falls to the next tier", () => {
  const a = appsOf({
    apps: [
      { name: "exact-api", hosts: ["example.com"], pathPrefix: "/api", upstreams: ["http://127.0.0.1:1"] },
      { name: "wild", hosts: ["*.com"], upstreams: ["http://127.0.0.1:2"] },
    ],
  } as Layer["raw"]);
  assert.equal(a.route("example.com", "/api/x")?.app.name, "exact-api");
  assert.equal(a.route("example.com", "/web")?.app.name, "wild");
  assert.equal(a.route("example.org", "/web"), null, "no tier matches: no route (the front answers 404)");
});

test("routing: a single app for every host takes everything without looking", () => {
  const a = appsOf({ upstreams: ["http://127.0.0.1:1"] } as Layer["raw"]);
  assert.deepEqual([a.route("anything", "/x?y")?.app.name, a.route(null, "/x?y")?.target], ["default", "/x?y"]);
});
