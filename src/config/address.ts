/**
 * Listen addresses ("[host]:port") and upstream origins ("localhost:8003",
 * ":8003", "http://10.0.0.5:3000/app"). Each parser returns a value or a string
 * saying what is wrong.
 */

export interface ListenAddress {
  /** "0.0.0.0" when the address named no host (":8080" = all interfaces). */
  hostname: string;
  port: number;
}

const LISTEN = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d+)$/;

export function parseListen(text: string): ListenAddress | string {
  const t = text.trim();
  if (/^\d+$/.test(t)) return checkPort("0.0.0.0", Number(t), text);
  const m = LISTEN.exec(t);
  if (!m) return `"${text}" is not an address; write [host]:port, e.g. :8080, 127.0.0.1:8080 or [::1]:8080`;
  const hostname = m[1] ?? (m[2] || "0.0.0.0");
  return checkPort(hostname, Number(m[3]), text);
}

function checkPort(hostname: string, port: number, text: string): ListenAddress | string {
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `"${text}": port must be 0-65535`;
  return { hostname, port };
}

export function formatListen(a: ListenAddress): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** True when only this machine can reach the address. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\./.test(hostname);
}

/**
 * Normalises an upstream to an origin plus optional base path, without a
 * trailing slash: "localhost:8003" → "http://localhost:8003",
 * ":8003" and "8003" → "http://127.0.0.1:8003", "http://h:1/app/" → "http://h:1/app".
 */
export function parseUpstream(text: string): { url: string } | string {
  let t = text.trim();
  if (t.startsWith(":")) t = `127.0.0.1${t}`;
  // A bare port, like --listen 8080 (else URL would read "8003" as the IPv4 address 0.0.31.67).
  if (/^\d+$/.test(t)) t = `127.0.0.1:${t}`;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) t = `http://${t}`;
  let url: URL;
  try {
    url = new URL(t);
  } catch {
    return `"${text}" is not a URL; write it like http://127.0.0.1:8003, localhost:8003, :8003 or 8003`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `"${text}": only http:// and https:// upstreams are supported`;
  }
  if (!url.hostname) return `"${text}" names no host`;
  if (url.search || url.hash) return `"${text}": an upstream cannot carry a query or fragment`;
  if (url.username || url.password) return `"${text}": credentials in upstream URLs are not supported`;
  return { url: url.origin + url.pathname.replace(/\/+$/, "") };
}
