"""The board's side of remote control: the agent's rules (protocols/commands.py), ids kept in flash.

    remote = Remote(cfg.get("commands"), gateway_id, "/cmdids.cbor")
    cmd = remote.open(payload, retained, rt.now())   # a Command, or raises Refused (ack its text)
    remote.check(cmd, switching, rt.now())           # signature policy, expiry, clock; None, or the
                                                     # original ack (bytes) of a repeat
    remote.begin(cmd, rt.now())                      # remembered, in flash, before the bus runs it
    remote.finish(cmd.id, ack_bytes)                 # the ack it finished with, in flash

The compiled config carries `commands`: {"signed": "switching" | "all" | "none", "keys": [64 hex
characters, ...], "id_window": seconds, "queue": commands waiting per bus}. The keys stay in this
object and are never printed. A retained delivery is never run. A command with `exp` is refused while
the board's clock is not set (before 2020: no NTP yet). The ids (at most `LIMIT`) are written to a small
file as one CBOR list after every change: write a temporary file, then rename it over the old one, so
a power cut leaves the old list or the new one.
"""

import binascii
import os

from protocols import cbor
from protocols import commands as rules
from protocols.commands import IdMemory, Refused

LIMIT = 32  # ids remembered on the board (the ones that expire first are forgotten beyond that)
COUNTERS = ("received", "queued", "done", "failed", "repeats", "refused")


class Remote:
    def __init__(self, spec, gateway_id: str, path: str) -> None:
        spec = spec or {}
        self.mode = spec.get("signed", "switching")
        self.keys = [binascii.unhexlify(k) for k in spec.get("keys", ())]
        self.id_window = int(spec.get("id_window", 86400))
        self.queue = int(spec.get("queue", 4))
        self.max_bytes = int(spec.get("max_bytes", 4096))
        self.gateway_id = gateway_id
        self.path = path
        self.memory = IdMemory(LIMIT)
        self.counters: dict = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self.refused_by: dict = {}
        self.load()

    # -- flash --------------------------------------------------------------------------------
    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                rows = cbor.loads(f.read())
        except Exception:  # none yet (OSError), or torn (CborError): start empty
            return
        if type(rows) is list:
            from firmware_py import rt

            self.memory.load(rows, rt.now())

    def save(self) -> None:
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(cbor.dumps(self.memory.rows()))
        try:
            os.rename(tmp, self.path)
        except OSError:  # a port whose rename does not replace: remove, then rename
            try:
                os.remove(self.path)
            except OSError:
                pass
            os.rename(tmp, self.path)

    # -- the rules ------------------------------------------------------------------------------
    def refuse(self, reason: str) -> None:
        self.counters["refused"] += 1
        self.refused_by[reason] = self.refused_by.get(reason, 0) + 1

    def open(self, data, retained: bool, now: int):
        """The command in `data` (a delivery on …/cmd), or Refused."""
        self.counters["received"] += 1
        if len(data) > self.max_bytes:
            raise Refused("too_large", rules.refusal("too_large", len(data), self.max_bytes),
                          rules.recover_id(bytes(data[:70])))
        if retained:
            raise Refused("retained", rules.refusal("retained"), rules.peek_id(bytes(data)))
        return rules.open_command(bytes(data), self.keys, self.gateway_id)

    def check(self, cmd, switching: bool, now: int):
        """Refused when the policy or the expiry rules it out; the original ack (bytes; b"" while it
        runs) when it is a repeat; None for a command to run."""
        rules.check_policy(cmd, self.mode, switching, now, self.id_window)
        prior = self.memory.check(cmd)
        if prior is not None:
            self.counters["repeats"] += 1
        return prior

    def begin(self, cmd, now: int) -> None:
        self.memory.expire(now)
        self.memory.begin(cmd, rules.remember_until(cmd, now, self.id_window))
        self.save()
        self.counters["queued"] += 1

    def forget(self, cmd_id) -> None:
        self.memory.forget(cmd_id)
        self.save()

    def finish(self, cmd_id, ok: bool, ack: bytes) -> None:
        self.memory.finish(cmd_id, ack)
        self.save()
        self.counters["done" if ok else "failed"] += 1

    def stats(self) -> dict:
        out: dict = dict(self.counters)
        out["refused_by"] = dict(self.refused_by)
        out["signed"] = self.mode
        out["keys"] = len(self.keys)
        out["ids"] = len(self.memory.entries)
        out["ids_evicted"] = self.memory.evicted
        return out
