// What a board has besides its buses: pins, a watchdog. Kept as bookkeeping the test reads back from
// the run's report (--report): DE pin transitions, watchdog feeds and the longest gap between them.
// Also the host's garbage collector, the environment and the platform.

import os from "node:os";
import v8 from "node:v8";
import vm from "node:vm";

export function boardBridge(options, stats) {
  const low = new Set(options.pinsLow || []);
  let lastFeed = 0;
  let collector = null;
  stats.pins = {}; // "%N": [times set low, times set high]
  stats.wdt_timeout = 0;
  stats.wdt_feeds = 0;
  stats.wdt_max_gap_ms = 0;

  const functions = {
    host_pin_set(n, value) {
      const counts = (stats.pins["%" + n] ??= [0, 0]);
      counts[value ? 1 : 0] += 1;
      return 0;
    },
    // The level of an input: 0 for a pin named by --pin-low (a button held at reset), else 1.
    host_pin_get(n) { return low.has(n) ? 0 : 1; },
    host_wdt_start(timeoutMs) {
      stats.wdt_timeout = timeoutMs;
      lastFeed = Date.now();
      return 0;
    },
    host_wdt_feed() {
      const now = Date.now();
      stats.wdt_max_gap_ms = Math.max(stats.wdt_max_gap_ms, now - lastFeed);
      lastFeed = now;
      stats.wdt_feeds += 1;
      return 0;
    },
    // Python objects handed to JS (asyncio's timer callbacks...) stay alive until the JS GC finalizes
    // their proxies, in finalizers that run as later JS tasks: a live-heap measurement runs this,
    // yields, then collects. True when a collection ran.
    host_js_gc() {
      if (collector === null) {
        if (typeof globalThis.gc === "function") collector = globalThis.gc;
        else {
          v8.setFlagsFromString("--expose-gc");
          collector = vm.runInNewContext("gc");
        }
      }
      collector();
      return true;
    },
    host_env(name) { return process.env[String(name)] ?? null; },
    host_platform() { return os.platform(); },
  };
  return { functions, openHandles: () => [], closeAll() {} };
}
