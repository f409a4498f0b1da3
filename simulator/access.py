"""One way into a bus: the pty, or one RFC 2217 / raw TCP connection.

Each access frames its own client's requests (one client's partial request is never mixed with
another's), times its own bursts, and has its own wire (simulator/wire.py) between its client's UART
and the devices'. Every access hears everything on the bus through that wire: the devices' replies and
the other clients' requests, as the nodes of an RS-485 line do (two masters hear each other).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simulator.line import Delivery
from simulator.servers import reader_for, reader_key
from simulator.uart import Framing
from simulator.wire import LineFaults, Wire

if TYPE_CHECKING:
    from simulator.bus import Bus


class Access:
    """A client attached to a bus: `receive` what it sends, `idle` when it is quiet, `hear` the line."""

    def __init__(self, bus: Bus, name: str, write: Callable[[bytes], int], client: Framing | None = None,
                 seed: int = 0, peer: str = "", write_now: Callable[[bytes], int] | None = None) -> None:
        self.bus = bus
        self.name = name
        self.peer = peer
        self.write = write  # replies to this client's own requests
        self.write_now = write_now or write  # what it overhears: never waits (nobody may be reading)
        self.wire = Wire(bus.line.settings, client, seed, bus.uart_errors)
        self.readers: dict[str, Any] = {}
        for d in bus.devices:
            key = reader_key(d.protocol)
            if key not in self.readers:
                self.readers[key] = reader_for(d.protocol)
        self.gap = max(bus.line.frame_gap(k) for k in self.readers) if self.readers else 0.5
        self.since = time.time()
        self.handled = 0  # bytes from the client whose requests have been answered (or not) in full
        self._burst_start = 0.0
        self._burst_bytes = 0
        self._last_rx = 0.0
        self._dirty = False

    def wire_time(self, nbytes: int) -> float:
        """Time `nbytes` of this client take on the line at its own settings (0 when instant)."""
        return 0.0 if self.bus.line.instant else nbytes * self.wire.client.char_time

    def receive(self, chunk: bytes, now: float) -> None:
        """Bytes the client sent: the other clients hear them, the devices get what their UARTs make
        of them, and each complete request goes to the bus's devices."""
        faults = self.bus.faults.line()
        self.bus.overhear(self, chunk, faults)
        data = self.wire.to_devices(chunk, faults)
        if self._burst_bytes == 0 or now - self._last_rx > self.bus.line.silence_gap():
            self._burst_start, self._burst_bytes = now, 0
        self._burst_bytes += len(chunk)
        self._last_rx = now
        self._dirty = True
        found = [(key, reader.feed(data)) for key, reader in self.readers.items()] if data else []
        for key, frames in found:
            if frames and len(self.readers) > 1:
                self._resync_others(key)
        for key, frames in found:
            self.bus.count_errors(self.readers[key])
            for frame in frames:
                end = max(time.monotonic(), self._burst_start + self.wire_time(self._burst_bytes))
                self._burst_bytes = 0
                self.bus.handle(self, key, frame, end)
        self.handled += len(chunk)

    def idle(self, now: float) -> None:
        """Nothing arrived for a while: a silence longer than the frame gap ends a partial request."""
        if not self._dirty or now - self._last_rx <= self.gap:
            return
        self._dirty = False
        for key, reader in self.readers.items():
            frames = reader.reset() or []
            self.bus.count_errors(reader)
            for frame in frames:
                self.bus.handle(self, key, frame, now)

    def hear(self, data: bytes, faults: LineFaults, sender: Framing | None = None, across: bool = True,
             asked: bool = False) -> Delivery:
        """What this client receives of a transmission on the bus (a device's by default); `asked`:
        the reply to its own request."""
        out, offsets = self.wire.to_client(data, faults, sender, across)
        return (self.write if asked else self.write_now, out, offsets)

    def rest(self, faults: LineFaults) -> None:
        """The line's faults changed (or this client just came): what its UART sees of the resting line."""
        out = self.wire.rest(faults)
        if out:
            self.write_now(out)

    def _resync_others(self, key: str) -> None:
        """A frame of one protocol was found: what the other readers hold was that frame, not theirs."""
        for other, reader in self.readers.items():
            if other != key:
                reader.reset()
                reader.take_errors()

    def describe(self) -> dict:
        info = self.wire.snapshot()
        info.update({"name": self.name, "peer": self.peer, "since": self.since, "handled": self.handled})
        return info
