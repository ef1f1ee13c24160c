/**
 * The command-line proxy: parse flags, load the config, serve the proxy and
 * admin listeners, reload on SIGHUP, shut down gracefully on SIGTERM/SIGINT.
 */
import { formatListen } from "./config/address.ts";
import { formatDuration } from "./config/units.ts";
import { defaultLayer, fileLayer, type Layer, type LayerError, resolve } from "./config/layers.ts";
import { describeError, flagFor, helpText, parseCli } from "./cli.ts";
import { createHoldup, VERSION } from "./holdup.ts";
import type { Runtime } from "./runtime/types.ts";
import { adminHandler } from "./admin.ts";
import { isClientCommand, runClient } from "./client.ts";
import process from "node:process";
import { Fleet } from "./fleet/shared.ts";
import { Logger } from "./log.ts";
import { askParentToReload, followParent, READY, runParent, workerRole } from "./fleet/workers.ts";
import { type Listener, type ListenerLimits, listen, type ListenOptions } from "./serve/listener.ts";
import type { IncomingHandler } from "./serve/types.ts";
import type { Config } from "./config/schema.ts";
import { Supervisor } from "./run/supervisor.ts";
import { type Certificates, loadCertificates, tlsWanted } from "./serve/tls.ts";
import { redirectHandler, servesName } from "./serve/redirect.ts";
import { startAcme } from "./acme/start.ts";
import { acmeHosts } from "./acme/hosts.ts";
import { missingPermission } from "./runtime/permissions.ts";

/** How long in-flight requests may run after SIGTERM before holdup exits anyway. */
const SHUTDOWN_GRACE_MS = 30_000;

