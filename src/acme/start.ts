/**
 * ACME at start: the CA file and the state directory are checked (a problem
 * is one line naming the field), stored certificates are loaded. Nothing here
 * contacts the CA; AcmeManager.start() does, once the listeners are up.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import { Challenges } from "./challenges.ts";
import { acmeHosts } from "./hosts.ts";
import { type AcmeLog, AcmeManager } from "./manager.ts";
import { AcmeStore } from "./store.ts";

export interface Acme {
  manager: AcmeManager;
  challenges: Challenges;
}

export function startAcme(c: Config, log: AcmeLog): Acme | { problem: string } {
  const config = c.tls.acme!;
  let ca: string | null = null;
  if (config.ca) {
    try {
      ca = readFileSync(config.ca, "utf8");
    } catch (e) {
      const code = (e as { code?: string }).code;
      return { problem: `tls.acme.ca: ${config.ca} cannot be read${code ? ` (${code})` : ""}` };
    }
    if (!ca.includes("-----BEGIN CERTIFICATE-----")) return { problem: `tls.acme.ca: ${config.ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----)` };
  }
  const store = AcmeStore.open(config.stateDir, config.directory);
  if ("problem" in store) return { problem: `tls.acme.stateDir: ${store.problem}` };
  const challenges = new Challenges();
  const manager = new AcmeManager({ config, ca, store, challenges, log });
  manager.want(acmeHosts(c));
  return { manager, challenges };
}
