/**
 * The edge entry: `export default { fetch }` for `deno serve`, Bun's
 * auto-serve and Deno Deploy-style hosts — one listener, config from the
 * environment (config/env.ts), the admin API under /_holdup/ when
 * HOLDUP_ADMIN_TOKEN is set, shared state through Deno KV or Redis, and
 * WebSockets as a message relay (ws/relay.ts). What it refuses (run, tls)
 * and why: docs/design/edge.md.
 */
import { envLayers } from "./config/env.ts";
import { defaultLayer, formatErrors, resolve } from "./config/layers.ts";
import { createHoldup, VERSION } from "./holdup.ts";
import { Fleet, redact } from "./fleet/fleet.ts";
import { KvEngine } from "./fleet/kv.ts";
import { runtime } from "./runtime/index.ts";
import { fromRequest, toResponse } from "./serve/web.ts";
import { edgeWebSocket } from "./ws/relay.ts";

const ADMIN_PREFIX = "/_holdup";

async function build() {
  const env = runtime.envWithPrefix("HOLDUP_");
  const fromEnv = envLayers(env);
  if ("errors" in fromEnv) throw new Error(`holdup: invalid configuration:\n${formatErrors(fromEnv.errors)}`);
  const defaults = defaultLayer({ stderrIsTTY: runtime.stderrIsTTY() });
  // There is no admin listener here: the admin API rides on the one listener, under /_holdup/.
  defaults.raw.admin = { listen: "off", token: null };
  const resolved = resolve([defaults, ...fromEnv.layers]);
  if ("errors" in resolved) throw new Error(`holdup: invalid configuration:\n${formatErrors(resolved.errors)}`);
  const state = resolved.effective.config.state;
  if (state?.startsWith("kv") && runtime.name !== "deno") {
    throw new Error(`holdup: HOLDUP_STATE=${state} is Deno KV, and Bun has no Deno KV; on Bun share state through Redis: HOLDUP_STATE=redis://host:6379`);
  }
  if (resolved.effective.config.run) {
    throw new Error("holdup: the edge entry cannot run an app (config key run); use the command-line proxy: holdup [options] -- COMMAND");
  }
  const c = resolved.effective.config;
  if (c.tls.cert || c.tls.redirectHttp || c.tls.acme || c.apps.some((a) => a.tls)) {
    throw new Error("holdup: the edge entry does not terminate TLS (config key tls, apps[].tls): the platform in front of it does; for HTTPS in holdup use the command-line proxy: holdup --tls-cert FILE --tls-key FILE");
  }
  if (c.pages || c.metrics.listen) {
    throw new Error(`holdup: the edge entry has no ${c.pages ? "pages (--pages): it reads no files" : "metrics.listen: it has one listener; /_holdup/metrics serves the metrics"}; use the command-line proxy`);
  }
  const h = createHoldup({
    runtime,
    effective: resolved.effective,
    base: { defaults, configPath: null, overrides: null },
    adminTokenRequired: true,
  });
  // A fleet of isolates: read the shared state before serving (at most 3 s; without the engine, serve on local state).
  let fleet: Fleet | null = null;
  if (state) {
    const kvPath = state === "kv" ? null : state.startsWith("kv:") ? state.slice(3) : undefined;
    fleet = h.control.fleet = new Fleet(
      state,
      { control: h.control, apps: h.apps, log: h.log },
      undefined,
      kvPath === undefined ? undefined : (events) => new KvEngine(() => runtime.openKv(kvPath), events),
    );
    // Every log line says which isolate wrote it (the instance id /_holdup/status shows too).
    h.log.worker = fleet.instance;
    await fleet.ready(3000);
    if (fleet.lastError && state.startsWith("kv")) throw new Error(`holdup: cannot open Deno KV (HOLDUP_STATE=${state}): ${fleet.lastError}`);
  }
  const token = resolved.effective.config.admin.token;
  h.log.info("holdup started (edge)", {
    version: VERSION,
    runtime: `${runtime.name} ${runtime.version}`,
    upstreams: resolved.effective.config.upstreams,
    admin: token ? `${ADMIN_PREFIX}/` : "off (set HOLDUP_ADMIN_TOKEN to mount it)",
    ...(fromEnv.ignored.length ? { ignored: fromEnv.ignored } : {}),
    ...(fleet ? { state: state!.startsWith("kv") ? state : redact(state!), instance: fleet.instance } : {}),
  });
  // deno serve stops its listener on SIGTERM/SIGINT and then waits for the event loop to empty:
  // end what would keep it busy (the KV watch, probe timers, held requests, dashboard streams).
  // Bun's auto-serve exits on the signal by itself (a listener there would keep it running).
  if (runtime.name === "deno") {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      for (const a of h.apps.list) a.state.retire(); // held requests are answered 503; no more probes
      h.events.close();
      fleet?.close();
      h.log.flush();
    };
    runtime.onSignal("SIGTERM", stop);
    runtime.onSignal("SIGINT", stop);
  }
  return { h, adminMounted: Boolean(token) };
}

const { h, adminMounted } = await build();
const wsDeps = { apps: h.apps, log: h.log, metrics: h.metrics, runtime };

const badRequest = () =>
  new Response("holdup: the Host header is not a valid host[:port], or the request-target is not a path\n", {
    status: 400,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

const isWebSocket = (req: Request) => /(^|,)\s*websocket\s*(,|$)/i.test(req.headers.get("upgrade") ?? "");

/**
 * `arg` is what the host passes as fetch's second argument: Deno's serve
 * info, Bun's server (which accepts WebSockets: server.upgrade). Undefined as
 * a result: Bun has upgraded the request and answers it itself.
 */
async function handle(req: Request, arg?: unknown): Promise<Response | undefined> {
  // The path comes from the validated request-target only, so `Host: a/_holdup` cannot reach the admin API.
  const inc = fromRequest(req, runtime.clientIPFor(req, arg));
  if (!inc) return badRequest();
  if (adminMounted && inc.target.startsWith(ADMIN_PREFIX)) {
    const rest = inc.target.slice(ADMIN_PREFIX.length);
    if (rest === "" || rest[0] === "/" || rest[0] === "?") {
      const origin = req.url.slice(0, req.url.indexOf("/", req.url.indexOf("//") + 2));
      return h.admin.fetch(new Request(origin + (rest[0] === "/" ? rest : `/${rest}`), req));
    }
  }
  // WebSockets: a message relay, not the command-line proxy's byte tunnel (see src/ws/relay.ts, README "WebSockets").
  if (isWebSocket(req)) return await edgeWebSocket(wsDeps, req, inc, arg);
  return toResponse(await h.proxy(inc));
}

export default {
  fetch: handle,
  // Bun's auto-serve dispatches accepted WebSockets to these (runtime/bun.ts); Deno needs none.
  websocket: runtime.edgeWebSocket,
  // Bun's auto-serve: no "development server" banner, and no debug error pages.
  development: false,
};
