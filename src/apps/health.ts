/**
 * Health checks of serving upstreams: with a healthPath, every upstream of an
 * app — serving or not — is probed every healthInterval (GET healthPath, 2xx
 * within healthTimeout). unhealthyAfter failures in a row mark it down (one
 * "upstream unhealthy" event): new requests go to another ready upstream or
 * are held. One success marks it up again. The readiness probes in
 * upstream.ts only run while an upstream is not ready; these also catch an
 * app that hangs while it serves (SIGSTOP, a deadlock, a full thread pool).
 */
import type { Config } from "../config/schema.ts";
import type { Runtime } from "../runtime/types.ts";
import { probeOnce, type Upstream } from "./upstream.ts";

export class HealthChecker {
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Upstreams with a probe under way: one at a time each, however slow. */
  private probing = new Set<Upstream>();
  private stopped = false;

  constructor(
    private runtime: Runtime,
    private current: () => { config: Config; upstreams: readonly Upstream[] },
  ) {}

  /** Starts or stops the checks as the config in force says (at start and after each reload). */
  update(): void {
    if (this.stopped) return;
    const on = this.current().config.healthPath !== null;
    if (on && !this.timer) this.arm();
    if (!on && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      const { config, upstreams } = this.current();
      if (this.stopped || config.healthPath === null) return;
      for (const u of upstreams) if (!this.probing.has(u)) void this.check(u, config);
      this.arm();
    }, this.current().config.healthInterval);
  }

  private async check(u: Upstream, c: Config): Promise<void> {
    const path = c.healthPath!;
    this.probing.add(u);
    u.attempts++;
    const t0 = performance.now();
    let error = await probeOnce(this.runtime, u.url, path, c.healthTimeout);
    this.probing.delete(u);
    if (u.isRetired || this.stopped) return;
    if (error === null) {
      u.healthFailures = 0;
      if (u.status !== "up") {
        u.lastError = null;
        u.markUp();
      }
      return;
    }
    if (performance.now() - t0 >= c.healthTimeout - 1) error = `no answer to GET ${path} within ${c.healthTimeout}ms`;
    u.failures++;
    u.healthFailures++;
    if (u.healthFailures >= c.unhealthyAfter && !u.unhealthy) {
      u.markUnhealthy(`${u.healthFailures} health checks failed in a row; the last: ${error}`);
    }
  }
}
