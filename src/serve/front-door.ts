/**
 * The HTTPS port's front door: a plain TCP listener that looks at the first
 * byte of each connection before TLS does. A TLS handshake starts with 0x16
 * (a handshake record) and goes on to the TLS server untouched; anything else
 * is a client speaking plain HTTP to the HTTPS port: it gets a 400 in plain
 * text saying so (as nginx answers "The plain HTTP request was sent to HTTPS
 * port"), and the connection closes.
 *
 * Measured on Deno 2.9.6 and Bun 1.4.5: the TLS server's own tlsClientError
 * comes too late for an answer (Bun gives no way to write to the raw socket;
 * Deno has already written a TLS alert), while handing the socket on with
 * unshift + emit("connection") serves HTTP/1.1, h2 and SNI unchanged on both —
 * once the TLS server counts as listening (docs/design/listener.md).
 */
import net from "node:net";

const noop = () => {};
const BODY = "holdup: this port speaks HTTPS; the plain HTTP request was sent to an HTTPS port (use https://)\n";
const PLAIN_REPLY = [
  "HTTP/1.1 400 Bad Request",
  "content-type: text/plain; charset=utf-8",
  `content-length: ${BODY.length}`,
  "connection: close",
  "",
  BODY,
].join("\r\n");

/** A listener for `tls`'s port; `firstByteTimeout`: how long a silent connection may wait (the handshake timeout). */
export function tlsFrontDoor(tls: net.Server, firstByteTimeout: () => number): net.Server {
  const door = net.createServer((socket) => {
    socket.on("error", noop);
    const timer = setTimeout(() => socket.destroy(), firstByteTimeout());
    // The first chunk goes back (unshift) for the TLS layer to read; 'readable' + read(1) serves the same (measured).
    socket.once("data", (chunk: Uint8Array) => {
      clearTimeout(timer);
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] === 0x16) tls.emit("connection", socket);
      else {
        socket.end(PLAIN_REPLY);
        socket.resume(); // the plain request is read and dropped, so the reply is not met with a reset
      }
    });
    socket.once("close", () => clearTimeout(timer));
  });
  // Deno's HTTP/1.1 server closes a kept-alive connection after each response while its server is not
  // `listening`: the TLS server listens through the door. 'listening' starts its header-timeout checks.
  Object.defineProperty(tls, "listening", { get: () => door.listening, configurable: true });
  door.on("listening", () => tls.emit("listening"));
  return door;
}
