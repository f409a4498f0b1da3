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
//   --pin-low N       input pin N reads 0 (a button held at reset); other pins read 1 (repeatable)
//   --report PATH     write the host's bookkeeping as JSON at exit (pins, watchdog, bytes moved)
//   --quiet-bridge    do not print bridge handles left open at exit
//
// SCRIPT.py is a host path: inside a mounted directory it runs from its VM path (so tracebacks and
// __file__ name it there); otherwise it is copied to /app/<name>. The script or code may `await` at top
// level. Exit status: 0, the SystemExit code, 1 for an uncaught exception (MicroPython's traceback on
// stderr), 2 for a usage error, 124 on timeout.
//
// The host bridge (host/, see README.md): functions on the JS global object, reached from Python with
// `import js`, named host_*, wrapped by vmlib/hostio.py.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createHost } from "./host/index.mjs";

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

let host = null; // the bridge, once the VM is loaded

function finish(code) {
  stdout.flush();
  stderr.flush();
  if (host !== null) {
    host.closeAll();
    if (opts.report) fs.writeFileSync(opts.report, JSON.stringify(host.report()) + "\n");
  }
  process.exit(code);
}

// ---- command line -----------------------------------------------------------------------------

function usage(message) {
  errText("runner.mjs: " + message + "\n");
  errText("usage: node runner.mjs [--mount VM=HOST]... [--path VM]... [--cwd VM] [--heap SIZE] " +
    "[--pystack N] [--call MOD:FUNC] [--timeout SEC] [--pin-low N]... [--report PATH] " +
    "(SCRIPT.py | -c CODE) [-- ARGS...]\n");
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
    timeout: 0, script: null, code: null, args: [], quietBridge: false, pinsLow: [], report: null };
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
    else if (a === "--pin-low") opts.pinsLow.push(parseSize(value(a)));
    else if (a === "--report") opts.report = path.resolve(value(a));
    else if (a === "-c") { opts.code = value(a); opts.args = argv.slice(i + 1).filter((x) => x !== "--"); break; }
    else if (a.startsWith("-")) usage("unknown option " + a);
    else { opts.script = a; opts.args = argv.slice(i + 1).filter((x, k) => !(k === 0 && x === "--")); break; }
  }
  if (opts.script === null && opts.code === null && opts.call === null) usage("no script, -c CODE or --call");
  if (opts.call !== null && !/^[\w.]+:\w+$/.test(opts.call)) usage("--call wants MOD:FUNC");
  return opts;
}

// ---- filesystem: copy host trees into MEMFS (this build has no NODEFS) ------------------------

// A folder beside a module of the same name is left out: MicroPython would import the folder (a
// namespace package) instead of the module, as protocols/profiles/ (JSON) would hide profiles.py.
const shadowsModule = (names, dir) => names.has(dir + ".py") || names.has(dir + ".mpy");

function copyIn(FS, vmDest, hostSrc) {
  const st = fs.statSync(hostSrc);
  if (st.isDirectory()) {
    FS.mkdirTree(vmDest);
    const entries = fs.readdirSync(hostSrc, { withFileTypes: true });
    const names = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
    for (const entry of entries) {
      if (entry.isDirectory() && (SKIP_DIRS.has(entry.name) || entry.name.startsWith(".") ||
          shadowsModule(names, entry.name))) continue;
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
host = createHost(mp, { pinsLow: opts.pinsLow });
Object.assign(globalThis, host.functions);

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

// The driver runs in two steps. Setup runs the script's top level: it is handed to runPythonAsync and
// holds no `await` itself, so it runs at once, while the port compiles with top-level await allowed;
// a script that awaits at top level comes back from exec() as a coroutine. The second step, async,
// awaits that coroutine, the asyncio.run() tasks and --call. The script's globals are __main__'s own
// (a resumed coroutine stores names there), holding only the driver's _mpvm_* names besides.
// Results travel back through __main__ globals rather than exceptions, so a Python error never
// reaches JS as a throw.
const py = JSON.stringify;
const [callModule, callFunction] = opts.call !== null ? opts.call.split(":") : [null, null];
const setup = `
def _mpvm_setup():
    import sys, os, asyncio
    sys.argv[:] = ${py([scriptVm ?? "-c", ...opts.args])}
    os.chdir(${py(opts.cwd)})
    for p in reversed(${py((scriptVm !== null ? [path.posix.dirname(scriptVm)] : []).concat(opts.paths))}):
        sys.path.insert(0, p)
    tasks = []
    if not hasattr(asyncio, "run"):
        # This port drives asyncio from the JS event loop: run() schedules the coroutine, and the
        # runner awaits it after the script's top level has finished.
        def run(coro):
            tasks.append(asyncio.create_task(coro))
        asyncio.run = run
    return tasks
def _mpvm_failed(e):
    import sys
    global _mpvm_status, _mpvm_done
    _mpvm_done = True
    if not isinstance(e, SystemExit):
        sys.print_exception(e, sys.stderr)
        _mpvm_status = 1
        return
    c = e.args[0] if e.args else 0
    if c is None:
        _mpvm_status = 0
    elif isinstance(c, int):
        _mpvm_status = c
    else:
        print(c, file=sys.stderr)
        _mpvm_status = 1
_mpvm_tasks = _mpvm_setup()
_mpvm_status = 0
_mpvm_done = False
_mpvm_pending = None
__file__ = ${py(scriptVm ?? "-c")}
try:
    ${scriptVm !== null
      ? `with open(${py(scriptVm)}) as _mpvm_f:\n        _mpvm_code = compile(_mpvm_f.read(), ${py(scriptVm)}, "exec")\n    del _mpvm_f`
      : `_mpvm_code = compile(${py(opts.code ?? "")}, "<string>", "exec")`}
    _mpvm_pending = exec(_mpvm_code, globals())  # None, or the coroutine of a top level that awaits
    del _mpvm_code
except BaseException as _mpvm_e:
    _mpvm_failed(_mpvm_e)
    del _mpvm_e
`;
const finishing = `
try:
    if not _mpvm_done:
        if _mpvm_pending is not None:
            await _mpvm_pending
            _mpvm_pending = None
        for _mpvm_t in _mpvm_tasks:
            await _mpvm_t
        ${callModule !== null ? `_mpvm_r = getattr(__import__(${py(callModule)}, None, None, ["_"]), ${py(callFunction)})()
        if hasattr(_mpvm_r, "send"):
            await _mpvm_r` : "pass"}
except BaseException as _mpvm_e:
    _mpvm_failed(_mpvm_e)
    del _mpvm_e
`;

try {
  await mp.runPythonAsync(setup);
  await mp.runPythonAsync(finishing);
  const status = mp.globals.get("_mpvm_status");
  const left = host.openHandles();
  if (left.fds.length + left.sockets.length > 0 && !opts.quietBridge) {
    errText("mpvm: closing bridge handles left open: fds " + left.fds + " sockets " + left.sockets + "\n");
  }
  finish(typeof status === "number" ? status : 1);
} catch (e) {
  // Only the runner's own failures land here (a Python exception is caught by the driver).
  errText("runner.mjs: " + (e.name === "PythonError" ? e.message : (e.stack || String(e))) + "\n");
  finish(1);
}
