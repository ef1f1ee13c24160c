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
 */
import { envLayers } from "./config/env.ts";
import { defaultLayer, formatErrors, resolve } from "./config/layers.ts";
import { createHoldup, VERSION } from "./holdup.ts";
import { runtime } from "./runtime/index.ts";

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

function handle(req: Request, arg?: unknown): Response | Promise<Response> {
  const conn = runtime.connFor(req, arg);
  if (adminMounted) {
    const url = req.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith(ADMIN_PREFIX, pathStart)) {
      const rest = url.slice(pathStart + ADMIN_PREFIX.length);
      if (rest === "" || rest[0] === "/" || rest[0] === "?") {
        const inner = new Request(url.slice(0, pathStart) + (rest[0] === "/" ? rest : `/${rest}`), req);
        return h.admin.fetch(inner, conn);
      }
    }
  }
  return h.proxy.fetch(req, conn);
}

export default {
  fetch: handle,
  // Bun's auto-serve: no "development server" banner, and no debug error pages.
  development: false,
};
