/**
 * The redirect listener (--redirect-http): plain HTTP that answers every
 * request 308 to the same host and request-target on https (308 keeps the
 * method and body), and answers ACME HTTP-01 challenges
 * (/.well-known/acme-challenge/TOKEN) from `challenges` when one is pending.
 * Only names holdup serves are redirected (as Caddy does): an app's host, a
 * name ACME manages, or a name a certificate in use covers; any other Host
 * gets 404, so the listener is no open redirector for names pointed at it.
 */
import type { IncomingHandler, Reply } from "./types.ts";
import type { Certificates } from "./tls.ts";

const CHALLENGE = "/.well-known/acme-challenge/";

export function redirectHandler(
  httpsPort: () => number,
  challenges?: (token: string) => string | null,
  serves?: (name: string) => boolean,
): IncomingHandler {
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
    if (serves && !serves(name)) {
      return { status: 404, headers: [["content-type", "text/plain; charset=utf-8"]], body: "holdup: no site with this name is served here\n" };
    }
    const port = httpsPort();
    const location = `https://${name}${port === 443 ? "" : `:${port}`}${req.target}`;
    return {
      status: 308,
      headers: [["location", location], ["content-type", "text/plain; charset=utf-8"], ["cache-control", "no-store"]],
      body: `holdup: this site is served over https: ${location}\n`,
    };
  };
}

/** Whether holdup serves `name` (a Host without port) over HTTPS: an app's host, an ACME name, or a certificate's name. */
export function servesName(name: string, o: { hosts: string[]; acme: string[]; certs: Certificates | null }): boolean {
  const n = name.toLowerCase().replace(/\.$/, "").replace(/^\[|\]$/g, "");
  if (!n) return false;
  for (const h of o.hosts) {
    if (h === n || (h.startsWith("*.") && n.endsWith(h.slice(1)) && n.length > h.length - 1)) return true;
  }
  if (o.acme.includes(n)) return true;
  const cert = o.certs?.select(n);
  if (!cert) return false;
  try {
    const ip = /^[\d.]+$|:/.test(n);
    return Boolean(ip ? cert.x509.checkIP(n) : cert.x509.checkHost(n));
  } catch {
    return false;
  }
}
