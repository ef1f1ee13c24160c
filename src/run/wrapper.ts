/**
 * The shell wrapper holdup runs an app through, so that the app never
 * outlives holdup, even a SIGKILLed one: it starts the app in its own session
 * (setsid), forwards the signals holdup writes on its stdin, and stops the
 * app's process group when that pipe closes. Its protocol, and the measured
 * alternatives it replaces: docs/design/run.md.
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
