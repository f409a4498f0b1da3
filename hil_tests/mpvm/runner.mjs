#!/usr/bin/env node
// Run a Python script under genuine MicroPython (the WebAssembly port) in Node.js.
//
//   node runner.mjs [options] (SCRIPT.py | -c CODE) [-- ARGS...]
//
//   --mount VM=HOST   copy a host file or directory tree into the VM filesystem at VM (repeatable);
//                     a relative VM path is taken under /app, the VM's working directory
//   --path VM         prepend VM to sys.path (repeatable); the working directory ('') is always searched
//   --cwd VM          working directory inside the VM (default /app)
//   --heap SIZE       initial MicroPython heap, bytes or with k/m suffix (default 1m; this build grows it)
//   --pystack N       Python stack in words (default 2048)
//   --call MOD:FUNC   after the script, import MOD and call FUNC(); a coroutine is awaited
//   --timeout SEC     give up after SEC seconds: exit 124
//   --quiet-bridge    do not print bridge handles left open at exit
//
// SCRIPT.py is a host path: inside a mounted directory it runs from its VM path (so tracebacks and
// __file__ name it there); otherwise it is copied to /app/<name>. Exit status: 0, the SystemExit code,
// 1 for an uncaught exception (MicroPython's traceback on stderr), 2 for a usage error, 124 on timeout.
//
// The host bridge (see README.md): functions on the JS global object, reached from Python with
// `import js`, named host_*. Synchronous ones never throw (a throw would abort the VM): they return a
// value or a negative errno. Asynchronous ones return promises that Python awaits inside
// runPythonAsync; they reject with an Error carrying a positive `errno`.

import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE = path.join(HERE, "node_modules", "@micropython", "micropython-webassembly-pyscript",
  "micropython.mjs");
const VM_ROOT = "/app";
const SKIP_DIRS = new Set(["__pycache__", "node_modules", ".git", ".mypy_cache", ".pytest_cache"]);

// ---- output: byte callbacks, buffered here so a last line without newline is not lost ----------

function makeSink(stream) {
  let chunk = [];
  const flush = () => {
    if (chunk.length) {
      fs.writeSync(stream.fd, Buffer.from(chunk));
      chunk = [];
    }
  };
  const put = (bytes) => {
    for (const b of bytes) {
      chunk.push(b);
      if (b === 10 || chunk.length >= 4096) flush();
    }
  };
  return { put, flush };
}
const stdout = makeSink(process.stdout);
const stderr = makeSink(process.stderr);
const errText = (text) => stderr.put(Buffer.from(text));

function finish(code) {
  stdout.flush();
  stderr.flush();
  bridge.closeAll();
  process.exit(code);
}

// ---- command line -----------------------------------------------------------------------------

function usage(message) {
  errText("runner.mjs: " + message + "\n");
  errText("usage: node runner.mjs [--mount VM=HOST]... [--path VM]... [--cwd VM] [--heap SIZE] " +
    "[--pystack N] [--call MOD:FUNC] [--timeout SEC] (SCRIPT.py | -c CODE) [-- ARGS...]\n");
  finish(2);
}

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(text);
  if (!m) usage("bad size " + JSON.stringify(text));
  return parseInt(m[1], 10) * ({ k: 1024, m: 1048576 }[m[2].toLowerCase()] || 1);
}

const vmPath = (p) => (p.startsWith("/") ? path.posix.normalize(p) : path.posix.join(VM_ROOT, p));

