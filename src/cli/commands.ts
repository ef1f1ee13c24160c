/**
 * Each client command's own help (`holdup help deploy`, `holdup deploy --help`):
 * usage, what it does, its options, and examples. The examples are data that
 * test/examples.test.ts runs against a real holdup, so a broken one fails the build;
 * ports in them (:8003, :8004, the admin API's 2019) are the defaults a reader has.
 */

interface CommandDoc {
  usage: string;
  about: string;
  options?: string[];
  examples: string[];
}

export const COMMAND_DOCS: Record<string, CommandDoc> = {
  deploy: {
    usage: "holdup deploy APP --upstream URL [--upstream URL…] [--health-path P] [--deploy-timeout DUR] [--drain-timeout DUR]",
    about: "Waits until the new upstreams are healthy, switches APP to them (held and new requests\n" +
      "go there), then drains the old ones. Exit 0 once switched and drained, 1 if the new\n" +
      "upstreams never became healthy (APP stays on the old ones).",
    options: [
      "-u, --upstream URL         a new upstream (URL, host:port, :port or a port); repeat for several",
      "    --health-path PATH     healthy = GET PATH answers 2xx (default: the app's healthPath;",
      "                           without one, healthy = accepts a TCP connection)",
      "    --deploy-timeout DUR   give up if not healthy within DUR (default 30s)",
      "    --drain-timeout DUR    longest wait for the old upstreams' in-flight requests (default: run.drainTimeout, 30s)",
    ],
    examples: [
      "holdup deploy default --upstream :8004      # blue/green: v2 listens on :8004; then stop v1",
    ],
  },
  pause: {
    usage: "holdup pause [APP] [--during -- CMD [ARGS…]]",
    about: "Holds new requests (of APP, or of every app) until holdup resume; in-flight ones finish.\n" +
      "With --during -- CMD: pauses, runs CMD here (a migration, a backup), then resumes — also\n" +
      "when CMD fails or is interrupted (SIGINT/SIGTERM are passed on to it) — and exits with\n" +
      "CMD's status. Held requests are answered after CMD, if it ends before their tryDuration.",
    options: ["    --during -- CMD        run CMD while paused, then resume"],
    examples: ["holdup pause", "holdup pause default", "holdup pause --during -- sh -c 'echo migrating; sleep 1'"],
  },
  resume: {
    usage: "holdup resume [APP]",
    about: "Releases what is held (to whatever upstream is current now); also ends a stop.",
    examples: ["holdup resume"],
  },
  stop: {
    usage: "holdup stop [APP] [--message TEXT]",
    about: "Answers 503 (with TEXT) until holdup resume: a maintenance page.",
    options: ["-m, --message TEXT         the text of the 503 answer"],
    examples: ['holdup stop --message "Back at 14:00"'],
  },
  status: {
    usage: "holdup status [APP] [--watch]",
    about: "Mode, held requests and each upstream's state (ready, down, …).\n" +
      "With --watch, follows events and changes as they happen until Ctrl-C.",
    options: ["-w, --watch                follow events and status changes"],
    examples: ["holdup status", "holdup status default --json"],
  },
  reload: {
    usage: "holdup reload [FILE]",
    about: "Re-reads holdup's config file; with FILE, applies FILE's JSON over the config\n" +
      "(e.g. new upstreams). A bad config is refused and the old one stays (exit 1).",
    examples: [`echo '{"upstreams": [":8004"]}' > next.json && holdup reload next.json`],
  },
  restart: {
    usage: "holdup restart [APP]",
    about: "For a holdup that runs the app (holdup [options] -- COMMAND): starts a new instance,\n" +
      "switches to it once it is ready, drains and stops the old one.",
    examples: ["holdup restart"],
  },
  upgrade: {
    usage: "holdup upgrade",
    about: "Starts a new holdup from the same executable and arguments (read from disk again:\n" +
      "a replaced binary or updated source takes effect), hands it the ports, and lets the old\n" +
      "one answer its in-flight and held requests before it exits (as SIGUSR2 does). Exit 1\n" +
      "when the new holdup did not take over; the old one then keeps serving.",
    examples: ["holdup upgrade"],
  },
};

const CLIENT_OPTIONS = `Client options (every command):
      --admin ADDR           the admin API (default $HOLDUP_ADMIN, else 127.0.0.1:2019)
      --admin-token TOKEN    its bearer token (default $HOLDUP_ADMIN_TOKEN)
      --json                 print the admin API's JSON answer instead of words
  -h, --help                 this help
Exit codes: 0 done, 1 failed (or the admin API unreachable), 2 bad usage.`;

export function commandHelp(name: string): string {
  const d = COMMAND_DOCS[name];
  const lines = [`Usage: ${d.usage}`, "", d.about, ""];
  if (d.options) lines.push("Options:", ...d.options.map((o) => `  ${o}`), "");
  lines.push(CLIENT_OPTIONS, "", d.examples.length > 1 ? "Examples:" : "Example:", ...d.examples.map((e) => `  ${e}`), "");
  return lines.join("\n");
}
