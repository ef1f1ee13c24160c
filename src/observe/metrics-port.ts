/**
 * `--metrics-listen ADDR` (config metrics.listen): a listener that serves
 * `GET /metrics` and nothing else, without a token, so a remote Prometheus can
 * scrape holdup without the admin token (which also opens /stop, /reload, …).
 * Everything else is 404; the text is the admin API's /metrics, byte for byte.
 */
import type { IncomingHandler } from "../serve/types.ts";

export function metricsHandler(render: () => string): IncomingHandler {
  return (req) => {
    const q = req.target.indexOf("?");
    const path = q < 0 ? req.target : req.target.slice(0, q);
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      return {
        status: 404,
        headers: [["content-type", "text/plain; charset=utf-8"], ["cache-control", "no-store"]],
        body: "holdup: this listener serves GET /metrics only\n",
      };
    }
    return {
      status: 200,
      headers: [["content-type", "text/plain; version=0.0.4; charset=utf-8"], ["cache-control", "no-store"]],
      body: req.method === "HEAD" ? null : render(),
    };
  };
}
