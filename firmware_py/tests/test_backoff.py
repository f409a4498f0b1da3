"""MQTT reconnect delays of the firmware (firmware_py.mqtt.Backoff): the agent's failover schedule for one
endpoint (agent/endpoints.py Failover). After a session ends, a point of [0, reconnect_min]; a broker
that worked and now refuses TCP is probed every [probe/2, probe] for probe_window, then the delay
doubles up to reconnect_max; other failures back off from reconnect_min. The random source and the
clock are injected, so the schedule is exact; the same schedule under genuine MicroPython, whose
`random` is seeded per board (client id, clock).
"""

from __future__ import annotations

import json
import random

from agent.config_model import BrokerConfig, Endpoint
from agent.endpoints import Failover
from firmware_py.mqtt import JITTER_BITS, REFUSED, UNREACHABLE, UP, Backoff, jitter_bits
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


class Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


# (outcome, draw, clock ms before the call) -> delay ms; reconnect 1..60 s, probe 1.5 s for 10 s
SCHEDULE = [
    (REFUSED, 0, 0, 500),  # never up: exponential from reconnect_min, [0.5, 1] s
    (REFUSED, ONE // 2, 500, 1500),  # d = 2 s, the middle of [1, 2]
    (UP, ONE // 2, 2000, 500),  # a session ended: a point of [0, 1] s
    (UNREACHABLE, 0, 2500, 750),  # known good, unreachable: probed, [0.75, 1.5] s
    (UNREACHABLE, ONE - 1, 3250, 1499),
    (UNREACHABLE, 0, 9000, 750),  # still within the 10 s window
    (UNREACHABLE, 0, 12600, 1500),  # past it: d = 3 s
    (UNREACHABLE, 0, 14100, 3000),  # d = 6 s
    (REFUSED, 0, 17100, 16000),  # the port answers, the broker refuses: 6th failure, d = 32 s
    (UP, 0, 34000, 0),
    (REFUSED, 0, 34000, 500),  # failures count from the last session again
]


def run(schedule: list) -> tuple[list[int], Draws]:
    clock = Clock()
    draws = Draws([draw for _o, draw, _t, _ms in schedule])
    b = Backoff(1000, 60000, draws, 1500, 10000, clock)
    out = []
    for outcome, _draw, t, _ms in schedule:
        clock.ms = t
        out.append(b.next_ms(outcome))
    return out, draws


def test_schedule_with_an_injected_random_source_and_clock():
    got, draws = run(SCHEDULE)
    assert got == [ms for _o, _d, _t, ms in SCHEDULE]
    assert draws.asked == [JITTER_BITS] * len(SCHEDULE)


class _Fixed(random.Random):
    """uniform(a, b) at a fixed fraction of the way from a to b."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def agent_bounds(schedule: list) -> list[tuple[float, float]]:
    """The agent's delay range (ms) after each outcome of `schedule`, one endpoint."""
    out = []
    for at in (0.0, 1.0):
        clock = Clock()
        ep = Endpoint(url="mqtt://b:1883", host="b", port=1883)
        f = Failover([ep], BrokerConfig(reconnect_min=1.0, reconnect_max=60.0, probe_interval=1.5,
                                        probe_window=10.0), rng=_Fixed(at), clock=lambda c=clock: c() / 1000)
        delays = []
        for outcome, _draw, t, _ms in schedule:
            clock.ms = t
            if outcome == UP:
                f.up(ep)
                f.ended(ep)
                delays.append(f.state(ep).next_try * 1000 - t)
            else:
                delays.append(f.failed(ep, "unreachable" if outcome == UNREACHABLE else "refused") * 1000)
        out.append(delays)
    return list(zip(out[0], out[1], strict=True))


def test_every_delay_lies_in_the_agents_range():
    bounds = agent_bounds(SCHEDULE)
    for draw in (0, 1, ONE // 3, ONE - 1):
        schedule = [(o, draw, t, ms) for o, _d, t, ms in SCHEDULE]
        got, _ = run(schedule)
        for (lo, hi), ms, step in zip(bounds, got, schedule, strict=True):
            assert lo - 1 <= ms <= hi + 1, (draw, step, ms, lo, hi)


def test_a_street_of_gateways_does_not_reconnect_in_lockstep():
    """Forty gateways lose the broker at the same moment (same clock): their retries spread out."""
    firsts = []
    for i in range(40):
        clock = Clock()
        b = Backoff(1000, 60000, jitter_bits("fieldlink-street-gw%02d" % i), 1500, 300000, clock)
        after_loss = b.next_ms(UP)
        probes = [b.next_ms(UNREACHABLE) for _ in range(3)]
        firsts.append([after_loss, *probes])
    for attempt, (lo, hi) in enumerate([(0, 1000), (750, 1500), (750, 1500), (750, 1500)]):
        delays = sorted(f[attempt] for f in firsts)
        assert lo <= delays[0] and delays[-1] <= hi
        assert len(set(delays)) >= 30, delays  # not in lockstep
        assert delays[-1] - delays[0] >= (hi - lo) // 2, delays  # spread over the window
    same = [Backoff(1000, 60000, random.Random(7).getrandbits) for _ in range(2)]
    assert [same[0].next_ms(REFUSED) for _ in range(5)] == [same[1].next_ms(REFUSED) for _ in range(5)]


@mpvm.needs_vm
def test_the_same_schedule_under_micropython():
    res = mpvm.run("""
import json, hostio
from firmware_py.mqtt import Backoff, jitter_bits
schedule = %s
draws = [s[1] for s in schedule]
now = [0]
b = Backoff(1000, 60000, lambda n: draws.pop(0), 1500, 10000, lambda: now[0])
out = []
for outcome, _d, t, _ms in schedule:
    now[0] = t
    out.append(b.next_ms(outcome))
street = []
for i in range(20):
    r = Backoff(1000, 60000, jitter_bits("fieldlink-street-gw%%02d" %% i))
    r.next_ms(0)
    street.append(r.next_ms(1))
hostio.emit(json.dumps({"schedule": out, "street": street}))
""" % json.dumps(SCHEDULE), packages=("protocols", "firmware_py"), timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    got = res.values()[0]
    assert got["schedule"] == [ms for _o, _d, _t, ms in SCHEDULE]
    street = got["street"]
    assert all(750 <= ms <= 1500 for ms in street) and len(set(street)) >= 15, street
