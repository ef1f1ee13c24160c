/**
 * Pebble, the ACME test server (Debian package `pebble`), for the ACME tests:
 * its own TLS certificate made with openssl, pebble-challtestsrv as its DNS
 * server answering 127.0.0.1 for every name (so any *.holdup.test name is
 * this machine), PEBBLE_VA_NOSLEEP=1, and its HTTP-01 validation pointed at
 * the port holdup's redirect listener will use. Loopback only.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { freePort, run, until } from "./helpers.ts";

export interface Pebble {
  /** The ACME directory URL. */
  directory: string;
  /** Pebble's own HTTPS certificate (the "private CA" holdup must trust for the directory). */
  tlsCert: string;
  /** The root that signs the certificates Pebble issues (PEM), fetched from its management API. */
  root(): Promise<string>;
  /** New orders placed so far (POST /order-plz in Pebble's log). */
  orders(): number;
  log(): string;
  stop(): Promise<void>;
}

export async function startPebble(dir: string, o: { httpPort: number; validitySeconds?: number; blocklist?: string[] }): Promise<Pebble> {
  const tlsCert = join(dir, "pebble-tls.crt"), tlsKey = join(dir, "pebble-tls.key");
  const made = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", tlsKey, "-out", tlsCert,
    "-days", "1", "-subj", "/CN=pebble", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  if (made.code !== 0) throw new Error(made.stderr);
  const [listen, management, dns, dnsManagement, tlsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const config = join(dir, "pebble.json");
  await writeFile(config, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${listen}`,
      managementListenAddress: `127.0.0.1:${management}`,
      certificate: tlsCert,
      privateKey: tlsKey,
      httpPort: o.httpPort,
      tlsPort,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
      domainBlocklist: o.blocklist ?? [],
      ...(o.validitySeconds ? { certificateValidityPeriod: o.validitySeconds } : {}),
    },
  }));
  const children: ChildProcess[] = [];
  let out = "";
  const start = (cmd: string, args: string[], env: Record<string, string> = {}) => {
    const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    c.stdout!.on("data", (d) => out += d);
    c.stderr!.on("data", (d) => out += d);
    children.push(c);
    return c;
  };
  const stop = async () => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const closed = new Promise((r) => c.once("close", r));
      c.kill("SIGTERM");
      await closed;
    }
  };
  try {
    start("pebble-challtestsrv", [
      "-dns01", `127.0.0.1:${dns}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
      "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${dnsManagement}`,
    ]);
    await until("pebble-challtestsrv to serve DNS", () => out.includes("Starting challenge servers"), 10_000);
    start("pebble", ["-config", config, "-dnsserver", `127.0.0.1:${dns}`], { PEBBLE_VA_NOSLEEP: "1" });
    await until("pebble to listen", () => out.includes("ACME directory available at"), 10_000);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${out}`);
  }
  return {
    directory: `https://127.0.0.1:${listen}/dir`,
    tlsCert,
    async root() {
      const r = await run("curl", ["-sS", "--cacert", tlsCert, `https://127.0.0.1:${management}/roots/0`]);
      if (r.code !== 0 || !r.stdout.includes("BEGIN CERTIFICATE")) throw new Error(`pebble's root: ${r.stderr}`);
      return r.stdout;
    },
    orders: () => out.split("POST /order-plz").length - 1,
    log: () => out,
    stop,
  };
}
