/**
 * The config schema: what each key accepts, what it means once parsed, and the
 * validation of one layer that start-up, SIGHUP and POST /reload all use (the
 * checks on the merged whole are in whole.ts; how errors read, in issues.ts).
 */
import * as z from "zod/mini";
import { parseListen, parseUpstream } from "./address.ts";
import type { ListenAddress } from "./address.ts";
import { formatDuration, parseDuration, parseSize } from "./units.ts";
import { describeIssue, type FieldError } from "./issues.ts";

export type { FieldError };
import { statusList } from "./statuses.ts";

export type LogFormat = "json" | "text" | "off";

/** `holdup -- COMMAND…` / config `run`: the app holdup starts and supervises (see run/supervisor.ts). */
export interface RunConfig {
  /** Program and arguments; `{port}` is replaced by the instance's port. */
  command: string[];
  cwd: string | null;
  /** Added to holdup's environment (PORT is set too). */
  env: Record<string, string>;
  readyTimeout: number;
  stopSignal: string;
  stopTimeout: number;
  /** How long an old instance's in-flight requests may run after a restart swapped it out. */
  drainTimeout: number;
  /** Stop the app after this long without a request; null: never. */
  idleStop: number | null;
  /** overlap: the new instance starts while the old one serves; serial: stop the old one first (requests held). */
  restart: "overlap" | "serial";
  /** Run before each new instance (start, restart): a string for `sh -c`, or an argv array; null: none. */
  release: string | string[] | null;
}

export const RUN_DEFAULTS: Omit<RunConfig, "command"> = {
  cwd: null,
  env: {},
  readyTimeout: 60_000,
  stopSignal: "SIGTERM",
  stopTimeout: 10_000,
  drainTimeout: 30_000,
  idleStop: null,
  restart: "overlap",
  release: null,
};

const SIGNAL_NAMES = ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL"] as const;

/** The parsed, effective config that the proxy runs on. */
export interface Config {
  listen: ListenAddress;
  upstreams: string[];
  tryDuration: number;
  tryInterval: number;
  responseTimeout: number;
  healthPath: string | null;
  /** With a healthPath: every upstream is probed this often (see health.ts). */
  healthInterval: number;
  /** A health probe with no 2xx answer within this fails. */
  healthTimeout: number;
  /** Consecutive failed health probes that mark an upstream down. */
  unhealthyAfter: number;
  maxHeld: number;
  maxBodyBuffer: number;
  /** A request body larger than this is refused 413 before any of it goes upstream; null: no limit. */
  maxBody: number | null;
  /** Buffered bodies of all held requests together; past it, 503. */
  maxHeldBodyBytes: number;
  /** The whole request head must arrive within this. */
  headerTimeout: number;
  /** While a request body is being read, this long without a byte closes the connection. */
  bodyTimeout: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeout: number;
  /** Most client connections open at once (also bounded by the fd limit). */
  maxConnections: number;
  /** A WebSocket with no byte either way for this long is closed (1001); null: never. */
  wsIdleTimeout: number | null;
  /** A WebSocket whose client sent nothing this long gets a Ping from holdup; null: never. */
  wsPingInterval: number | null;
  /** Per WebSocket: bytes queued toward a side that is not reading, past which it is closed (1009). */
  wsMaxBuffered: number;
  /** Closes of WebSockets on a removed upstream (1012) are spread over this. */
  wsCloseSpread: number;
  /** How long connections to an upstream removed by a reload or deploy may keep working. */
  drainTimeout: number;
  admin: { listen: ListenAddress | null; token: string | null; hosts: string[] };
  /** A listener serving GET /metrics only, without a token (see metrics-port.ts); null: none. */
  metrics: { listen: ListenAddress | null };
  /** `--pages DIR`: the operator's templates for holdup's own pages (see templates.ts); null: built-in. */
  pages: string | null;
  log: LogFormat;
  /** A browser held this long gets a self-reloading "starting…" page; null: never. */
  waitingPageAfter: number | null;
  /** Answers with these statuses to a request safe to resend are held and retried (http/retry.ts); [] = none. */
  retryOn: number[];
  maxConcurrent: number | null;
  slowStart: number;
  /** How long after a deploy its new upstreams are watched and rolled back if bad (rollback.ts); null: off. */
  rollbackWindow: number | null;
  run: RunConfig | null;
  /**
   * The apps, each with every per-app key resolved (its own value, else the
   * top-level one). Without `apps` in the config: one app named "default"
   * that answers every host.
   */
  apps: AppConfig[];
  /** The shared state engine (redis://…, or kv / kv:PATH at the edge), or null: state is local. */
  state: string | null;
  /** Serving processes on the listen port (see fleet/workers.ts); 1: this process serves. */
  workers: number;
  /** HTTPS on the proxy listener (see serve/tls.ts): the default certificate and the redirect listener. */
  tls: TlsConfig;
  /** host[:port] patterns the upstreams of reload bodies, deploys and shared operations must match; []: any but link-local (config/guard.ts). */
  allowUpstreams: string[];
}

