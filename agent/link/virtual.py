"""The virtual bus: devices in memory on a named bus, and a Link to it (`virtual://NAME`).

Modelled on python-can's `virtual` interface: a bus is found by its name, every link opened on it
talks to the same devices, nothing leaves the process and nothing waits on a thread. A device is any
object with `handle(frame) -> reply bytes | None` (a meter: the parsed request frame; a Modbus unit,
registered under its unit number: the request PDU). Request frames are cut by the protocol's own
server-side reader (`registry.device(protocol).request_reader()`), so the bytes a link sends are
checked exactly as a real device would.

Time is a `VirtualClock`: a link on a virtual bus reads and sleeps on it, so a silent device's
timeout passes at once and a test asserts timing without depending on the machine's load.
`PtyBus` (hil_tests/ptybus.py) puts the same devices behind a real pseudo-terminal for the tests
that need one (the serial link, subprocesses).
"""

from __future__ import annotations

import threading
from typing import Any

from agent.link.base import Link, LinkClosed
from protocols import modbus, registry
from protocols.errors import ProtocolError

__all__ = ["VirtualBus", "VirtualClock", "VirtualLink"]

SCHEME = "virtual://"
_BUSES: dict = {}  # name -> VirtualBus: the buses of this process


class VirtualClock:
    """Monotonic seconds that move only when someone sleeps (or `advance`s) on them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)

    sleep = advance


class VirtualBus:
    """A named bus of in-memory devices; `received` holds every byte sent on it."""

    _buses: dict[str, VirtualBus] = _BUSES
    _lock = threading.Lock()

    def __init__(self, protocol: str = "modbus", name: str | None = None,
                 clock: VirtualClock | None = None) -> None:
        self.protocol = protocol
        self.steps = registry.device(protocol)
        self.silence_framed = registry.family(protocol).silence_framed
        self.devices: dict[Any, Any] = {}
        self.received = bytearray()
        self.clock = clock or VirtualClock()
        self._reader = self.steps.request_reader()
        with VirtualBus._lock:
            if name is None:
                name = "bus%d" % len(VirtualBus._buses)
                while name in VirtualBus._buses:
                    name += "x"
            VirtualBus._buses[name] = self
        self.name = name
        self.path = SCHEME + name  # the port a bus config names

    @classmethod
    def find(cls, port: str) -> VirtualBus:
        bus = cls._buses.get(port[len(SCHEME):])
        if bus is None:
            raise LinkClosed("%s: no such virtual bus" % port)
        return bus

    def feed(self, chunk: bytes) -> bytes:
        """The bytes the devices answer to `chunk` (the requests it completes)."""
        self.received.extend(chunk)
        out = b""
        frames = self._reader.feed(bytes(chunk))
        if self.silence_framed:  # the line goes quiet after each write: a partial frame is dropped
            frames += self._reader.reset() or []
        self._reader.take_errors()
        for frame in frames:
            out += self.answer(frame) or b""
        return out

    def answer(self, frame: Any) -> bytes | None:
        try:
            if isinstance(frame, tuple):  # Modbus RTU (unit, pdu): devices by unit number
                unit, pdu = frame
                device = self.devices.get(unit)
                reply = device.handle(pdu) if device is not None else None
                return modbus.rtu_frame(unit, reply) if reply is not None else None
            for device in self.devices.values():
                reply = device.handle(frame)
                if reply:
                    return bytes(reply)
        except ProtocolError:
            return None
        return None

    def close(self) -> None:
        with VirtualBus._lock:
            VirtualBus._buses.pop(self.name, None)

    def __enter__(self) -> VirtualBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VirtualLink(Link):
    """A link to a `VirtualBus`: what it writes is answered at once; timeouts pass on the bus's clock."""

    def __init__(self, name: str, port: str, timeout: float = 0.5, silence: float = 0.0,
                 turnaround: float = 0.0, pause: float = 0.0, char_time: float = 0.0) -> None:
        Link.__init__(self, name, port, timeout, silence, turnaround, pause, char_time)
        self.bus = VirtualBus.find(port)
        self.clock = self.bus.clock
        self.sleep = self.bus.clock.sleep
        self._rx = b""

    @classmethod
    def from_bus(cls, bus: Any) -> VirtualLink:
        bits = 1 + bus.bytesize + (0 if bus.parity == "N" else 1) + bus.stopbits
        return cls(bus.name, bus.port, timeout=bus.timeout_ms / 1000.0, turnaround=bus.turnaround_ms / 1000.0,
                   pause=bus.pause_ms / 1000.0, char_time=bits / bus.baud)

    def _open(self) -> None:
        self.bus = VirtualBus.find(self.port)
        self._rx = b""

    def _close(self) -> None:
        self._rx = b""

    def _write(self, data: bytes) -> None:
        self._rx += self.bus.feed(bytes(data))

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        if not self._rx:
            self.bus.clock.advance(timeout)  # nothing will come: the wait passes on the virtual clock
            return b""
        out, self._rx = self._rx[:max_bytes], self._rx[max_bytes:]
        return out

    def _discard_input(self) -> int:
        n, self._rx = len(self._rx), b""
        return n
