/**
 * The command line: flags → a config layer, --help and --version.
 * parseArgs from node:util runs on Deno, Bun and Node alike (@std/cli lives
 * only on JSR, which these machines cannot reach).
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import process from "node:process";
import type { Layer, LayerError } from "../config/layers.ts";
import type { RawConfig } from "../config/schema.ts";
import { CLIENT_HELP, COMMANDS } from "./client.ts";
import { COMMAND_DOCS, commandHelp } from "./commands.ts";
import { closest, explainArgsError } from "../util/suggest.ts";

export type Cli =
  | { kind: "help"; text?: string }
  | { kind: "version" }
  | { kind: "run"; configPath: string | null; flags: Layer | null; pidFile: string | null }
  | { kind: "error"; message: string };

export const OPTIONS = {
  config: { type: "string", short: "c" },
  listen: { type: "string", short: "l" },
  upstream: { type: "string", short: "u", multiple: true },
  "try-duration": { type: "string" },
  "try-interval": { type: "string" },
  "response-timeout": { type: "string" },
  "health-path": { type: "string" },
  "health-interval": { type: "string" },
  "health-timeout": { type: "string" },
  "unhealthy-after": { type: "string" },
  "ws-idle-timeout": { type: "string" },
  "ws-ping-interval": { type: "string" },
  "max-held": { type: "string" },
  "max-body-buffer": { type: "string" },
  "max-body": { type: "string" },
  "max-held-body-bytes": { type: "string" },
  "header-timeout": { type: "string" },
  "body-timeout": { type: "string" },
  "keep-alive-timeout": { type: "string" },
  "max-connections": { type: "string" },
  admin: { type: "string" },
  "admin-host": { type: "string", multiple: true },
  state: { type: "string" },
  workers: { type: "string", short: "w" },
  "admin-token": { type: "string" },
  "admin-token-file": { type: "string" },
  "allow-upstream": { type: "string", multiple: true },
  log: { type: "string" },
  "idle-stop": { type: "string" },
  restart: { type: "string" },
  release: { type: "string" },
  "waiting-page-after": { type: "string" },
  "metrics-listen": { type: "string" },
  pages: { type: "string" },
  "retry-on": { type: "string" },
  "max-concurrent": { type: "string" },
  "slow-start": { type: "string" },
  "rollback-window": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "redirect-http": { type: "string" },
  acme: { type: "string" },
  "acme-host": { type: "string", multiple: true },
  "acme-directory": { type: "string" },
  "acme-ca": { type: "string" },
  "acme-state-dir": { type: "string" },
  "pid-file": { type: "string" },
  help: { type: "boolean", short: "h" }, version: { type: "boolean", short: "V" },
} as const;

/** Config key → the flag that sets it, for error messages. */
const FLAG_FOR: Record<string, string> = {
  listen: "--listen",
  upstreams: "--upstream",
  tryDuration: "--try-duration",
  tryInterval: "--try-interval",
  responseTimeout: "--response-timeout",
  healthPath: "--health-path",
  healthInterval: "--health-interval",
  healthTimeout: "--health-timeout",
  unhealthyAfter: "--unhealthy-after",
  wsIdleTimeout: "--ws-idle-timeout",
  wsPingInterval: "--ws-ping-interval",
  maxHeld: "--max-held",
  maxBodyBuffer: "--max-body-buffer",
  maxBody: "--max-body",
  maxHeldBodyBytes: "--max-held-body-bytes",
  headerTimeout: "--header-timeout",
  bodyTimeout: "--body-timeout",
  keepAliveTimeout: "--keep-alive-timeout",
  maxConnections: "--max-connections",
  "admin.listen": "--admin",
  "admin.hosts": "--admin-host",
  state: "--state",
  workers: "--workers",
  "admin.token": "--admin-token",
  allowUpstreams: "--allow-upstream",
  log: "--log",
  waitingPageAfter: "--waiting-page-after",
  "metrics.listen": "--metrics-listen",
  pages: "--pages",
  retryOn: "--retry-on",
  maxConcurrent: "--max-concurrent",
  slowStart: "--slow-start",
  rollbackWindow: "--rollback-window",
  "run.idleStop": "--idle-stop",
  "run.restart": "--restart",
  "run.release": "--release",
  "tls.cert": "--tls-cert",
  "tls.key": "--tls-key",
  "tls.redirectHttp": "--redirect-http",
  "tls.acme": "--acme",
  "tls.acme.email": "--acme",
  "tls.acme.hosts": "--acme-host",
  "tls.acme.directory": "--acme-directory",
  "tls.acme.ca": "--acme-ca",
  "tls.acme.stateDir": "--acme-state-dir",
  "run.command": "-- COMMAND",
};

