/** The proxy listener's handler: route to an app (or 404), then every method and path goes through its hold loop. */
import type { App, Apps } from "../apps/apps.ts";
import type { Runtime } from "../runtime/types.ts";
import type { IncomingHandler } from "../serve/types.ts";
import { account, type Observers, routeOr404 } from "./front.ts";
import { proxy, type ProxyDeps } from "./hold.ts";
import type { PageSet } from "./pages.ts";
import { requestId } from "./requestid.ts";

/** `pages`: `--pages DIR`, shared by every app and swapped whole on reload. */
export function proxyHandler(apps: Apps, runtime: Runtime, o: Observers, pages: { set: PageSet | null }): IncomingHandler {
  // Each app's bag for the hold loop, built once (the model itself holds no log or metrics).
  const bags = new WeakMap<App, ProxyDeps>();
  const bag = (app: App) => {
    let d = bags.get(app);
    if (!d) bags.set(app, d = { state: app.state, runtime, log: o.log, metrics: o.metrics, app: app.name, pages });
    return d;
  };
  return (req) => {
    const route = routeOr404(apps, req.header("host"), req.target);
    if (!route.app) {
      const rid = requestId(req.header("x-request-id"));
      account(o, { app: "", method: req.method, path: req.target, status: 404, heldMs: 0, start: performance.now(), requestId: rid })?.(null, null, route.message);
      return {
        status: 404,
        headers: [["content-type", "text/plain; charset=utf-8"], ["x-request-id", rid]],
        body: `holdup: ${route.message}\n`,
      };
    }
    const { app } = route;
    if (app.cfg.healthPath !== null && app.healthWhilePaused(route.target.split("?")[0])) {
      o.metrics.request(200, 0, app.name);
      return {
        status: 200,
        headers: [["content-type", "text/plain; charset=utf-8"], ["cache-control", "no-store"], ["x-request-id", requestId(req.header("x-request-id"))]],
        body: "ok (holdup: paused)\n",
      };
    }
    return proxy(req, bag(app), route.target);
  };
}
