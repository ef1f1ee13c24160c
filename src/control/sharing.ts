/**
 * The port through which a fleet of holdups acts as one: control declares it,
 * fleet/fleet.ts implements it (over Redis or Deno KV), and the entry that
 * starts a fleet hands it in (cli/main.ts, edge.ts). Every "share this change"
 * decision — pause/resume/stop, a reload body, a deploy — is made in control/.
 */
import type { Layer } from "../config/layers.ts";

/** One operator change, in the fleet's shared, ordered list. */
export type Op =
  | { kind: "mode"; by: string; app: string | null; mode: "paused" | "running" | "stopped"; message?: string }
  | { kind: "patch"; by: string; body: unknown }
  | { kind: "deploy"; by: string; app: string; raw: Layer["raw"] };

export interface Sharing {
  /** This instance's id in the fleet. */
  readonly instance: string;
  /** Operations applied from the shared list. */
  readonly version: number;
  readonly connected: boolean;
  /** Publishes an operation; resolves once applied here, or with why nothing was changed anywhere. */
  submit(op: Op): Promise<string | null>;
  /** Tells the other instances that an upstream answered (their held requests go). */
  upstreamReady(app: string, url: string): void;
  /** For /status. */
  status(): Record<string, unknown>;
}
