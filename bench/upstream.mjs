// Tiny origin for the hold benchmark: a minimal HTTP/1.1 responder on a raw
// net.Server, because node:http's per-request cost (~150-200 ms for 1000 requests
// arriving at once on 2 cores) would otherwise dominate the release times measured.
// Counts TCP connections (net.Server 'connection') and requests; keep-alive and
// pipelining supported; request bodies (Content-Length or chunked) skipped.
// Prints "LISTENING <epoch-ms>" once it listens; answers "stats" on stdin with
// "STATS {json}" on stdout.   Usage: node bench/upstream.mjs PORT NAME
import net from "node:net";
import readline from "node:readline";

const port = Number(process.argv[2]);
const name = process.argv[3] || "A";
let conns = 0, reqs = 0;
const body = `ok ${name}\n`;
const resp = (close) => Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nX-Upstream: ${name}\r\n` +
  (close ? "Connection: close\r\n" : "Connection: keep-alive\r\n") + `\r\n${body}`, "latin1");
const RESP = resp(false), RESP_CLOSE = resp(true);

const server = net.createServer((sock) => {
  conns++;
  sock.setNoDelay(true);
  let buf = "";
  let skip = 0;          // body bytes still to skip (Content-Length)
  let chunked = false;   // skipping a chunked body up to its last-chunk
  sock.on("data", (d) => {
    buf += d.toString("latin1");
    const out = [];
    let close = false;
    for (;;) {
      if (skip) { const k = Math.min(skip, buf.length); buf = buf.slice(k); skip -= k; if (skip) break; }
      if (chunked) { const e = buf.indexOf("0\r\n\r\n"); if (e < 0) break; buf = buf.slice(e + 5); chunked = false; }
      const e = buf.indexOf("\r\n\r\n");
      if (e < 0) break;
      const head = buf.slice(0, e).toLowerCase();
      buf = buf.slice(e + 4);
      reqs++;
      const cl = head.match(/\r\ncontent-length:\s*(\d+)/);
      if (cl) skip = Number(cl[1]);
      else if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) chunked = true;
      close = /\r\nconnection:[^\r]*close/.test(head) || head.endsWith("http/1.0");
      out.push(close ? RESP_CLOSE : RESP);
      if (close) break;
    }
    if (out.length) {
      if (close) sock.end(Buffer.concat(out));
      else sock.write(out.length === 1 ? out[0] : Buffer.concat(out));
    }
  });
  sock.on("error", () => {});
  sock.setTimeout(120_000, () => sock.destroy());
});
server.listen({ port, host: "127.0.0.1", backlog: 65535 }, () => {
  process.stdout.write(`LISTENING ${performance.timeOrigin + performance.now()}\n`);
});
server.on("error", (e) => { process.stdout.write(`ERROR ${e.code || e.message}\n`); process.exit(1); });
readline.createInterface({ input: process.stdin }).on("line", (l) => {
  if (l.trim() === "stats") process.stdout.write(`STATS ${JSON.stringify({ conns, reqs })}\n`);
});
process.stdin.on("end", () => process.exit(0));
