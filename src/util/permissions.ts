/**
 * Deno's permissions: a missing one (net, read, env, run, write, sys) ends holdup with one
 * line naming its flag, instead of a stack trace or a misleading "cannot be read". Deno
 * throws NotCapable ("Requires env access to "X", run again with the --allow-env flag");
 * src/proxy.ts turns one that reaches the top, or escapes from a callback, into that line.
 * Bun has no permissions: nothing here fires there.
 */

const HOW = "deno run --allow-net --allow-read --allow-env src/proxy.ts (-- COMMAND also needs --allow-run; --acme, --allow-write and --allow-sys)";

/** True for Deno's missing-permission error. */
export function isPermissionError(e: unknown): boolean {
  const name = (e as { name?: string } | null)?.name;
  return name === "NotCapable" || name === "PermissionDenied";
}

/** The one line for a missing permission, or null when `e` is something else. */
export function permissionLine(e: unknown): string | null {
  if (!isPermissionError(e)) return null;
  const message = String((e as Error).message ?? e).split("\n")[0];
  const m = /Requires (\w+) access(?: to (.+?))?, run again with the (--allow-[\w-]+) flag/.exec(message);
  if (!m) return `holdup: a Deno permission is missing: ${message}; run ${HOW}`;
  return `holdup: Deno's ${m[3]} permission is missing (${m[1]} access${m[2] ? ` to ${m[2]}` : ""}); run ${HOW}`;
}

/** On Deno: a missing permission anywhere (awaited, or thrown in a callback) prints its line and exits 1. */
export function exitOnMissingPermission(): void {
  const g = globalThis as { Deno?: { exit(code: number): never; stderr: { writeSync(b: Uint8Array): number } } };
  const deno = g.Deno;
  if (!deno) return;
  const handle = (ev: Event, error: unknown) => {
    const line = permissionLine(error);
    if (!line) return;
    ev.preventDefault();
    die(line);
  };
  globalThis.addEventListener("error", (ev) => handle(ev, (ev as ErrorEvent).error));
  globalThis.addEventListener("unhandledrejection", (ev) => handle(ev, (ev as PromiseRejectionEvent).reason));
}

/** Prints the line for `e` and exits 1 if it is a missing permission; otherwise returns. */
export function dieOnMissingPermission(e: unknown): void {
  const line = permissionLine(e);
  if (line) die(line);
}

function die(line: string): never {
  const deno = (globalThis as { Deno?: { exit(code: number): never; stderr: { writeSync(b: Uint8Array): number } } }).Deno!;
  const bytes = new TextEncoder().encode(line + "\n");
  for (let off = 0; off < bytes.length;) off += deno.stderr.writeSync(bytes.subarray(off));
  return deno.exit(1);
}

/** On Deno, the line for the first of `names` not granted (for `what`, e.g. "--acme"); null when all are, or on Bun. */
export function missingPermission(names: Array<"net" | "read" | "env" | "run" | "write" | "sys">, what: string): string | null {
  const deno = (globalThis as { Deno?: { permissions: { querySync(d: { name: string }): { state: string } } } }).Deno;
  if (!deno) return null;
  const missing = names.find((name) => deno.permissions.querySync({ name }).state !== "granted");
  return missing ? `holdup: ${what} needs Deno's --allow-${missing} permission; run ${HOW}` : null;
}