/** A certificate and its key, as PEM file paths (relative to the working directory). */
export interface CertFiles {
  cert: string;
  key: string;
}

export interface TlsConfig {
  /** The certificate for names no app's own certificate covers (and clients that send no SNI). */
  cert: string | null;
  key: string | null;
  /** A plain-HTTP listener answering 308 to https (and ACME HTTP-01 challenges); null: none. */
  redirectHttp: ListenAddress | null;
  /** Automatic certificates (see src/acme/); null: none. */
  acme: AcmeConfig | null;
}

export interface AcmeConfig {
  /** The ACME account's contact. */
  email: string;
  /** The ACME directory URL (default: Let's Encrypt production). */
  directory: string;
  /** Names to get certificates for; empty: every exact host of the apps without their own certificate. */
  hosts: string[];
  /** Where the account key and certificates are kept. */
  stateDir: string;
  /** A PEM file of CA certificates trusted for the directory's HTTPS, besides the system's (a private CA). */
  ca: string | null;
}

export const ACME_DEFAULTS = {
  directory: "https://acme-v02.api.letsencrypt.org/directory",
  stateDir: "./.holdup",
} as const;

/** The keys an app may set for itself; top-level values are their defaults. */
export const APP_KEYS = [
  "upstreams", "healthPath", "tryDuration", "tryInterval", "responseTimeout", "maxHeld", "maxBodyBuffer", "maxBody",
  "upstreams", "healthPath", "tryDuration", "tryInterval", "responseTimeout", "maxHeld", "maxBodyBuffer", "retryOn",
  "maxConcurrent", "slowStart",
] as const;

export interface AppConfig {
  name: string;
  /** Exact names and "*.example.com" wildcards, lowercase; empty = every host. */
  hosts: string[];
  /** "/api" (no trailing slash), or "" for every path. */
  pathPrefix: string;
  stripPrefix: boolean;
  upstreams: string[];
  healthPath: string | null;
  tryDuration: number;
  tryInterval: number;
  responseTimeout: number;
  maxHeld: number;
  maxBodyBuffer: number;
  maxBody: number | null;
  /** Statuses that mean "not ready" (see http/retry.ts); [] = none. */
  retryOn: number[];
  /** Most requests in flight to each upstream, the rest waiting in line (http/limit.ts); null = no cap. */
  maxConcurrent: number | null;
  /** A newly ready upstream's cap ramps from 1 to maxConcurrent over this. */
  slowStart: number;
  /** This app's certificate, chosen by SNI for its hosts; null: the top-level one. */
  tls: CertFiles | null;
}

// A string (or, where it makes sense, a number) parsed by `parse`, which
// answers the value or what is wrong with it.
function parsed<T>(parse: (text: string) => T | string, allowNumber = false) {
  const input = allowNumber ? z.union([z.string(), z.number()]) : z.string();
  return z.pipe(
    input,
    z.transform((value: string | number, ctx) => {
      const out = parse(String(value));
      if (typeof out === "string") {
        ctx.issues.push({ code: "custom", message: out, input: value });
        return z.NEVER;
      }
      return out;
    }),
  );
}

/**
 * A duration within [min, max]. The upper bounds keep every timer well inside
 * a 32-bit setTimeout (~24.8 days), past which runtimes fire at once: a
 * "600h" tryInterval would otherwise probe thousands of times a second.
 */
const duration = (min: number, max = DAY) => parsed((t) => durationIn(t, min, max));
/** A duration, or "off" (also 0 or null): null. */
const offOr = (min: number) => z.nullable(z.pipe(parsed((t) => (/^(off|0)$/.test(t.trim()) ? 0 : durationIn(t, min, DAY)), true), z.transform((ms) => ms || null)));
function durationIn(t: string, min: number, max: number): number | string {
  const ms = parseDuration(t);
  if (typeof ms !== "number") return ms;
  if (ms < min) return `"${t}" is too short; the least is ${formatDuration(min)}`;
  return ms > max ? `"${t}" is too long; the most is ${formatDuration(max)}` : ms;
}
const DAY = 24 * 3_600_000;

