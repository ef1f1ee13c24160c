/**
 * The ACME state directory (tls.acme.stateDir): the account and the
 * certificates per ACME directory, written atomically with their modes.
 * The layout on disk: docs/design/tls.md.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type { CertFiles } from "../config/schema.ts";

const HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export class AcmeStore {
  private constructor(readonly dir: string) {}

  /** Creates the directory (0700) and checks it can be written; or says why not. */
  static open(stateDir: string, directoryUrl: string): AcmeStore | { problem: string } {
    const u = new URL(directoryUrl);
    const dir = join(stateDir, "acme", `${u.host}${u.pathname}`.replace(/[^A-Za-z0-9-]+/g, "_"));
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const probe = join(dir, ".write-check");
      writeFileSync(probe, "", { mode: 0o600 });
      rmSync(probe);
    } catch (e) {
      const err = e as { code?: string; name?: string };
      const code = err.code ?? err.name ?? "";
      const deno = err.name === "NotCapable" || err.name === "PermissionDenied" || /--allow-write/.test(String(e));
      return {
        problem: `cannot write the ACME state directory ${stateDir}${code ? ` (${code})` : ""}` +
          (deno ? ": Deno's permissions do not allow writing there: run deno with --allow-write (or --allow-write=" + stateDir + ")" : ": choose another with --acme-state-dir DIR (config tls.acme.stateDir)"),
      };
    }
    return new AcmeStore(dir);
  }

  readAccount(): { key: string; url: string | null } | null {
    const key = this.read("account.key");
    if (!key) return null;
    let url: string | null = null;
    try {
      url = JSON.parse(this.read("account.json") ?? "{}").url ?? null;
    } catch { /* a new registration finds the account by its key */ }
    return { key, url };
  }

  saveAccount(key: string, url: string | null, email: string): void {
    this.write("account.key", key, 0o600);
    this.write("account.json", JSON.stringify({ url, email }, null, 2) + "\n", 0o600);
  }

  certFiles(host: string): CertFiles {
    if (!HOST.test(host)) throw new Error(`not a host name: ${JSON.stringify(host)}`);
    return { cert: join(this.dir, `${host}.crt`), key: join(this.dir, `${host}.key`) };
  }

  /** Writes the key, then the certificate (a pair that does not match is refused on load). */
  saveCertificate(host: string, certPem: string, keyPem: string): CertFiles {
    const files = this.certFiles(host);
    this.write(`${host}.key`, keyPem, 0o600);
    this.write(`${host}.crt`, certPem, 0o644);
    return files;
  }

  private read(name: string): string | null {
    try {
      return readFileSync(join(this.dir, name), "utf8");
    } catch {
      return null;
    }
  }

  private write(name: string, text: string, mode: number): void {
    const path = join(this.dir, name);
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode });
    chmodSync(tmp, mode); // writeFileSync's mode applies only when it creates the file
    renameSync(tmp, path);
  }
}
