/** The proxy listener's handler: every method and path goes through the hold loop. */
import { type ProxyDeps, proxy } from "./hold.ts";
import type { IncomingHandler } from "./serve/types.ts";

export function proxyHandler(d: ProxyDeps): IncomingHandler {
  return (req) => proxy(req, d);
}
