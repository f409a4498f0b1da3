"""MQTT reconnect backoff with jitter (firmware_py.mqtt.Backoff), as the agent's publisher waits:
d = min(reconnect_max, reconnect_min * 2**failures), failures since the last session that reached
CONNACK, the delay drawn from [d/2, d]. The random source is injected, so the schedule is exact; the
same schedule under genuine MicroPython, whose `random` is seeded per board (client id, clock).
"""

from __future__ import annotations

import json
import random

from agent.publisher import backoff_delay
from firmware_py.mqtt import JITTER_BITS, Backoff, jitter_bits
from firmware_py.tests import mpvm

ONE = 1 << JITTER_BITS


class Draws:
    """A getrandbits that hands out given values (and records what was asked)."""

    def __init__(self, values: list[int]) -> None:
        self.values = list(values)
        self.asked: list[int] = []

    def __call__(self, n: int) -> int:
        self.asked.append(n)
        return self.values.pop(0)


# (session up?, draw) -> delay ms, for reconnect_min 1 s, reconnect_max 60 s
SCHEDULE = [
    (True, 0, 500),  # a session ended: from reconnect_min, lower half bound
    (False, 0, 1000),  # attempt 1 failed: d = 2 s
    (False, ONE // 2, 3000),  # d = 4 s, the middle of [2, 4]
    (False, 0, 4000),  # d = 8 s
    (False, ONE - 1, 15992),  # d = 16 s, just under the top
    (False, 0, 16000),  # d = 32 s
    (False, 0, 30000),  # capped: d = 60 s
    (False, ONE // 4, 37500),
    (True, 0, 500),  # reached CONNACK again: back to reconnect_min
    (False, 0, 1000),
]


def test_schedule_with_an_injected_random_source():
    draws = Draws([draw for _up, draw, _ms in SCHEDULE])
    b = Backoff(1000, 60000, draws)
    assert [b.next_ms(up) for up, _draw, _ms in SCHEDULE] == [ms for _up, _draw, ms in SCHEDULE]
    assert draws.asked == [JITTER_BITS] * len(SCHEDULE) and b.last_ms == 1000


def test_bounds_are_the_agents():
    """Every delay lies in the agent's [d/2, d] for the same failure count, whatever the draw."""
    for draw in (0, 1, ONE // 3, ONE - 1):
        b = Backoff(200, 5000, lambda _n, draw=draw: draw)
        for failures in range(12):
            ms = b.next_ms(failures == 0)
            lo = backoff_delay(failures, 0.2, 5.0, _Fixed(0.0)) * 1000
            hi = backoff_delay(failures, 0.2, 5.0, _Fixed(1.0)) * 1000
            assert lo - 1e-6 <= ms <= hi + 1e-6, (draw, failures, ms, lo, hi)


class _Fixed(random.Random):
    """uniform(a, b) at a fixed fraction of the way from a to b."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def test_a_street_of_gateways_does_not_reconnect_in_lockstep():
    """Forty gateways lose the broker at the same moment (same clock): their retries spread out."""
    firsts = []
    for i in range(40):
        b = Backoff(1000, 60000, jitter_bits("fieldlink-street-gw%02d" % i))
        b.next_ms(True)
        firsts.append([b.next_ms(False) for _ in range(3)])
    for attempt in range(3):
        delays = sorted(f[attempt] for f in firsts)
        d = 2000 << attempt
        assert d // 2 <= delays[0] and delays[-1] <= d
        assert len(set(delays)) >= 30, delays  # not in lockstep
        assert delays[-1] - delays[0] >= d // 4, delays  # spread over the window
    same = [Backoff(1000, 60000, random.Random(7).getrandbits) for _ in range(2)]
    assert [same[0].next_ms(False) for _ in range(5)] == [same[1].next_ms(False) for _ in range(5)]


@mpvm.needs_vm
def test_the_same_schedule_under_micropython():
    draws = [draw for _up, draw, _ms in SCHEDULE]
    res = mpvm.run("""
import json, hostio
from firmware_py.mqtt import Backoff, jitter_bits
draws = %s
ups = %s
b = Backoff(1000, 60000, lambda n: draws.pop(0))
out = [b.next_ms(up) for up in ups]
street = []
for i in range(20):
    r = Backoff(1000, 60000, jitter_bits("fieldlink-street-gw%%02d" %% i))
    street.append(r.next_ms(False))
hostio.emit(json.dumps({"schedule": out, "street": street}))
""" % (json.dumps(draws), json.dumps([up for up, _d, _ms in SCHEDULE]).replace("true", "True")
       .replace("false", "False")), packages=("firmware_py",), timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    got = res.values()[0]
    assert got["schedule"] == [ms for _up, _draw, ms in SCHEDULE]
    street = got["street"]
    assert all(1000 <= ms <= 2000 for ms in street) and len(set(street)) >= 15, street