function parseArgs(argv) {
  const opts = { mounts: [], paths: [], cwd: VM_ROOT, heap: 1048576, pystack: 2048, call: null,
    timeout: 0, script: null, code: null, args: [], quietBridge: false };
  let i = 0;
  const value = (name) => {
    if (i + 1 >= argv.length) usage(name + " needs a value");
    return argv[++i];
  };
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") { opts.args = argv.slice(i + 1); break; }
    if (a === "--mount") {
      const spec = value(a);
      const eq = spec.indexOf("=");
      if (eq <= 0) usage("--mount wants VM=HOST, got " + JSON.stringify(spec));
      opts.mounts.push([vmPath(spec.slice(0, eq)), path.resolve(spec.slice(eq + 1))]);
    } else if (a === "--path") opts.paths.push(vmPath(value(a)));
    else if (a === "--cwd") opts.cwd = vmPath(value(a));
    else if (a === "--heap") opts.heap = parseSize(value(a));
    else if (a === "--pystack") opts.pystack = parseSize(value(a));
    else if (a === "--call") opts.call = value(a);
    else if (a === "--timeout") opts.timeout = parseFloat(value(a));
    else if (a === "--quiet-bridge") opts.quietBridge = true;
    else if (a === "-c") { opts.code = value(a); opts.args = argv.slice(i + 1).filter((x) => x !== "--"); break; }
    else if (a.startsWith("-")) usage("unknown option " + a);
    else { opts.script = a; opts.args = argv.slice(i + 1).filter((x, k) => !(k === 0 && x === "--")); break; }
  }
  if (opts.script === null && opts.code === null && opts.call === null) usage("no script, -c CODE or --call");
  if (opts.call !== null && !/^[\w.]+:\w+$/.test(opts.call)) usage("--call wants MOD:FUNC");
  return opts;
}

// ---- filesystem: copy host trees into MEMFS (this build has no NODEFS) ------------------------

function copyIn(FS, vmDest, hostSrc) {
  const st = fs.statSync(hostSrc);
  if (st.isDirectory()) {
    FS.mkdirTree(vmDest);
    for (const entry of fs.readdirSync(hostSrc, { withFileTypes: true })) {
      if (entry.isDirectory() && (SKIP_DIRS.has(entry.name) || entry.name.startsWith("."))) continue;
      if (entry.isFile() || entry.isDirectory()) {
        copyIn(FS, path.posix.join(vmDest, entry.name), path.join(hostSrc, entry.name));
      }
    }
  } else {
    FS.mkdirTree(path.posix.dirname(vmDest));
    FS.writeFile(vmDest, fs.readFileSync(hostSrc));
  }
}

function scriptVmPath(FS, mounts, hostScript) {
  const abs = path.resolve(hostScript);
  for (const [vm, host] of mounts) {
    const rel = path.relative(host, abs);
    if (rel === "") return vm;
    if (!rel.startsWith("..") && !path.isAbsolute(rel)) return path.posix.join(vm, ...rel.split(path.sep));
  }
  const dest = path.posix.join(VM_ROOT, path.basename(abs));
  copyIn(FS, dest, abs);
  return dest;
}

// ---- host bridge ------------------------------------------------------------------------------

const ERRNO = { EPERM: 1, ENOENT: 2, EIO: 5, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EBUSY: 16,
  EEXIST: 17, ENOTDIR: 20, EINVAL: 22, EPIPE: 32, ENOTCONN: 107, ETIMEDOUT: 110, ECONNREFUSED: 111,
  ECONNRESET: 104, EHOSTUNREACH: 113, ECONNABORTED: 103, ENETUNREACH: 101, EADDRINUSE: 98 };

function errnoOf(error) {
  if (error && typeof error.code === "string" && ERRNO[error.code]) return ERRNO[error.code];
  if (error && typeof error.errno === "number") return Math.abs(error.errno);
  return ERRNO.EIO;
}

function osError(code, message) {
  const e = new Error(message + " [" + code + "]");
  e.code = code;
  e.errno = ERRNO[code] || ERRNO.EIO;
  return e;
}

function toU8(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === "string") return Buffer.from(data, "utf8");
  return null; // a Python bytes object arrives as a PyProxy: the caller must pass js.Uint8Array.new(b)
}

const bridge = {
  fds: new Set(),
  sockets: new Map(),
  nextSocket: 1,
  closeAll() {
    for (const fd of this.fds) { try { fs.closeSync(fd); } catch { /* already gone */ } }
    this.fds.clear();
    for (const s of this.sockets.values()) s.sock.destroy();
    this.sockets.clear();
  },
};

