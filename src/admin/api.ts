/**
 * The admin API (JSON): status, reload, pause, resume, stop, metrics, healthz.
 * Served on its own listener (127.0.0.1:2019 by default), or mounted under
 * /_holdup/ by the edge entry. With a token, every call needs
 * `Authorization: Bearer TOKEN`.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { Control } from "../control/control.ts";
import type { Metrics } from "../observe/metrics.ts";
import { fromResponse, toRequest } from "../serve/web.ts";
import type { Incoming, IncomingHandler, Reply } from "../serve/types.ts";
import type { App, Apps } from "../apps/apps.ts";
import { jsonErrorPlace } from "../config/layers.ts";
import { parseUpstream } from "../config/address.ts";
import { parseDuration } from "../config/units.ts";
import { DEFAULT_DEPLOY_TIMEOUT } from "../control/control.ts";
import type { EventHub } from "./events.ts";
import { newNonce, type PageStatus, pageHeaders, renderPage } from "./dashboard.ts";

/** Largest admin request body; a larger one is refused (413) without being read. */
export const ADMIN_MAX_BODY = 1024 * 1024;

export interface AdminDeps {
  control: Control;
  apps: Apps;
  metrics: Metrics;
  /** The dashboard's events and history (GET / and GET /events). */
  events: EventHub;
  /**
   * Refuse every call while no token is configured (the edge entry, where the
   * admin API shares the public listener): a reload that clears the token must
   * not open it.
   */
  tokenRequired?: boolean;
  /**
   * Check Host against the admin listener's names (the own listener; not the
   * edge entry, where the admin API shares the public listener and its token).
   */
  checkHost?: boolean;
}

/**
 * Who may call the admin API, checked before anything else — a page open in
 * the operator's browser can send requests to 127.0.0.1:2019 too:
 * - Host must be an IP literal, localhost, or a name in admin.hosts: a page
 *   using DNS rebinding reaches the listener under its own name (evil.example).
 * - A state-changing request (anything but GET/HEAD) that carries an Origin
 *   must come from the admin listener's own origin: a cross-origin "simple"
 *   POST (text/plain, no preflight) is refused.
 * Both answer 403 and change nothing.
 */
function refuseForeign(c: Context, d: AdminDeps): Response | null {
  const host = c.req.header("host") ?? "";
  if (d.checkHost && !hostAllowed(host, d.control.effective.config.admin.hosts)) {
    return c.json({ error: `forbidden: Host "${host}" is not this admin API's address; add it to admin.hosts to allow it` }, 403);
  }
  const origin = c.req.header("origin");
  if (origin !== undefined && c.req.method !== "GET" && c.req.method !== "HEAD") {
    const own = new URL(c.req.url).origin;
    if (origin !== own && origin !== `http://${host}` && origin !== `https://${host}`) {
      return c.json({ error: `forbidden: requests from the web page at ${origin} may not change holdup` }, 403);
    }
  }
  return null;
}

/** IP literals cannot be DNS-rebound; names must be localhost or listed. */
export function hostAllowed(host: string, listed: string[]): boolean {
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d*$/, "");
  const lower = name.toLowerCase();
  if (lower === "localhost" || /^\d{1,3}(\.\d{1,3}){3}$/.test(lower) || /^\[[0-9a-f:.]+\]$/.test(lower)) return true;
  // "*.ops.example" allows every name under ops.example (a.ops.example, a.b.ops.example), not ops.example itself.
  return listed.some((h) => (h.startsWith("*.") ? lower.endsWith(h.slice(1).toLowerCase()) && lower.length > h.length - 1 : h.toLowerCase() === lower));
}

/** JSON bodies must say so: a text/plain body is what a foreign page can send without a preflight. */
async function jsonBody(c: Context): Promise<{ empty: true } | { value: unknown } | { error: Response }> {
  const text = await c.req.text();
  if (text.trim() === "") return { empty: true };
  const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/json") {
    return { error: c.json({ error: "send JSON bodies with Content-Type: application/json" }, 415) };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: c.json({ error: `the body is not valid JSON${jsonErrorPlace(e)}` }, 400) };
  }
}

/**
 * The admin app behind a listener: refuses a body over ADMIN_MAX_BODY before
 * reading it (413, connection closed), then hands a web Request to Hono.
 */
export function adminHandler(app: Hono, base: string): IncomingHandler {
  return async (inc: Incoming): Promise<Reply> => {
    const body = await inc.readAll(ADMIN_MAX_BODY);
    if (body === null) {
      return {
        status: 413,
        headers: [["content-type", "application/json"], ["connection", "close"]],
        body: JSON.stringify({ error: `request body larger than ${ADMIN_MAX_BODY} bytes` }),
      };
    }
    return fromResponse(await app.fetch(toRequest(inc, body, base)));
  };
}

