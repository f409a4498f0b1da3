"""Remote relay control of DL/T 645-2007 meters through the broker: the platform publishes
`{id, device, action: "relay_trip" | "relay_close"}` on `…/cmd`, `fieldlink run` sends C=1C to the simulated
meter with the password and operator of the device's config `options`, and acks on `…/ack`.

* trip: ack ok (value null: no DI of our table carries the relay state); the meter's published power and
  current are 0 and its energy stops, as in the simulator's ground truth;
* close: ack ok, power back;
* a wrong password in the config: an error ack naming "password error or not authorised", the relay
  unchanged, no write in the simulator;
* an action the profile does not list (on the meter, or on a Modbus lamp): refused, nothing on the bus
  (the simulator's C=1C request counters and write counters unchanged).

The simulated meters take password 02123456 and operator 00000007 (scenario `params`); the agent's config
(from `fieldlink sim-config`) gets `options` per meter. Run with `-rA` or `-s` to see what each test measured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from hil_tests.link import SIM_ONLY, Target, wait_until
from hil_tests.test_agent_commands import Platform, platform_fixture, values, writes  # noqa: F401  (fixture)
from hil_tests.test_agent_faults import Bench, start_bench

pytestmark = pytest.mark.slow

PASSWORD, OPERATOR = "02123456", "00000007"
GOOD, WRONG, LAMP = "flat-201-power", "flat-202-power", "lamp-01"

SCENARIO = """\
[site]
name = "hilrelay"
seed = 2026
speed = 1.0
utc_offset = 8

[[bus]]
name = "street"
line = "9600 8N1"

[[bus.device]]
id = "lamp-01"
profile = "generic-lamp"
address = 1

[[bus]]
name = "meters"
line = "19200 8E1"

[[bus.device]]
id = "flat-201-power"
profile = "dlt645-1p"
address = "000000000201"
params = { password = "%s", operator = "%s", mean_power = 3000 }

[[bus.device]]
id = "flat-202-power"
profile = "dlt645-1p"
address = "000000000202"
params = { password = "%s", operator = "%s", mean_power = 3000 }
""" % (PASSWORD, OPERATOR, PASSWORD, OPERATOR)

#: device -> the `options` its [[devices]] entry gets in the agent's config
OPTIONS = {GOOD: '{ password = "%s", operator = "%s" }' % (PASSWORD, OPERATOR),
           WRONG: '{ password = "02999999", operator = "%s" }' % OPERATOR}


def with_options(text: str) -> str:
    """The agent config with an `options = …` line after the id line of each meter in OPTIONS."""
    out = []
    for line in text.splitlines():
        out.append(line)
        for device, options in OPTIONS.items():
            if line.strip() == 'id = "%s"' % device:
                out.append("options = %s" % options)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def bench(hil_link: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not hil_link.is_sim:
        pytest.skip("%s (--hil-link=%s)" % (SIM_ONLY, hil_link.spec))
    # relay control itself; signatures on relay actions are hil_tests/test_agent_signed.py's
    yield from start_bench(str(tmp_path_factory.mktemp("relay")), SCENARIO, '\n[commands]\nsigned = "none"\n',
                           name="relay", edit=with_options)


def relay_requests(bench: Bench) -> dict[str, int]:
    """The simulator's count of C=1C requests that reached each meter over its bus."""
    return {d: c["relay_requests"] for d, c in bench.client.counters()["devices"].items()
            if "relay_requests" in c}


def relay(bench: Bench, device: str) -> Any:
    return bench.client.quantity(device, "relay")


