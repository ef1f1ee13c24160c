/**
 * The admin API (JSON): status, reload, pause, resume, stop, metrics, healthz.
 * Served on its own listener (127.0.0.1:2019 by default), or mounted under
 * /_holdup/ by the edge entry. With a token, every call needs
 * `Authorization: Bearer TOKEN`.
 */
import { Hono } from "hono";
import type { Control } from "./control.ts";
import type { Metrics } from "./metrics.ts";
import type { State } from "./state.ts";

export interface AdminDeps {
  control: Control;
  state: State;
  metrics: Metrics;
  /**
   * Refuse every call while no token is configured (the edge entry, where the
   * admin API shares the public listener): a reload that clears the token must
   * not open it.
   */
  tokenRequired?: boolean;
}

export function adminApp(d: AdminDeps): Hono {
  const app = new Hono();

  app.use("*", async (c, next) => {
    const token = d.state.current.config.admin.token;
    if ((token || d.tokenRequired) && !(token && bearerMatches(c.req.header("authorization"), token))) {
      return c.json({ error: "unauthorized: send Authorization: Bearer TOKEN" }, 401, {
        "www-authenticate": 'Bearer realm="holdup"',
      });
    }
    await next();
  });

  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/status", (c) => c.json(d.control.status()));
  app.get("/metrics", (c) =>
    c.body(d.metrics.render(d.state.current, d.state.held), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }));

  app.post("/reload", async (c) => {
    const text = await c.req.text();
    let result;
    if (text.trim() === "") {
      result = await d.control.reloadFromFile("POST /reload");
    } else {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (e) {
        return c.json({ error: `the body is not valid JSON: ${(e as Error).message}` }, 400);
      }
      result = d.control.reloadWithBody("POST /reload", body);
    }
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
    const text = await c.req.text();
    let message = "";
    if (text.trim()) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (e) {
        return c.json({ error: `the body is not valid JSON: ${(e as Error).message}` }, 400);
      }
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
  "GET /status", "POST /reload", "POST /pause", "POST /resume", "POST /stop", "GET /metrics", "GET /healthz",
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
