/**
 * Stops a listener accepting without touching its connections (a self-upgrade
 * hands the port to a new holdup while this one answers what it has).
 * @see docs/design/upgrade.md
 */
import net, { type Server as NetServer } from "node:net";

const noop = () => {};

/**
 * Closes a server's listening socket and nothing else. server.close() would
 * also close idle keep-alive connections on both runtimes (measured), and a
 * client sending its next request on one at that moment gets a reset. Deno's
 * http.Server is a net.Server, whose own close() leaves connections alone;
 * Bun's node:http runs on a Bun.serve server whose stop() does the same
 * (found on its own symbol; measured on Bun 1.4.5, else server.close()).
 */
export function stopListening(server: NetServer): void {
  if (server instanceof net.Server) return void net.Server.prototype.close.call(server, noop);
  const own = server as unknown as Record<symbol, { stop?: (force?: boolean) => void } | undefined>;
  const inner = Object.getOwnPropertySymbols(server).map((k) => own[k]).find((v) => typeof v?.stop === "function");
  if (inner) inner.stop!(false);
  else (server as NetServer).close(noop);
}
