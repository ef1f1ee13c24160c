/**
 * What a failed fetch() tells us about whether the upstream saw the request.
 * The error shapes differ by runtime (see shared/notes/runtime-facts.md):
 *   Bun:  TypeError with code "ECONNREFUSED" (older: "ConnectionRefused"), "ENOTFOUND", "ECONNRESET", …
 *   Deno: TypeError("fetch failed" / "error sending request …") whose cause's
 *         message holds "tcp connect error", "Connection refused", "dns error", …
 * Classify by code first, then by message text.
 */

export type FailureKind =
  /** The connection was refused or never made: the request cannot have been sent. */
  | "connect"
  /** The name did not resolve. */
  | "dns"
  /** Anything after a connection existed: the upstream may have seen the request. */
  | "after-send";

const CONNECT_CODES = new Set([
  "ECONNREFUSED", "ConnectionRefused", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "FailedToOpenSocket",
]);
const DNS_CODES = new Set(["ENOTFOUND", "EAI_AGAIN", "DNSException"]);

export function classifyFailure(error: unknown): FailureKind {
  const code = findCode(error);
  if (code) {
    if (CONNECT_CODES.has(code)) return "connect";
    if (DNS_CODES.has(code)) return "dns";
  }
  const text = messages(error).toLowerCase();
  if (/dns error|failed to lookup|name or service not known|nodename nor servname|getaddrinfo/.test(text)) {
    return "dns";
  }
  if (/connection refused|tcp connect error|client error \(connect\)|unable to connect|network is unreachable/.test(text)) {
    return "connect";
  }
  return "after-send";
}

/** A short, single-line reason for logs and /status. */
export function describeFailure(error: unknown): string {
  const code = findCode(error);
  const text = messages(error).replace(/\s+/g, " ").trim() || String(error);
  return code && !text.includes(code) ? `${code}: ${text}` : text;
}

function findCode(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; i++) {
    if (typeof e.code === "string") return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

function messages(error: unknown): string {
  const parts: string[] = [];
  for (let e = error as { message?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; i++) {
    if (typeof e.message === "string") parts.push(e.message);
    else if (typeof e === "string") parts.push(e);
    e = e.cause as typeof e;
  }
  return parts.join(": ");
}