export function parseCli(argv: string[]): Cli {
  // Everything after the first `--` is the app to run: holdup [options] -- COMMAND [ARGS…]
  const dashes = argv.indexOf("--");
  const args = dashes < 0 ? argv : argv.slice(0, dashes);
  const command = dashes < 0 ? null : argv.slice(dashes + 1);
  if (command && command.length === 0) return { kind: "error", message: "nothing after --: give the app's command, e.g. -- python3 -m http.server {port}" };
  // `holdup help [COMMAND]`, and a word where a command or flag was expected.
  if (args[0] === "help") {
    if (args.length === 1) return { kind: "help" };
    if (COMMAND_DOCS[args[1]]) return { kind: "help", text: commandHelp(args[1]) };
    return { kind: "error", message: unknownCommand(args[1]) };
  }
  if (args[0] !== undefined && !args[0].startsWith("-")) return { kind: "error", message: unknownCommand(args[0]) };
  let values;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (e) {
    const message = explainArgsError((e as Error).message, Object.keys(OPTIONS));
    // A command after flags (holdup -u :8003 deplyo): commands come first.
    const stray = /^Unexpected argument '([^']+)'/.exec(message)?.[1];
    const command = stray ? closest(stray, COMMANDS) : null;
    return { kind: "error", message: command ? `${message} (did you mean the command ${command}? it comes first: holdup ${command} [APP] [options])` : message };
  }
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  const raw: RawConfig = {};
  if (values.listen !== undefined) raw.listen = values.listen;
  if (values.upstream !== undefined) raw.upstreams = values.upstream;
  if (values["try-duration"] !== undefined) raw.tryDuration = values["try-duration"];
  if (values["try-interval"] !== undefined) raw.tryInterval = values["try-interval"];
  if (values["response-timeout"] !== undefined) raw.responseTimeout = values["response-timeout"];
  if (values["health-path"] !== undefined) raw.healthPath = values["health-path"];
  if (values["health-interval"] !== undefined) raw.healthInterval = values["health-interval"];
  if (values["health-timeout"] !== undefined) raw.healthTimeout = values["health-timeout"];
  if (values["unhealthy-after"] !== undefined) raw.unhealthyAfter = values["unhealthy-after"];
  if (values["ws-idle-timeout"] !== undefined) raw.wsIdleTimeout = values["ws-idle-timeout"];
  if (values["ws-ping-interval"] !== undefined) raw.wsPingInterval = values["ws-ping-interval"];
  if (values["max-held"] !== undefined) raw.maxHeld = values["max-held"];
  if (values["max-body-buffer"] !== undefined) raw.maxBodyBuffer = values["max-body-buffer"];
  if (values["max-body"] !== undefined) raw.maxBody = values["max-body"];
  if (values["max-held-body-bytes"] !== undefined) raw.maxHeldBodyBytes = values["max-held-body-bytes"];
  if (values["header-timeout"] !== undefined) raw.headerTimeout = values["header-timeout"];
  if (values["body-timeout"] !== undefined) raw.bodyTimeout = values["body-timeout"];
  if (values["keep-alive-timeout"] !== undefined) raw.keepAliveTimeout = values["keep-alive-timeout"];
  if (values["max-connections"] !== undefined) raw.maxConnections = values["max-connections"];
  if (values.state !== undefined) raw.state = values.state;
  if (values.workers !== undefined) raw.workers = values.workers;
  if (values["allow-upstream"] !== undefined) raw.allowUpstreams = values["allow-upstream"];
  // A token on the command line is readable by every local user (/proc/PID/cmdline); a file need not be.
  const tokenFile = values["admin-token-file"] ?? (values["admin-token"] === undefined ? process.env.HOLDUP_ADMIN_TOKEN_FILE : undefined);
  if (tokenFile !== undefined) {
    if (values["admin-token"] !== undefined) return { kind: "error", message: "--admin-token and --admin-token-file: give one of them" };
    const read = readToken(tokenFile);
    if (typeof read !== "string") return { kind: "error", message: `--admin-token-file ${tokenFile}: ${read.problem}` };
    values["admin-token"] = read;
  }
  if (values.admin !== undefined || values["admin-token"] !== undefined || values["admin-host"] !== undefined) {
    raw.admin = {};
    if (values.admin !== undefined) raw.admin.listen = values.admin;
    if (values["admin-token"] !== undefined) raw.admin.token = values["admin-token"];
    if (values["admin-host"] !== undefined) raw.admin.hosts = values["admin-host"];
  }
  if (values.log !== undefined) raw.log = values.log as RawConfig["log"];
  if (values["waiting-page-after"] !== undefined) raw.waitingPageAfter = values["waiting-page-after"];
  if (values["metrics-listen"] !== undefined) raw.metrics = { listen: values["metrics-listen"] };
  if (values.pages !== undefined) raw.pages = values.pages;
  if (values["retry-on"] !== undefined) raw.retryOn = values["retry-on"];
  if (values["max-concurrent"] !== undefined) raw.maxConcurrent = values["max-concurrent"];
  if (values["slow-start"] !== undefined) raw.slowStart = values["slow-start"];
  if (values["rollback-window"] !== undefined) raw.rollbackWindow = values["rollback-window"];
  if (values["tls-cert"] !== undefined || values["tls-key"] !== undefined || values["redirect-http"] !== undefined) {
    raw.tls = {};
    if (values["tls-cert"] !== undefined) raw.tls.cert = values["tls-cert"];
    if (values["tls-key"] !== undefined) raw.tls.key = values["tls-key"];
    if (values["redirect-http"] !== undefined) raw.tls.redirectHttp = values["redirect-http"];
  }
  const acme = { email: values.acme, hosts: values["acme-host"], directory: values["acme-directory"], ca: values["acme-ca"], stateDir: values["acme-state-dir"] };
  if (Object.values(acme).some((v) => v !== undefined)) {
    raw.tls ??= {};
    raw.tls.acme = Object.fromEntries(Object.entries(acme).filter(([, v]) => v !== undefined));
  }
  if (command || values["idle-stop"] !== undefined || values.restart !== undefined || values.release !== undefined) {
    raw.run = {};
    if (command) raw.run.command = command;
    if (values["idle-stop"] !== undefined) raw.run.idleStop = values["idle-stop"];
    if (values.restart !== undefined) raw.run.restart = values.restart as "overlap" | "serial";
    if (values.release !== undefined) raw.run.release = values.release;
  }
  return {
    kind: "run",
    configPath: values.config ?? null, pidFile: values["pid-file"] ?? null,
    flags: Object.keys(raw).length ? { source: "flag", label: "flags", raw } : null,
  };
}

