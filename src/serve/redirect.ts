/**
 * The redirect listener (--redirect-http): plain HTTP that answers every
 * request 308 to the same host and request-target on https (308 keeps the
 * method and body), and answers ACME HTTP-01 challenges
 * (/.well-known/acme-challenge/TOKEN) from `challenges` when one is pending.
 */
import type { IncomingHandler, Reply } from "./types.ts";

const CHALLENGE = "/.well-known/acme-challenge/";

export function redirectHandler(httpsPort: () => number, challenges?: (token: string) => string | null): IncomingHandler {
  return (req): Reply => {
    if (req.target.startsWith(CHALLENGE)) {
      const answer = challenges?.(req.target.slice(CHALLENGE.length).split("?")[0]) ?? null;
      if (answer !== null) return { status: 200, headers: [["content-type", "text/plain"]], body: answer };
      return { status: 404, headers: [["content-type", "text/plain; charset=utf-8"]], body: "holdup: no such ACME challenge\n" };
    }
    const host = req.header("host");
    if (!host) {
      return { status: 400, headers: [["content-type", "text/plain; charset=utf-8"]], body: "holdup: a redirect to https needs a Host header\n" };
    }
    // The listener checked Host already; drop its port and use the HTTPS listener's (none for 443).
    const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d*$/, "");
    const port = httpsPort();
    const location = `https://${name}${port === 443 ? "" : `:${port}`}${req.target}`;
    return {
      status: 308,
      headers: [["location", location], ["content-type", "text/plain; charset=utf-8"], ["cache-control", "no-store"]],
      body: `holdup: this site is served over https: ${location}\n`,
    };
  };
}
