"""Alarms on the board: threshold rules, point quality and comms, as maps into the ring.

The rules are protocols/rules.py, the quality rule protocols/quality.py and the alarm map
protocols/alarms.py: the agent's, so both gateways raise and clear the same alarms. Quality state is
one byte per polled point (its quality code, 0 good) and a count of bad answers per point.
"""

import array

from firmware_py import clock
from protocols import alarms, cbor, quality


class Alarms:
    """Rules and point quality of one gateway; alarms go into `packs` (the ring)."""

    def __init__(self, inv, packs, counters: dict, boot: int = 0) -> None:
        self.inv = inv
        self.packs = packs
        self.counters = counters
        self.boot = boot  # alarms are numbered boot * 65536 + alarms since boot (firmware_py/boots.py)
        self.count = 0
        slots = len(inv.points)  # one slot per polled point of each device (inventory.points)
        self.quality = bytearray(slots)  # quality code of each point; 0: good
        self.bad_answers = array.array("H", bytes(2 * slots))  # answers without a value, per point

    def check_rules(self, d: int, ni: int, value, now: int) -> None:
        """The shared alarm rules: an alarm when one starts or ends."""
        for rd, rn, rule in self.inv.rules:
            if rd == d and rn == ni:
                change = rule.update(value)
                if change is not None:
                    self.alarm(d, rule.point, rule.kind, value, change, now)

    def alarm(self, d: int, point, kind: str, value, raised: bool, now: int) -> None:
        """An alarm map (the agent's) into the ring, after the readings made before it."""
        self.count += 1
        n = (self.boot << 16) + (self.count & 0xFFFF)
        msg = alarms.alarm(self.inv.device_id(d), point, kind, value, raised, clock.stamp(now), n)
        self.packs.add_alarm(cbor.dumps(msg), not clock.is_set(now))
        self.counters["alarms"] += 1

    def point_quality(self, d: int, k: int, text, now: int) -> None:
        """From the bus: point slot `k` of device `d` answered without a value (`text` says why), or
        gave a good value after bad ones (None). An alarm on each change (the shared rule): raised
        with the quality text, cleared with "good"; repeated bad answers are only counted."""
        q = self.quality
        if text is not None and self.bad_answers[k] < 0xFFFF:
            self.bad_answers[k] += 1
        change = quality.change(q[k] != 0, text)
        if change == quality.CLEARED:
            q[k] = 0
            self.alarm(d, self.inv.name(self.inv.points[k]), "quality", quality.GOOD_VALUE, False, now)
        elif change == quality.RAISED:
            q[k] = quality.code(text)
            self.alarm(d, self.inv.name(self.inv.points[k]), "quality", text, True, now)
