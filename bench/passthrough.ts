// Bare fetch() passthrough: the floor that any fetch()-based proxy (holdup
// included) builds on. No header hygiene, no holding, no retries.
// Run: PORT=8081 UPSTREAM=http://127.0.0.1:8003 bun bench/passthrough.ts
//      PORT=8081 UPSTREAM=http://127.0.0.1:8003 deno run --allow-net --allow-env bench/passthrough.ts
declare const Bun: any;
declare const Deno: any;

const env = (k: string): string | undefined =>
  typeof Deno !== "undefined" ? Deno.env.get(k) : (globalThis as any).process?.env?.[k];

const port = Number(env("PORT") ?? 8081);
const upstream = (env("UPSTREAM") ?? "http://127.0.0.1:8003").replace(/\/$/, "");
const isBun = typeof Bun !== "undefined";

function handler(req: Request): Promise<Response> {
  const u = new URL(req.url);
  const init: Record<string, unknown> = {
    method: req.method,
    headers: req.headers,
    redirect: "manual",
  };
  if (req.method !== "GET" && req.method !== "HEAD") {
    init.body = req.body;
    init.duplex = "half";
  }
  if (isBun) init.decompress = false; // pass compressed bytes through untouched
  return fetch(upstream + u.pathname + u.search, init as RequestInit);
}

if (isBun) {
  Bun.serve({ port, hostname: "127.0.0.1", fetch: handler, idleTimeout: 255, development: false });
} else {
  Deno.serve({ port, hostname: "127.0.0.1", onListen() {} }, handler);
}
