/**
 * The edge entry: `export default { fetch }` for `deno serve`, Bun's
 * auto-serve and Deno Deploy-style hosts — one listener, no SIGHUP.
 *
 *   HOLDUP_UPSTREAMS=http://127.0.0.1:8003 deno serve --allow-net --allow-env src/edge.ts
 *   HOLDUP_UPSTREAMS=http://127.0.0.1:8003 bun src/edge.ts
 *
 * Config comes from the environment (see src/config/env.ts). With
 * HOLDUP_ADMIN_TOKEN set, the admin API is mounted under /_holdup/ (for
 * example POST /_holdup/reload); without one it is not mounted at all.
 *
 * The edge entry does not run the app (`-- COMMAND`, config `run`): such hosts
 * start and stop processes themselves. A config with `run` is refused.
 *
 * Nor does it terminate TLS: the host in front of it does (X-Forwarded-Proto
 * is the scheme of the URL the host hands over). A config with `tls` or
 * `apps[].tls` is refused.
 */
import { envLayers } from "./config/env.ts";
import { defaultLayer, formatErrors, resolve } from "./config/layers.ts";
import { createHoldup, VERSION } from "./holdup.ts";
import { runtime } from "./runtime/index.ts";
import { fromRequest, toResponse } from "./serve/web.ts";

const ADMIN_PREFIX = "/_holdup";

function build() {
  const env = runtime.envWithPrefix("HOLDUP_");
  const fromEnv = envLayers(env);
  if ("errors" in fromEnv) throw new Error(`holdup: invalid configuration:\n${formatErrors(fromEnv.errors)}`);
  const defaults = defaultLayer({ stderrIsTTY: runtime.stderrIsTTY() });
  // There is no admin listener here: the admin API rides on the one listener, under /_holdup/.
  defaults.raw.admin = { listen: "off", token: null };
  const resolved = resolve([defaults, ...fromEnv.layers]);
  if ("errors" in resolved) throw new Error(`holdup: invalid configuration:\n${formatErrors(resolved.errors)}`);
  if (resolved.effective.config.state) {
    throw new Error("holdup: the edge entry does not share state yet (HOLDUP_STATE / state): Deno KV at the edge is not built; use the command-line proxy with --state redis://…");
  }
  if (resolved.effective.config.run) {
    throw new Error("holdup: the edge entry cannot run an app (config key run); use the command-line proxy: holdup [options] -- COMMAND");
  }
  const c = resolved.effective.config;
  if (c.tls.cert || c.tls.redirectHttp || c.tls.acme || c.apps.some((a) => a.tls)) {
    throw new Error("holdup: the edge entry does not terminate TLS (config key tls, apps[].tls): the platform in front of it does; for HTTPS in holdup use the command-line proxy: holdup --tls-cert FILE --tls-key FILE");
  }
  const h = createHoldup({
    runtime,
    effective: resolved.effective,
    base: { defaults, configPath: null, overrides: null },
    adminTokenRequired: true,
  });
  const token = resolved.effective.config.admin.token;
  h.log.info("holdup started (edge)", {
    version: VERSION,
    runtime: `${runtime.name} ${runtime.version}`,
    upstreams: resolved.effective.config.upstreams,
    admin: token ? `${ADMIN_PREFIX}/` : "off (set HOLDUP_ADMIN_TOKEN to mount it)",
    ...(fromEnv.ignored.length ? { ignored: fromEnv.ignored } : {}),
  });
  return { h, adminMounted: Boolean(token) };
}

const { h, adminMounted } = build();

const badRequest = () =>
  new Response("holdup: the Host header is not a valid host[:port], or the request-target is not a path\n", {
    status: 400,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

/**
 * WebSockets are proxied by the command-line proxy only (src/proxy.ts,
 * dist/proxy.js, the binary): it tunnels the upgraded connection's bytes. A
 * web `fetch` handler cannot do that on either runtime (Deno drops a 101
 * Response; Bun writes no body after it), and relaying messages instead would
 * lose backpressure and handshake fidelity (see README "WebSockets").
 */
const noWebSockets = () =>
  new Response("holdup: WebSockets are not proxied by the edge entry; run holdup's command-line proxy for them\n", {
    status: 501,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

async function handle(req: Request, arg?: unknown): Promise<Response> {
  if (/(^|,)\s*websocket\s*(,|$)/i.test(req.headers.get("upgrade") ?? "")) return noWebSockets();
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
  return toResponse(await h.proxy(inc));
}

export default {
  fetch: handle,
  // Bun's auto-serve: no "development server" banner, and no debug error pages.
  development: false,
};
