// The host bridge: every host_* function the VM reaches with `import js` (hostio.py wraps them), and
// the bookkeeping the runner reports at exit. Rules for every function (see ../README.md):
// synchronous calls never throw, they return a value or a negative errno; asynchronous calls return
// promises that reject with an Error whose `errno` is positive; bytes are (address, length) of a VM
// buffer.

import { boardBridge } from "./board.mjs";
import { vmMemory } from "./common.mjs";
import { fdBridge } from "./fd.mjs";
import { tcpBridge } from "./tcp.mjs";

export function createHost(mp, options = {}) {
  const memory = vmMemory(mp._module);
  const stats = {};
  const parts = { fds: fdBridge(memory, stats), sockets: tcpBridge(memory, stats), board: boardBridge(options, stats) };
  const functions = Object.assign({}, ...Object.values(parts).map((p) => p.functions));
  return {
    functions,
    /** Handles the script left open: {fds: [...], sockets: [...]} (empty lists when none). */
    openHandles: () => ({ fds: parts.fds.openHandles(), sockets: parts.sockets.openHandles() }),
    closeAll() { for (const p of Object.values(parts)) p.closeAll(); },
    report: () => stats,
  };
}