export function adminApp(d: AdminDeps): Hono {
  const app = new Hono();

  app.use("*", async (c, next) => {
    const refused = refuseForeign(c, d);
    if (refused) return refused;
    const token = d.control.effective.config.admin.token;
    // The dashboard page itself: a browser cannot send the token when it navigates,
    // so with a token the page comes without data and asks for it (see dashboard.ts).
    if (c.req.path === "/" && (c.req.method === "GET" || c.req.method === "HEAD")) return await next();
    if ((token || d.tokenRequired) && !(token && bearerMatches(c.req.header("authorization"), token))) {
      return c.json({ error: "unauthorized: send Authorization: Bearer TOKEN" }, 401, {
        "www-authenticate": 'Bearer realm="holdup"',
      });
    }
    await next();
  });

  app.get("/", (c) => {
    const nonce = newNonce();
    const open = !d.control.effective.config.admin.token && !d.tokenRequired;
    const data = open
      ? { status: d.events.snapshot(null) as unknown as PageStatus, events: d.events.recentEvents() }
      : null;
    return c.html(renderPage(nonce, data), 200, pageHeaders(nonce));
  });
  app.get("/events", (c) =>
    c.body(d.events.open(), 200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    }));
  app.get("/healthz", (c) => c.text("ok\n"));
  /** ?app=NAME: that app; without it, every app. */
  const which = (c: Context): App[] | Response => selectApps(c, d, c.req.query("app") ?? null);

  app.get("/status", (c) => {
    const apps = which(c);
    if (apps instanceof Response) return apps;
    return c.json(d.control.status(c.req.query("app") ? apps[0] : undefined));
  });
  app.get("/metrics", (c) =>
    c.body(d.metrics.render(d.apps.list, d.control.configVersion, d.control.fleet), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }));

  app.post("/reload", async (c) => {
    const body = await jsonBody(c);
    if ("error" in body) return body.error;
    if ("value" in body) {
      // Shared: checked here, then applied by every instance in the fleet's order.
      const down = await d.control.shareReload(body.value);
      if (down !== null) return down ? c.json({ error: down }, 503) : c.json(d.control.status());
    }
    const result = "empty" in body
      ? await d.control.reloadFromFile("POST /reload")
      : await d.control.reloadWithBody("POST /reload", body.value);
    if (!result.ok) {
      return c.json({
        error: "config rejected; the old config stays",
        errors: result.errors.map((e) => ({ field: e.field, problem: e.problem, where: e.where })),
      }, result.status);
    }
    return c.json({ ...d.control.status(), notes: result.notes });
  });

  app.post("/restart", async (c) => {
    if (!d.control.restartApp) {
      return c.json({ error: "holdup is not running an app: start it as holdup [options] -- COMMAND [ARGS…]" }, 409);
    }
    const r = await d.control.restartApp("POST /restart");
    if (!r.ok) return c.json({ error: `restart failed: ${r.error}`, ...d.control.status() }, 502);
    return c.json({ restarted: { instance: r.instance, pid: r.pid, readyMs: r.ms }, ...d.control.status() });
  });

  app.post("/upgrade", async (c) => {
    if (!d.control.upgrade) return c.json({ error: "this holdup cannot upgrade itself: only a command-line holdup without --workers can (SIGUSR2, POST /upgrade)" }, 409);
    const r = await d.control.upgrade("POST /upgrade");
    if (!r.ok) return c.json({ error: `upgrade failed: ${r.error}` }, r.refused ? 409 : 502);
    // Connection: close: the client's next request must reach the new holdup, not this connection to the old one.
    return c.json({ upgraded: { pid: r.pid }, note: "the new holdup serves the ports now; this one answers its remaining requests, then exits" }, 200, { connection: "close" });
  });

  /** Pause, resume, stop: on this instance, or (with --state) on every instance of the fleet. */
  const setMode = async (c: Context, apps: App[], mode: "paused" | "running" | "stopped", message = "") => {
    const app = apps.length === 1 && d.apps.list.length > 1 ? apps[0].name : null;
    const down = await d.control.shareMode(app, mode, message);
    if (down) return c.json({ error: down }, 503);
    if (down === null) {
      // No fleet: here only.
      if (mode === "paused") d.control.pause(apps);
      else if (mode === "running") d.control.resume(apps);
      else d.control.stop(message, apps);
    }
    return c.json(d.control.status());
  };

  app.post("/pause", async (c) => {
    const t = await modeTarget(c, d, false);
    return t instanceof Response ? t : setMode(c, t.apps, "paused");
  });

  app.post("/resume", async (c) => {
    const t = await modeTarget(c, d, false);
    return t instanceof Response ? t : setMode(c, t.apps, "running");
  });

  app.post("/deploy", async (c) => {
    const parsed = await jsonBody(c);
    if ("error" in parsed) return parsed.error;
    if (!("value" in parsed)) return c.json({ error: DEPLOY_SHAPE }, 400);
    const req = deployRequest(parsed.value, d.control.effective.config.drainTimeout);
    if (typeof req === "string") return c.json({ error: req }, 400);
    const result = await d.control.deploy(req);
    if (!result.ok) return c.json({ error: result.error, ...(result.upstream ? { upstream: result.upstream } : {}), ...(result.rolledBack ? { rolledBack: true } : {}) }, result.status);
    return c.json(result);
  });

  app.post("/stop", async (c) => {
    const t = await modeTarget(c, d, true);
    return t instanceof Response ? t : setMode(c, t.apps, "stopped", t.message);
  });

  app.notFound((c) =>
    c.json({ error: `no such admin endpoint: ${c.req.method} ${c.req.path}`, endpoints: ENDPOINTS }, 404)
  );
  return app;
}

