/**
 * One line that says why talking to the ACME directory failed: unreachable
 * (with the system error code), an untrusted certificate (with what to do
 * for a private CA), an HTTP status, or the CA's own problem detail. Never
 * more than one line, never a stack.
 */

const UNREACHABLE: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "no such host",
  EAI_AGAIN: "name lookup failed",
  ETIMEDOUT: "timed out",
  ECONNABORTED: "timed out",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
};

export function describeAcmeError(e: unknown, directory: string): string {
  const err = e as { code?: string; message?: string; response?: { status?: number } };
  const code = typeof err?.code === "string" ? err.code : "";
  const message = oneLine(String(err?.message ?? e));
  // Deno's node:https reads the system's CA certificates only with --allow-sys (there is no narrower grant).
  if (/Requires sys access/.test(message)) {
    return `cannot check the TLS certificate of the ACME directory ${directory}: Deno needs --allow-sys to read the system's CA certificates ` +
      "(or give --acme-ca FILE to trust that CA only)";
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || /wrong version number|InvalidContentType/i.test(message)) {
    return `cannot reach the ACME directory ${directory}: it does not speak HTTPS (${code || message})`;
  }
  if (UNREACHABLE[code]) return `cannot reach the ACME directory ${directory}: ${UNREACHABLE[code]} (${code})`;
  if (/CERT|SIGNATURE|SELF_SIGNED|ISSUER/.test(code) || (/certificate|UnknownIssuer/i.test(message) && !err.response)) {
    return `the ACME directory ${directory} presents a TLS certificate this machine does not trust (${code || message}); ` +
      "for a private CA give its certificate with --acme-ca FILE (config tls.acme.ca) or NODE_EXTRA_CA_CERTS";
  }
  const status = /Attempting to read ACME directory returned error (\d+)/.exec(message)?.[1];
  if (status) return `the ACME directory ${directory} answered HTTP ${status}: is it an ACME directory URL?`;
  if (err.response?.status) return `the ACME directory ${directory} answered HTTP ${err.response.status}`;
  if (code) return `cannot reach the ACME directory ${directory}: ${message} (${code})`;
  return `ACME at ${directory}: ${message}`;
}

function oneLine(s: string): string {
  const line = s.replace(/\s*\n\s*/g, " ").trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}
