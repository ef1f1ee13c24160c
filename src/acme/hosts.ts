/**
 * Which names ACME gets certificates for: the names listed in tls.acme.hosts,
 * or else every exact host of the apps that have no certificate of their own
 * (a "*.domain" host cannot be validated over HTTP-01).
 */
import type { Config } from "../config/schema.ts";

export function acmeHosts(c: Config): string[] {
  const acme = c.tls.acme;
  if (!acme) return [];
  if (acme.hosts.length) return [...new Set(acme.hosts.map((h) => h.toLowerCase()))];
  const out = new Set<string>();
  for (const a of c.apps) {
    if (a.tls) continue;
    for (const h of a.hosts) if (!h.startsWith("*.")) out.add(h);
  }
  return [...out];
}
