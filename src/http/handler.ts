/** The proxy listener's handler: route to an app, then every method and path goes through its hold loop. */
import type { Apps } from "../apps/apps.ts";
import { requestId } from "./requestid.ts";
import { proxy } from "./hold.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { HeaderList, Incoming, IncomingHandler, Reply } from "../serve/types.ts";

export function proxyHandler(apps: Apps, metrics: Metrics): IncomingHandler {
  return (req) => {
    const route = apps.route(req.header("host"), req.target);
    if (!route) return noApp(req, metrics);
    const { app } = route;
    if (app.cfg.healthPath !== null && app.healthWhilePaused(route.target.split("?")[0])) {
      metrics.request(200, 0, app.name);
      const headers: HeaderList = [["content-type", "text/plain; charset=utf-8"], ["cache-control", "no-store"], ["x-request-id", requestId(req.header("x-request-id"))]];
      return { status: 200, headers, body: "ok (holdup: paused)\n" };
    }
    return proxy(req, app.deps, route.target);
  };
}

function noApp(req: Incoming, metrics: Metrics): Reply {
  metrics.request(404, 0, "");
  const name = (req.header("host") ?? "").replace(/[^\x21-\x7e]/g, "?").slice(0, 255);
  return {
    status: 404,
    headers: [["content-type", "text/plain; charset=utf-8"], ["x-request-id", requestId(req.header("x-request-id"))]],
    body: `holdup: no app answers host "${name}"\n`,
  };
}
