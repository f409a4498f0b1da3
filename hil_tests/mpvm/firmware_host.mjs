// Runs FieldLink firmware code under genuine MicroPython (WebAssembly) with the host bridges the
// firmware's hw_host.py adapters use: UART <-> a pty path, TCP sockets (node:net), DE pin and
// watchdog logs. Owned by the firmware (firmware_py/); the shared runner is runner.mjs.
//
//   node firmware_host.mjs SPEC.json
//   SPEC = {"root": "/work/main", "packages": ["protocols", "firmware_py"],
//           "files": {"/config.json": "/tmp/x.json"}, "code": "python source",
//           "heapsize": 8388608, "pins_low": [], "timeout_s": 120}
// Lines the Python code emits with fwhost.emit(text) are printed as "@@ text"; at the end the host
// prints "@@HOST {json}" (watchdog gaps, DE pin transitions, UART bytes) and exits 0, or 1 on error.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const { loadMicroPython } = await import(
  path.join(here, "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"));

const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const report = { wdt_timeout: 0, wdt_feeds: 0, wdt_max_gap_ms: 0, pins: {}, uart_tx: 0, uart_rx: 0,
                 tcp_connects: 0 };
let lastFeed = 0;
const uarts = [];
const socks = [];

const fwhost = {
  emit: (text) => { process.stdout.write("@@ " + text + "\n"); },
  uart_open: (p) => {
    try { execFileSync("stty", ["-F", p, "raw", "-echo"]); } catch (e) { /* not a tty: a file */ }
    const fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
    uarts.push(fd);
    return uarts.length - 1;
  },
  uart_write: (id, hex) => { const b = Buffer.from(hex, "hex"); fs.writeSync(uarts[id], b); report.uart_tx += b.length; },
  uart_read: (id, max) => {
    const b = Buffer.alloc(max);
    try {
      const n = fs.readSync(uarts[id], b, 0, max, null);
      report.uart_rx += n;
      return b.subarray(0, n).toString("hex");
    } catch (e) {
      if (e.code === "EAGAIN" || e.code === "EWOULDBLOCK") return "";
      throw e;
    }
  },
  tcp_connect: (host, port) => {
    const s = { state: 0, chunks: [], sock: null };
    s.sock = net.createConnection({ host, port }, () => { s.state = 1; });
    s.sock.setNoDelay(true);
    s.sock.on("data", (d) => s.chunks.push(d));
    s.sock.on("error", () => { s.state = -1; });
    s.sock.on("close", () => { s.state = -1; });
    socks.push(s);
    report.tcp_connects += 1;
    return socks.length - 1;
  },
  tcp_state: (id) => socks[id].state,
  tcp_write: (id, hex) => { socks[id].sock.write(Buffer.from(hex, "hex")); },
  tcp_read: (id, max) => {
    const s = socks[id];
    if (!s.chunks.length) return s.state < 0 ? null : "";
    const all = Buffer.concat(s.chunks);
    const out = all.subarray(0, max);
    s.chunks = all.length > max ? [all.subarray(max)] : [];
    return out.toString("hex");
  },
  tcp_close: (id) => { const s = socks[id]; if (s && s.sock) { s.sock.destroy(); s.state = -1; } },
  pin: (n, v) => { const k = "%" + n; report.pins[k] = report.pins[k] || [0, 0]; report.pins[k][v ? 1 : 0] += 1; },
  pin_low: (n) => (spec.pins_low || []).includes(n),
  wdt_start: (ms) => { report.wdt_timeout = ms; lastFeed = Date.now(); },
  wdt_feed: () => {
    const now = Date.now();
    report.wdt_max_gap_ms = Math.max(report.wdt_max_gap_ms, now - lastFeed);
    lastFeed = now; report.wdt_feeds += 1;
  },
  kill_tcp: () => { for (const s of socks) if (s.sock) s.sock.destroy(); },
  // Python objects handed to JS (callbacks of asyncio's timers...) stay referenced until the JS
  // garbage collector finalizes their proxies: a heap measurement runs the JS GC first (node is
  // started with --expose-gc by firmware_py/tests/mpvm.py); returns false when it cannot.
  js_gc: () => { if (typeof globalThis.gc !== "function") return false; globalThis.gc(); return true; },
};

const mp = await loadMicroPython({
  heapsize: spec.heapsize || 8 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
mp.registerJsModule("fwhost", fwhost);

// Only modules are copied, as on a board (the bundle of `make firmware`): a folder without any, such
// as protocols/profiles/ (JSON), must not exist in the VM, where it would shadow protocols/profiles.py.
function mount(hostDir, vmDir) {
  for (const name of fs.readdirSync(hostDir)) {
    const full = path.join(hostDir, name);
    const st = fs.statSync(full);
    if (st.isDirectory()) {
      if (name === "tests" || name === "__pycache__" || name === "node_modules") continue;
      mount(full, vmDir + "/" + name);
    } else if (/\.(py|mpy)$/.test(name)) {
      mp.FS.mkdirTree(vmDir);
      mp.FS.writeFile(vmDir + "/" + name, fs.readFileSync(full));
    }
  }
}
for (const pkg of spec.packages || []) mount(path.join(spec.root, pkg), "/" + pkg);
for (const [vmPath, hostPath] of Object.entries(spec.files || {})) {
  mp.FS.mkdirTree(path.dirname(vmPath));
  mp.FS.writeFile(vmPath, fs.readFileSync(hostPath));
}

const timer = setTimeout(() => {
  process.stderr.write("firmware_host: timed out after " + (spec.timeout_s || 120) + " s\n");
  process.exit(2);
}, (spec.timeout_s || 120) * 1000);

let code = 0;
try {
  await mp.runPythonAsync(spec.code);
} catch (e) {
  process.stderr.write("MicroPython " + (e.type || "error") + ": " + (e.message || String(e)).slice(0, 4000) + "\n");
  code = 1;
}
clearTimeout(timer);
for (const s of socks) if (s.sock) s.sock.destroy();
process.stdout.write("@@HOST " + JSON.stringify(report) + "\n");
process.exit(code);
