"""Remote control at the wire: the platform publishes CBOR commands (cbor2, deterministic encoding) on
`<prefix>/<site>/<gateway>/cmd` through a real Mosquitto, `fieldlink run` executes them on the simulator's
buses, and the acks on `…/ack` are read with cbor2.

* dim a lamp to 0.3 (profile unit "/" 0..1): ack ok with the value read back; the simulator's ground truth
  shows the lamp dimmed, and its published power drops to rated × (0.1 + 0.9 × 0.3);
* switch a lamp off: published power goes to 0;
* close a CJ/T 188 water valve: ack ok, the valve point reads "closed";
* refused commands (a point that is not writable, a value out of range, an unknown device or point, a
  value a valve does not take, malformed CBOR) write nothing on the bus: the simulator's write counters
  stay unchanged; each gets an error ack or is counted in `commands.refused_by`, and the agent keeps running;
* a command to a device that stopped answering (`no_answer`) gets an error ack naming the timeout, quickly.

One simulator + broker + agent serve the module (hil_tests.test_agent_faults.start_bench); every test uses
its own devices. Run with `-rA` or `-s` to see what each test measured.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hil_tests.link import SIM_ONLY, Target, wait_until
from hil_tests.test_agent_e2e import BASE, same
from hil_tests.test_agent_faults import Bench, comms, start_bench

pytestmark = pytest.mark.slow

SCENARIO = """\
[site]
name = "hilcmd"
seed = 1717
speed = 1.0
utc_offset = 8

[[bus]]
name = "street"
line = "9600 8N1"

[[bus.device]]
id = "lamp-{n:02}"
count = 3
profile = "generic-lamp"
address = 1
params = { dim = 0.8, rated_power = 100 }

[[bus]]
name = "meters"
line = "19200 8E1"

