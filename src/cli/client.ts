/**
 * The command-line client: `holdup deploy|pause|resume|stop|status|reload|restart|upgrade`
 * talk to a running holdup's admin API, print what happened in words (or
 * JSON with --json) and exit 0 on success, 1 on failure, 2 on bad usage, so
 * `holdup deploy web -u :8004 && kill $OLD_PID` is a safe deploy script.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { Runtime } from "../runtime/types.ts";
import { commandHelp } from "./commands.ts";
import { explainArgsError } from "../util/suggest.ts";
import { permissionLine } from "../util/permissions.ts";
import { runDuring } from "./during.ts";

export const COMMANDS = ["deploy", "pause", "resume", "stop", "status", "reload", "restart", "upgrade"] as const;
type Command = typeof COMMANDS[number];

export const OPTIONS = {
  admin: { type: "string" },
  "admin-token": { type: "string" },
  json: { type: "boolean" },
  upstream: { type: "string", short: "u", multiple: true },
  "health-path": { type: "string" },
  "deploy-timeout": { type: "string" },
  "drain-timeout": { type: "string" },
  message: { type: "string", short: "m" },
  watch: { type: "boolean", short: "w" },
  during: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export function isClientCommand(args: string[]): boolean {
  return (COMMANDS as readonly string[]).includes(args[0]);
}

export const CLIENT_HELP = `Command-line client (talks to a running holdup's admin API):
  holdup deploy APP --upstream URL [--upstream URL…] [--health-path P]
                    [--deploy-timeout DUR] [--drain-timeout DUR]
                             wait until the new upstreams are healthy, switch APP to them
                             (held and new requests go there), drain the old ones
  holdup pause [APP]         hold new requests (every app without APP)
  holdup pause [APP] --during -- CMD [ARGS…]
                             pause, run CMD here, resume (also when CMD fails or is
                             interrupted); exit with CMD's status
  holdup resume [APP]        release what is held; also ends a stop
  holdup stop [APP] [--message TEXT]   answer 503 with TEXT until resume
  holdup status [APP] [--watch]        mode, held requests, upstreams (--watch: follow
                                       events and changes as they happen)
  holdup reload [FILE]       re-read holdup's config file, or apply FILE's JSON over the config
  holdup restart [APP]       start a new instance of the app holdup runs, then switch to it
  holdup upgrade             start a new holdup from the executable on disk, hand the ports
                             over; the old one answers what it holds, then exits
Client options (holdup help COMMAND, or holdup COMMAND --help, for one command's):
  --admin ADDR               the admin API (default $HOLDUP_ADMIN, else 127.0.0.1:2019)
  --admin-token TOKEN        its bearer token (default $HOLDUP_ADMIN_TOKEN)
  --json                     print the admin API's JSON answer instead of words
Exit codes: 0 done, 1 failed (or the admin API unreachable), 2 bad usage.
Example (blue/green): start v2 on :8004, then switch to it (and stop v1 once this exits 0):
  holdup deploy default --upstream :8004
`;

export async function runClient(rt: Runtime, args: string[]): Promise<number> {
  const say = (t: string) => rt.writeStdout(t + "\n");
  const err = (t: string) => rt.writeStderr(t + "\n");
  // holdup pause --during -- CMD [ARGS…]: everything after the first -- is CMD.
  const dashes = args.indexOf("--");
  const during = dashes < 0 ? null : args.slice(dashes + 1);
  let parsed;
  try {
    parsed = parseArgs({ args: args.slice(1, dashes < 0 ? undefined : dashes), options: OPTIONS, strict: true, allowPositionals: true });
  } catch (e) {
    err(`holdup ${args[0]}: ${explainArgsError((e as Error).message, Object.keys(OPTIONS))}\nRun holdup ${args[0]} --help to see its options.`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  const cmd = args[0] as Command;
  if (o.help) {
    rt.writeStdout(commandHelp(cmd));
    return 0;
  }
  const fromEnv = o.admin === undefined ? rt.env("HOLDUP_ADMIN") || undefined : undefined;
  const admin = adminBase(o.admin ?? fromEnv ?? "127.0.0.1:2019");
  if (!admin) {
    err(`holdup ${cmd}: ${fromEnv !== undefined ? "HOLDUP_ADMIN" : "--admin"} "${o.admin ?? fromEnv}" is not an address; write [host]:port, e.g. 127.0.0.1:2019`);
    return 2;
  }
  const token = o["admin-token"] ?? rt.env("HOLDUP_ADMIN_TOKEN");
  const call = (method: string, path: string, body?: unknown) => request(admin, token, method, path, body);
  const app = positionals[0];
  const q = app ? `?app=${encodeURIComponent(app)}` : "";
  const usage = (m: string) => {
    err(`holdup ${cmd}: ${m}\nUsage: ${commandHelp(cmd).split("\n")[0].replace(/^Usage: /, "")}\nRun holdup ${cmd} --help for more.`);
    return 2;
  };

  if (o.during || during) {
    if (cmd !== "pause") return usage("--during and -- CMD are for holdup pause --during -- CMD");
    if (!o.during) return usage("to run a command while paused, say --during: holdup pause --during -- CMD");
    if (!during?.length) return usage("--during needs the command after --, e.g. holdup pause --during -- ./migrate.sh");
  }

  let paused = false;
  /** Pause, run CMD, resume whatever CMD did; CMD's status (1 when it succeeded but the resume failed). */
  const pauseDuring = async (command: string[]): Promise<number> => {
    const r = await call("POST", `/pause${q}`);
    if (r.status !== 200) return fail(err, "pause failed; not running the command", r);
    paused = true;
    err(`paused ${app ?? "every app"}: ${describeStatus(r.body, app)}; running ${command.join(" ")}`);
    const status = await runDuring(rt, command, err);
    const back = await call("POST", `/resume${q}`);
    paused = false;
    if (back.status !== 200) {
      fail(err, `${command[0]} exited with ${status}, but resume failed; requests are still held: run holdup resume${app ? ` ${app}` : ""}`, back);
      return status || 1;
    }
    if (o.json) printJSON(say, back);
    else err(`${command[0]} exited with ${status}; resumed ${app ?? "every app"}: ${describeStatus(back.body, app)}`);
    return status;
  };

  try {
    switch (cmd) {
      case "deploy": {
        if (!app || positionals.length > 1) return usage("name one app, e.g. holdup deploy web --upstream :8004");
        if (!o.upstream?.length) return usage("--upstream URL is required");
        const body: Record<string, unknown> = { app, upstreams: o.upstream };
        if (o["health-path"]) body.healthPath = o["health-path"];
        if (o["deploy-timeout"]) body.deployTimeout = o["deploy-timeout"];
        if (o["drain-timeout"]) body.drainTimeout = o["drain-timeout"];
        if (!o.json) say(`deploying ${app} to ${o.upstream.join(", ")}…`);
        const pending = call("POST", "/deploy", body);
        const progress = o.json ? null : watchDeploy(call, app, say);
        const r = await pending;
        progress?.stop();
        if (o.json) return printJSON(say, r);
        if (r.status !== 200) return fail(err, `deploy of ${app} failed`, r);
        const d = r.body as { upstreams: string[]; replaced: string[]; drained: number; cut: number; healthyMs: number; tookMs: number };
        say(`deployed ${app}: now ${d.upstreams.join(", ")} (healthy after ${secs(d.healthyMs)})`);
        if (d.replaced.length) {
          say(`drained ${d.replaced.join(", ")}: ${d.drained} in-flight request(s) finished, ${d.cut} cut`);
        }
        say(`done in ${secs(d.tookMs)}`);
        return 0;
      }
      case "pause":
      case "resume": {
        if (during?.length) return await pauseDuring(during);
        const r = await call("POST", `/${cmd}${q}`);
        if (o.json) return printJSON(say, r);
        if (r.status !== 200) return fail(err, `${cmd} failed`, r);
        say(`${cmd === "pause" ? "paused" : "resumed"} ${app ?? "every app"}: ${describeStatus(r.body, app)}`);
        return 0;
      }
      case "stop": {
        const r = await call("POST", `/stop${q}`, o.message !== undefined ? { message: o.message } : undefined);
        if (o.json) return printJSON(say, r);
        if (r.status !== 200) return fail(err, "stop failed", r);
        say(`stopped ${app ?? "every app"}: requests get 503${o.message ? ` "${o.message}"` : ""} until holdup resume`);
        return 0;
      }
      case "status": {
        const r = await call("GET", `/status${q}`);
        // With --watch, the stream's first event carries the status: checking /status first still gives a clear error (token, app).
        if (o.json && !(o.watch && r.status === 200)) printJSON(say, r);
        else if (r.status !== 200) return fail(err, "status failed", r);
        else if (!o.watch) say(formatStatus(r.body as Status, app));
        if (r.status !== 200) return 1;
        return o.watch ? await watch(admin, token, app, !!o.json, say, err) : 0;
      }
      case "reload": {
        let body: unknown;
        if (positionals[0]) {
          try {
            body = JSON.parse(await readFile(positionals[0], "utf8"));
          } catch (e) {
            err(permissionLine(e) ?? `holdup reload: ${positionals[0]}: ${(e as Error).message}`);
            return 1;
          }
        }
        const r = await call("POST", "/reload", body);
        if (o.json) return printJSON(say, r);
        if (r.status !== 200) return fail(err, "reload rejected; the old config stays", r);
        const notes = (r.body as { notes?: string[] }).notes ?? [];
        say(`reloaded: config version ${(r.body as Status).configVersion}${notes.length ? ` (${notes.join("; ")})` : ""}`);
        return 0;
      }
      case "restart": {
        if (!o.json) say("restarting the app (run.restart overlap: the old instance serves until the new one is ready; serial: requests are held)…");
        const r = await call("POST", `/restart${q}`);
        if (o.json) return printJSON(say, r);
        if (r.status === 409 || r.status === 404) {
          err("holdup restart: this holdup does not run the app itself (start it as holdup [options] -- COMMAND)");
          return 1;
        }
        if (r.status !== 200) return fail(err, "restart failed", r);
        const done = (r.body as { restarted?: { instance: number; pid: number; readyMs: number } }).restarted;
        say(done ? `restarted: instance #${done.instance} (pid ${done.pid}) ready after ${secs(done.readyMs)} and serving` : "restarted");
        return 0;
      }
      case "upgrade": {
        if (positionals.length) return usage("takes no arguments: holdup upgrade");
        if (!o.json) say("upgrading: starting a new holdup from the executable on disk…");
        const r = await call("POST", "/upgrade");
        if (o.json) return printJSON(say, r);
        if (r.status !== 200) return fail(err, "upgrade failed; the old holdup keeps serving", r);
        const pid = (r.body as { upgraded?: { pid: number } }).upgraded?.pid;
        say(`upgraded: the new holdup (pid ${pid}) serves; the old one answers what it holds, then exits`);
        return 0;
      }
    }
  } catch (e) {
    if (paused) err(`holdup pause --during: requests to ${app ?? "every app"} are still held; run holdup resume${app ? ` ${app}` : ""}`);
    const denied = permissionLine(e);
    if (denied) {
      err(denied);
      return 1;
    }
    err(`holdup ${cmd}: cannot reach the admin API at ${admin} (${reason(e)}); is holdup running? Choose it with --admin ADDR or HOLDUP_ADMIN`);
    return 1;
  }
  return 2;
}

