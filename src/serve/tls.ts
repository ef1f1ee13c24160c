/**
 * Certificates from files: read, checked as a pair, and chosen per
 * connection by the name the client asks for (SNI); ACME's lie on top by
 * exact name. One bad pair refuses the whole set. The checks and the choice
 * order: docs/design/tls.md.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import tls from "node:tls";
import type { CertFiles, Config } from "../config/schema.ts";
import type { FieldError } from "../config/schema.ts";
import { isPermissionError } from "../util/permissions.ts";

/** A PEM file larger than this is refused unread. */
const MAX_PEM_BYTES = 1024 * 1024;

export interface LoadedCert {
  files: CertFiles;
  /** The PEM text, for servers that take a default certificate as options. */
  pem: { cert: string; key: string };
  context: tls.SecureContext;
  /** SHA-256 fingerprint of the leaf certificate ("AB:CD:…"). */
  fingerprint: string;
  /** The leaf's notAfter, as the certificate says it. */
  validTo: string;
  x509: X509Certificate;
}

export class Certificates {
  constructor(
    readonly fallback: LoadedCert | null,
    private exact: Map<string, LoadedCert>,
    private wildcards: Array<[suffix: string, cert: LoadedCert]>,
    /** Names managed by ACME: their certificate, or null while there is none yet (the handshake fails). */
    private managed: ReadonlyMap<string, LoadedCert | null> = new Map(),
  ) {}

  /** These certificates with ACME's on top (replacing the ACME ones these had). */
  withManaged(managed: ReadonlyMap<string, LoadedCert | null>): Certificates {
    return new Certificates(this.fallback, this.exact, this.wildcards, managed);
  }

  /** The certificate for a server name ("" or null: the client sent none); null fails the handshake. */
  select(servername: string | null | undefined): LoadedCert | null {
    const name = (servername ?? "").toLowerCase().replace(/\.$/, "");
    if (name) {
      if (this.managed.has(name)) return this.managed.get(name) ?? null;
      const hit = this.exact.get(name);
      if (hit) return hit;
      for (const [suffix, cert] of this.wildcards) {
        if (name.endsWith(suffix) && name.length > suffix.length) return cert;
      }
    }
    return this.fallback;
  }

  /** Every distinct pair in use, for GET /status. */
  status(): Array<{ cert: string; key: string; fingerprint: string; validTo: string }> {
    const all = new Set([this.fallback, ...this.exact.values(), ...this.wildcards.map(([, c]) => c), ...this.managed.values()]);
    return [...all].filter((c) => c !== null).map((c) => ({ cert: c!.files.cert, key: c!.files.key, fingerprint: c!.fingerprint, validTo: c!.validTo }));
  }

  /** Every distinct pair in use, for logs: file → fingerprint. */
  describe(): Record<string, string> {
    const out: Record<string, string> = {};
    const all = [this.fallback, ...this.exact.values(), ...this.wildcards.map(([, c]) => c), ...this.managed.values()];
    for (const c of all) if (c) out[c.files.cert] = c.fingerprint.slice(0, 23);
    return out;
  }
}

/** True when this config asks for HTTPS on the proxy listener. */
export function tlsWanted(c: Config): boolean {
  return !!c.tls.cert || c.apps.some((a) => a.tls) || !!c.tls.acme;
}

/**
 * Reads and checks every certificate the config names. Errors name the field
 * and the file; nothing of a file's contents is quoted.
 */
export function loadCertificates(c: Config): { certs: Certificates; warnings: string[] } | { errors: FieldError[] } {
  const errors: FieldError[] = [];
  const cache = new Map<string, LoadedCert>();
  const load = (field: string, files: CertFiles): LoadedCert | null => {
    const id = `${files.cert}\0${files.key}`;
    const seen = cache.get(id);
    if (seen) return seen;
    const r = loadPair(files);
    if ("problem" in r) {
      errors.push({ field, problem: r.problem });
      return null;
    }
    cache.set(id, r);
    return r;
  };
  const fallback = c.tls.cert && c.tls.key ? load("tls", { cert: c.tls.cert, key: c.tls.key }) : null;
  const exact = new Map<string, LoadedCert>();
  const wildcards: Array<[string, LoadedCert]> = [];
  for (const a of c.apps) {
    if (!a.tls) continue;
    const cert = load(`apps.${a.name}.tls`, a.tls);
    if (!cert) continue;
    for (const h of a.hosts) {
      if (h.startsWith("*.")) wildcards.push([h.slice(1), cert]);
      else if (!exact.has(h)) exact.set(h, cert);
    }
  }
  // The longest wildcard suffix wins ("*.a.example.com" before "*.example.com").
  wildcards.sort((x, y) => y[0].length - x[0].length);
  if (errors.length) return { errors };
  // Served anyway (a client decides whether to accept it), but worth a log line.
  const warnings: string[] = [];
  const now = Date.now();
  for (const cert of cache.values()) {
    const end = Date.parse(cert.validTo);
    if (end < now) warnings.push(`${cert.files.cert} expired on ${cert.validTo}`);
    else if (end - now < 7 * 86_400_000) warnings.push(`${cert.files.cert} expires on ${cert.validTo}`);
  }
  for (const a of c.apps) {
    if (!a.tls) continue;
    const cert = cache.get(`${a.tls.cert}\0${a.tls.key}`);
    for (const h of a.hosts) {
      const name = h.startsWith("*.") ? `holdup-check${h.slice(1)}` : h;
      if (cert && !cert.x509.checkHost(name)) warnings.push(`${a.tls.cert} (app ${a.name}) does not cover the host ${h}`);
    }
  }
  return { certs: new Certificates(fallback, exact, wildcards), warnings };
}

/** One pair, read and checked; or what is wrong with it, naming the file. */
export function loadPair(files: CertFiles): LoadedCert | { problem: string } {
  const certPem = readPem(files.cert, "certificate");
  if (typeof certPem !== "string") return certPem;
  const keyPem = readPem(files.key, "key");
  if (typeof keyPem !== "string") return keyPem;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch {
    return { problem: `${files.cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)` };
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return { problem: `${files.key} holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)` };
  }
  if (!x509.checkPrivateKey(key)) {
    return { problem: `the key in ${files.key} does not match the certificate in ${files.cert}` };
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ cert: certPem, key: keyPem });
  } catch (e) {
    return { problem: `${files.cert} with ${files.key} cannot be used: ${String((e as Error).message ?? e).split("\n")[0]}` };
  }
  return { files, pem: { cert: certPem, key: keyPem }, context, fingerprint: x509.fingerprint256, validTo: x509.validTo, x509 };
}

function readPem(path: string, what: string): string | { problem: string } {
  try {
    const st = statSync(path);
    if (!st.isFile()) return { problem: `${path} (the ${what}) is not a file` };
    if (st.size > MAX_PEM_BYTES) return { problem: `${path} (the ${what}) is larger than ${MAX_PEM_BYTES} bytes` };
    return readFileSync(path, "utf8");
  } catch (e) {
    if (isPermissionError(e)) return { problem: `${path} (the ${what}) cannot be read: Deno's --allow-read permission is missing` };
    const code = (e as { code?: string }).code;
    return { problem: `${path} (the ${what}) cannot be read${code ? ` (${code})` : ""}` };
  }
}