def test_trip_then_close(bench: Bench, platform: Platform) -> None:
    dev = GOOD
    began = time.time()
    w0 = writes(bench)
    assert relay(bench, dev) == "closed"
    before = values(bench, dev, "active_power", began - 3)
    ack, took = platform.call(device=dev, action="relay_trip")
    acked = time.time()
    assert ack["ok"] is True and ack["error"] is None and ack["value"] is None, ack
    assert wait_until(lambda: len(values(bench, dev, "active_power", acked + 0.05)) >= 3, 10)
    power = values(bench, dev, "active_power", acked + 0.05)
    current = values(bench, dev, "current", acked + 0.05)
    energy = values(bench, dev, "energy_import", acked + 0.05)
    truth = {p: bench.client.truth(dev, p) for p in ("active_power", "current", "energy_import")}
    tripped = relay(bench, dev)
    delta = {d: n - w0.get(d, 0) for d, n in writes(bench).items() if n != w0.get(d, 0)}
    # close again: power comes back
    ack2, took2 = platform.call(device=dev, action="relay_close")
    closed = time.time()
    assert wait_until(lambda: len(values(bench, dev, "active_power", closed + 0.05)) >= 2, 10)
    back = values(bench, dev, "active_power", closed + 0.05)
    checked, wrong = bench.wrong_readings(bench.feed.records(began - 1, dev))
    print("\ntrip %s: ack %s in %.2f s; relay %s; published power %s -> %s W, current %s A, energy %s J; "
          "truth %s; writes %s\nclose: ack %s in %.2f s; relay %s; power %s W; %d readings checked, %d wrong"
          % (dev, ack, took, tripped, sorted({v for _, v in before}), sorted({v for _, v in power}),
             sorted({v for _, v in current}), sorted({v for _, v in energy}), truth, delta, ack2, took2,
             relay(bench, dev), sorted({v for _, v in back}), checked, len(wrong)))
    assert tripped == "open"
    assert before and min(v for _, v in before) > 0, before
    assert all(v == 0 for _, v in power) and all(v == 0 for _, v in current), (power, current)
    assert len({v for _, v in energy}) == 1, energy  # energy stops increasing
    assert truth["active_power"] == 0 and truth["current"] == 0, truth
    assert delta == {dev: 1}, delta
    assert ack2["ok"] is True and ack2["error"] is None and ack2["value"] is None, ack2
    assert relay(bench, dev) == "closed"
    assert all(v > 0 for _, v in back), back
    assert not wrong, wrong[:10]


def test_wrong_password_is_refused_by_the_meter(bench: Bench, platform: Platform) -> None:
    dev = WRONG
    w0, r0 = writes(bench), relay_requests(bench)
    ack, took = platform.call(device=dev, action="relay_trip")
    acked = time.time()
    assert wait_until(lambda: len(values(bench, dev, "active_power", acked + 0.05)) >= 2, 10)
    power = values(bench, dev, "active_power", acked + 0.05)
    print("\ntrip %s with a wrong password: ack %s in %.2f s; relay %s; power %s W; writes %s -> %s"
          % (dev, ack, took, relay(bench, dev), sorted({v for _, v in power}), w0, writes(bench)))
    assert ack["ok"] is False and ack["value"] is None, ack
    assert "password error or not authorised" in str(ack["error"]) and "relay_trip" in str(ack["error"])
    assert "02999999" not in str(ack["error"]) and PASSWORD not in bench.agent.log()
    assert relay(bench, dev) == "closed"
    assert all(v > 0 for _, v in power), power
    assert writes(bench) == w0
    assert relay_requests(bench) == dict(r0, **{dev: r0[dev] + 1})  # sent once, not retried
    bench.assert_alive()


@pytest.mark.parametrize("device, action, words", [
    (GOOD, "relay_alarm", ('no action "relay_alarm"', "relay_trip, relay_close")),
    (LAMP, "relay_trip", ('no action "relay_trip"', "generic-lamp", "(none)")),
])
def test_actions_not_in_the_profile_send_nothing(bench: Bench, platform: Platform, device: str, action: str,
                                                 words: tuple[str, ...]) -> None:
    w0, r0 = writes(bench), relay_requests(bench)
    ack, took = platform.call(device=device, action=action)
    time.sleep(2 * bench.interval)  # a request sent anyway would have reached the meter by now
    w1, r1 = writes(bench), relay_requests(bench)
    print("\n%s on %s: ack %s in %.2f s; simulator C=1C requests %s -> %s, writes %s -> %s"
          % (action, device, ack, took, r0, r1, w0, w1))
    assert ack["ok"] is False and ack["value"] is None, ack
    for word in words:
        assert word in str(ack["error"]), (word, ack)
    assert r1 == r0 and w1 == w0
    assert relay(bench, GOOD) == "closed"