[[bus.device]]
id = "flat-101-water"
profile = "cjt188-water"
address = "00000000000101"
"""

UNSIGNED = '\n[commands]\nsigned = "none"\n'
RATED = 100.0
#: an ack must come within this many seconds (a command waits at most one transaction for its bus)
ACK_WITHIN = 5.0
_IDS = itertools.count(1)  # command ids unique across the module's tests


class Platform:
    """The city platform's side: a paho client publishing CBOR commands on `…/cmd` (QoS 1)."""

    def __init__(self, bench: Bench) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        with bench.feed.sub.lock:
            status = next(t for t, _, _ in bench.feed.sub.messages if t.endswith("/status"))
        self.topic = status.rsplit("/", 1)[0] + "/cmd"
        self.bench = bench
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hil-platform", clean_session=True)
        self.client.connect(bench.broker.host, bench.broker.port, keepalive=10)
        self.client.loop_start()

    def send_raw(self, payload: bytes) -> float:
        info = self.client.publish(self.topic, payload, qos=1)
        info.wait_for_publish(5)
        return time.time()

    def send(self, **cmd: Any) -> tuple[Any, float]:
        """Publish a command map (cbor2, canonical: `id` first); returns (id, time sent)."""
        import cbor2

        if "id" not in cmd:
            cmd["id"] = "hil-%d" % next(_IDS)
        return cmd["id"], self.send_raw(cbor2.dumps(cmd, canonical=True))

    def ack(self, cmd_id: Any, timeout: float = ACK_WITHIN) -> dict | None:
        found: list[dict] = []

        def arrived() -> bool:
            found[:] = [a for a in self.bench.feed.messages("ack")
                        if isinstance(a, dict) and a.get("id") == cmd_id]
            return bool(found)

        wait_until(arrived, timeout)
        return found[0] if found else None

    def call(self, **cmd: Any) -> tuple[dict, float]:
        """Send a command and wait for its ack: (ack, seconds it took)."""
        cmd_id, sent = self.send(**cmd)
        ack = self.ack(cmd_id)
        took = time.time() - sent
        assert ack is not None, "no ack for %r within %.0f s:\n%s" % (
            cmd, ACK_WITHIN, self.bench.agent.log()[-3000:])
        assert set(ack) == {"id", "ok", "error", "value"}, ack
        return ack, took

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def bench(hil_link: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not hil_link.is_sim:
        pytest.skip("%s (--hil-link=%s)" % (SIM_ONLY, hil_link.spec))
    # these tests are about writes and refusals, not signatures (hil_tests/test_agent_signed.py): the lamps'
    # on/off and the valve are switching points, so this gateway runs unsigned, as configured and warned
    yield from start_bench(str(tmp_path_factory.mktemp("commands")), SCENARIO, UNSIGNED, name="commands")


@pytest.fixture(name="platform")
def platform_fixture(bench: Bench) -> Iterator[Platform]:
    """A platform client on the broker; faults cleared before and after (the relay tests use it too)."""
    bench.clear_all()
    bench.settle()
    p = Platform(bench)
    try:
        yield p
    finally:
        p.close()
        bench.clear_all()


def writes(bench: Bench) -> dict[str, int]:
    """The simulator's write counter of every device (writes that reached a device over its bus)."""
    return {d: c["writes"] for d, c in bench.client.counters()["devices"].items()}


def values(bench: Bench, device: str, point: str, since: float) -> list[tuple[float, Any]]:
    name = "%s%s/%s" % (BASE, device, point)
    return [(r.time, r.value) for r in bench.feed.records(since, device) if r.name == name]


def test_dim_lamp_to_30_percent(bench: Bench, platform: Platform) -> None:
    dev = "lamp-01"
    began = time.time()
    before_power = values(bench, dev, "power", began - 3)
    w0 = writes(bench)
    ack, took = platform.call(device=dev, point="dim", value=0.3)
    acked = time.time()
    assert ack["ok"] is True and ack["error"] is None, ack
    assert same(ack["value"], 0.3), ack
    truth_dim, truth_power = bench.client.truth(dev, "dim"), bench.client.truth(dev, "power")
    expected = RATED * (0.1 + 0.9 * 0.3)
    assert wait_until(lambda: len(values(bench, dev, "power", acked + 0.05)) >= 2, 10)
    after_power = values(bench, dev, "power", acked + 0.05)
    dims = values(bench, dev, "dim", acked + 0.05)
    delta = {d: n - w0.get(d, 0) for d, n in writes(bench).items() if n != w0.get(d, 0)}
    checked, wrong = bench.wrong_readings(bench.feed.records(began - 1))
    print("\ndim %s to 0.3: ack %s in %.2f s; simulator dim %s, power %s W (expected %.1f); "
          "published power %s -> %s W, dim %s; simulator writes %s; %d readings checked, %d wrong"
          % (dev, ack, took, truth_dim, truth_power, expected, sorted({v for _, v in before_power}),
             sorted({v for _, v in after_power}), sorted({v for _, v in dims}), delta, checked, len(wrong)))
    assert same(truth_dim, 0.3)
    assert abs(float(truth_power) - expected) < 0.5, truth_power  # type: ignore[arg-type]
    assert before_power and min(v for _, v in before_power) > expected + 10, before_power
    assert all(abs(v - expected) < 0.5 for _, v in after_power), after_power
    assert dims and all(same(v, 0.3) for _, v in dims), dims
    assert delta == {dev: 1}, "expected exactly one write, on %s: %s" % (dev, delta)
    assert not wrong, wrong[:10]


def test_switch_lamp_off(bench: Bench, platform: Platform) -> None:
    dev = "lamp-02"
    began = time.time()
    w0 = writes(bench)
    ack, took = platform.call(device=dev, point="on", value=0)
    acked = time.time()
    assert ack["ok"] is True and ack["error"] is None and ack["value"] == 0, ack
    assert wait_until(lambda: len(values(bench, dev, "power", acked + 0.05)) >= 2, 10)
    power = values(bench, dev, "power", acked + 0.05)
    on = values(bench, dev, "on", acked + 0.05)
    delta = {d: n - w0.get(d, 0) for d, n in writes(bench).items() if n != w0.get(d, 0)}
    checked, wrong = bench.wrong_readings(bench.feed.records(began - 1))
    print("\nswitch %s off: ack %s in %.2f s; simulator on=%s power=%s; published power %s, on %s; "
          "writes %s; %d readings checked, %d wrong"
          % (dev, ack, took, bench.client.truth(dev, "on"), bench.client.truth(dev, "power"),
             sorted({v for _, v in power}), sorted({v for _, v in on}), delta, checked, len(wrong)))
    assert bench.client.truth(dev, "on") == 0
    assert all(v == 0 for _, v in power), power
    assert on and all(v == 0 for _, v in on), on
    assert delta == {dev: 1}, delta
    assert not wrong, wrong[:10]
    # back on for whoever comes next
    ack, _ = platform.call(device=dev, point="on", value=1)
    assert ack["ok"] is True and ack["value"] == 1, ack


def test_close_water_valve(bench: Bench, platform: Platform) -> None:
    dev = "flat-101-water"
    began = time.time()
    w0 = writes(bench)
    assert bench.client.truth(dev, "valve") == "open"
    ack, took = platform.call(device=dev, point="valve", value="closed")
    acked = time.time()
    assert ack["ok"] is True and ack["error"] is None and ack["value"] == "closed", ack
    assert wait_until(lambda: len(values(bench, dev, "valve", acked + 0.05)) >= 2, 10)
    valve = values(bench, dev, "valve", acked + 0.05)
    delta = {d: n - w0.get(d, 0) for d, n in writes(bench).items() if n != w0.get(d, 0)}
    checked, wrong = bench.wrong_readings(bench.feed.records(began - 1))
    print("\nclose %s valve: ack %s in %.2f s; simulator valve %s; published valve %s; writes %s; "
          "%d readings checked, %d wrong" % (dev, ack, took, bench.client.truth(dev, "valve"),
                                             sorted({v for _, v in valve}), delta, checked, len(wrong)))
    assert bench.client.truth(dev, "valve") == "closed"
    assert all(v == "closed" for _, v in valve), valve
    assert delta == {dev: 1}, delta
    assert not wrong, wrong[:10]
    ack, _ = platform.call(device=dev, point="valve", value="open")
    assert ack["ok"] is True and ack["value"] == "open", ack


#: (what, command map, words the error ack must contain)
REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("not writable", {"device": "lamp-03", "point": "power", "value": 50}, ("not writable",)),
    ("above range", {"device": "lamp-03", "point": "dim", "value": 1.5}, ("maximum",)),
    ("below range", {"device": "lamp-03", "point": "dim", "value": -0.1}, ("minimum",)),
    ("not a number", {"device": "lamp-03", "point": "dim", "value": "bright"}, ("number",)),
    ("on out of range", {"device": "lamp-03", "point": "on", "value": 2}, ("maximum",)),
    ("NaN", {"device": "lamp-03", "point": "dim", "value": float("nan")}, ("nan",)),  # passes the range check
    ("bool for a ratio", {"device": "lamp-03", "point": "dim", "value": True}, ("True",)),
    ("unknown device", {"device": "lamp-99", "point": "dim", "value": 0.5}, ("unknown device", "lamp-99")),
    ("unknown point", {"device": "lamp-03", "point": "brightness", "value": 0.5}, ("brightness",)),
    ("valve value", {"device": "flat-101-water", "point": "valve", "value": "half"}, ("half",)),
    ("read-only meter point", {"device": "flat-101-water", "point": "volume", "value": 0}, ("not writable",)),
    ("no value", {"device": "lamp-03", "point": "dim"}, ("value",)),
    ("no point", {"device": "lamp-03", "value": 0.5}, ("point",)),
]


