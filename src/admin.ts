/**
 * The admin API (JSON): status, reload, pause, resume, stop, metrics, healthz.
 * Served on its own listener (127.0.0.1:2019 by default), or mounted under
 * /_holdup/ by the edge entry. With a token, every call needs
 * `Authorization: Bearer TOKEN`.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { Control } from "./control.ts";
import type { Metrics } from "./metrics.ts";
import { fromResponse, toRequest } from "./serve/web.ts";
import type { Incoming, IncomingHandler, Reply } from "./serve/types.ts";
import type { State } from "./state.ts";
import { jsonErrorPlace } from "./config/layers.ts";
import type { EventHub } from "./dashboard/events.ts";
import { newNonce, type PageStatus, pageHeaders, renderPage } from "./dashboard/page.ts";

/** Largest admin request body; a larger one is refused (413) without being read. */
export const ADMIN_MAX_BODY = 1024 * 1024;

export interface AdminDeps {
  control: Control;
  state: State;
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
  if (d.checkHost && !hostAllowed(host, d.state.current.config.admin.hosts)) {
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
  return listed.some((h) => h.toLowerCase() === lower);
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
    const token = d.state.current.config.admin.token;
    // The dashboard page itself: a browser cannot send the token when it navigates,
    // so with a token the page comes without data and asks for it (see dashboard/page.ts).
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
    const open = !d.state.current.config.admin.token && !d.tokenRequired;
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
  app.get("/status", (c) => c.json(d.control.status()));
  app.get("/metrics", (c) =>
    c.body(d.metrics.render(d.state.current, d.state.held), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }));

  app.post("/reload", async (c) => {
    const body = await jsonBody(c);
    if ("error" in body) return body.error;
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

  app.post("/pause", (c) => {
    d.control.pause();
    return c.json(d.control.status());
  });

  app.post("/resume", (c) => {
    d.control.resume();
    return c.json(d.control.status());
  });

  app.post("/stop", async (c) => {
    const parsed = await jsonBody(c);
    if ("error" in parsed) return parsed.error;
    let message = "";
    if ("value" in parsed) {
      const body = parsed.value;
      const m = (body as { message?: unknown })?.message;
      const keys = body && typeof body === "object" ? Object.keys(body) : [];
      if (typeof body !== "object" || body === null || keys.some((k) => k !== "message") || (m !== undefined && typeof m !== "string")) {
        return c.json({ error: 'expected {"message": "text shown to clients"}' }, 400);
      }
      message = (m as string | undefined) ?? "";
    }
    d.control.stop(message);
    return c.json(d.control.status());
  });

  app.notFound((c) =>
    c.json({ error: `no such admin endpoint: ${c.req.method} ${c.req.path}`, endpoints: ENDPOINTS }, 404)
  );
  return app;
}

const ENDPOINTS = [
  "GET / (dashboard)", "GET /events", "GET /status", "POST /reload", "POST /pause", "POST /resume", "POST /stop", "GET /metrics", "GET /healthz",
];

/** Compares in constant time (for equal lengths), so the token cannot be guessed byte by byte. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  const given = new TextEncoder().encode(m ? m[1].trim() : "");
  const want = new TextEncoder().encode(token);
  let diff = given.length ^ want.length;
  for (let i = 0; i < want.length; i++) diff |= want[i] ^ (given[i % Math.max(given.length, 1)] ?? 0);
  return diff === 0;
}
