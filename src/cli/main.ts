/**
 * The command-line proxy: parse flags, load the config, serve the proxy and
 * admin listeners, reload on SIGHUP, shut down gracefully on SIGTERM/SIGINT.
 */
import { formatListen } from "../config/address.ts";
import { formatDuration } from "../config/units.ts";
import { defaultLayer, fileLayer, type Layer, type LayerError, resolve } from "../config/layers.ts";
import { describeError, flagFor, helpText, parseCli } from "./flags.ts";
import { createHoldup, VERSION } from "../holdup.ts";
import type { Runtime } from "../runtime/types.ts";
import { adminHandler } from "../admin/api.ts";
import { metricsHandler } from "../observe/metrics-port.ts";
import { loadPages } from "../http/templates.ts";
import { reloadPagesWith } from "./pages.ts";
import { isClientCommand, runClient } from "./client.ts";
import process from "node:process";
import { Fleet } from "../fleet/fleet.ts";
import { Logger } from "../observe/log.ts";
import { askParentToReload, followParent, pin, READY, runParent, workerRole } from "../fleet/workers.ts";
import { type Listener, type ListenerLimits, listen, type ListenOptions } from "../serve/listener.ts";
import type { IncomingHandler } from "../serve/types.ts";
import type { Config } from "../config/schema.ts";
import { Supervisor } from "../run/supervisor.ts";
import { redirectHandler, servesName } from "../serve/redirect.ts";
import { acmeHosts } from "../acme/hosts.ts";
import { missingPermission } from "../util/permissions.ts";
import { passedSocketPort, socketActivation } from "../serve/activation.ts";
import { Https, plainPrepare } from "./https.ts";
import { removePidFileIfOurs, writePidFile } from "./pidfile.ts";
import { follow, handOver, Successor, Upgrader, viewOf } from "./upgrade.ts";

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
  // Started by an older holdup's self-upgrade (cli/upgrade.ts): it releases the ports when this one is ready.
  const successor = role ? null : Successor.fromEnv(rt);
  if (role) {
    const raw = { ...cli.flags?.raw, listen: role.listen, admin: { ...cli.flags?.raw.admin, listen: role.admin }, workers: 1 };
    if (role.state) raw.state = role.state;
    cli.flags = { source: "flag", label: "flags", raw };
  }
  if (successor) {
    // The addresses the old holdup is bound to (a port 0 in the arguments is one port by now).
    const p = successor.carried.ports;
    const raw = { ...cli.flags?.raw, listen: p.listen, admin: { ...cli.flags?.raw.admin, listen: p.admin ?? "off" } };
    if (p.metrics) raw.metrics = { listen: p.metrics };
    if (p.redirect) raw.tls = { ...cli.flags?.raw.tls, redirectHttp: p.redirect };
    cli.flags = { source: "flag", label: "flags", raw };
  }
  if (cli.flags) layers.push(cli.flags);
  if (successor) layers.push(...successor.carried.layers);
  const resolved = resolve(layers);
  if ("errors" in resolved) invalid(rt, resolved.errors);
  const effective = resolved.effective;
  const { config } = effective;

  // HTTPS: every certificate is read and checked before anything listens.
  const loaded = Https.load(config);
  if (loaded && "problem" in loaded) fail(rt, 2, `holdup: cannot serve HTTPS: ${loaded.problem}`);
  const https = loaded;

  if (config.state?.startsWith("kv")) {
    fail(rt, 2, `holdup: state "${config.state}" (Deno KV) works in the edge entry only (deno serve --parallel src/edge.ts, or a Deno Deploy-style host): between separate processes Deno KV's watch never fires, so command-line holdups would not see each other's changes in time. For a fleet of command-line holdups, or --workers, use Redis: --state redis://host:6379${rt.name === "bun" ? " (and Bun has no Deno KV at all)" : ""}`);
  }
  // Socket activation: the proxy serves the socket systemd passed (serve/activation.ts).
  const activation = role ? null : socketActivation(rt.name);
  if (activation && "error" in activation) fail(rt, 1, `holdup: ${activation.error}`);
  const activatedFd = activation && "fd" in activation ? activation.fd : undefined;
  if (activatedFd !== undefined && config.workers > 1) fail(rt, 2, "holdup: --workers cannot be combined with socket activation (LISTEN_FDS) yet; run one holdup per .socket unit");
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
  // --pages: read before anything listens; a bad template stops holdup here, naming the file.
  const pages = loadPages(config.pages);
  if ("errors" in pages) invalid(rt, pages.errors);
  h.pages.set = pages.set;

  if (role) h.log.worker = role.index;
  // ACME: stored certificates are read now; orders start once the redirect listener answers.
  const acmeProblem = https?.startAcme(config, h.log);
  if (acmeProblem) fail(rt, 2, `holdup: cannot serve HTTPS: ${acmeProblem}`);
  const acme = https?.acme ?? null;

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
    h.metrics.runApp = () => ({ instance: sup.current?.id ?? null, restarts: sup.restarts, failedRestarts: sup.failedRestarts });
  }
  const proxyHandler: IncomingHandler = app
    ? ((sup) => (req) => {
      sup.touch();
      return h.proxy(req);
    })(app)
    : h.proxy;

  // The proxy port, shared with a self-upgrade's new holdup (SO_REUSEPORT, Runtime.bindShared): a first
  // bind without it refuses a port another process (another holdup) holds (docs/design/upgrade.md).
  const shareProxy = !role && activatedFd === undefined;
  // (Pinned: a port 0 becomes the one the probe got; the config keeps saying 0, as reloads compare it.)
  const pinned = shareProxy && !successor ? await pin(config.listen, "proxy", "--listen") : config.listen;
  if (typeof pinned === "string") fail(rt, 1, `holdup: ${pinned}`);
  if (successor) {
    // The old holdup's modes (a paused holdup's successor holds too).
    for (const v of successor.carried.apps) {
      const a = h.apps.get(v.name);
      if (a && v.mode !== "running") a.state.setMode(v.mode, v.message);
    }
    // A self-upgrade: the app's new instance serves before this holdup takes a connection.
    if (app) {
      const first = await app.start();
      if (!first.ok) {
        await app.shutdown();
        fail(rt, 1, `holdup: upgrade: the app did not start: ${first.error}`);
      }
    }
  }
  const serve = (what: string, addr: Config["listen"], handler: IncomingHandler, upgrade?: ListenOptions["upgrade"], tls?: ListenOptions["tls"]) =>
    // A self-upgrade's new holdup: the old one is closing these ports right now.
    open(rt, what, successor ? 5000 : 0, what === "proxy" && activatedFd !== undefined ? `the passed socket (fd ${activatedFd}, LISTEN_FDS)` : formatListen(addr), () =>
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
        reusePort: what === "proxy" ? role !== null || shareProxy : role !== null && what !== "admin API" && what !== "metrics",
        bindShared: rt.bindShared,
        fd: what === "proxy" ? activatedFd : undefined,
      }));
  // A WebSocket handshake is activity too (and starts an idle-stopped app).
  const upgradeHandler: ListenOptions["upgrade"] = app
    ? ((sup) => (req, socket, head) => {
      sup.touch();
      h.upgrade(req, socket, head);
    })(app)
    : h.upgrade;
  const proxyServer = await serve("proxy", pinned, proxyHandler, upgradeHandler, https ? { certs: https.certs } : undefined);
  h.control.connectionStatus = () => proxyServer.stats();
  successor?.ready();
  h.events.proxyAddress = formatListen(proxyServer);
  const passed = activatedFd === undefined ? null : passedSocketPort(activatedFd);
  if (passed !== null && passed !== proxyServer.port) {
    fail(rt, 1, `holdup: socket activation: the proxy listens on port ${proxyServer.port}, not on the passed socket's port ${passed}; this runtime cannot serve a passed socket`);
  }
  const redirectServer = https && config.tls.redirectHttp
    ? await serve("redirect", config.tls.redirectHttp, redirectHandler(() => proxyServer.port, acme ? (t) => acme.challenges.answer(t) : undefined, (name) => {
      const c = h.control.effective.config;
      return servesName(name, { hosts: c.apps.flatMap((a) => a.hosts), acme: acmeHosts(c), certs: https?.certs ?? null });
    }))
    : null;
  https?.serving(proxyServer);
  let adminServer: Listener | null = null;
  if (config.admin.listen) {
    const a = config.admin.listen;
    adminServer = await serve("admin API", a, adminHandler(h.admin, `http://${formatListen(a)}`));
  }
  // GET /metrics without a token, on a listener of its own (worker 0 only, as the admin API).
  let metricsServer: Listener | null = null;
  if (config.metrics.listen && (!role || role.index === 0)) {
    const render = () => h.metrics.render(h.apps.list, h.control.configVersion, h.control.fleet);
    metricsServer = await serve("metrics", config.metrics.listen, metricsHandler(render));
  }
  // Timeouts and the connection cap follow reloads.
  h.control.onApplied = (c) => {
    proxyServer.update(limitsOf(c));
    adminServer?.update(limitsOf(c));
    metricsServer?.update(limitsOf(c));
    redirectServer?.update(limitsOf(c));
  };
  // Certificates are read again on every reload (SIGHUP, POST /reload), and checked before it is put
  // in force: a pair that cannot be read or does not match refuses the whole reload, the old ones stay.
  h.control.reloadWithoutFile = https !== null;
  if (https) h.control.certificateStatus = () => https.certs.status();
  h.control.prepare = https ? https.prepare(h.control, h.log) : plainPrepare();

  // --pages: read again on every reload (after the certificates' hook, which it wraps).
  reloadPagesWith(h.control, h.pages);

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
    ...(activatedFd !== undefined ? { socketActivation: `fd ${activatedFd}` } : {}),
    ...(https ? { scheme: "https", certificates: https.certs.describe() } : {}),
    ...(acme ? { acme: [...acme.manager.managed.keys()] } : {}),
    ...(redirectServer ? { redirectHttp: formatListen(redirectServer) } : {}),
    ...(config.run ? { app: config.run.command } : { upstreams: config.apps.length === 1 ? config.apps[0].upstreams : Object.fromEntries(config.apps.map((a) => [a.name, a.upstreams])) }),
    admin: adminServer ? formatListen(adminServer) : "off",
    ...(adminServer ? { dashboard: dashboardUrl(adminServer) } : {}),
    ...(metricsServer ? { metrics: `http://${formatListen(metricsServer)}/metrics` } : {}),
    tryDuration: formatDuration(config.tryDuration),
    tryInterval: formatDuration(config.tryInterval),
    ...(cli.configPath ? { config: cli.configPath } : {}),
    ...(effective.shadowed.length
      ? { flagsOverFile: effective.shadowed.map((k) => `${flagFor(k)} over ${k}`) }
      : {}),
  });

  for (const w of https?.warnings ?? []) h.log.warn(`certificate: ${w}`);
  // Every upstream is tried once now: one that does not answer is a warning at once and "down" in /status.
  for (const a of h.apps.list) for (const u of a.state.current.upstreams) u.ensureProbe();
  if (role) rt.writeStdout(`${READY} ${JSON.stringify({ pid: process.pid })}\n`);
  if (cli.pidFile && !role) {
    const problem = writePidFile(cli.pidFile, rt.name); // before a successor says it serves: its predecessor then exits (systemd PIDFile=)
    if (problem) fail(rt, 1, `holdup: ${problem}`);
    const path = cli.pidFile;
    rt.onExit(() => removePidFileIfOurs(path));
  }
  successor?.serving(() => viewOf(h.apps));
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
    // Socket activation: the socket outlives this process (systemd queues the next holdup's connections).
    const proxyDone = activatedFd === undefined ? proxyServer.shutdown() : handOver(proxyServer).drained;
    const drained = Promise.all([proxyDone, adminServer?.shutdown(), redirectServer?.shutdown(), metricsServer?.shutdown()]).then(() => true);
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

  // Self-upgrade (cli/upgrade.ts). A worker's SIGUSR2 is its parent's business (fleet/workers.ts).
  if (!role) {
    let proxyDrained: Promise<unknown> = Promise.resolve(); // every listener's connections closed
    let proxyClosed: Promise<void> = Promise.resolve(); // the proxy listener stopped accepting
    let retired = false;
    const retire = () => {
      if (retired) return;
      retired = true;
      const others = [adminServer, metricsServer, redirectServer].map((l) => l?.shutdown());
      const proxy = handOver(proxyServer);
      proxyClosed = proxy.closed;
      proxyDrained = Promise.all([proxy.drained, ...others]);
    };
    const upgrader = new Upgrader({
      rt,
      log: h.log,
      refused: activatedFd !== undefined
        ? "holdup serves a socket passed by systemd (socket activation): restart the service instead; the .socket unit keeps the port and queues connections meanwhile"
        : null,
      readyWithinMs: 15_000 + (config.run ? config.run.readyTimeout : 0),
      carried: () => ({
        ports: {
          listen: formatListen(proxyServer),
          admin: adminServer ? formatListen(adminServer) : null,
          metrics: metricsServer ? formatListen(metricsServer) : null,
          redirect: redirectServer ? formatListen(redirectServer) : null,
        },
        layers: h.control.effective.layers.filter((l) => l.source === "reload"),
        apps: viewOf(h.apps),
      }),
      handover: {
        release() {
          acme?.manager.stop();
          h.events.close();
          // Their ports free at once (server.close() keeps Deno's until in-flight requests are done, and the admin
          // request that asked for this upgrade is one of them); their connections are closed in retire().
          for (const l of [adminServer, metricsServer, redirectServer]) l?.stopAccepting();
          // The new holdup accepts on the same port already: this one lets go of it (handOver).
          retire();
          // WebSockets go (1001) once it stopped accepting, so their clients' reconnects reach the new holdup.
          return proxyClosed.then(() => {
            for (const a of h.apps.list) void a.state.websockets.shutdown(() => proxyServer.requests === 0);
          });
        },
        retire,
        follow: (apps) => follow(h.control, h.apps, app !== null, apps),
        drained() {
          const longest = Math.max(0, ...h.apps.list.map((a) => a.state.current.config.tryDuration));
          return Promise.race([proxyDrained, new Promise((r) => setTimeout(r, longest + SHUTDOWN_GRACE_MS))]).then(() => {});
        },
        held: () => h.apps.list.reduce((n, a) => n + a.state.held, 0),
        async exit() {
          if (app) await app.shutdown();
          h.log.flush();
          return rt.exit(0);
        },
      },
    });
    h.control.upgrade = (trigger) => upgrader.start(trigger);
    rt.onSignal("SIGUSR2", () => void upgrader.start("SIGUSR2"));
  }

  if (app && !successor) {
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

function limitsOf(c: Config): ListenerLimits {
  return {
    headerTimeout: c.headerTimeout,
    bodyTimeout: c.bodyTimeout,
    keepAliveTimeout: c.keepAliveTimeout,
    maxConnections: c.maxConnections,
  };
}

/** Listens; EADDRINUSE is tried again for `retryMs` (every 1 ms: a self-upgrade's admin, metrics and redirect ports free as the old holdup closes them). */
async function open(rt: Runtime, what: string, retryMs: number, addr: string, start: () => Promise<Listener>): Promise<Listener> {
  const until = Date.now() + retryMs;
  for (;;) {
    try {
      return await start();
    } catch (e) {
      const err = e as { code?: string; message?: string };
      if (err.code === "EADDRINUSE" && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      return failOpen(rt, what, addr, err);
    }
  }
}

function failOpen(rt: Runtime, what: string, addr: string, err: { code?: string; message?: string }): never {
  if (err.code === "EADDRINUSE") {
    fail(rt, 1, `holdup: cannot listen on ${addr} for the ${what}: address already in use (choose another with ${what === "proxy" ? "--listen" : what === "redirect" ? "--redirect-http" : what === "metrics" ? "--metrics-listen" : "--admin"})`);
  }
  fail(rt, 1, `holdup: cannot listen on ${addr} for the ${what}: ${err.message ?? err}`);
}

function invalid(rt: Runtime, errors: LayerError[]): never {
  const lines = errors.map((e) => `  ${describeError(e)}`).join("\n");
  fail(rt, 2, `holdup: invalid configuration:\n${lines}\nRun holdup --help to see every flag and its format.`);
}

function fail(rt: Runtime, code: number, message: string): never {
  rt.writeStderr(message + "\n");
  rt.exit(code);
}
