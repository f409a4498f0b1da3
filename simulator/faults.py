"""Fault injection: what field devices and RS-485 lines do wrong, switchable while running.

Wire faults act on a reply (or its absence) and draw from a seeded RNG, so a given seed and request
sequence always fails the same way. Model faults change the device's behaviour from the simulated
time they are set (they are timeline events, so ground truth knows about them).

| kind            | layer  | params (defaults)                                  |
|-----------------|--------|----------------------------------------------------|
| no_answer       | wire   | rate (1.0): probability a request goes unanswered   |
| late            | wire   | delay s (2.0), rate (1.0)                          |
| bad_crc         | wire   | rate (1.0): CRC / checksum byte corrupted          |
| bit_flip        | wire   | rate (0.001): probability per bit on the wire       |
| truncate        | wire   | keep (0.5): fraction of the reply sent, rate (1.0)  |
| noise           | wire   | length (8) random bytes before the reply, rate (1.0)|
| wrong_address   | device | address (own + 1), rate (1.0): another unit answers |
| exception       | device | code (4), rate (1.0): Modbus exception response     |
| abnormal        | device | code (0x02 / ST1 0x03 / DAR 4), rate (1.0): DL/T 645 ERR,  |
|                 |        | CJ/T 188 abnormal reply, DL/T 698.45 DAR for every OAD      |
| followup        | device | size (8) value bytes per frame, seq_start (1), reply_seq (1), rate (1.0):   |
|                 |        | DL/T 645-2007 reads longer than size answer B1, the rest to C=12 (B2 .. 92) |
| reboot          | model  | duration s (5, simulated), keep_counters (false)    |
| lamp_failure, cable_fault, over_temperature, door_open, battery_low | model | - |
| leak            | model  | rate m3/s (0.002), drop Pa (60000), level_rate m/s (0.0001) |
| ab_swapped      | line   | - : A and B swapped between the clients and the devices (every level inverted) |
| unterminated    | line   | cable_length m (1000), bit_error_rate (from baud and length): bit errors      |
| echo            | line   | - : a client hears its own transmission (RS-485 receiver left enabled)      |

Line faults act on a bus only (simulator/wire.py applies them to every transmission).
"""

from __future__ import annotations

import random
import threading

from simulator.wire import LineFaults

WIRE_KINDS = ("no_answer", "late", "bad_crc", "bit_flip", "truncate", "noise")
DEVICE_KINDS = ("wrong_address", "exception", "abnormal", "followup")
MODEL_KINDS = (
    "reboot", "lamp_failure", "cable_fault", "over_temperature", "door_open", "battery_low", "leak",
)
LINE_KINDS = ("ab_swapped", "unterminated", "echo")
BUS_KINDS = WIRE_KINDS + LINE_KINDS
KINDS = WIRE_KINDS + DEVICE_KINDS + MODEL_KINDS + LINE_KINDS

DEFAULTS: dict[str, dict] = {
    "no_answer": {"rate": 1.0},
    "late": {"delay": 2.0, "rate": 1.0},
    "bad_crc": {"rate": 1.0},
    "bit_flip": {"rate": 0.001},
    "truncate": {"keep": 0.5, "rate": 1.0},
    "noise": {"length": 8, "rate": 1.0},
    "wrong_address": {"rate": 1.0},
    "exception": {"code": 4, "rate": 1.0},
    "abnormal": {"rate": 1.0},
    "followup": {"size": 8, "seq_start": 1, "reply_seq": 1, "rate": 1.0},
    "reboot": {"duration": 5.0, "keep_counters": False},
    "leak": {"rate": 0.002, "drop": 60000.0, "level_rate": 0.0001},
    "unterminated": {"cable_length": 1000.0},
}
OPTIONAL = {"unterminated": ("bit_error_rate",)}  # parameters without a default


class FaultError(ValueError):
    """A fault that cannot be set: unknown kind, bad parameter, not for this device kind."""


