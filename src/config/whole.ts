/**
 * The checks that hold only for the whole, merged config (one app per route,
 * certificate and key together, ACME's prerequisites, no open admin API beyond
 * loopback): run after the layers are merged, at start-up and on every reload.
 */
import { isLoopback } from "./address.ts";
import type { FieldError } from "./issues.ts";
import type { Config } from "./schema.ts";

/** Checks that hold only for the whole, merged config. */
export function validateWhole(c: Config): FieldError[] {
  const errors: FieldError[] = [];
  const routes = new Set<string>();
  for (const a of c.apps) {
    for (const h of a.hosts.length ? a.hosts : ["*"]) {
      const route = `${h} ${a.pathPrefix}`;
      if (routes.has(route)) {
        errors.push({ field: `apps.${a.name}`, problem: `another app already answers host ${h}${a.pathPrefix ? ` under ${a.pathPrefix}` : ""}` });
      }
      routes.add(route);
    }
  }
  if (!c.tls.cert !== !c.tls.key) {
    errors.push({ field: c.tls.cert ? "tls.key" : "tls.cert", problem: "is missing: give both the certificate and its key (--tls-cert and --tls-key)" });
  }
  for (const a of c.apps) {
    if (a.tls && !a.hosts.length) {
      errors.push({ field: `apps.${a.name}.tls`, problem: "needs the app's hosts: its certificate is chosen by the name a client asks for (use top-level tls for every other name)" });
    }
  }
  if (c.tls.redirectHttp && !c.tls.cert && !c.apps.some((a) => a.tls) && !c.tls.acme) {
    errors.push({ field: "tls.redirectHttp", problem: "redirects to https, but no certificate is configured (--tls-cert and --tls-key, or --acme EMAIL)" });
  }
  errors.push(...validateAcme(c));
  if (c.admin.listen && !c.admin.token && !isLoopback(c.admin.listen.hostname)) {
    errors.push({
      field: "admin.token",
      problem: `the admin API would listen on ${c.admin.listen.hostname}, beyond loopback, without a token; ` +
        "set --admin-token (or HOLDUP_ADMIN_TOKEN), or listen on 127.0.0.1",
    });
  }
  return errors;
}

/** ACME: needs an email, the redirect listener (HTTP-01 is answered there) and at least one name. */
function validateAcme(c: Config): FieldError[] {
  const a = c.tls.acme;
  if (!a) return [];
  if (!a.email) return [{ field: "tls.acme.email", problem: "is missing: ACME needs a contact address (--acme you@example.com)" }];
  const errors: FieldError[] = [];
  if (!c.tls.redirectHttp) {
    errors.push({
      field: "tls.acme",
      problem: "needs the redirect listener, where the ACME server's HTTP-01 challenge is answered: add --redirect-http :80 (config tls.redirectHttp); the ACME server connects to port 80 of each name",
    });
  }
  const exact = c.apps.some((x) => !x.tls && x.hosts.some((h) => !h.startsWith("*.")));
  if (!a.hosts.length && !exact) {
    errors.push({
      field: "tls.acme.hosts",
      problem: "no name to get a certificate for: give one with --acme-host example.com (config tls.acme.hosts), or apps with exact hosts",
    });
  }
  return errors;
}
