"""The batcher: groups readings into packs by record count, encoded size and age.

``add()`` may be called from any thread (every bus scheduler). A pack is closed when it holds
``max_records`` readings, when its estimated encoding reaches ``max_bytes`` or, on ``tick()``, when
its oldest reading waited ``max_age`` seconds. Closed packs are encoded with the gateway's payload
profile and handed to ``sink(payload, records)`` -- the outbox -- under the batcher's lock, so packs
reach the outbox in the order their readings were added.

A pack whose real encoding exceeds ``max_bytes`` is split in halves until each part fits (or holds
one reading). A reading the encoder refuses (a value type SenML cannot carry, a point missing from
the birth in the compact profile) is logged, counted in ``rejected`` and left out; the rest of its
pack is published.

While the uplink is idle one thread closes packs for latency (``close_due``, the network thread): at the
open pack's ``idle_due`` (``linger`` after its oldest reading was taken) or, while readings stream in,
``linger`` after it closed the previous pack, whichever comes first, so no reading waits longer than
``linger`` and a stream costs that thread one wake-up per pack. ``add`` returns True only when the
open pack falls due before that thread said it would look again: the caller then wakes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from protocols.errors import ProtocolError

log = logging.getLogger(__name__)

Reading = tuple[str, str, Any, float]
Encoder = Callable[[list], bytes]
Sink = Callable[[bytes, int], Any]

_RECORD_OVERHEAD = 24  # map head, labels, a double value and a time offset
_NEVER = float("inf")


def estimate(reading: Reading) -> int:
    """Upper-bound guess of the encoded size of one reading in a SenML pack."""
    device, point, value, _ = reading
    size = len(device) + len(point) + _RECORD_OVERHEAD
    if isinstance(value, (str, bytes, bytearray)):
        size += len(value)
    return size


class Batcher:
    """Thread-safe grouping of readings into encoded packs (see module docstring)."""

    def __init__(
        self,
        encode: Encoder,
        sink: Sink,
        max_records: int = 200,
        max_bytes: int = 16 * 1024,
        max_age: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        linger: float = 0.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if max_records < 1 or max_bytes < 64 or max_age < 0:
            raise ValueError("batch limits must be positive (max_records >= 1, max_bytes >= 64)")
        self.encode = encode
        self.sink = sink
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        #: how long a fresh reading may wait for others while the uplink is idle, from the reading's own
        #: time (`idle_due`); readings older than that when they arrive make the pack due at once
        self.linger = linger
        self.wall = wall  # the clock of the readings' times
        self._lock = threading.Lock()
        self._pending: list[Reading] = []
        self._size = 0
        self._since = 0.0
        self._idle_due = 0.0
        # when the idle closer looks next (`close_due`): +inf = only when woken, -inf = the uplink is not
        # idle (whoever makes it idle looks then); `add` returns True when the open pack is due sooner
        self._look = _NEVER
        self._tick = _NEVER  # while readings stream: `linger` after the closer's last pack
        self.counters = {"readings": 0, "packs": 0, "rejected": 0, "unstored": 0, "bytes": 0}

    def add(self, readings: list[Reading] | tuple[Reading, ...]) -> bool:
        """Queue readings; closes packs that reach the record or byte limit. True when the open pack's
        `idle_due` is now earlier than the idle closer said it would look (`close_due`): the caller
        wakes it. A pack that opens while the closer looks at the next tick anyway says nothing."""
        opened = False
        with self._lock:
            self.counters["readings"] += len(readings)
            for reading in readings:
                value = reading[2]
                size = len(reading[0]) + len(reading[1]) + _RECORD_OVERHEAD  # `estimate`, inline
                if type(value) is not float and type(value) is not int \
                        and isinstance(value, (str, bytes, bytearray)):
                    size += len(value)
                if self._size + size > self.max_bytes and self._pending:
                    self._close()
                if not self._pending:
                    self._since = self.clock()
                    opened = True
                self._pending.append(reading)
                self._size += size
                if len(self._pending) >= self.max_records:
                    self._close()
            if self._pending and readings:
                # the oldest reading of this call sets when the pack is due while idle: `linger` after
                # that reading was taken (a poll's readings come in time order; min() costs little)
                late = self.wall() - min(r[3] for r in readings)  # < 0 after the clock was set back
                due = self.clock() + min(self.linger, max(0.0, self.linger - late))
                if opened or due < self._idle_due:
                    self._idle_due = due
                if self._idle_due < self._look:
                    self._look = self._idle_due  # told once: later readings due no sooner say nothing
                    return True
            return False

    def close_due(self, idle: bool) -> float | None:
        """The idle closer's turn (module docstring): while `idle`, close the open pack if it is due;
        return when (on `clock`) to look again, None when an `add` returning True will say so."""
        with self._lock:
            if not idle:
                self._look = -_NEVER
                return None
            now = self.clock()
            if self._pending and now >= min(self._idle_due, self._tick):
                self._close()
                self._tick = now + self.linger
            if self._pending:
                look = min(self._idle_due, self._tick)
            elif self._tick > now:
                look = self._tick
            else:
                look = self._tick = _NEVER  # the stream stopped: the next pack's opening says so
            self._look = look
            return None if look == _NEVER else look

    def tick(self) -> bool:
        """Close the open pack if its oldest reading is `max_age` old; True if one was closed."""
        with self._lock:
            if self._pending and self.clock() - self._since >= self.max_age:
                self._close()
                return True
        return False

    def due(self) -> float | None:
        """When (on `clock`) the open pack reaches `max_age`; None when no pack is open."""
        with self._lock:
            return self._since + self.max_age if self._pending else None

    def idle_due(self) -> float | None:
        """When (on `clock`) the open pack should close while the uplink is idle: `linger` after its
        oldest reading was taken; None when no pack is open."""
        with self._lock:
            return self._idle_due if self._pending else None

    def flush(self) -> None:
        """Close the open pack now, whatever its age."""
        with self._lock:
            if self._pending:
                self._close()

    @property
    def pending(self) -> int:
        """Readings waiting in the open pack."""
        return len(self._pending)

    def _close(self) -> None:
        batch, self._pending, self._size = self._pending, [], 0
        self._emit(batch)

    def _emit(self, batch: list[Reading]) -> None:
        try:
            payload = self.encode(batch)
        except (ProtocolError, TypeError, ValueError) as exc:
            if len(batch) == 1:
                self.counters["rejected"] += 1
                device, point, value, _ = batch[0]
                log.error("batcher: reading %s/%s = %r left out: %s", device, point, value, exc)
                return
            self._split(batch)
            return
        if len(payload) > self.max_bytes and len(batch) > 1:
            self._split(batch)
            return
        try:
            self.sink(payload, len(batch))
        except Exception as exc:  # disk full, read-only file system: counted, never silent
            self.counters["unstored"] += len(batch)
            log.error("batcher: a pack of %d readings could not be stored: %s", len(batch), exc)
            return
        self.counters["packs"] += 1
        self.counters["bytes"] += len(payload)

    def _split(self, batch: list[Reading]) -> None:
        half = len(batch) // 2
        self._emit(batch[:half])
        self._emit(batch[half:])


def by_device(readings: list[Reading]) -> list[Reading]:
    """The readings grouped by device (first appearance first), each device's in their own order: a SenML
    pack then names each device once in its base name (buses poll in parallel and interleave)."""
    groups: dict[str, list[Reading]] = {}  # in order of first appearance (dicts keep insertion order)
    for reading in readings:
        group = groups.get(reading[0])
        if group is None:
            groups[reading[0]] = [reading]
        else:
            group.append(reading)
    if len(groups) < 2:
        return readings
    out: list[Reading] = []
    for group in groups.values():
        out += group
    return out


def make_encoder(profile: str, birth: dict) -> Encoder:
    """The pack encoder of a payload profile: ``senml`` (a base name per device, no units; readings
    grouped by device) or ``compact`` (aliases)."""
    if profile == "senml":
        from protocols import senml

        base_name = birth["base_name"]
        return lambda readings: senml.encode(by_device(readings), base_name)
    if profile == "compact":
        from protocols import birth as birth_msg
        from protocols import compact

        table = birth_msg.alias_table(birth)
        return lambda readings: compact.encode(readings, table)
    raise ValueError("payload profile must be 'senml' or 'compact', not %r" % profile)


__all__ = ["Batcher", "Reading", "by_device", "estimate", "make_encoder"]
