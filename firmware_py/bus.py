"""One RS-485 bus: run the protocols' device steps over the UART, with their timeouts and silences.

The compiled config carries, per device, its requests ready to send and per request the points as
indexes into the shared decode specs (see firmware_py/inventory.py), so the board does no planning.
What a read, a write or an action does on the wire is the protocol's sans-I/O device steps
(`protocols/<protocol>/device.py`, found through `protocols.registry`): the same code the agent's
driver runs. Each step yields a frame and which reply is its answer; `run` sends it, reads the reply
and sends it back into the step (no reply: `NoReply` is thrown in). DL/T 645 follow-ups, block
members, CJ/T 188 unit codes, Modbus register decoding, writes with read-back and the DL/T 645 relay
actions all live in those steps.

Point quality (as agent/scheduler.py): a point the device answered for without a usable value (DL/T
645 all-FF "not_available", non-BCD "bad_bcd", a block member the reply does not reach, a CJ/T 188
field with bad BCD or in another unit) is no reading. While polling (`track`), each such answer goes
to `on_quality(d, k, text, now)` (k: the point's slot, its index in `inv.points`), and so does the
first good value of a point whose slot in `quality` is not 0 (text None). A failed transaction
(timeout, CRC, ...) reports nothing: it is a comms matter.
"""

from firmware_py import log, rt
from protocols import quality
from protocols.errors import NoReply, ProtocolError, WriteRefused, error_kind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FAILED", "OK", "TIMEOUT", "UartBus", "WriteRefused"]

OK = 0  # a request's outcome
FAILED = 1  # the device answered with an error (exception, abnormal reply, bad frame)
TIMEOUT = 2  # no reply


