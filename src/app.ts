/** The proxy listener's Hono app: every method and path goes through the hold loop. */
import { Hono } from "hono";
import { type ProxyDeps, proxy } from "./hold.ts";
import type { Conn } from "./runtime/types.ts";

export function proxyApp(d: ProxyDeps): Hono<{ Bindings: Conn }> {
  const app = new Hono<{ Bindings: Conn }>();
  app.all("*", (c) => proxy(c.req.raw, c.env, d));
  return app;
}
