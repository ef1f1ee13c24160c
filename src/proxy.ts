/**
 * holdup's command-line entry:
 *   deno run --allow-net --allow-read --allow-env src/proxy.ts [options]
 *   bun src/proxy.ts [options]
 * Run with --help for every flag.
 */
import "./runtime/guard.ts"; // first: under Node, one line instead of "Bun is not defined"
import { main } from "./cli/main.ts";
import { runtime } from "./runtime/index.ts";
import { dieOnMissingPermission, exitOnMissingPermission } from "./util/permissions.ts";

exitOnMissingPermission();
try {
  await main(runtime);
} catch (e) {
  dieOnMissingPermission(e);
  throw e;
}
