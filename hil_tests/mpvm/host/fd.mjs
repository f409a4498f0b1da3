// Host file descriptors (ptys, FIFOs, files) for the VM: a UART is a pty from the simulator.
// Synchronous calls never throw (a throw would abort the VM): they return a count or a negative errno.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import tty from "node:tty";
import { ERRNO, errnoOf, osError, validSpan } from "./common.mjs";

export function fdBridge(memory, stats) {
  const open = new Map(); // fd -> { path, pending: Buffer | null } (bytes read ahead by host_read_wait)
  stats.fd_tx = 0;
  stats.fd_rx = 0;

  const readSome = (fd, n) => {
    const buf = Buffer.allocUnsafe(n);
    const got = fs.readSync(fd, buf, 0, n, null); // throws EAGAIN when nothing is there yet
    return buf.subarray(0, got);
  };

  const functions = {
    // mode "r", "w" or "rw" (default); non-blocking, never a controlling tty. A tty is put in raw
    // mode without echo (`stty raw -echo`), as a UART line is.
    host_open(path, mode) {
      const c = fs.constants;
      const access = { r: c.O_RDONLY, w: c.O_WRONLY }[String(mode ?? "rw")] ?? c.O_RDWR;
      let fd;
      try {
        fd = fs.openSync(String(path), access | c.O_NONBLOCK | c.O_NOCTTY);
      } catch (e) { return -errnoOf(e); }
      if (tty.isatty(fd)) {
        try { execFileSync("stty", ["-F", String(path), "raw", "-echo"], { stdio: "ignore" }); } catch { /* keep as is */ }
      }
      open.set(fd, { path: String(path), pending: null });
      return fd;
    },
    // Up to n bytes into the VM buffer at address: the count, 0 at end of file, -EAGAIN when nothing yet.
    host_read(fd, address, n) {
      const entry = open.get(fd);
      if (!entry) return -ERRNO.EBADF;
      if (!validSpan(address, n)) return -ERRNO.EINVAL;
      let data;
      if (entry.pending) {
        data = entry.pending.subarray(0, n);
        entry.pending = entry.pending.length > n ? entry.pending.subarray(n) : null;
      } else {
        try { data = readSome(fd, n); } catch (e) { return -errnoOf(e); }
      }
      stats.fd_rx += data.length;
      return memory.write(address, data);
    },
    host_write(fd, address, n) {
      if (!open.has(fd)) return -ERRNO.EBADF;
      if (!validSpan(address, n)) return -ERRNO.EINVAL;
      try {
        const wrote = fs.writeSync(fd, memory.read(address, n));
        stats.fd_tx += wrote;
        return wrote;
      } catch (e) { return -errnoOf(e); }
    },
    host_close(fd) {
      if (!open.delete(fd)) return -ERRNO.EBADF;
      try { fs.closeSync(fd); return 0; } catch (e) { return -errnoOf(e); }
    },
    // Promise: how many bytes are ready (>= 1) once some are, 0 after timeout_ms; host_read takes them.
    host_read_wait(fd, timeoutMs) {
      const entry = open.get(fd);
      if (!entry) return Promise.reject(osError("EBADF", "fd " + fd));
      const deadline = Date.now() + (timeoutMs ?? 1000);
      return new Promise((resolve, reject) => {
        const poll = () => {
          if (entry.pending) { resolve(entry.pending.length); return; }
          try {
            const data = readSome(fd, 4096);
            if (data.length) { entry.pending = data; resolve(data.length); return; }
          } catch (e) {
            if (e.code !== "EAGAIN") { reject(osError(e.code || "EIO", "read " + entry.path)); return; }
          }
          if (Date.now() >= deadline) { resolve(0); return; }
          setTimeout(poll, 2);
        };
        poll();
      });
    },
  };

  return {
    functions,
    openHandles: () => [...open.keys()],
    closeAll() {
      for (const fd of open.keys()) { try { fs.closeSync(fd); } catch { /* already gone */ } }
      open.clear();
    },
  };
}