def test_refused_commands_write_nothing(bench: Bench, platform: Platform) -> None:
    import cbor2

    w0 = writes(bench)
    bus0 = bench.client.counters()["buses"]
    health0 = bench.feed.messages("health")[-1]["commands"]
    seen = []
    for what, cmd, words in REFUSED:
        ack, took = platform.call(**dict(cmd))
        seen.append("%s: %r (%.2f s)" % (what, ack["error"], took))
        assert ack["ok"] is False and ack["value"] is None, (what, ack)
        for word in words:
            assert word in str(ack["error"]), "%s: %r lacks %r" % (what, ack["error"], word)
        assert took < ACK_WITHIN

    # malformed input: a damaged map that still starts with its id gets an error ack; the rest is counted
    broken_id = "hil-broken-%d" % int(time.time())
    damaged = cbor2.dumps({"id": broken_id, "device": "lamp-03", "point": "dim", "value": 0.5},
                          canonical=True)
    platform.send_raw(damaged[:-6] + b"\xff\xff\xff")
    broken_ack = platform.ack(broken_id)
    assert broken_ack is not None and broken_ack["ok"] is False, broken_ack
    assert "not valid CBOR" in str(broken_ack["error"]), broken_ack
    seen.append("damaged CBOR with an id: %r" % broken_ack["error"])
    no_id = cbor2.dumps({"device": "lamp-03", "point": "dim", "value": 0.5})
    counted = [b"\xff\x00\x13garbage", cbor2.dumps([1, 2, 3]), no_id, b""]
    for payload in counted:
        platform.send_raw(payload)
    # refused as malformed, hence counted too: the map without a point, the damaged one
    bad = 1 + 1 + len(counted)
    malformed = ("not_cbor", "not_command", "no_id", "no_target")

    def bad_count(h: dict) -> int:
        return sum(h["refused_by"].get(k, 0) for k in malformed)

    assert wait_until(lambda: bad_count(bench.feed.messages("health")[-1]["commands"])
                      >= bad_count(health0) + bad, 10), bench.feed.messages("health")[-1]["commands"]
    health1 = bench.feed.health(after=time.time())
    bench.assert_alive()
    # the agent keeps running and polling, and answers a good command afterwards
    ack, _ = platform.call(device="lamp-03", action="read", point="dim")
    assert ack["ok"] is True and same(ack["value"], 0.8), ack
    w1 = writes(bench)
    bus1 = bench.client.counters()["buses"]
    mq = {k: health1["commands"][k] - health0[k] for k in ("received", "refused")}
    mq["malformed"] = bad_count(health1["commands"]) - bad_count(health0)
    print("\nrefused commands, one error ack each:\n  " + "\n  ".join(seen) +
          "\n%d malformed payloads without an id counted; mqtt counters grew %s; simulator writes "
          "before %s after %s; bus frames %s -> %s"
          % (len(counted), mq, w0, w1, {b: c["frames"] for b, c in bus0.items()},
             {b: c["frames"] for b, c in bus1.items()}))
    assert w1 == w0, "a refused command wrote to the bus: %s -> %s" % (w0, w1)
    assert mq["malformed"] == bad, mq
    assert mq["received"] >= len(REFUSED) + 1 + len(counted), mq
    assert 'signed = "none"' in bench.agent.log()  # warned at start
    assert values(bench, "lamp-03", "power", time.time() - 1.5), "lamp-03 stopped publishing"


