/**
 * Runtime.onExit's hooks (types.ts), one list for the process: both adapters'
 * exit() runs them before ending it. For what must go with holdup, such as its
 * --pid-file (cli/pidfile.ts).
 */

const hooks: Array<() => void> = [];

export function addExitHook(fn: () => void): void {
  hooks.push(fn);
}

/** Each hook once, in the order added; one that throws does not stop the rest or the exit. */
export function runExitHooks(): void {
  for (const fn of hooks.splice(0)) {
    try {
      fn();
    } catch { /* exiting anyway */ }
  }
}
