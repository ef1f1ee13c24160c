/** Picks the adapter for the runtime holdup runs on. Imports stay static so bundles embed both. */
import { bunRuntime } from "./bun.ts";
import { denoRuntime } from "./deno.ts";
import type { Runtime } from "./types.ts";

export type { Runtime } from "./types.ts";

export const runtime: Runtime = "Deno" in globalThis ? denoRuntime : bunRuntime;