interface Reply {
  status: number;
  body: unknown;
}

async function request(base: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON: keep the text */ }
  return { status: res.status, body: parsed };
}

function adminBase(addr: string): string | null {
  const t = addr.trim().replace(/^https?:\/\//, "").replace(/\/+$/, "");
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d+)$/.exec(t);
  if (!m) return null;
  return `http://${m[1] && m[1] !== "0.0.0.0" ? m[1] : "127.0.0.1"}:${m[2]}`;
}

/** Prints the deploy's phase as it changes, from GET /status?app= twice a second. */
function watchDeploy(call: (m: string, p: string) => Promise<Reply>, app: string, say: (t: string) => void) {
  let last = "";
  let stopped = false;
  const tick = async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 500));
      if (stopped) return;
      try {
        const r = await call("GET", `/status?app=${encodeURIComponent(app)}`);
        const dep = (r.body as Status).apps?.[0]?.deploying;
        if (!dep || stopped) continue;
        const line = dep.phase === "health"
          ? `waiting for ${dep.upstreams.join(", ")} to be healthy${dep.lastError ? ` (last: ${dep.lastError})` : ""}`
          : dep.phase === "drain"
          ? "switched; draining the old upstreams"
          : "switching";
        if (line !== last) say(line);
        last = line;
      } catch { /* the deploy call reports errors */ }
    }
  };
  void tick();
  return { stop: () => void (stopped = true) };
}