const size = (max: number, min = 0) =>
  parsed((t) => {
    const n = parseSize(t);
    if (typeof n === "number" && n < min) return `"${t}" is too small; the least is ${min} bytes`;
    return typeof n === "number" && n > max ? `"${t}" is too large; the most is ${max} bytes` : n;
  }, true);

const positive = parsed((t) => (/^\d+$/.test(t.trim()) && Number(t) >= 1 ? Number(t) : `"${t}" is not a whole number of at least 1`), true);

const count = parsed((t) => (/^\d+$/.test(t.trim()) ? Number(t) : `"${t}" is not a whole number`), true);

const upstream = z.pipe(parsed(parseUpstream), z.transform((u) => u.url));

const listen = parsed(parseListen);
const adminListen = parsed((t) => (t.trim() === "off" ? null : parseListen(t)));

const hostPattern = z.string().check(
  z.refine((h) => /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(h), "must be a host name or *.domain, without port"),
);

const filePath = z.string().check(z.minLength(1, "must not be empty"));

const app = z.strictObject({
  name: z.string().check(z.refine((n) => /^[a-z0-9-]+$/.test(n), "must be lowercase letters, digits and -")),
  hosts: z.optional(z.array(hostPattern)),
  pathPrefix: z.optional(z.string().check(z.refine((p) => /^\/[^?#\s]*$/.test(p), "must start with / and hold no query, e.g. /api"))),
  stripPrefix: z.optional(z.boolean()),
  upstreams: z.optional(z.array(upstream).check(z.minLength(1, "needs at least one upstream"))),
  healthPath: z.optional(z.nullable(z.string().check(z.refine((p) => p.startsWith("/"), "must start with /, e.g. /up")))),
  tryDuration: z.optional(duration(0)),
  tryInterval: z.optional(duration(1, 3_600_000)),
  responseTimeout: z.optional(duration(1)),
  maxHeld: z.optional(count),
  maxBodyBuffer: z.optional(size(2 ** 31)),
  maxBody: z.optional(z.nullable(size(2 ** 40))),
  retryOn: z.optional(statusList),
  maxConcurrent: z.optional(z.nullable(positive)),
  slowStart: z.optional(duration(0, 3_600_000)),
  tls: z.optional(z.nullable(z.strictObject({ cert: filePath, key: filePath }))),
});
export type ParsedApp = z.output<typeof app>;

/** Every key optional: the shape of a file, a flag layer or a reload body. */
export const partialSchema = z.strictObject({
  apps: z.optional(z.array(app)),
  state: z.optional(z.nullable(z.pipe(parsed((t): { url: string } | string => {
    const v = t.trim();
    if (/^rediss?:\/\/[^/]/.test(v)) {
      try {
        new URL(v);
        return { url: v };
      } catch { /* fall through */ }
    }
    // Deno KV is for the edge entry (`deno serve --parallel`, Deno Deploy): there kv.watch reaches every
    // isolate. Between separate processes watch never fires, so the command-line proxy refuses it (cli/main.ts).
    if (v === "kv" || (v.startsWith("kv:") && v.length > 3)) return { url: v };
    return `"${t}" is not a state engine URL; write redis://host:6379 (or rediss://, redis://:password@host:6379/0), or kv / kv:PATH for Deno KV at the edge`;
  }), z.transform((s) => s.url)))),
  listen: z.optional(listen),
  workers: z.optional(parsed((t) => {
    const n = /^\d+$/.test(t.trim()) ? Number(t) : NaN;
    return n >= 1 && n <= 64 ? n : `"${t}" is not a number of workers from 1 to 64`;
  }, true)),
  upstreams: z.optional(
    z.array(upstream).check(z.minLength(1, "needs at least one upstream")),
  ),
  tryDuration: z.optional(duration(0)),
  tryInterval: z.optional(duration(1, 3_600_000)),
  responseTimeout: z.optional(duration(1)),
  headerTimeout: z.optional(duration(100, 3_600_000)),
  bodyTimeout: z.optional(duration(100, 3_600_000)),
  keepAliveTimeout: z.optional(duration(100, 3_600_000)),
  maxConnections: z.optional(count),
  healthPath: z.optional(
    z.nullable(
      z.string().check(z.refine((p) => p.startsWith("/"), "must start with /, e.g. /up")),
    ),
  ),
  healthInterval: z.optional(duration(10, 3_600_000)),
  healthTimeout: z.optional(duration(10, 3_600_000)),
  unhealthyAfter: z.optional(parsed((t) => (/^\d+$/.test(t.trim()) && +t >= 1 && +t <= 1000 ? +t : `"${t}" is not a number of failed probes from 1 to 1000`), true)),
  maxHeld: z.optional(count),
  maxBodyBuffer: z.optional(size(2 ** 31)),
  maxBody: z.optional(z.nullable(size(2 ** 40))),
  maxHeldBodyBytes: z.optional(size(2 ** 40)),
  rollbackWindow: z.optional(z.nullable(duration(100, 3_600_000))),
  retryOn: z.optional(statusList),
  maxConcurrent: z.optional(z.nullable(positive)),
  slowStart: z.optional(duration(0, 3_600_000)),
  // Below one socket read (64 KiB) it would close WebSockets that are merely busy.
  wsMaxBuffered: z.optional(size(2 ** 32, 64 * 1024)),
  wsCloseSpread: z.optional(duration(0, 3_600_000)),
  // "off" (or 0, or null): never.
  wsIdleTimeout: z.optional(offOr(100)),
  wsPingInterval: z.optional(offOr(100)),
  drainTimeout: z.optional(duration(0)),
  admin: z.optional(
    z.strictObject({
      listen: z.optional(adminListen),
      token: z.optional(z.nullable(z.string().check(z.minLength(1, "must not be empty")))),
      hosts: z.optional(z.array(
        z.string().check(z.refine((h) => /^(\*\.)?[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/.test(h), "must be a host name without port, or *.domain for its subdomains, e.g. holdup.internal")),
      )),
    }),
  ),
  metrics: z.optional(z.strictObject({ listen: z.optional(adminListen) })),
  pages: z.optional(z.nullable(filePath)),
  log: z.optional(z.enum(["json", "text", "off"])),
  tls: z.optional(
    z.strictObject({
      cert: z.optional(z.nullable(filePath)),
      key: z.optional(z.nullable(filePath)),
      redirectHttp: z.optional(z.nullable(listen)),
      acme: z.optional(z.strictObject({
        email: z.optional(z.string().check(z.refine((e) => /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(e), "must be an email address, e.g. you@example.com"))),
        directory: z.optional(z.string().check(z.refine((d) => {
          try {
            return new URL(d).protocol === "https:";
          } catch {
            return false;
          }
        }, "must be the https:// URL of an ACME directory, e.g. https://acme-staging-v02.api.letsencrypt.org/directory"))),
        hosts: z.optional(z.array(hostPattern.check(z.refine((h) => !h.startsWith("*."), "must be an exact host name: HTTP-01 cannot get a certificate for *.domain")))),
        stateDir: z.optional(filePath),
        ca: z.optional(z.nullable(filePath)),
      })),
    }),
  ),
  waitingPageAfter: z.optional(z.nullable(duration(0))),
  // host[:port] patterns for config/guard.ts, checked here so a typo is named.
  allowUpstreams: z.optional(z.array(z.string().check(z.refine(
    (p) => /^(\[[0-9a-f:.*]+\]|[a-z0-9.*-]+)(:[0-9*]+)?$/i.test(p.trim()),
    "must be host[:port] with * wildcards, e.g. 10.0.0.*:8080, *.internal or [fd00::*]",
  )))),
  run: z.optional(
    z.strictObject({
      command: z.optional(
        z.array(z.string()).check(z.minLength(1, 'needs the program and its arguments, e.g. ["python3", "-m", "http.server", "{port}"]')),
      ),
      cwd: z.optional(z.nullable(z.string())),
      env: z.optional(z.record(z.string(), z.string())),
      readyTimeout: z.optional(duration(1)),
      stopSignal: z.optional(z.enum(SIGNAL_NAMES)),
      stopTimeout: z.optional(duration(0)),
      drainTimeout: z.optional(duration(0)),
      idleStop: z.optional(z.nullable(duration(100))),
      restart: z.optional(z.enum(["overlap", "serial"])),
      release: z.optional(z.nullable(z.union([
        z.string().check(z.refine((s) => s.trim() !== "", "must not be empty (give a command for sh -c, or null for none)")),
        z.array(z.string()).check(z.minLength(1, 'needs the program and its arguments, e.g. ["./manage.py", "migrate"]')),
      ]))),
    }),
  ),
});

export type RawConfig = z.input<typeof partialSchema>;
export type ParsedPartial = z.output<typeof partialSchema>;

/** Validates one layer. The errors name each field as written. */
export function validatePartial(raw: unknown): { value: ParsedPartial } | { errors: FieldError[] } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { errors: [{ field: "(config)", problem: "must be a JSON object, e.g. {\"upstreams\": [\":8003\"]}" }] };
  }
  const r = partialSchema.safeParse(raw, { reportInput: true });
  if (r.success) return { value: r.data };
  return { errors: r.error.issues.flatMap(describeIssue) };
}
