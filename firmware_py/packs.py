"""Readings into SenML-CBOR packs, packs and alarms into the flash ring (the board's outbox).

Ring records start with one byte naming the topic (0 data, 1 alarm, 2 event), then the CBOR payload;
an alarm or an event is committed after the readings made before it, so they go out in order.
"""

from firmware_py import rt
from firmware_py.pack import PackWriter
from firmware_py.ring import Ring

KIND_DATA = 0
KIND_ALARM = 1
KIND_EVENT = 2


class Packs:
    """The pack being filled and the ring it is committed to."""

    def __init__(self, cfg: dict, hw) -> None:
        r = cfg["ring"]
        self.ring = Ring(hw.open_ring(r["path"], r["slots"], r["slot_size"]), r["slots"], r["slot_size"])
        b = cfg["batch"]
        self.max_records = b["max_records"]
        self.max_age_ms = int(b["max_age"] * 1000)
        size = min(b["max_bytes"], self.ring.max_payload)
        self.writer = PackWriter(size - 1, cfg["gateway"]["base_name"], 4)  # a byte in front for the kind
        self.started = 0  # ticks of the pack's first record

    def add(self, front: bytes, point: bytes, value, now: int) -> bool:
        """One reading (`front` b"<device>/", `point` its name) into the current pack; a full or
        time-jumping pack is committed first. False when the reading fits no pack."""
        w = self.writer
        if w.count >= self.max_records or not w.add_name(front, point, value, now):
            self.commit()
            if not w.add_name(front, point, value, now):
                return False
        if w.count == 1:
            self.started = rt.ticks_ms()
        return True

    def commit(self) -> None:
        """Store the current pack in the flash ring (committed when this returns)."""
        w = self.writer
        if not w.count:
            return
        head = w.pos - len(w.finish())  # 1..3: the pack starts after its kind byte
        w.buf[head - 1] = KIND_DATA
        self.ring.append(w.view[head - 1 : w.pos])
        w.reset()

    def commit_if_old(self) -> None:
        """Commit a pack older than the batch's max_age."""
        if self.writer.count and rt.ticks_diff(rt.ticks_ms(), self.started) >= self.max_age_ms:
            self.commit()

    def add_alarm(self, payload: bytes) -> None:
        """An alarm record, after the readings made before it."""
        self.commit()
        self.ring.append(b"\x01" + payload)

    def add_event(self, payload: bytes) -> None:
        """An event record (a lighting schedule's switching), after the readings made before it."""
        self.commit()
        self.ring.append(b"\x02" + payload)
