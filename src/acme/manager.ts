/**
 * Keeps a certificate for every ACME-managed name: stored while fresh, else
 * ordered; renewed with a third of its lifetime left; retried with backoff.
 * onChange() hands every new set to the listener. See docs/design/tls.md.
 */
import { formatDuration } from "../config/units.ts";
import type { AcmeConfig } from "../config/schema.ts";
import { type LoadedCert, loadPair } from "../serve/tls.ts";
import type { Challenges } from "./challenges.ts";
import { describeAcmeError } from "./errors.ts";
import { Issuer } from "./issuer.ts";
import type { AcmeStore } from "./store.ts";

const RETRY_MIN_MS = 10_000;
const RETRY_MAX_MS = 3_600_000;
/** Timers are re-armed at least this often (setTimeout cannot wait 60 days). */
const MAX_TIMER_MS = 6 * 3_600_000;

export interface AcmeLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface ManagerOptions {
  config: AcmeConfig;
  /** The CA file's text (tls.acme.ca), read at start. */
  ca: string | null;
  store: AcmeStore;
  challenges: Challenges;
  log: AcmeLog;
}

/** When a certificate is due for renewal: a third of its lifetime before it ends. */
export function renewAt(cert: LoadedCert): number {
  const from = Date.parse(cert.x509.validFrom), to = Date.parse(cert.x509.validTo);
  return to - (to - from) / 3;
}

export class AcmeManager {
  private certs = new Map<string, LoadedCert | null>();
  private timers = new Map<string, ReturnType<typeof setTimeout>>();
  private failures = new Map<string, number>();
  private queue: Promise<void> = Promise.resolve();
  private issuer: Promise<Issuer> | null = null;
  private stopped = false;
  private started = false;

  /** Called after a certificate was issued (set by the caller). */
  onChange: () => void = () => {};

  constructor(private o: ManagerOptions) {}

  /** Every managed name → its certificate (null: none yet). */
  get managed(): ReadonlyMap<string, LoadedCert | null> {
    return this.certs;
  }

  /**
   * The names to manage from now on. New ones start with their stored
   * certificate if it is usable (no network here); names no longer wanted are
   * dropped. Once started, new names are ordered at once.
   */
  want(hosts: string[]): void {
    for (const host of [...this.certs.keys()]) {
      if (hosts.includes(host)) continue;
      this.certs.delete(host);
      this.clearTimer(host);
      this.o.log.info("acme: no longer managing a certificate for this name", { host });
    }
    for (const host of hosts) {
      if (this.certs.has(host)) continue;
      const stored = this.loadStored(host);
      this.certs.set(host, stored);
      if (this.started) this.schedule(host);
    }
  }

  /** Orders what is missing, schedules renewals. Call once the redirect listener answers. */
  start(): void {
    this.started = true;
    for (const host of this.certs.keys()) this.schedule(host);
  }

  stop(): void {
    this.stopped = true;
    for (const host of [...this.timers.keys()]) this.clearTimer(host);
  }

  private loadStored(host: string): LoadedCert | null {
    const files = this.o.store.certFiles(host);
    const r = loadPair(files);
    if ("problem" in r) {
      if (!/cannot be read \(ENOENT\)/.test(r.problem)) this.o.log.warn(`acme: the stored certificate for ${host} is not usable: ${r.problem}; ordering a new one`, { host });
      this.o.log.info("acme: no certificate yet: handshakes for this name fail until one is issued", { host });
      return null;
    }
    if (!r.x509.checkHost(host)) {
      this.o.log.warn(`acme: the stored certificate ${files.cert} does not name ${host}; ordering a new one`, { host });
      return null;
    }
    this.o.log.info("acme: using the stored certificate", {
      host,
      validTo: r.validTo,
      nextRenewal: new Date(renewAt(r)).toISOString(),
      fingerprint: r.fingerprint.slice(0, 23),
    });
    return r;
  }

  private clearTimer(host: string): void {
    const t = this.timers.get(host);
    if (t) clearTimeout(t);
    this.timers.delete(host);
  }

  /** Arms the timer for `host`: its renewal time, or `inMs` (a retry), or now (no certificate). */
  private schedule(host: string, inMs?: number): void {
    if (this.stopped) return;
    this.clearTimer(host);
    const cert = this.certs.get(host);
    const due = inMs !== undefined ? Date.now() + inMs : cert ? renewAt(cert) : Date.now();
    const wait = Math.max(0, due - Date.now());
    const t = setTimeout(() => {
      this.timers.delete(host);
      if (wait > MAX_TIMER_MS) return this.schedule(host, due - Date.now());
      // obtain() catches its own failures; the catch keeps one surprise from stopping every later order.
      this.queue = this.queue.then(() => this.obtain(host)).catch((e) => this.o.log.warn(`acme: ${String((e as Error)?.message ?? e).split("\n")[0]}`, { host }));
    }, Math.min(wait, MAX_TIMER_MS));
    this.timers.set(host, t);
  }

  private async obtain(host: string): Promise<void> {
    if (this.stopped || !this.certs.has(host)) return;
    const { directory, email } = this.o.config;
    const had = this.certs.get(host) ?? null;
    const started = Date.now();
    this.o.log.info(had ? "acme: renewing the certificate" : "acme: ordering a certificate", { host, directory, ...(had ? { validTo: had.validTo } : {}) });
    try {
      this.issuer ??= Issuer.create({ directory, email, ca: this.o.ca, store: this.o.store, challenges: this.o.challenges });
      const issuer = await this.issuer.catch((e) => {
        this.issuer = null;
        throw e;
      });
      const { cert, key } = await issuer.issue(host, (token) => this.o.log.info("acme: answering the HTTP-01 challenge on the redirect listener", { host, token }));
      if (this.stopped || !this.certs.has(host)) return;
      const loaded = loadPair(this.o.store.saveCertificate(host, cert, key));
      if ("problem" in loaded) throw new Error(`the certificate the CA issued cannot be used: ${loaded.problem}`);
      this.certs.set(host, loaded);
      this.failures.delete(host);
      this.onChange();
      this.o.log.info("acme: certificate issued: new connections get it", {
        host,
        seconds: (Date.now() - started) / 1000,
        validTo: loaded.validTo,
        nextRenewal: new Date(renewAt(loaded)).toISOString(),
        fingerprint: loaded.fingerprint.slice(0, 23),
      });
      this.schedule(host);
    } catch (e) {
      if (this.stopped) return;
      const n = (this.failures.get(host) ?? 0) + 1;
      this.failures.set(host, n);
      const wait = Math.min(RETRY_MIN_MS * 2 ** (n - 1), RETRY_MAX_MS);
      const current = this.certs.get(host) ?? null;
      this.o.log.warn(`acme: cannot get a certificate for ${host}: ${describeAcmeError(e, directory)}; retrying in ${formatDuration(wait)}`, {
        host,
        attempt: n,
        serving: current ? `the stored certificate, valid to ${current.validTo}` : "nothing: handshakes for this name fail",
      });
      this.schedule(host, wait);
    }
  }
}
