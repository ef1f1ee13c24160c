// Where holdup's time goes: the same passthrough built up one layer at a time
// out of holdup's own modules, so each step's cost is the difference to the one
// below it (bench/costs.mjs runs the steps interleaved and writes bench/COSTS.md).
//
//   listener  holdup's node:http listener (timeouts, caps, Host/target checks)
//             + the runtime's upstream client (Bun: fetch; Deno: node:http),
//             headers copied as they came, the response relayed as it came
//   headers   + holdup's header hygiene both ways (hop-by-hop, X-Forwarded-*,
//             framing checks, X-Holdup-Held-Ms)
//   (holdup itself, src/proxy.ts, is the next step: per-attempt deadline and
//   abort, upstream accounting, apps routing, metrics, body preparation)
//
// Run: STEP=listener PORT=8081 UPSTREAM=http://127.0.0.1:8003 bun bench/ladder.ts
//      STEP=headers … deno run -A bench/ladder.ts
import { clientHeaders, upstreamHeaders } from "../src/http/headers.ts";
import { runtime } from "../src/runtime/index.ts";
import { listen } from "../src/serve/listener.ts";
import type { HeaderList, Incoming, Reply } from "../src/serve/types.ts";

const env = (k: string) => runtime.env(k);
const step = env("STEP") ?? "listener";
const upstream = (env("UPSTREAM") ?? "http://127.0.0.1:8003").replace(/\/$/, "");
const never = new AbortController().signal;

async function handler(req: Incoming): Promise<Reply> {
  let headers: HeaderList;
  if (step === "headers") headers = upstreamHeaders(req, "bench");
  else {
    headers = [];
    req.forEachHeader((n, v) => headers.push([n, v]));
  }
  const body = req.method === "GET" || req.method === "HEAD" ? null : req.body;
  const res = await runtime.fetchUpstream(upstream + req.target, { method: req.method, headers, body, signal: never, fresh: false });
  if (step === "headers") {
    const h = clientHeaders(res, 0, "bench");
    if ("error" in h) return { status: 502, headers: [], body: h.error };
    return { status: res.status, headers: h.headers, body: res.body, length: h.length };
  }
  const out: HeaderList = [];
  res.headers.forEach((v, n) => {
    if (n !== "connection" && n !== "keep-alive" && n !== "transfer-encoding") out.push([n, v]);
  });
  const len = res.headers.get("content-length");
  return { status: res.status, headers: out, body: res.body, length: len === null ? null : Number(len) };
}

await listen({
  hostname: "127.0.0.1",
  port: Number(env("PORT") ?? 8081),
  handler,
  limits: { headerTimeout: 10_000, bodyTimeout: 30_000, keepAliveTimeout: 75_000, maxConnections: 10_000 },
  rearmAccept: runtime.acceptStallsOnEmfile,
  wholeBodyMax: runtime.wholeBodyMax,
  warn: () => {},
});