const host = {
  // -- file descriptors (ptys, FIFOs, files): synchronous, non-blocking, never throw --
  // mode "r", "w" or "rw" (default); opened non-blocking and without becoming a controlling tty.
  host_open(p, mode) {
    const c = fs.constants;
    const access = { r: c.O_RDONLY, w: c.O_WRONLY }[String(mode ?? "rw")] ?? c.O_RDWR;
    try {
      const fd = fs.openSync(String(p), access | c.O_NONBLOCK | c.O_NOCTTY);
      bridge.fds.add(fd);
      return fd;
    } catch (e) { return -errnoOf(e); }
  },
  host_read(fd, n) {
    const buf = Buffer.alloc(n);
    try {
      return new Uint8Array(buf.buffer, buf.byteOffset, fs.readSync(fd, buf, 0, n, null));
    } catch (e) { return -errnoOf(e); }   // EAGAIN: nothing to read yet
  },
  host_write(fd, data) {
    const u8 = toU8(data);
    if (u8 === null) return -ERRNO.EINVAL;
    try { return fs.writeSync(fd, u8); } catch (e) { return -errnoOf(e); }
  },
  host_close(fd) {
    bridge.fds.delete(fd);
    try { fs.closeSync(fd); return 0; } catch (e) { return -errnoOf(e); }
  },
  // Resolves with up to n bytes once some are readable, or an empty array after timeout_ms.
  host_read_wait(fd, n, timeoutMs) {
    const deadline = Date.now() + (timeoutMs ?? 1000);
    return new Promise((resolve, reject) => {
      const poll = () => {
        const r = host.host_read(fd, n);
        if (typeof r !== "number") { resolve(r); return; }
        if (r !== -ERRNO.EAGAIN) { reject(osError(Object.keys(ERRNO).find((k) => ERRNO[k] === -r) || "EIO", "read fd " + fd)); return; }
        if (Date.now() >= deadline) { resolve(new Uint8Array(0)); return; }
        setTimeout(poll, 2);
      };
      poll();
    });
  },

  // -- TCP client sockets (node:net): asynchronous, reject with Error.errno --
  host_tcp_connect(hostname, port, timeoutMs) {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ host: String(hostname), port: Number(port) });
      const entry = { sock, chunks: [], size: 0, eof: false, error: null, waiter: null };
      const timer = setTimeout(() => { sock.destroy(); reject(osError("ETIMEDOUT", "connect " + hostname + ":" + port)); },
        timeoutMs ?? 5000);
      const wake = () => { if (entry.waiter) { const w = entry.waiter; entry.waiter = null; w(); } };
      sock.on("data", (d) => { entry.chunks.push(d); entry.size += d.length; wake(); });
      sock.on("end", () => { entry.eof = true; wake(); });
      sock.on("close", () => { entry.eof = true; wake(); });
      sock.on("error", (e) => { entry.error = e; clearTimeout(timer); reject(osError(e.code || "EIO", e.message)); wake(); });
      sock.on("connect", () => {
        clearTimeout(timer);
        sock.setNoDelay(true);
        const id = bridge.nextSocket++;
        bridge.sockets.set(id, entry);
        resolve(id);
      });
    });
  },
  host_tcp_send(id, data) {
    const entry = bridge.sockets.get(id);
    const u8 = toU8(data);
    if (!entry) return Promise.reject(osError("EBADF", "socket " + id));
    if (u8 === null) return Promise.reject(osError("EINVAL", "send wants a Uint8Array"));
    return new Promise((resolve, reject) => {
      entry.sock.write(u8, (e) => (e ? reject(osError(e.code || "EPIPE", e.message)) : resolve(u8.length)));
    });
  },
  // Resolves with 1..n bytes, an empty array at end of stream; rejects ETIMEDOUT after timeout_ms.
  host_tcp_recv(id, n, timeoutMs) {
    const entry = bridge.sockets.get(id);
    if (!entry) return Promise.reject(osError("EBADF", "socket " + id));
    const take = () => {
      const all = Buffer.concat(entry.chunks);
      const out = all.subarray(0, n);
      entry.chunks = all.length > n ? [all.subarray(n)] : [];
      entry.size = all.length - out.length;
      return new Uint8Array(out);
    };
    return new Promise((resolve, reject) => {
      const attempt = () => {
        if (entry.size > 0) return resolve(take());
        if (entry.error) return reject(osError(entry.error.code || "ECONNRESET", entry.error.message));
        if (entry.eof) return resolve(new Uint8Array(0));
        return false;
      };
      if (attempt() !== false) return;
      const timer = setTimeout(() => { entry.waiter = null; reject(osError("ETIMEDOUT", "recv socket " + id)); },
        timeoutMs ?? 5000);
      entry.waiter = () => { clearTimeout(timer); attempt(); };
    });
  },
  host_tcp_close(id) {
    const entry = bridge.sockets.get(id);
    if (!entry) return -ERRNO.EBADF;
    bridge.sockets.delete(id);
    entry.sock.end();
    entry.sock.destroy();
    return 0;
  },

  // -- misc --
  host_env(name) { return process.env[String(name)] ?? null; },
  host_platform() { return os.platform(); },
};

