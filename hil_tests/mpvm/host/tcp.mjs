// TCP client connections for the VM (node:net), shaped like a non-blocking socket: connect and wait
// are promises; write and read are synchronous and return a count or a negative errno.

import net from "node:net";
import { ERRNO, osError, validSpan } from "./common.mjs";

export function tcpBridge(memory, stats) {
  const sockets = new Map(); // id -> { sock, chunks, size, eof, error, waiter }
  let nextId = 1;
  stats.tcp_connects = 0;
  stats.tcp_tx = 0;
  stats.tcp_rx = 0;

  const take = (entry, n) => {
    const parts = [];
    let got = 0;
    while (got < n && entry.chunks.length) {
      const head = entry.chunks[0];
      const part = head.subarray(0, n - got);
      parts.push(part);
      got += part.length;
      if (part.length === head.length) entry.chunks.shift();
      else entry.chunks[0] = head.subarray(part.length);
    }
    entry.size -= got;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, got);
  };
  const wake = (entry) => {
    if (entry.waiter) { const w = entry.waiter; entry.waiter = null; w(); }
  };
  const failure = (entry) => osError(entry.error.code || "ECONNRESET", entry.error.message);

  const functions = {
    // Promise: a connection id; rejects ECONNREFUSED, ETIMEDOUT (after timeout_ms), EHOSTUNREACH...
    host_tcp_connect(host, port, timeoutMs) {
      stats.tcp_connects += 1;
      return new Promise((resolve, reject) => {
        const sock = net.createConnection({ host: String(host), port: Number(port) });
        const entry = { sock, chunks: [], size: 0, eof: false, error: null, waiter: null };
        const timer = setTimeout(() => {
          sock.destroy();
          reject(osError("ETIMEDOUT", "connect " + host + ":" + port));
        }, timeoutMs ?? 5000);
        sock.on("data", (d) => { entry.chunks.push(d); entry.size += d.length; wake(entry); });
        sock.on("end", () => { entry.eof = true; wake(entry); });
        sock.on("close", () => { entry.eof = true; wake(entry); });
        sock.on("error", (e) => {
          entry.error = e;
          clearTimeout(timer);
          reject(osError(e.code || "EIO", e.message)); // ignored once connected
          wake(entry);
        });
        sock.on("connect", () => {
          clearTimeout(timer);
          sock.setNoDelay(true);
          const id = nextId++;
          sockets.set(id, entry);
          resolve(id);
        });
      });
    },
    // Queues n bytes from the VM buffer at address: n, or -EPIPE once the connection is closed.
    host_tcp_write(id, address, n) {
      const entry = sockets.get(id);
      if (!entry) return -ERRNO.EBADF;
      if (!validSpan(address, n)) return -ERRNO.EINVAL;
      if (entry.error) return -ERRNO.ECONNRESET;
      if (entry.eof || !entry.sock.writable) return -ERRNO.EPIPE;
      entry.sock.write(memory.read(address, n));
      stats.tcp_tx += n;
      return n;
    },
    // Up to n received bytes into the VM buffer: the count, 0 at end of stream, -EAGAIN when none yet.
    host_tcp_read(id, address, n) {
      const entry = sockets.get(id);
      if (!entry) return -ERRNO.EBADF;
      if (!validSpan(address, n)) return -ERRNO.EINVAL;
      if (entry.size > 0 && n > 0) {
        const data = take(entry, n);
        stats.tcp_rx += data.length;
        return memory.write(address, data);
      }
      if (entry.error) return -ERRNO.ECONNRESET;
      return entry.eof ? 0 : -ERRNO.EAGAIN;
    },
    // Promise: bytes buffered (>= 1) once some arrived, 0 at end of stream; rejects ETIMEDOUT.
    host_tcp_wait(id, timeoutMs) {
      const entry = sockets.get(id);
      if (!entry) return Promise.reject(osError("EBADF", "socket " + id));
      return new Promise((resolve, reject) => {
        const settled = () => {
          if (entry.size > 0) { resolve(entry.size); return true; }
          if (entry.error) { reject(failure(entry)); return true; }
          if (entry.eof) { resolve(0); return true; }
          return false;
        };
        if (settled()) return;
        const timer = setTimeout(() => { entry.waiter = null; reject(osError("ETIMEDOUT", "recv socket " + id)); },
          timeoutMs ?? 5000);
        const again = () => { if (settled()) clearTimeout(timer); else entry.waiter = again; };
        entry.waiter = again;
      });
    },
    host_tcp_close(id) {
      const entry = sockets.get(id);
      if (!entry) return -ERRNO.EBADF;
      sockets.delete(id);
      entry.sock.destroy();
      return 0;
    },
    // Fault injection: cut every open connection at once (as a lost link); returns how many.
    host_tcp_drop_all() {
      let cut = 0;
      for (const entry of sockets.values()) {
        if (!entry.sock.destroyed) { entry.sock.destroy(); cut += 1; }
      }
      return cut;
    },
  };

  return {
    functions,
    openHandles: () => [...sockets.keys()],
    closeAll() {
      for (const entry of sockets.values()) entry.sock.destroy();
      sockets.clear();
    },
  };
}
