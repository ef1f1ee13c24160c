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
 * unshift + emit("connection") serves HTTP/1.1, h2 and SNI unchanged on both.
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
  return net.createServer((socket) => {
    socket.on("error", noop);
    const timer = setTimeout(() => socket.destroy(), firstByteTimeout());
    // 'data' rather than 'readable' + read(1): Deno's TLS, handed a socket that had a 'readable' listener,
    // served one request on a keep-alive connection and never read the next (measured).
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
}