export async function main(rt: Runtime): Promise<void> {
  if (isClientCommand(rt.args())) return rt.exit(await runClient(rt, rt.args()));
  const cli = parseCli(rt.args());
  if (cli.kind === "help") return rt.writeStdout(cli.text ?? helpText(VERSION));
  if (cli.kind === "version") return rt.writeStdout(`holdup ${VERSION} (${rt.name} ${rt.version})\n`);
  if (cli.kind === "error") fail(rt, 2, `holdup: ${cli.message}\nRun holdup --help to see every flag.`);

  const defaults = defaultLayer({ stderrIsTTY: rt.stderrIsTTY(), adminToken: rt.env("HOLDUP_ADMIN_TOKEN"), state: rt.env("HOLDUP_STATE") });
  const layers: Layer[] = [defaults];
  if (cli.configPath) {
    const file = await fileLayer(cli.configPath);
    if ("errors" in file) invalid(rt, file.errors);
    layers.push(file.layer);
  }
  // A worker of --workers N: the parent's port (shared), admin on worker 0 only, the parent's channel.
  const role = workerRole(rt);
  if (role) {
    const raw = { ...cli.flags?.raw, listen: role.listen, admin: { ...cli.flags?.raw.admin, listen: role.admin }, workers: 1 };
    if (role.state) raw.state = role.state;
    cli.flags = { source: "flag", label: "flags", raw };
  }
  if (cli.flags) layers.push(cli.flags);
  const resolved = resolve(layers);
  if ("errors" in resolved) invalid(rt, resolved.errors);
  const effective = resolved.effective;
  const { config } = effective;

  // HTTPS: every certificate is read and checked before anything listens.
  const https = tlsWanted(config);
  let certs: Certificates | null = null;
  let startWarnings: string[] = [];
  if (https) {
    const loaded = loadCertificates(config);
    if ("errors" in loaded) fail(rt, 2, `holdup: cannot serve HTTPS: ${loaded.errors.map((e) => e.problem).join("; ")}`);
    certs = loaded.certs;
    startWarnings = loaded.warnings;
  }

  if (config.state?.startsWith("kv")) {
    fail(rt, 2, `holdup: state "${config.state}" (Deno KV) works in the edge entry only (deno serve --parallel src/edge.ts, or a Deno Deploy-style host): between separate processes Deno KV's watch never fires, so command-line holdups would not see each other's changes in time. For a fleet of command-line holdups, or --workers, use Redis: --state redis://host:6379${rt.name === "bun" ? " (and Bun has no Deno KV at all)" : ""}`);
  }
  if (config.workers > 1) {
    if (config.run) fail(rt, 2, "holdup: --workers cannot be combined with running the app (-- COMMAND, config run): each worker would start its own app; run one holdup per app, or proxy to an app you start yourself");
    if (config.tls.acme) fail(rt, 2, "holdup: --workers cannot be combined with automatic certificates (tls.acme) yet: each worker would order its own, and an ACME challenge could reach a worker that did not order it; use certificate files (--tls-cert, --tls-key) with --workers, or one process with tls.acme");
    const log = new Logger(config.log, (t) => rt.writeStderr(t), rt.stderrIsTTY());
    return await runParent({ rt, config, log, version: VERSION, configPath: cli.configPath, fail: (code, message) => fail(rt, code, message) });
  }

  if (config.run) {
    const denied = rt.spawnDenied();
    if (denied) fail(rt, 1, `holdup: ${denied}`);
  }
  if (config.tls.acme) {
    // The state directory is written; the system's CA certificates (for the directory's HTTPS) need sys.
    const denied = missingPermission(config.tls.acme.ca ? ["write"] : ["write", "sys"], "--acme");
    if (denied) fail(rt, 1, denied);
  }

  if (role) followParent();
  const h = createHoldup({
    runtime: rt,
    effective,
    base: { defaults, configPath: cli.configPath, overrides: cli.flags },
    adminCheckHost: true,
  });

  if (role) h.log.worker = role.index;
  // ACME: stored certificates are read now; orders start once the redirect listener answers.
  const fileCerts0 = certs;
  const started = config.tls.acme ? startAcme(config, h.log) : null;
  if (started && "problem" in started) fail(rt, 2, `holdup: cannot serve HTTPS: ${started.problem}`);
  const acme = started;
  let fileCerts = fileCerts0;
  if (acme) certs = certs!.withManaged(acme.manager.managed);

  // A fleet: read the shared state before serving (at most 3 s; without the engine, serve on local state).
  if (config.state) {
    const fleet = h.control.fleet = new Fleet(config.state, { control: h.control, apps: h.apps, log: h.log });
    if (role) {
      fleet.worker = { index: role.index, of: role.of, pid: process.pid, channel: role.state ? "parent" : "engine" };
      fleet.reportWorkers(role.group);
    }
    await fleet.ready(3000);
  }

  // holdup runs the app: its serving instance is the upstream; none yet, so requests are held.
  let app: Supervisor | null = null;
  if (config.run) {
    const sup = app = new Supervisor({ runtime: rt, log: h.log, state: h.state, control: h.control });
    h.control.setAppUpstream(null);
    h.control.restartApp = (trigger) => sup.restart(trigger);
    h.control.appStatus = () => sup.status();
    h.hooks.onUnhealthy = (_app, url, reason) => sup.unhealthy(url, reason);
  }
  const proxyHandler: IncomingHandler = app
    ? ((sup) => (req) => {
      sup.touch();
      return h.proxy(req);
    })(app)
    : h.proxy;

  const serve = (what: string, addr: Config["listen"], handler: IncomingHandler, upgrade?: ListenOptions["upgrade"], tls?: ListenOptions["tls"]) =>
    open(rt, what, addr, () =>
      listen({
        hostname: addr.hostname,
        port: addr.port,
        handler,
        upgrade,
        tls,
        limits: limitsOf(h.control.effective.config),
        rearmAccept: rt.acceptStallsOnEmfile,
        wholeBodyMax: rt.wholeBodyMax,
        warn: (message, fields) => h.log.warn(`${what}: ${message}`, fields),
        reusePort: role !== null && what !== "admin API",
      }));
  // A WebSocket handshake is activity too (and starts an idle-stopped app).
  const upgradeHandler: ListenOptions["upgrade"] = app
    ? ((sup) => (req, socket, head) => {
      sup.touch();
      h.upgrade(req, socket, head);
    })(app)
    : h.upgrade;
  const proxyServer = await serve("proxy", config.listen, proxyHandler, upgradeHandler, certs ? { certs } : undefined);
  h.control.connectionStatus = () => proxyServer.stats();
  const redirectServer = https && config.tls.redirectHttp
    ? await serve("redirect", config.tls.redirectHttp, redirectHandler(() => proxyServer.port, acme ? (t) => acme.challenges.answer(t) : undefined, (name) => {
      const c = h.control.effective.config;
      return servesName(name, { hosts: c.apps.flatMap((a) => a.hosts), acme: acmeHosts(c), certs });
    }))
    : null;
  if (acme) {
    acme.manager.onChange = () => {
      certs = fileCerts!.withManaged(acme.manager.managed);
      proxyServer.setCertificates(certs);
    };
  }
  let adminServer: Listener | null = null;
  if (config.admin.listen) {
    const a = config.admin.listen;
    adminServer = await serve("admin API", a, adminHandler(h.admin, `http://${formatListen(a)}`));
  }
  // Timeouts and the connection cap follow reloads.
  h.control.onApplied = (c) => {
    proxyServer.update(limitsOf(c));
    adminServer?.update(limitsOf(c));
    redirectServer?.update(limitsOf(c));
  };
  // Certificates are read again on every reload (SIGHUP, POST /reload), and checked before it is put
  // in force: a pair that cannot be read or does not match refuses the whole reload, the old ones stay.
  h.control.reloadWithoutFile = https;
  if (https) h.control.certificateStatus = () => certs!.status();
  h.control.prepare = (next, trigger) => {
    const none = { notes: [] as string[], commit() {} };
    if (!https) return tlsWanted(next) ? { ...none, notes: ["tls takes effect on restart: holdup was started without HTTPS"] } : none;
    if (!tlsWanted(next)) return { ...none, notes: ["tls cannot be turned off by a reload; still serving HTTPS with the certificates loaded"] };
    // A deploy changes upstreams only: the certificates are not read again for it.
    if (trigger.startsWith("deploy") && sameCertFiles(next, h.control.effective.config)) return none;
    const loaded = loadCertificates(next);
    if ("errors" in loaded) return { errors: loaded.errors.map((e) => ({ ...e, where: "certificate files" })) };
    const acmeRest = (c: Config) => JSON.stringify({ ...c.tls.acme, hosts: undefined });
    return {
      notes: acme && acmeRest(next) !== acmeRest(h.control.effective.config) ? ["tls.acme takes effect on restart, except its hosts"] : [],
      commit() {
        const before = JSON.stringify(certs!.describe());
        fileCerts = loaded.certs;
        if (acme) acme.manager.want(acmeHosts(next));
        certs = acme ? loaded.certs.withManaged(acme.manager.managed) : loaded.certs;
        proxyServer.setCertificates(certs);
        const after = certs.describe();
        if (JSON.stringify(after) !== before) h.log.info("certificates reloaded: new connections get them", { trigger, certificates: after });
        for (const w of loaded.warnings) h.log.warn(`certificate: ${w}`);
      },
    };
  };

  if (role) {
    // POST /reload without a body re-reads the file here (worker 0): the parent has the others do it too.
    const fromFile = h.control.reloadFromFile.bind(h.control);
    h.control.reloadFromFile = async (trigger) => {
      const r = await fromFile(trigger);
      if (trigger !== "SIGHUP") askParentToReload(role);
      return r;
    };
  }
  h.log.info(role ? "holdup worker started" : "holdup started", {
    ...(role ? { pid: process.pid, of: role.of } : {}),
    version: VERSION,
    runtime: `${rt.name} ${rt.version}`,
    listen: formatListen(proxyServer),
    ...(certs ? { scheme: "https", certificates: certs.describe() } : {}),
    ...(acme ? { acme: [...acme.manager.managed.keys()] } : {}),
    ...(redirectServer ? { redirectHttp: formatListen(redirectServer) } : {}),
    ...(config.run ? { app: config.run.command } : { upstreams: config.apps.length === 1 ? config.apps[0].upstreams : Object.fromEntries(config.apps.map((a) => [a.name, a.upstreams])) }),
    admin: adminServer ? formatListen(adminServer) : "off",
    ...(adminServer ? { dashboard: dashboardUrl(adminServer) } : {}),
    tryDuration: formatDuration(config.tryDuration),
    tryInterval: formatDuration(config.tryInterval),
    ...(cli.configPath ? { config: cli.configPath } : {}),
    ...(effective.shadowed.length
      ? { flagsOverFile: effective.shadowed.map((k) => `${flagFor(k)} over ${k}`) }
      : {}),
  });

  for (const w of startWarnings) h.log.warn(`certificate: ${w}`);
  // Every upstream is tried once now: one that does not answer is a warning at once and "down" in /status.
  for (const a of h.apps.list) for (const u of a.state.current.upstreams) u.ensureProbe();
  if (role) rt.writeStdout(`${READY} ${JSON.stringify({ pid: process.pid })}\n`);
  acme?.manager.start();

  rt.onSignal("SIGHUP", () => {
    if (!app) return void h.control.reloadFromFile("SIGHUP");
    // Running the app: re-read the config file (or the certificates) if there is one, then restart the app.
    const sup = app;
    void (async () => {
      if (cli.configPath || https) await h.control.reloadFromFile("SIGHUP");
      await sup.restart("SIGHUP");
    })();
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      h.log.warn(`${signal} again: exiting now`);
      h.log.flush();
      rt.exit(1);
    }
    stopping = true;
    acme?.manager.stop();
    const held = h.apps.list.reduce((n, a) => n + a.state.held, 0);
    h.log.info("shutting down: no new connections; in-flight requests may finish", {
      signal, held, graceSeconds: SHUTDOWN_GRACE_MS / 1000,
    });
    for (const a of h.apps.list) {
      a.state.waiters.close(); // held requests are answered 503 now, so the servers can drain
      // WebSockets: closed with 1001 once in-flight HTTP requests are done (the listener waits for them too).
      void a.state.websockets.shutdown(() => proxyServer.requests === 0);
    }
    h.events.close(); // and dashboards' event streams end (their pages reconnect to the next holdup)
    const drained = Promise.all([proxyServer.shutdown(), adminServer?.shutdown(), redirectServer?.shutdown()]).then(() => true);
    const timedOut = new Promise<boolean>((r) => setTimeout(() => r(false), SHUTDOWN_GRACE_MS));
    const clean = await Promise.race([drained, timedOut]);
    if (app) {
      h.log.info("stopping the app");
      await app.shutdown();
    }
    h.log.info(clean ? "stopped" : "stopped: in-flight requests did not finish within the grace period");
    h.log.flush();
    rt.exit(0);
  };
  rt.onSignal("SIGTERM", () => void shutdown("SIGTERM"));
  rt.onSignal("SIGINT", () => void shutdown("SIGINT"));

  if (app) {
    const first = await app.start();
    if (!first.ok && !stopping) {
      await app.shutdown();
      h.log.flush();
      fail(rt, 1, `holdup: the app did not start: ${first.error}`);
    }
  }
}

