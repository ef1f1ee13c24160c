/**
 * `--pid-file PATH`: holdup's pid in a file, for a service manager that tracks
 * the main process by it (systemd `PIDFile=`). A self-upgrade's new holdup
 * writes its own pid there once it serves, before the old one exits, so the
 * manager follows the handover; a holdup removes the file at exit only while
 * it still names itself.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";

/** Writes the pid (whole, by rename); a sentence saying what to do when it cannot. */
export function writePidFile(path: string, runtime: string): string | null {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${process.pid}\n`);
    renameSync(tmp, path);
    return null;
  } catch (e) {
    const why = (e as { code?: string }).code ?? (e as Error).message;
    const hint = runtime === "deno" && /PermissionDenied|NotCapable|ERR_ACCESS/i.test(String(e) + why)
      ? `; on Deno add --allow-write=${dirname(path)} (the pid is written beside it, then renamed; a self-upgrade passes on only whole permissions, so with upgrades use --allow-write)`
      : "";
    return `--pid-file ${path}: cannot write it (${why})${hint}`;
  }
}

/** At exit: the file goes only while it names this process (after an upgrade it names the new holdup). */
export function removePidFileIfOurs(path: string): void {
  try {
    if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
  } catch { /* gone already, or unreadable: leave it */ }
}