class UartBus:
    """Serialised transactions on one UART with the protocol's timeouts and silences."""

    def __init__(self, spec: dict, uart, stats: dict) -> None:
        self.name = spec["name"]
        self.uart = uart
        self.timeout_ms = spec.get("timeout_ms", 500)
        self.turnaround_ms = spec.get("turnaround_ms", 0)
        self.pause_ms = spec.get("pause_ms", 0)
        baud = spec.get("baud", 9600)
        self.gap_ms = max(2, (11 * 35 * 1000) // (10 * baud) + 1)  # t3.5, rounded up
        self.devices = bytearray()  # device indexes, in poll order
        self.jobs: list = []  # commands waiting for the line
        self.rx = bytearray(256)
        self.stats = stats
        self.readers: dict = {}  # protocol folder -> its reply frame reader on this bus
        self.seq = 0  # sequence numbers of the steps (CJ/T 188 SER)
        self.quality: Any = None  # the gateway's quality code per point slot (bytearray), if it tracks
        self.on_quality: Any = None  # callable(d, k, text or None, now)

    def reader(self, inv, d: int):
        """The reply frame reader of device `d`'s protocol on this bus (made once, at start)."""
        key = inv.folder(d)
        r = self.readers.get(key)
        if r is None:
            r = inv.steps(d).reader(inv.options[d])
            self.readers[key] = r
        return r

    def _count(self, kind: str) -> None:
        self.stats[kind] = self.stats.get(kind, 0) + 1

    async def transact(self, frame, reader, accept):
        """Write `frame` and return the first reply frame `accept(frame)` takes, or None on timeout."""
        if self.turnaround_ms or self.pause_ms:
            await rt.sleep_ms(self.turnaround_ms + self.pause_ms)
        else:
            await rt.sleep_ms(self.gap_ms)
        reader.reset()
        reader.take_errors()
        uart = self.uart
        while uart.readinto(self.rx) > 0:  # stale bytes from a late reply
            pass
        await uart.write(frame)
        deadline = rt.ticks_add(rt.ticks_ms(), self.timeout_ms)
        view = memoryview(self.rx)
        while rt.ticks_diff(deadline, rt.ticks_ms()) > 0:
            n = uart.readinto(self.rx)
            if n > 0:
                for f in reader.feed(bytes(view[:n])):
                    if accept(f):
                        return f
                if reader.errors:
                    self.stats["frame"] += len(reader.take_errors())
            else:
                await rt.sleep_ms(2)
        return None

    async def run(self, inv, d: int, step) -> "Any":
        """Drive one step generator of device `d` over the UART; its return value. A silent device
        is a `NoReply` thrown into the step (which may catch it, e.g. for a read-back)."""
        reader = self.reader(inv, d)
        try:
            out = step.send(None)
            while True:
                reply = await self.transact(out[0], reader, out[1])
                if reply is None:
                    out = step.throw(NoReply("no reply within %d ms" % self.timeout_ms))
                else:
                    out = step.send(reply)
        except StopIteration as stop:
            return stop.value

    def _next_seq(self) -> int:
        self.seq = (self.seq + 4) & 0xFFFF  # a step may use seq .. seq + 3
        return self.seq

    # -- polling -----------------------------------------------------------------------------------
    async def request(self, inv, d: int, r: int, sink, now: int, track: bool = False) -> int:
        """Run request `r` of device `d`; readings go to `sink(d, spec, value, now)`. OK, FAILED or
        TIMEOUT; errors are counted by kind (protocols.errors.error_kind, as the agent). `track`: a
        poll, whose point quality is followed (a command's read is not)."""
        self.stats["polls"] += 1
        track = track and self.on_quality is not None
        pts = inv.points
        first = inv.points_at[r]
        specs = inv.specs
        mine = [specs[pts[k]] for k in range(first, inv.points_at[r + 1])]

        def emit(i: int, value, bad) -> None:
            k = first + i
            if bad is None:
                if track and self.quality[k]:
                    self.on_quality(d, k, None, now)  # a point that was bad is good again
                sink(d, pts[k], value, now)
                return
            self._count("decode" if quality.is_decode(bad) else "quality")
            if track:
                self.on_quality(d, k, bad, now)

        step = inv.steps(d).read(inv.device_id(d), inv.address[d], inv.options[d], inv.frame(r), mine,
                                 self._next_seq(), emit)
        try:
            await self.run(inv, d, step)
        except NoReply:
            self._count("timeout")
            if log.level <= log.DEBUG:
                log.debug("bus %s: %s no reply" % (self.name, inv.device_id(d)))
            return TIMEOUT
        except ProtocolError as exc:
            kind = error_kind(exc)
            self._count(kind)
            log.warning("bus %s: %s %s: %s" % (self.name, inv.device_id(d), kind, exc))
            return FAILED
        return OK

    # -- commands ----------------------------------------------------------------------------------
    async def write(self, inv, d: int, ws: tuple, value) -> "Any":
        """Write `value` to the point of write spec `ws` (already checked against the profile's
        limits); returns the value read back (None when the read-back failed). ProtocolError when the
        device refused or did not answer the write; WriteRefused when it cannot be written at all."""
        name = inv.names[ws[0]].decode()
        step = inv.steps(d).write(inv.device_id(d), inv.address[d], inv.options[d], name, ws[4:], value,
                                  self._next_seq())
        return await self.run(inv, d, step)

    async def broadcast(self, frame, idle_ms: int) -> None:
        """Send `frame` to every device of the line at once (no device answers it; the protocol's
        `broadcast` built it), then keep the line idle for `idle_ms` so each has acted on it."""
        if self.turnaround_ms or self.pause_ms:
            await rt.sleep_ms(self.turnaround_ms + self.pause_ms)
        else:
            await rt.sleep_ms(self.gap_ms)
        while self.uart.readinto(self.rx) > 0:  # stale bytes from a late reply
            pass
        await self.uart.write(frame)
        await rt.sleep_ms(idle_ms)

    def check_action(self, inv, d: int, name) -> None:
        """Nothing when device `d` may run action `name` (its profile lists it, its protocol can);
        WriteRefused saying why not: nothing is sent."""
        inv.check_action(d, name)
        inv.steps(d).check_action(inv.device_id(d), inv.options[d], name)

    async def action(self, inv, d: int, name: str, until: tuple) -> "Any":
        """Run an action (checked first); the state read back, or None."""
        self.check_action(inv, d, name)
        step = inv.steps(d).action(inv.device_id(d), inv.address[d], inv.options[d], name, until,
                                   self._next_seq())
        return await self.run(inv, d, step)