// ---- main -------------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
if (opts.timeout > 0) {
  setTimeout(() => {
    errText("runner.mjs: timed out after " + opts.timeout + " s\n");
    finish(124);
  }, opts.timeout * 1000).unref();
}

const { loadMicroPython } = await import(PACKAGE);
const t0 = performance.now();
const mp = await loadMicroPython({
  heapsize: opts.heap,
  pystack: opts.pystack,
  linebuffer: false,
  stdout: (b) => stdout.put(b),
  stderr: (b) => stderr.put(b),
});
const startMs = performance.now() - t0;
Object.assign(globalThis, host);

let scriptVm = null;
try {
  copyIn(mp.FS, "/lib", path.join(HERE, "vmlib"));   // hostio.py: the Python side of the bridge
  for (const [vm, hostPath] of opts.mounts) copyIn(mp.FS, vm, hostPath);
  mp.FS.mkdirTree(opts.cwd);
  if (opts.script !== null) scriptVm = scriptVmPath(mp.FS, opts.mounts, opts.script);
} catch (e) {
  usage(e.message);
}
if (process.env.MPVM_TIMING) errText("mpvm: VM started in " + startMs.toFixed(1) + " ms\n");

// The driver runs inside runPythonAsync so that host promises can be awaited. Results travel back
// through __main__ globals rather than exceptions, so a Python error never reaches JS as a throw.
const py = JSON.stringify;
const driver = `
import sys, os
sys.argv[:] = ${py([scriptVm ?? "-c", ...opts.args])}
os.chdir(${py(opts.cwd)})
for _p in reversed(${py((scriptVm !== null ? [path.posix.dirname(scriptVm)] : []).concat(opts.paths))}):
    sys.path.insert(0, _p)
import asyncio
_mpvm_tasks = []
if not hasattr(asyncio, "run"):
    # This port drives asyncio from the JS event loop: run() schedules the coroutine, and the
    # runner awaits it after the script's top level has finished.
    def _mpvm_run(coro):
        _mpvm_tasks.append(asyncio.create_task(coro))
    asyncio.run = _mpvm_run
_mpvm_status = 0
def _mpvm_exit_code(e):
    c = e.args[0] if e.args else 0
    if c is None:
        return 0
    if isinstance(c, int):
        return c
    print(c, file=sys.stderr)
    return 1
try:
    _mpvm_g = {"__name__": "__main__", "__file__": sys.argv[0]}
    ${scriptVm !== null
      ? `with open(${py(scriptVm)}) as _f:\n        _mpvm_src = _f.read()\n    exec(compile(_mpvm_src, ${py(scriptVm)}, "exec"), _mpvm_g)`
      : opts.code !== null ? `exec(compile(${py(opts.code)}, "<string>", "exec"), _mpvm_g)` : "pass"}
    del _mpvm_g
    for _t in _mpvm_tasks:
        await _t
    ${opts.call !== null ? `_mpvm_m = __import__(${py(opts.call.split(":")[0])}, None, None, ["_"])
    _mpvm_r = getattr(_mpvm_m, ${py(opts.call.split(":")[1])})()
    if hasattr(_mpvm_r, "send"):
        await _mpvm_r` : "pass"}
except SystemExit as _e:
    _mpvm_status = _mpvm_exit_code(_e)
except BaseException as _e:
    sys.print_exception(_e, sys.stderr)
    _mpvm_status = 1
`;

try {
  await mp.runPythonAsync(driver);
  const status = mp.globals.get("_mpvm_status");
  if (bridge.fds.size + bridge.sockets.size > 0 && !opts.quietBridge) {
    errText("mpvm: closing bridge handles left open: fds " + [...bridge.fds] + " sockets " +
      [...bridge.sockets.keys()] + "\n");
  }
  finish(typeof status === "number" ? status : 1);
} catch (e) {
  // Only the runner's own failures land here (a Python exception is caught by the driver).
  errText("runner.mjs: " + (e.name === "PythonError" ? e.message : (e.stack || String(e))) + "\n");
  finish(1);
}
