/**
 * What a reload body, a deploy and a fleet's shared operation may change —
 * the surfaces reachable without editing the config file or the command line:
 * - `run` (the app's command, cwd, env) and `allowUpstreams` come only from the
 *   config file or the command line: a reload body naming them is refused.
 * - A shared operation (a reload body with --state, or one read from the
 *   state store) carries only what the fleet shares: upstreams and the apps'
 *   routing and holding keys. The admin API, TLS files, logging, listeners,
 *   limits and `run` stay with each instance; any other key is refused.
 * - Upstreams: with `allowUpstreams` (--allow-upstream), only matching
 *   host[:port] patterns; without it, anything but link-local addresses
 *   (169.254.0.0/16, fe80::/10: cloud metadata services live there), which
 *   need an explicit pattern. Names are not resolved: list the names you use.
 * - listen, admin.listen and workers change only on restart (keepRestartOnly).
 */
import { parseUpstream } from "./address.ts";
import { formatListen } from "./address.ts";
import { APP_KEYS, type Config, type FieldError } from "./schema.ts";

/** Keys only the config file or the command line may set. */
const FILE_ONLY = ["run", "allowUpstreams"];
/** Top-level keys a shared operation may carry. */
const SHARED = new Set<string>([...APP_KEYS, "apps", "maxHeldBodyBytes", "drainTimeout", "wsCloseSpread", "waitingPageAfter"]);
/** Keys of an app a shared operation may carry (not its tls: certificate files are each machine's own). */
const SHARED_APP = new Set<string>([...APP_KEYS, "name", "hosts", "pathPrefix", "stripPrefix"]);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * What is wrong with a reload body (or a shared operation's body), beyond its
 * schema. `shared`: it travels through the fleet. `allow`: the upstream
 * patterns in force (null: do not check upstreams).
 */
export function bodyErrors(body: unknown, o: { shared: boolean; allow: string[] | null }): FieldError[] {
  if (!isObj(body)) return [];
  const errors: FieldError[] = [];
  for (const k of FILE_ONLY) {
    if (k in body) errors.push({ field: k, problem: "cannot be changed by a reload body or through the shared state; only the config file or the command line can (then SIGHUP)" });
  }
  if (o.shared) {
    const local = "is kept per instance and does not travel through the shared state (--state); change it in each instance's config file";
    for (const k of Object.keys(body)) if (!SHARED.has(k) && !FILE_ONLY.includes(k)) errors.push({ field: k, problem: local });
    if (Array.isArray(body.apps)) {
      body.apps.forEach((a, i) => {
        if (isObj(a)) for (const k of Object.keys(a)) if (!SHARED_APP.has(k)) errors.push({ field: `apps[${i}].${k}`, problem: local });
      });
    }
  }
  if (o.allow) {
    const check = (list: unknown, field: string) => {
      if (!Array.isArray(list)) return;
      for (const u of list) {
        const problem = typeof u === "string" ? upstreamRefused(u, o.allow!) : null;
        if (problem) errors.push({ field, problem });
      }
    };
    check(body.upstreams, "upstreams");
    if (Array.isArray(body.apps)) body.apps.forEach((a, i) => isObj(a) && check(a.upstreams, `apps[${i}].upstreams`));
  }
  return errors;
}

/** Why this upstream may not be set by a reload body, deploy or shared operation; null when it may. */
export function upstreamRefused(text: string, allow: string[]): string | null {
  const p = parseUpstream(text);
  if (typeof p === "string") return null; // the schema says what is wrong with it
  const u = new URL(p.url);
  const host = u.hostname.toLowerCase();
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  if (allow.length) {
    if (allow.some((pat) => patternMatches(pat, host, port))) return null;
    return `"${text}" is not among the allowed upstreams (allowUpstreams / --allow-upstream: ${allow.join(", ")})`;
  }
  if (isLinkLocal(host)) {
    return `"${text}" is a link-local address (cloud metadata services answer there); allow it explicitly with --allow-upstream (config allowUpstreams) if you mean it`;
  }
  return null;
}

/** "10.0.0.*:8080", "*.internal", "[fd00::1]:3000", "app:*": `*` matches any characters; no port matches every port. */
export function patternMatches(pattern: string, host: string, port: string): boolean {
  const m = /^(\[[^\]]*\]|[^:]*)(?::([0-9*]+))?$/.exec(pattern.trim().toLowerCase());
  if (!m) return false;
  const glob = (g: string) => new RegExp(`^${g.replace(/[.+?^${}()|\\]/g, "\\$&").replace(/\[/g, "\\[").replace(/\]/g, "\\]").replace(/\*/g, ".*")}$`);
  const h = host.startsWith("[") || !host.includes(":") ? host : `[${host}]`;
  return glob(m[1]).test(h) && (m[2] === undefined || glob(m[2]).test(port));
}

function isLinkLocal(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  if (/^169\.254\./.test(h)) return true;
  if (/^fe[89ab][0-9a-f]:/i.test(h)) return true; // fe80::/10
  return /^::ffff:(a9fe:|169\.254\.)/i.test(h); // IPv4-mapped 169.254.x.x
}

/** listen and admin.listen change only on restart: keep the running ones, and say so. */
export function keepRestartOnly(next: Config, running: Config): string[] {
  const notes: string[] = [];
  const fmt = (a: Config["listen"] | null) => (a ? formatListen(a) : "off");
  if (fmt(next.listen) !== fmt(running.listen)) {
    notes.push(`listen ${fmt(next.listen)} takes effect on restart; still serving ${fmt(running.listen)}`);
  }
  if (fmt(next.admin.listen) !== fmt(running.admin.listen)) {
    notes.push(`admin.listen ${fmt(next.admin.listen)} takes effect on restart; admin API still on ${fmt(running.admin.listen)}`);
  }
  if (next.workers !== running.workers) notes.push(`workers ${next.workers} takes effect on restart; still ${running.workers}`);
  next.listen = running.listen;
  next.admin.listen = running.admin.listen;
  next.workers = running.workers;
  return notes;
}