def check(kind: str, params: dict, bus_level: bool = False) -> dict:
    """Validated parameters of a fault, defaults filled in."""
    if kind not in KINDS:
        raise FaultError("unknown fault kind %r (known: %s)" % (kind, ", ".join(KINDS)))
    if bus_level and kind not in BUS_KINDS:
        raise FaultError("fault %r acts on a device, not on a bus (bus faults: %s)"
                         % (kind, ", ".join(BUS_KINDS)))
    if not bus_level and kind in LINE_KINDS:
        raise FaultError("fault %r acts on a bus's wires: give the target as bus:NAME" % (kind,))
    out = dict(DEFAULTS.get(kind, {}))
    for key, value in params.items():
        if key not in out and key not in ("address", "code", *OPTIONAL.get(kind, ())):
            raise FaultError("fault %s has no parameter %r" % (kind, key))
        if key in ("keep_counters",):
            out[key] = bool(value)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FaultError("fault %s: %s must be a number, not %r" % (kind, key, value))
        out[key] = value
    rate = out.get("rate", 1.0)
    if not 0.0 <= rate <= 1.0:
        raise FaultError("fault %s: rate must be within 0..1, not %r" % (kind, rate))
    if kind == "followup" and (out["size"] < 1 or not 0 <= out["seq_start"] <= 255):
        raise FaultError("fault followup: size must be >= 1 and seq_start within 0..255, not %r / %r"
                         % (out["size"], out["seq_start"]))
    ber = out.get("bit_error_rate", 0.0)
    if kind == "unterminated" and (out["cable_length"] < 0 or not 0.0 <= ber <= 0.5):
        raise FaultError("fault unterminated: cable_length must be >= 0 m and bit_error_rate within 0..0.5, "
                         "not %r / %r" % (out["cable_length"], out.get("bit_error_rate")))
    if "keep" in out and not 0.0 <= out["keep"] < 1.0:
        raise FaultError("fault %s: keep must be within 0..1 (exclusive), not %r" % (kind, out["keep"]))
    return out


class FaultSet:
    """The wire and device faults active on one device or one bus, with their own seeded RNG."""

    def __init__(self, seed: int, bus_level: bool = False) -> None:
        self.rng = random.Random(seed)
        self.bus_level = bus_level
        self.active: dict[str, dict] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    def set(self, kind: str, params: dict | None = None) -> dict:
        checked = check(kind, params or {}, self.bus_level)
        with self.lock:
            self.active[kind] = checked
        return checked

    def clear(self, kind: str | None = None) -> None:
        with self.lock:
            if kind is None:
                self.active.clear()
            else:
                self.active.pop(kind, None)

    def listing(self) -> dict:
        with self.lock:
            return {k: dict(v) for k, v in self.active.items()}

    def line(self) -> LineFaults:
        """The physical faults in force (ab_swapped, unterminated, echo) for the wire model."""
        with self.lock:
            return LineFaults("ab_swapped" in self.active,
                              dict(self.active["unterminated"]) if "unterminated" in self.active else None,
                              "echo" in self.active)

    def fires(self, kind: str) -> dict | None:
        """The fault's params when it is active and its rate fires for this request, else None."""
        with self.lock:
            params = self.active.get(kind)
            if params is None:
                return None
            if kind != "bit_flip" and self.rng.random() >= params.get("rate", 1.0):
                return None
            self.hits[kind] = self.hits.get(kind, 0) + 1
            return params

    def apply_wire(self, reply: bytes | None, checksum_at: int) -> tuple[bytes | None, float, bytes]:
        """Apply the wire faults to a reply: (reply or None, extra delay s, noise sent before it).

        `checksum_at` is the index of the CRC / checksum byte to corrupt (-1 Modbus, -2 DL/T 645 and
        CJ/T 188, whose frames end with 16).
        """
        if not self.active or reply is None:
            return reply, 0.0, b""
        if self.fires("no_answer"):
            return None, 0.0, b""
        delay = 0.0
        late = self.fires("late")
        if late:
            delay = float(late["delay"])
        data = bytearray(reply)
        if self.fires("bad_crc"):
            data[checksum_at] ^= 0x5A
        flip = self.fires("bit_flip")
        if flip:
            data = self._flip(data, float(flip["rate"]))
        cut = self.fires("truncate")
        if cut:
            data = data[: max(1, int(len(data) * float(cut["keep"])))]
        noise = b""
        burst = self.fires("noise")
        if burst:
            with self.lock:
                noise = bytes(self.rng.randrange(256) for _ in range(int(burst["length"])))
        return bytes(data), delay, noise

    def _flip(self, data: bytearray, rate: float) -> bytearray:
        """Flip each bit with probability `rate` (per byte: one draw, then which bit)."""
        p_byte = 1.0 - (1.0 - rate) ** 8
        with self.lock:
            for i in range(len(data)):
                if self.rng.random() < p_byte:
                    data[i] ^= 1 << self.rng.randrange(8)
                    self.hits["bit_flip"] = self.hits.get("bit_flip", 0) + 1
        return data
