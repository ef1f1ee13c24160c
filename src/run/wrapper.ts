/**
 * How holdup runs an app so that it never outlives holdup, even when holdup is
 * killed with SIGKILL (which no exit handler sees).
 *
 * holdup spawns `sh -c WRAPPER holdup-run COMMAND ARGS…` with a pipe on the
 * wrapper's stdin. The wrapper:
 * - starts the app with `setsid`, in a session and process group of its own
 *   (so that signals reach the app and every process it forks, and a Ctrl-C
 *   meant for holdup's terminal does not), with stdin from /dev/null;
 * - prints the app's pid on stderr, marked with a leading \x1e;
 * - reads signal names from holdup, one a line, and sends each to the app's
 *   process group (holdup's stopSignal, then KILL after stopTimeout);
 * - when the pipe reaches EOF — holdup exited, however it died, since the
 *   kernel closes a dead process's descriptors — sends stopSignal to the
 *   group, and KILL once $HOLDUP_STOP_TICKS tenths of a second have passed;
 * - exits with the app's status (128+N when signal N ended it), killing any
 *   process the app left behind in its group.
 *
 * Why not the alternatives (measured on Deno 2.9 and Bun 1.4, Linux):
 * - `set -m` in the wrapper: dash (Debian's /bin/sh) turns job control off
 *   without a terminal, so the app stays in holdup's process group.
 * - PR_SET_PDEATHSIG (`setpriv --pdeathsig`): tied to the *thread* that forked,
 *   and both runtimes spawn from helper threads that may exit first; it also
 *   reaches only the direct child, not what the app forks.
 * - A process-group kill from an exit handler: never runs on SIGKILL.
 * Without `setsid` (not Linux/util-linux), the app shares holdup's process
 * group and the wrapper signals the app's pid only.
 */
export const WRAPPER = String.raw`exec 3<&0
stop_sig=$HOLDUP_STOP_SIGNAL stop_ticks=$HOLDUP_STOP_TICKS
unset HOLDUP_STOP_SIGNAL HOLDUP_STOP_TICKS
trap ':' INT HUP
if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null 3<&- & else "$@" </dev/null 3<&- & fi
app=$!
printf '\036holdup-run pid=%s\n' "$app" >&2
sig() { kill -s "$1" -- "-$app" 2>/dev/null || kill -s "$1" "$app" 2>/dev/null; }
(
  trap '' INT HUP
  while read -r s; do sig "$s"; done
  sig "$stop_sig"
  n=0
  while [ "$n" -lt "$stop_ticks" ] && kill -0 "$app" 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
  sig KILL
) <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-
while :; do wait "$app"; code=$?; kill -0 "$app" 2>/dev/null || break; done
sig KILL
kill "$watcher" 2>/dev/null
exit "$code"
`;

/** The marker line the wrapper prints with the app's pid. */
// deno-lint-ignore no-control-regex -- the marker starts with RS (0x1e), which no app prints by accident
export const PID_LINE = /^\x1eholdup-run pid=(\d+)$/;

/** The wrapper's own notices about the app's end ("Terminated", "Killed"): not the app's output. */
export const SHELL_NOTICE = /^(Terminated|Killed|Hangup|Interrupt|Quit)$/;

const SIGNALS: Record<number, string> = {
  1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL",
  10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
};

/** The wrapper's exit status as the app's: {code} or, for 128+N, {signal}. */
export function describeExit(status: number | null): { code: number | null; signal: string | null } {
  if (status !== null && status > 128 && SIGNALS[status - 128]) return { code: null, signal: SIGNALS[status - 128] };
  return { code: status, signal: null };
}
