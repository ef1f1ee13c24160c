/**
 * The command-line proxy's HTTPS wiring, out of main(): certificate files read
 * and checked before anything listens, ACME's stored certificates joined to
 * them, and on every reload the files read again and checked before the
 * reload is put in force (a pair that cannot be read refuses the whole reload).
 */
import { type Acme, startAcme } from "../acme/start.ts";
import { acmeHosts } from "../acme/hosts.ts";
import type { Config } from "../config/schema.ts";
import type { Control } from "../control/control.ts";
import type { Logger } from "../observe/log.ts";
import type { Listener } from "../serve/listener.ts";
import { type Certificates, loadCertificates, tlsWanted } from "../serve/tls.ts";

export class Https {
  /** What the proxy listener serves: the files' certificates, and ACME's when it runs. */
  certs: Certificates;
  acme: Acme | null = null;
  private server: Listener | null = null;

  private constructor(private fileCerts: Certificates, readonly warnings: string[]) {
    this.certs = fileCerts;
  }

  /** Null when the config wants no HTTPS; else every certificate read and checked, or why not. */
  static load(config: Config): Https | { problem: string } | null {
    if (!tlsWanted(config)) return null;
    const loaded = loadCertificates(config);
    if ("errors" in loaded) return { problem: loaded.errors.map((e) => e.problem).join("; ") };
    return new Https(loaded.certs, loaded.warnings);
  }

  /** ACME (tls.acme): stored certificates are read now; orders start with acme.manager.start(). */
  startAcme(config: Config, log: Logger): string | null {
    if (!config.tls.acme) return null;
    const started = startAcme(config, log);
    if ("problem" in started) return started.problem;
    this.acme = started;
    this.certs = this.fileCerts.withManaged(started.manager.managed);
    return null;
  }

  /** The proxy listener now serves: a certificate ACME renews reaches it. */
  serving(server: Listener): void {
    this.server = server;
    const acme = this.acme;
    if (acme) {
      acme.manager.onChange = () => {
        this.certs = this.fileCerts.withManaged(acme.manager.managed);
        server.setCertificates(this.certs);
      };
    }
  }

  /** The reload check (Control.prepare) with HTTPS served: certificates read again, checked, then swapped in. */
  prepare(control: Control, log: Logger): NonNullable<Control["prepare"]> {
    return (next, trigger) => {
      const none = { notes: [] as string[], commit() {} };
      if (!tlsWanted(next)) return { ...none, notes: ["tls cannot be turned off by a reload; still serving HTTPS with the certificates loaded"] };
      // A deploy changes upstreams only: the certificates are not read again for it.
      if (trigger.startsWith("deploy") && sameCertFiles(next, control.effective.config)) return none;
      const loaded = loadCertificates(next);
      if ("errors" in loaded) return { errors: loaded.errors.map((e) => ({ ...e, where: "certificate files" })) };
      const acme = this.acme;
      const acmeRest = (c: Config) => JSON.stringify({ ...c.tls.acme, hosts: undefined });
      return {
        notes: acme && acmeRest(next) !== acmeRest(control.effective.config) ? ["tls.acme takes effect on restart, except its hosts"] : [],
        commit: () => {
          const before = JSON.stringify(this.certs.describe());
          this.fileCerts = loaded.certs;
          if (acme) acme.manager.want(acmeHosts(next));
          this.certs = acme ? loaded.certs.withManaged(acme.manager.managed) : loaded.certs;
          this.server?.setCertificates(this.certs);
          const after = this.certs.describe();
          if (JSON.stringify(after) !== before) log.info("certificates reloaded: new connections get them", { trigger, certificates: after });
          for (const w of loaded.warnings) log.warn(`certificate: ${w}`);
        },
      };
    };
  }
}

/** The reload check without HTTPS: tls cannot start on a reload, say so. */
export function plainPrepare(): NonNullable<Control["prepare"]> {
  return (next) => ({ notes: tlsWanted(next) ? ["tls takes effect on restart: holdup was started without HTTPS"] : [], commit() {} });
}

function sameCertFiles(a: Config, b: Config): boolean {
  const files = (c: Config) => JSON.stringify([c.tls.cert, c.tls.key, c.apps.map((x) => [x.name, x.hosts, x.tls]), c.tls.acme?.hosts]);
  return files(a) === files(b);
}