interface Status {
  configVersion: number;
  mode: string;
  held: number;
  upstreams: Array<{ app: string; url: string; status: string; lastError: string | null; inFlight: number }>;
  apps?: Array<{ name: string; mode: string; held: number; deploying: { phase: string; upstreams: string[]; lastError: string | null } | null; upstreams: Status["upstreams"] }>;
}

/**
 * `holdup status --watch`: follows GET /events (the dashboard's stream) and
 * prints each event as it happens, and the status whenever it changes.
 * Reconnects when holdup restarts; ends on Ctrl-C.
 */
async function watch(base: string, token: string | undefined, app: string | undefined, json: boolean, say: (t: string) => void, err: (t: string) => void): Promise<number> {
  let last = "";
  let gone = false;
  /** The time of the newest event printed: after a reconnect, the hello's recent events newer than it are printed too, so none is lost. */
  let seen: string | null = null;
  const printEvent = (d: { time: string; msg: string; fields?: Record<string, unknown> }) => {
    const f = Object.entries(d.fields ?? {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    say(`${String(d.time).slice(11, 19)} ${d.msg}${f ? ` (${f})` : ""}`);
    if (!seen || d.time > seen) seen = d.time;
  };
  for (;;) {
    try {
      const res = await fetch(`${base}/events`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      if (res.status !== 200 || !res.body) {
        err(`holdup status --watch: the event stream answered ${res.status}`);
        return 1;
      }
      if (gone) say("reconnected");
      gone = false;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!event || !data) continue;
          const d = JSON.parse(data);
          if (json) {
            say(JSON.stringify({ event, data: d }));
            continue;
          }
          if (event === "log") {
            printEvent(d);
            continue;
          }
          if (event === "hello") {
            const events = (d.events ?? []) as Array<{ time: string; msg: string }>;
            if (seen === null) seen = events.at(-1)?.time ?? ""; // first connect: only what happens from now on
            else for (const e of events) if (e.time > seen) printEvent(e);
          }
          const text = formatStatus((event === "hello" ? d.status : d) as Status, app);
          if (text !== last) say(text);
          last = text;
        }
      }
    } catch { /* not reachable: wait and try again */ }
    if (!gone) say("holdup went away; reconnecting…");
    gone = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function formatStatus(s: Status, only?: string): string {
  const lines = [`config version ${s.configVersion}; ${s.held} request(s) held`];
  for (const a of (s.apps ?? []).filter((x) => !only || x.name === only)) {
    lines.push(`${a.name}: ${a.mode}, ${a.held} held${a.deploying ? `, deploying (${a.deploying.phase})` : ""}`);
    for (const u of a.upstreams) {
      lines.push(`  ${u.url}  ${u.status === "up" ? "ready" : u.status}${u.inFlight ? `, ${u.inFlight} in flight` : ""}${u.lastError && u.status !== "up" ? ` (${u.lastError})` : ""}`);
    }
  }
  return lines.join("\n");
}

function describeStatus(body: unknown, app: string | undefined): string {
  const s = body as Status;
  const a = app ? s.apps?.find((x) => x.name === app) : undefined;
  return a ? `${a.mode}, ${a.held} held` : `${s.mode}, ${s.held} held`;
}

function printJSON(say: (t: string) => void, r: Reply): number {
  say(JSON.stringify(r.body, null, 2));
  return r.status >= 200 && r.status < 300 ? 0 : 1;
}

function fail(err: (t: string) => void, what: string, r: Reply): number {
  const b = r.body as { error?: string; errors?: Array<{ field: string; problem: string }> } | string;
  const detail = typeof b === "string"
    ? b.trim()
    : b.errors?.length
    ? b.errors.map((e) => `${e.field}: ${e.problem}`).join("; ")
    : b.error ?? JSON.stringify(b);
  err(`holdup: ${what}: ${detail} (HTTP ${r.status})`);
  return 1;
}

function secs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function reason(e: unknown): string {
  const text = `${(e as Error)?.message ?? e} ${(e as { cause?: Error })?.cause?.message ?? ""}`;
  if (/refused/i.test(text)) return "connection refused";
  if (/dns|lookup|not known/i.test(text)) return "unknown host";
  return text.trim().split("\n")[0];
}