/** NAME's app, every app (null), or 404 naming the apps there are. */
function selectApps(c: Context, d: AdminDeps, name: string | null): App[] | Response {
  const apps = d.control.select(name);
  return apps ?? c.json({ error: `no app named "${name}"; apps: ${d.apps.list.map((a) => a.name).join(", ")}` }, 404);
}

/**
 * What POST /pause, /resume and /stop act on: the app named by ?app=NAME or
 * by the JSON body's "app" (both: the same name), every app only when neither
 * names one. The body may hold only "app" (and for /stop "message"): any other
 * key, or an "app" that is not a name, is 400 — a request meant for one app
 * never acts on all.
 */
async function modeTarget(c: Context, d: AdminDeps, stop: boolean): Promise<{ apps: App[]; message: string } | Response> {
  const shape = stop ? '{"app"?: "name", "message"?: "text shown to clients"}' : '{"app"?: "name"}';
  const parsed = await jsonBody(c);
  if ("error" in parsed) return parsed.error;
  const body = "value" in parsed ? parsed.value : {};
  if (!body || typeof body !== "object" || Array.isArray(body)) return c.json({ error: `expected a JSON object: ${shape}` }, 400);
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).find((k) => k !== "app" && !(stop && k === "message"));
  if (unknown !== undefined) return c.json({ error: `unknown key "${unknown}"; expected ${shape}` }, 400);
  if (b.app !== undefined && (typeof b.app !== "string" || b.app === "")) return c.json({ error: `app: must be an app's name; expected ${shape}` }, 400);
  if (b.message !== undefined && typeof b.message !== "string") return c.json({ error: `message: must be a string; expected ${shape}` }, 400);
  const query = c.req.query("app");
  if (query !== undefined && b.app !== undefined && query !== b.app) {
    return c.json({ error: `?app=${query} and the body's "app": "${b.app}" name different apps; name one` }, 400);
  }
  const apps = selectApps(c, d, query ?? (b.app as string | undefined) ?? null);
  return apps instanceof Response ? apps : { apps, message: (b.message as string | undefined) ?? "" };
}

const ENDPOINTS = [
  "GET / (dashboard)", "GET /events", "GET /status", "POST /reload", "POST /deploy", "POST /restart", "POST /upgrade", "POST /pause", "POST /resume", "POST /stop", "GET /metrics", "GET /healthz",
];

const DEPLOY_SHAPE = 'expected {"app": "web", "upstreams": ["http://127.0.0.1:8004"], "healthPath"?: "/up", "deployTimeout"?: "30s", "drainTimeout"?: "30s"}';

/** Validates a POST /deploy body; a string says what is wrong. */
function deployRequest(body: unknown, defaultDrain: number) {
  if (!body || typeof body !== "object" || Array.isArray(body)) return DEPLOY_SHAPE;
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !["app", "upstreams", "healthPath", "deployTimeout", "drainTimeout"].includes(k));
  if (unknown.length) return `unknown key ${unknown[0]}; ${DEPLOY_SHAPE}`;
  if (typeof b.app !== "string" || !b.app) return `app: required; ${DEPLOY_SHAPE}`;
  if (!Array.isArray(b.upstreams) || b.upstreams.length === 0) return `upstreams: at least one URL; ${DEPLOY_SHAPE}`;
  const upstreams: string[] = [];
  for (const u of b.upstreams) {
    const p = typeof u === "string" ? parseUpstream(u) : "must be a string";
    if (typeof p === "string") return `upstreams: ${p}`;
    upstreams.push(p.url);
  }
  if (b.healthPath !== undefined && (typeof b.healthPath !== "string" || !b.healthPath.startsWith("/"))) return "healthPath: must start with /, e.g. /up";
  const dur = (k: string, dflt: number): number | string => {
    if (b[k] === undefined) return dflt;
    const ms = typeof b[k] === "string" ? parseDuration(b[k] as string) : `${k}: write it like 30s`;
    if (typeof ms === "string") return `${k}: ${ms}`;
    return ms > 3_600_000 ? `${k}: at most 1h` : ms;
  };
  const deployTimeout = dur("deployTimeout", DEFAULT_DEPLOY_TIMEOUT);
  if (typeof deployTimeout === "string") return deployTimeout;
  const drainTimeout = dur("drainTimeout", defaultDrain);
  if (typeof drainTimeout === "string") return drainTimeout;
  return { app: b.app, upstreams, healthPath: (b.healthPath as string | undefined) ?? null, deployTimeout, drainTimeout };
}

/** Compares in constant time (for equal lengths), so the token cannot be guessed byte by byte. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  const given = new TextEncoder().encode(m ? m[1].trim() : "");
  const want = new TextEncoder().encode(token);
  let diff = given.length ^ want.length;
  for (let i = 0; i < want.length; i++) diff |= want[i] ^ (given[i % Math.max(given.length, 1)] ?? 0);
  return diff === 0;
}