/** The first line of a token file, trimmed; it must not be empty. */
function readToken(path: string): string | { problem: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    return { problem: `cannot be read (${(e as { code?: string }).code ?? (e as Error).message})` };
  }
  const token = text.split(/\r?\n/)[0].trim();
  return token ? token : { problem: "is empty; write the token on its first line" };
}

function unknownCommand(word: string): string {
  const best = closest(word, [...COMMANDS, "help"]);
  return `unknown command "${word}"${best ? ` (did you mean "${best}"?)` : ""}; the commands are ${COMMANDS.join(", ")}, help`;
}

/** Names the flag rather than the config key when the error came from a flag. */
export function describeError(e: LayerError): string {
  if (e.where === "flags") {
    const key = e.field.replace(/\[\d+\]$/, "");
    return `${FLAG_FOR[key] ?? e.field}: ${e.problem}`;
  }
  return `${e.where}: ${e.field}: ${e.problem}`;
}

export function flagFor(key: string): string {
  return FLAG_FOR[key] ?? key;
}

export function helpText(version: string): string {
  return `holdup ${version} — a reverse proxy for zero-downtime deploys

While the upstream restarts, is being swapped, or you have paused traffic,
holdup holds incoming requests instead of failing them, retries the upstream,
and sends them on the moment it answers — or to the new upstream a reload
names (SIGHUP or POST /reload), even for requests already waiting.

Usage:
  holdup [options]                      run the proxy
  holdup COMMAND [APP] [options]        drive a running holdup (deploy, pause, resume,
                                        stop, status, reload, restart; see below)
  holdup [options] -- COMMAND [ARGS…]   run the app too ({port} in ARGS, and $PORT)
  holdup help [COMMAND]                 this help, or one command's (also holdup COMMAND --help)
  (holdup is the command npm install -g holdup installs; from a clone or one file:)
  deno run --allow-net --allow-read --allow-env src/proxy.ts [options]
  bun src/proxy.ts [options]
  (on Deno, running an app needs --allow-run as well)

Options (config-file key in brackets; a flag overrides the file):
  -c, --config FILE          JSON config file, re-read on SIGHUP and POST /reload
  -l, --listen ADDR          [listen] [host]:port to serve       (default :8080, all interfaces)
  -u, --upstream URL         [upstreams] upstream origin; repeat for several
                             (default http://127.0.0.1:8003; localhost:8003, :8003 and 8003 mean http://)
      --try-duration DUR     [tryDuration] longest a request is held, from its arrival   (default 30s)
      --try-interval DUR     [tryInterval] how often an unreachable upstream is tried,
                             once per interval however many requests wait             (default 250ms)
      --response-timeout DUR [responseTimeout] longest wait for response headers      (default 60s)
      --health-path PATH     [healthPath] upstream is ready only when GET PATH is 2xx (default none);
                             with it, every upstream is also probed while it serves:
      --health-interval DUR  [healthInterval] how often each upstream is probed        (default 5s)
      --health-timeout DUR   [healthTimeout] a probe not answered 2xx within it fails  (default 2s)
      --unhealthy-after N    [unhealthyAfter] failed probes in a row that mark an upstream
                             down: requests go to another or are held; an app holdup
                             runs is killed (SIGKILL) and restarted         (default 3)
      --max-held N           [maxHeld] most requests held at once; past it, 503     (default 10000)
      --max-body-buffer SIZE [maxBodyBuffer] largest body kept in memory for replay (default 1MiB)
      --max-body SIZE        [maxBody] larger request bodies get 413, nothing sent upstream;
                             a chunked body is then read whole first          (default none)
      --max-held-body-bytes SIZE [maxHeldBodyBytes] buffered bodies of all held requests
                             together; past it, 503 with Retry-After          (default 256MiB)
      --retry-on CODES       [retryOn] e.g. 502,503: such an answer to a GET, HEAD, OPTIONS,
                             PUT, DELETE or a request with Idempotency-Key means "not ready":
                             held and retried (after Retry-After, at least tryInterval) until
                             tryDuration, then passed on; retries stay within a budget of 20%
                             of the app's requests (at least 3/s)               (default none)
      --max-concurrent N     [maxConcurrent] most requests in flight to each upstream; the
                             rest wait in line, first come first served, as held requests
                             (maxHeld, tryDuration apply)                      (default none)
      --slow-start DUR       [slowStart] a newly ready upstream's cap ramps from 1 to
                             --max-concurrent over DUR                          (default 0)
      --rollback-window DUR  [rollbackWindow] for DUR after a deploy or restart, if the new
                             upstreams (instance) go down (exit) or half their answers (of
                             10 or more) are 5xx, switch back to the replaced ones, kept
                             meanwhile; the deploy or restart fails          (default off)

Connections (every client connection; a held request is exempt from the timeouts):
      --header-timeout DUR   [headerTimeout] the whole request head must arrive within it (default 10s)
      --body-timeout DUR     [bodyTimeout] longest silence while a request body is read (default 60s)
      --keep-alive-timeout DUR [keepAliveTimeout] an idle keep-alive connection closes (default 75s)
      --max-connections N    [maxConnections] client connections at once, also capped by the
                             fd limit (ulimit -n); HTTP/1.1, HTTP/2 and WebSockets all count;
                             at the cap the one idle longest is closed (a WebSocket with
                             1013 between frames); none idle: the new one is refused (default 10000)
      --ws-idle-timeout DUR|off [wsIdleTimeout] a WebSocket with no byte either way (data,
                             ping or pong) for DUR is closed with 1001 between frames (default 10m)
      --ws-ping-interval DUR|off [wsPingInterval] a WebSocket client silent for DUR is sent a
                             Ping; its Pong (passed on to the app) keeps the socket open,
                             a vanished client is closed by wsIdleTimeout      (default off)

Fleet (several holdups acting as one):
      --state URL            [state] redis://host:6379 (also rediss://, :password@, /db):
                             pause, resume, stop, reload bodies and deploys reach every
                             holdup sharing it, and one's ready upstream releases all
                             (default $HOLDUP_STATE; none: state is local). kv / kv:PATH
                             (Deno KV) is for the edge entry only (deno serve --parallel).
                             Whoever can write to it can move traffic: use rediss:// and a
                             password. It carries upstreams and the apps' routing keys only,
                             never run, admin, tls or log (those stay with each instance)
      --allow-upstream PAT   [allowUpstreams] the only upstreams a reload body, deploy or
                             shared operation may name: host[:port] with * wildcards, e.g.
                             10.0.0.*:8080 or *.internal; repeat for several. Without it,
                             link-local addresses are refused there (169.254.0.0/16, where
                             cloud metadata services answer, and fe80::/10). A reload body
                             can never set run (the app's command) or allowUpstreams
  -w, --workers N            [workers] N serving processes on the --listen port, kept in step
                             through --state, or without it through this (parent) process;
                             the parent restarts a worker that dies, passes SIGHUP to all,
                             and worker 0 serves the admin API; pause, resume, stop, reload
                             bodies and deploys sent to it reach every worker (default 1;
                             on Deno add --allow-run)

HTTPS (config key tls: {cert, key, redirectHttp, acme}; per app apps[].tls: {cert, key},
chosen by the name the client asks for, SNI). Certificate files are read again on
SIGHUP and POST /reload; a pair that cannot be read or does not match is refused
whole and the old one stays:
      --tls-cert FILE        [tls.cert] PEM certificate (chain) for the proxy listener
      --tls-key FILE         [tls.key] its PEM private key
      --redirect-http ADDR   [tls.redirectHttp] plain-HTTP listener that answers 308
                             to the same URL on https, e.g. :80        (default off)

Automatic certificates (ACME, HTTP-01; config key tls.acme: {email, directory,
hosts, stateDir, ca}). Needs --redirect-http on port 80 as the world sees it:
  holdup --acme you@example.com --acme-host example.com --redirect-http :80 --listen :443 -u :3000
A name with no certificate yet fails the TLS handshake (never another name's
certificate); certificates are renewed with a third of their lifetime left and
served to new connections without a restart:
      --acme EMAIL           [tls.acme.email] get certificates from an ACME CA, account contact
      --acme-host NAME       [tls.acme.hosts] a name to get a certificate for; repeat for several
                             (default: every exact host of the apps without their own tls)
      --acme-directory URL   [tls.acme.directory] the CA's ACME directory
                             (default Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory;
                             staging: https://acme-staging-v02.api.letsencrypt.org/directory)
      --acme-ca FILE         [tls.acme.ca] PEM CA certificate(s) to trust for the directory's
                             HTTPS instead of the system's (a private CA; or NODE_EXTRA_CA_CERTS=FILE,
                             which adds to the system's)
      --acme-state-dir DIR   [tls.acme.stateDir] account key and certificates, keys mode 0600;
                             reused on restart (default ./.holdup)
  On Deno, --acme needs --allow-write (the state directory) and --allow-sys (the system's
  CA certificates, for the directory's HTTPS; not needed with --acme-ca).

Admin API:
      --admin ADDR|off       [admin.listen] admin API listener          (default 127.0.0.1:2019)
      --admin-token TOKEN    [admin.token] bearer token for the admin API (default $HOLDUP_ADMIN_TOKEN);
                             required when the admin API listens beyond loopback. Every local
                             user can read a command line (/proc/PID/cmdline): prefer
      --admin-token-file PATH  the token on the file's first line (default $HOLDUP_ADMIN_TOKEN_FILE;
                             keep it mode 0600). The app holdup runs never sees HOLDUP_* variables
                             unless its run.env passes them on
      --admin-host NAME      [admin.hosts] a host name the admin API answers to, besides
                             localhost and IP addresses; repeat for several. Other Host
                             headers get 403 (a web page using DNS rebinding cannot reach it)
      --log FORMAT           [log] access log on stderr: json, text or off
                             (default text on a terminal, else json)
      --waiting-page-after DUR [waitingPageAfter] a browser (Accept: text/html) held
                             this long gets a self-reloading "starting…" page (default off)
      --pages DIR            [pages] your own stop.html, waiting.html, 502.html, 503.html,
                             504.html (any of them; the rest stay built in), with {{message}},
                             {{requestId}}, {{retryAfter}} and {{app}} filled in HTML-escaped.
                             Read at start and on every reload; a bad one is an error naming
                             the file (a reload keeps the old set). Clients whose Accept
                             names JSON, or excludes text/html, get JSON {error, message,
                             requestId, retryAfter}
      --metrics-listen ADDR|off [metrics.listen] a listener serving GET /metrics only, with
                             no token, for a remote Prometheus (default off)
Every request carries an X-Request-Id (the client's when printable and at most 200
characters, else a new random one): sent upstream, echoed, logged as request_id.

Running the app (everything after -- is its command; config key run: {command, cwd,
env, readyTimeout, stopSignal, stopTimeout, drainTimeout, idleStop, restart, release}):
  holdup starts it on a free loopback port (PORT=…, {port} in its arguments) and
  proxies to it; SIGHUP or POST /restart starts a new instance, swaps to it once it
  is ready, drains and stops the old one; a crash is restarted with backoff
  (0.5 s doubling to 30 s) while requests are held. The app dies with holdup.
      --idle-stop DUR        [run.idleStop] stop the app after DUR without requests;
                             the next request starts it again (default off)
      --restart MODE         [run.restart] overlap (default): the new instance starts while
                             the old one serves; serial: hold requests, drain and stop the
                             old one, run --release, start the new one (never two at once)
      --release CMD          [run.release] run with sh -c before each new instance (at start
                             and on restart; in overlap mode while the old one serves), output
                             prefixed [release]. Fails: serial starts the app again; overlap
                             keeps the old instance and the restart fails (POST /restart 502)
  -h, --help / -V, --version  show this help / print the version

Durations: 250ms, 1.5s, 2m, 1h.  Sizes: 512, 64KiB, 1MiB, 1MB.

Example — hold requests up to 30 s while the app on :8003 restarts, trying it
once a second, and serve on :8080:
  holdup --listen :8080 --upstream :8003 --try-duration 30s --try-interval 1s

The same as a Caddyfile:
  :8080 {
    reverse_proxy 127.0.0.1:8003 {
      lb_try_duration 30s
      lb_try_interval 1s
    }
  }

Deploy without dropping a request:
  curl -X POST localhost:2019/pause                 # hold new requests
  # ...start the new app version on :8004...
  curl -X POST localhost:2019/reload -H 'Content-Type: application/json' -d '{"upstreams": [":8004"]}'
  curl -X POST localhost:2019/resume                # held requests go to :8004

Run the app too — zero-downtime restarts with kill -HUP or POST /restart:
  holdup --listen :8080 -- python3 -m http.server '{port}'

Admin API (JSON, on --admin): GET /status, POST /reload, POST /deploy,
POST /restart, POST /upgrade, POST /pause, POST /resume, POST /stop, GET /metrics,
GET /healthz. JSON bodies need Content-Type: application/json; a request
from a web page of another origin that would change anything gets 403.
Socket activation: with LISTEN_FDS=1 and LISTEN_PID (a systemd .socket unit,
systemd-socket-activate), the proxy serves the passed socket (fd 3) instead of
--listen. Deno only: on Bun holdup refuses in one line (exit 1).
Self-upgrade (SIGUSR2, POST /upgrade, holdup upgrade; not with socket activation or
--workers): a new holdup from the file on disk takes the ports; the old one drains.
      --pid-file PATH        holdup's pid, rewritten by an upgrade's new holdup (systemd PIDFile=)
Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when a port is in use,
2 for bad flags or config.

${CLIENT_HELP}`;
}