/** The dashboard's address for a browser on this machine (an any-address listener is reached on loopback). */
function dashboardUrl(a: { hostname: string; port: number }): string {
  const host = a.hostname === "0.0.0.0" ? "127.0.0.1" : a.hostname === "::" ? "::1" : a.hostname;
  return `http://${formatListen({ hostname: host, port: a.port })}/`;
}

function sameCertFiles(a: Config, b: Config): boolean {
  const files = (c: Config) => JSON.stringify([c.tls.cert, c.tls.key, c.apps.map((x) => [x.name, x.hosts, x.tls]), c.tls.acme?.hosts]);
  return files(a) === files(b);
}

function limitsOf(c: Config): ListenerLimits {
  return {
    headerTimeout: c.headerTimeout,
    bodyTimeout: c.bodyTimeout,
    keepAliveTimeout: c.keepAliveTimeout,
    maxConnections: c.maxConnections,
  };
}

async function open(rt: Runtime, what: string, a: Config["listen"], start: () => Promise<Listener>): Promise<Listener> {
  const addr = formatListen(a);
  try {
    return await start();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code === "EADDRINUSE") {
      fail(rt, 1, `holdup: cannot listen on ${addr} for the ${what}: address already in use (choose another with ${what === "proxy" ? "--listen" : what === "redirect" ? "--redirect-http" : "--admin"})`);
    }
    fail(rt, 1, `holdup: cannot listen on ${addr} for the ${what}: ${err.message ?? e}`);
  }
}

function invalid(rt: Runtime, errors: LayerError[]): never {
  const lines = errors.map((e) => `  ${describeError(e)}`).join("\n");
  fail(rt, 2, `holdup: invalid configuration:\n${lines}\nRun holdup --help to see every flag and its format.`);
}

function fail(rt: Runtime, code: number, message: string): never {
  rt.writeStderr(message + "\n");
  rt.exit(code);
}
