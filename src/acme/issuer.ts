/**
 * The glue to acme-client (npm): one ACME account, one certificate order at a
 * time, over HTTP-01. acme-client is imported only here, and only when an
 * order is due. See docs/design/tls.md.
 */
import https from "node:https";
import type { AcmeStore } from "./store.ts";
import type { Challenges } from "./challenges.ts";

type AcmeModule = Pick<typeof import("acme-client"), "Client" | "crypto" | "axios">;

/**
 * The three parts of acme-client holdup uses, imported by path: its index also
 * loads node-forge (365 KiB in the bundle) for an API holdup does not call.
 * CommonJS: the namespace's default is module.exports.
 */
let loaded: Promise<AcmeModule> | null = null;
function loadAcmeClient(): Promise<AcmeModule> {
  const cjs = (m: unknown) => (m as { default: unknown }).default;
  loaded ??= Promise.all([
    import("acme-client/src/client.js"),
    import("acme-client/src/crypto/index.js"),
    import("acme-client/src/axios.js"),
  ]).then(([client, crypto, axios]) => ({ Client: cjs(client), crypto: cjs(crypto), axios: cjs(axios) }) as AcmeModule);
  return loaded;
}

/** How long one request to the ACME server may take. */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * acme-client's response interceptor cannot handle an error without a
 * response (connection refused, no such host, timeout) once its retries are
 * spent: it throws "Cannot read properties of undefined (reading 'config')"
 * and the cause is lost. Such errors skip it, unchanged; errors with a
 * response (an HTTP status, an ACME problem) still go through it.
 */
function passNetworkErrorsThrough(axios: AcmeModule["axios"]): void {
  type Handler = { rejected?: (e: unknown) => unknown; [PATCHED]?: true };
  const handlers = (axios.interceptors.response as unknown as { handlers?: Array<Handler | null> }).handlers;
  for (const h of Array.isArray(handlers) ? handlers : []) {
    if (!h?.rejected || h[PATCHED]) continue;
    const rejected = h.rejected;
    h.rejected = (e) => (e as { response?: unknown })?.response ? rejected(e) : Promise.reject(e);
    h[PATCHED] = true;
  }
}
const PATCHED = Symbol("holdup.patched");

export interface IssuerOptions {
  directory: string;
  email: string;
  /** PEM CA certificates trusted for the directory's HTTPS instead of the system's; null: the system's. */
  ca: string | null;
  store: AcmeStore;
  challenges: Challenges;
}

export class Issuer {
  private constructor(private acme: AcmeModule, private client: InstanceType<AcmeModule["Client"]>, private o: IssuerOptions) {}

  /** Loads acme-client and the account key (made and stored on first use). Does not contact the CA. */
  static async create(o: IssuerOptions): Promise<Issuer> {
    const acme = await loadAcmeClient();
    (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = 0;
    passNetworkErrorsThrough(acme.axios);
    acme.axios.defaults.timeout = REQUEST_TIMEOUT_MS;
    // Only the given CA (tls.rootCertificates would need --allow-sys on Deno): a private CA's directory.
    if (o.ca) acme.axios.defaults.httpsAgent = new https.Agent({ ca: o.ca });
    let account = o.store.readAccount();
    if (!account) {
      account = { key: (await acme.crypto.createPrivateEcdsaKey()).toString(), url: null };
      o.store.saveAccount(account.key, null, o.email);
    }
    const client = new acme.Client({
      directoryUrl: o.directory,
      accountKey: account.key,
      ...(account.url ? { accountUrl: account.url } : {}),
      // Polling for the order's and the challenge's status: 0.5 s first, at most 10 s apart.
      backoffMin: 500,
      backoffMax: 10_000,
      backoffAttempts: 12,
    });
    return new Issuer(acme, client, o);
  }

  /** Orders a certificate for `host` with a new key; resolves with the chain and the key (PEM). */
  async issue(host: string, onChallenge: (token: string) => void): Promise<{ cert: string; key: string }> {
    const key = await this.acme.crypto.createPrivateEcdsaKey();
    const [, csr] = await this.acme.crypto.createCsr({ altNames: [host] }, key);
    const hadUrl = this.hasAccountUrl();
    const cert = await this.client.auto({
      csr,
      email: this.o.email,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      skipChallengeVerification: true,
      challengeCreateFn: (_authz, challenge, keyAuthorization) => {
        this.o.challenges.add(challenge.token, keyAuthorization);
        onChallenge(challenge.token);
        return Promise.resolve();
      },
      challengeRemoveFn: (_authz, challenge) => {
        this.o.challenges.remove(challenge.token);
        return Promise.resolve();
      },
    });
    if (!hadUrl && this.hasAccountUrl()) {
      const account = this.o.store.readAccount();
      if (account) this.o.store.saveAccount(account.key, this.client.getAccountUrl(), this.o.email);
    }
    return { cert: String(cert), key: key.toString() };
  }

  private hasAccountUrl(): boolean {
    try {
      this.client.getAccountUrl();
      return true;
    } catch {
      return false;
    }
  }
}