def test_command_to_silent_device_acks_timeout(bench: Bench, platform: Platform) -> None:
    dev = "lamp-03"
    alarm_start = bench.feed.count("alarm")
    bench.client.fault(dev, "no_answer")
    assert wait_until(lambda: bool(comms(bench.alarms(alarm_start), dev, "raised")), 15), \
        "%s never went offline" % dev
    w0 = writes(bench)
    ack, took = platform.call(device=dev, point="dim", value=0.5)
    w1 = writes(bench)
    bench.client.clear(dev)
    truth_dim = bench.client.truth(dev, "dim")
    back = wait_until(lambda: bool(comms(bench.alarms(alarm_start), dev, "cleared")), 15)
    # the reply was lost, not the request (no_answer drops replies): the lamp may have taken the write
    restored, _ = platform.call(device=dev, point="dim", value=0.8)
    print("\ncommand to %s while offline (no_answer): ack %s in %.2f s; simulator writes %+d (the "
          "device got the request, its reply was lost; dim now %s); back online: %s; dim restored: %s"
          % (dev, ack, took, w1[dev] - w0[dev], truth_dim, back, restored))
    bench.assert_alive()
    assert ack["ok"] is False and ack["value"] is None, ack
    assert "timeout" in str(ack["error"]), ack
    assert took < 2.0, "the timeout ack took %.2f s" % took
    assert w1[dev] - w0[dev] <= 1, "a timed-out write was retried: %+d writes" % (w1[dev] - w0[dev])
    assert {d: n for d, n in w1.items() if d != dev} == {d: n for d, n in w0.items() if d != dev}
    assert back, "no comms clear for %s after the fault" % dev
    assert restored["ok"] is True, restored
