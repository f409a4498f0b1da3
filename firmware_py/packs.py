"""Readings into SenML-CBOR packs, packs and alarms into the flash ring (the board's outbox).

Ring records start with one byte naming the topic (0 data, 1 alarm, 2 event), then the CBOR payload;
an alarm or an event is committed after the readings made before it, so they go out in order.

What was recorded while the board's clock was not set (firmware_py/clock.py) carries times from
2000-01-01: its kind byte has `UNTIMED` set and two bytes of the boot's number (little-endian) follow,
so that the uplink can mend those times once NTP set the clock in the same boot (`untimed`). A pack
holds readings of one kind only: the first reading after the clock was set starts a new one.

A data pack committed while the uplink publishes it at once (`defer`, set by the uplink: connected, not
waiting for NTP) and nothing else waits in the ring is kept in RAM (firmware_py/ring.py `append` with
`defer`): it leaves on its PUBACK without touching the flash, and is written only if that PUBACK is
`WRITE_WITHIN_MS` late (`write_late`, from the main loop) or another record comes first.
"""

from firmware_py import clock, rt
from firmware_py.pack import PackWriter
from firmware_py.ring import Ring

KIND_DATA = 0
KIND_ALARM = 1
KIND_EVENT = 2
UNTIMED = 0x80  # kind flag: times from an unset clock; the boot's number (u16 LE) follows
_FRONT = 3  # room in front of a pack: its kind and a boot number
WRITE_WITHIN_MS = 1000  # a data pack kept in RAM is written to flash once its PUBACK is this late


class Packs:
    """The pack being filled and the ring it is committed to."""

    def __init__(self, cfg: dict, hw) -> None:
        r = cfg["ring"]
        self.ring = Ring(hw.open_ring(r["path"], r["slots"], r["slot_size"]), r["slots"], r["slot_size"])
        b = cfg["batch"]
        self.max_records = b["max_records"]
        self.max_age_ms = int(b["max_age"] * 1000)
        size = min(b["max_bytes"], self.ring.max_payload)
        self.writer = PackWriter(size - _FRONT, cfg["gateway"]["base_name"], 3 + _FRONT)
        self.started = 0  # ticks of the pack's first record
        self.untimed = False  # the pack being filled has times from an unset clock
        self.boot = 0  # this boot's number (firmware_py/boots.py), for records with UNTIMED
        self.untimed_alarm = False  # an alarm was recorded with an unset clock's time in this boot
        self.defer = None  # the uplink's: True while a pack committed now is published at once
        self.fresh_since = 0  # ticks the pack kept in RAM was committed

    def add(self, front: bytes, point: bytes, value, now: int) -> bool:
        """One reading (`front` b"<device>/", `point` its name) taken when the board's clock read
        `now` into the current pack; a full or time-jumping pack, or one of the other kind (clock set
        or not), is committed first. False when the reading fits no pack."""
        w = self.writer
        untimed = not clock.is_set(now)
        t = clock.stamp(now)
        if w.count and untimed != self.untimed:
            self.commit()
        if w.count >= self.max_records or not w.add_name(front, point, value, t):
            self.commit()
            if not w.add_name(front, point, value, t):
                return False
        if w.count == 1:
            self.started = rt.ticks_ms()
            self.untimed = untimed
        return True

    def commit(self) -> None:
        """Store the current pack in the flash ring (committed when this returns)."""
        w = self.writer
        if not w.count:
            return
        head = w.pos - len(w.finish())  # 3..5: the pack starts after its kind byte (and boot)
        defer = self.defer is not None and self.defer()
        front = self._front(KIND_DATA, self.untimed, w.buf, head)
        seq = self.ring.append(w.view[head - front : w.pos], defer)
        if seq == self.ring.fresh_seq:
            self.fresh_since = rt.ticks_ms()
        w.reset()

    def write_late(self) -> None:
        """Write the pack kept in RAM to flash once its PUBACK is `WRITE_WITHIN_MS` late."""
        if self.ring.fresh_seq and rt.ticks_diff(rt.ticks_ms(), self.fresh_since) >= WRITE_WITHIN_MS:
            self.ring.write_fresh()

    def _front(self, kind: int, untimed: bool, buf, head: int) -> int:
        """Write the record's kind (and boot) into `buf` just before `head`; how many bytes."""
        if not untimed:
            buf[head - 1] = kind
            return 1
        buf[head - 3] = kind | UNTIMED
        buf[head - 2] = self.boot & 0xFF
        buf[head - 1] = (self.boot >> 8) & 0xFF
        return 3

    def commit_if_old(self) -> None:
        """Commit a pack older than the batch's max_age."""
        if self.writer.count and rt.ticks_diff(rt.ticks_ms(), self.started) >= self.max_age_ms:
            self.commit()

    def add_alarm(self, payload: bytes, untimed: bool = False) -> None:
        """An alarm record, after the readings made before it; `untimed`: its time is an unset
        clock's (`clock.stamp`)."""
        self.commit()
        if untimed:
            self.untimed_alarm = True
        front = bytearray(3)
        n = self._front(KIND_ALARM, untimed, front, 3)
        self.ring.append(bytes(front[3 - n :]) + payload)

    def add_event(self, payload: bytes) -> None:
        """An event record (a lighting schedule's switching), after the readings made before it."""
        self.commit()
        self.ring.append(b"\x02" + payload)
