"""agent/fleet/view.py: status, inventory and health (made by the agent's own code) read back into device
facts; births of gateways from before the split; hostile messages refused and counted; the county plan
and its truth."""

from __future__ import annotations

import time
from fractions import Fraction

import cbor2
import pytest

from agent.config_model import RuleConfig
from agent.fleet.county import plan_county
from agent.fleet.indicators import load_totals, parse_totals, report
from agent.fleet.model import GatewayModel, make_config
from agent.fleet.sites import load_profiles
from agent.fleet.view import FleetView
from protocols import birth as birth_msg
from protocols import cbor

NOW = 1781000000.0
PROFILES = load_profiles(["generic-lamp", "dlt645-1p", "cjt188-water", "ultrasonic-flow", "cjt188-heat"])


def gateway(ident: str = "gw-1", district: str | None = "Lixia", clock: float = NOW, armed: bool = True,
            site: str = "s1") -> GatewayModel:
    devices = [("lamp-1", "generic-lamp", "1", None, None), ("lamp-2", "generic-lamp", "2", None, 3),
               ("em-1", "dlt645-1p", "000000000001", None, None),
               ("wm-1", "cjt188-water", "00000000000001", {"households": 24}, None),
               ("heat-1", "cjt188-heat", "00000000000002", None, None),
               ("flow-1", "ultrasonic-flow", "9", {"network": "water", "length_m": 1800.5}, None)]
    rules = [RuleConfig("lamp-1", "lamp_failure", "fault", above=0.5)] if armed else []
    rules.append(RuleConfig("lamp-2", "lamp_failure", "fault", above=0.5))
    config = make_config(ident, site, devices, PROFILES, 60.0, district=district, rules=rules)
    model = GatewayModel(config, seed=1, clock=lambda: clock, monotonic=time.monotonic,
                         run_later=lambda d, f: None)
    for d in model.devices.values():
        model.poll(d, clock - 30)
    return model


def topic(model: GatewayModel, leaf: str) -> str:
    return model.topic[leaf]


def connect(view: FleetView, m: GatewayModel) -> None:
    """What the broker holds after the gateway connected: its online status and its inventory."""
    m.next_session()
    view.handle(topic(m, "status"), m.status_bytes())
    view.handle(topic(m, "inventory"), m.inventory_bytes)


def legacy_birth(m: GatewayModel) -> bytes:
    """The one map a gateway from before the status/inventory split retained on …/status."""
    return cbor.dumps(dict(m.inventory, online=True, time=int(NOW)))


def test_status_inventory_and_health_become_device_facts() -> None:
    m = gateway()
    view = FleetView()
    connect(view, m)
    view.handle(topic(m, "health"), m.health_bytes())
    facts = {f.device: f for f in view.facts(NOW)}
    assert set(facts) == {"lamp-1", "lamp-2", "em-1", "wm-1", "heat-1", "flow-1"}
    lamp = facts["lamp-1"]
    assert (lamp.kind, lamp.lights, lamp.online, lamp.control_writable, lamp.fault_alarm_armed) == (
        "lamp", 1, True, True, True)
    assert lamp.last_seen == int(NOW - 30) and lamp.district == "Lixia" and lamp.gateway == "gw-1"
    assert facts["lamp-2"].lights == 3
    assert facts["em-1"].households == 1 and facts["wm-1"].households == 24  # the default, the config's
    assert facts["heat-1"].kind == "heat_meter"
    assert (facts["flow-1"].network, facts["flow-1"].length_m) == ("water", 1800.5)
    assert view.problems == {}
    summary = view.summary(NOW, 24)
    assert summary == {"gateways": 1, "with_inventory": 1, "offline": 0, "offline_without_inventory": 0,
                       "without_health": 0, "stale_health": 0, "devices": 6}


def test_the_indicators_of_one_gateway() -> None:
    m = gateway(armed=False)
    m.set_online("em-1", False)
    m.poll(m.devices["em-1"], NOW - 10)  # no answer: offline, last seen 30 s before
    view = FleetView()
    connect(view, m)
    view.handle(topic(m, "health"), m.health_bytes())
    totals = parse_totals({"public_lights": 8, "households": {"water": 48, "electricity": 2, "gas": 10},
                           "network_length_m": {"water": 3601, "power": 100, "gas": 100}})
    city = report(view.facts(NOW), totals, NOW)[0]
    l1p3, l1p9, l2p4 = city.indicators
    assert l1p3.parts[0].counted == 3  # lamp-2 (3 lights) armed; lamp-1 not
    assert city.excluded == {"lamps without an armed fault alarm": 1}
    assert [p.counted for p in l1p9.parts] == [24, 1, 0]  # offline since 40 s: still reporting within 24 h
    assert l2p4.parts[0].counted == Fraction("1800.5")


def test_an_offline_gateway_keeps_its_inventory_and_a_stale_will_is_ignored() -> None:
    m = gateway()
    view = FleetView()
    connect(view, m)
    stale_will = m.will_bytes()
    connect(view, m)  # a second connection: the first one's will is stale now
    view.handle(topic(m, "status"), stale_will)
    assert view.summary(NOW, 24)["offline"] == 0
    view.handle(topic(m, "status"), m.will_bytes())
    summary = view.summary(NOW, 24)
    assert (summary["offline"], summary["offline_without_inventory"]) == (1, 0)
    assert len(view.facts(NOW)) == 6  # …/inventory stays retained: its devices count by their last report
    view.handle(topic(m, "inventory"), b"")  # cleared by an operator
    assert view.facts(NOW) == []
    view.handle(topic(m, "status"), b"")
    assert view.summary(NOW, 24)["offline"] == 0


def test_a_birth_from_before_the_split_is_status_and_inventory_and_its_will_removes_both() -> None:
    m = gateway()
    view = FleetView()
    view.handle(topic(m, "status"), legacy_birth(m))
    view.handle(topic(m, "health"), m.health_bytes())
    assert len(view.facts(NOW)) == 6 and view.summary(NOW, 24)["offline"] == 0
    view.handle(topic(m, "status"), birth_msg.encode(birth_msg.make_will("gw-1", "s1", seq=m.seq + 5)))
    assert len(view.facts(NOW)) == 6  # a will of another seq: a stale session's
    view.handle(topic(m, "status"), birth_msg.encode(birth_msg.make_will("gw-1", "s1", seq=m.seq)))
    summary = view.summary(NOW, 24)
    assert view.facts(NOW) == [] and (summary["offline"], summary["offline_without_inventory"]) == (1, 1)


def test_stale_health_and_devices_count_as_not_reporting() -> None:
    old = gateway("gw-2", clock=NOW - 30 * 3600)
    view = FleetView()
    connect(view, old)
    view.handle(topic(old, "health"), old.health_bytes())
    totals = parse_totals({"public_lights": 4, "households": 50, "network_length_m": {
        "water": 2000, "power": 1, "gas": 1}})
    city = report(view.facts(NOW), totals, NOW)[0]
    assert all(p.counted == 0 for i in city.indicators for p in i.parts)
    assert city.excluded["lamps not reporting for 24 h"] == 4
    assert view.summary(NOW, 24)["stale_health"] == 1
    assert report(view.facts(NOW), totals, NOW, stale_hours=31)[0].indicators[0].parts[0].counted == 4


def test_an_agent_without_per_device_state_counts_its_online_devices_at_health_time() -> None:
    m = gateway()
    h = cbor2.loads(m.health_bytes())
    h["buses"] = {"rs485-1": {"online": ["em-1"], "offline": ["wm-1"]}}
    view = FleetView()
    connect(view, m)
    view.handle(topic(m, "health"), cbor.dumps(h))
    facts = {f.device: f for f in view.facts(NOW)}
    assert facts["em-1"].last_seen == NOW and facts["em-1"].online
    assert facts["wm-1"].last_seen is None and facts["lamp-1"].last_seen is None


def test_a_device_state_without_last_ok_counts_at_health_time_and_bad_times_do_not() -> None:
    """A device online without `last_ok` counts at the health's time; `last_ok` 0 (never), a text or
    a time in the future count as not reporting (the last one as a problem)."""
    m = gateway()
    h = cbor2.loads(m.health_bytes())
    h["buses"] = {"rs485-1": {"bad_points": {}, "quality": {},
                              "devices": {"em-1": {"online": True, "last_ok": NOW - 50},
                                          "wm-1": {"online": False}, "lamp-1": {"online": True},
                                          "lamp-2": {"online": True, "last_ok": 0},
                                          "heat-1": {"online": True, "last_ok": "today"},
                                          "flow-1": {"online": True, "last_ok": NOW + 7200}}}}
    view = FleetView()
    connect(view, m)
    view.handle(topic(m, "health"), cbor.dumps(h))
    facts = {f.device: f for f in view.facts(NOW)}
    assert facts["em-1"].last_seen == NOW - 50 and facts["em-1"].online
    assert facts["lamp-1"].last_seen == h["time"] and facts["wm-1"].last_seen is None
    assert facts["lamp-2"].last_seen is None and facts["heat-1"].last_seen is None
    assert facts["flow-1"].last_seen is None and view.problems == {"clock ahead": 1}


def test_the_simulated_gateways_health_is_the_agents_shape_by_the_cddl_spec() -> None:
    """docs/cddl/health.cddl, checked by pycddl (hil_tests/cddl.py): buses with bad_points, quality and
    per-device state (a lamp's facts too), before and after a device stops answering."""
    from hil_tests.cddl import validate

    m = gateway()
    validate("health", m.health_bytes())  # nothing polled yet: online null
    for device in m.devices.values():
        m.poll(device, NOW - 30)
    m.set_online("wm-1", False)
    m.poll(m.devices["wm-1"], NOW - 10)
    payload = m.health_bytes()
    validate("health", payload)
    bus = cbor2.loads(payload)["buses"]["rs485-1"]
    assert bus["devices"]["wm-1"]["online"] is False and bus["devices"]["em-1"]["online"] is True
    assert bus["devices"]["wm-1"]["reason"].startswith("no reply to 3 polls")
    assert bus["devices"]["em-1"]["last_ok"] == int(NOW - 30) and bus["line"].endswith(" 8N1")
    assert bus["devices"]["lamp-1"]["control_writable"] is True
    assert "control_writable" not in bus["devices"]["em-1"]
    assert "devices" not in cbor2.loads(payload)  # one place per fact: buses.<bus>.devices
    import pycddl

    wrong = cbor2.loads(payload)
    wrong["buses"]["rs485-1"]["devices"]["em-1"]["last_ok"] = "yesterday"  # the spec catches a wrong shape
    with pytest.raises(pycddl.ValidationError):
        validate("health", cbor2.dumps(wrong))
    wrong = cbor2.loads(payload)
    del wrong["buses"]["rs485-1"]["devices"]["em-1"]["online"]
    with pytest.raises(pycddl.ValidationError):
        validate("health", cbor2.dumps(wrong))


@pytest.mark.parametrize("leaf,payload,kind", [
    ("status", b"\xff\x00", "bad status"),
    ("status", cbor.dumps({"online": True}), "bad status"),
    ("status", cbor.dumps([1, 2]), "bad status"),
    ("inventory", cbor.dumps({"online": False, "gateway": "gw-1", "site": "s1", "seq": 0}), "bad inventory"),
    ("inventory", cbor.dumps({"gateway": "gw-1", "site": "s1", "seq": 0, "devices": [{"id": "x y"}]}),
     "bad inventory"),
    ("health", b"\x9f", "bad health"),
    ("health", cbor.dumps([1]), "bad health"),
    ("health", cbor.dumps({"gateway": "gw-1"}), "bad health"),
    ("health", cbor.dumps({"time": float("nan")}), "bad health"),
    ("health", cbor.dumps({"time": NOW, "buses": [1]}), "bad health"),
    ("health", b"\x80" * (5 << 20), "too large"),
])
def test_hostile_messages_are_refused_and_counted(leaf: str, payload: bytes, kind: str) -> None:
    m = gateway()
    view = FleetView()
    connect(view, m)
    view.handle(topic(m, leaf), payload)
    assert view.problems == {kind: 1} and topic(m, leaf) in view.examples[0]
    assert len(view.facts(NOW)) == 6  # what was good before stays


def test_an_inventory_or_status_under_another_gateways_topic_is_refused() -> None:
    m = gateway()
    view = FleetView()
    view.handle("fieldlink/s1/gw-9/inventory", m.inventory_bytes)
    view.handle("fieldlink/s1/gw-9/status", m.status_bytes())
    view.handle("fieldlink/s1/gw-9/status", legacy_birth(m))
    assert view.problems == {"bad inventory": 1, "bad status": 2} and view.facts(NOW) == []


def test_times_in_the_future_count_as_not_reporting() -> None:
    m = gateway(clock=NOW + 5 * 3600)
    view = FleetView()
    connect(view, m)
    view.handle(topic(m, "health"), m.health_bytes())
    assert all(f.last_seen is None for f in view.facts(NOW))
    assert view.problems == {"clock ahead": 1}


def test_other_topics_and_prefixes_are_ignored() -> None:
    m = gateway()
    view = FleetView(prefix="city2")
    connect(view, m)
    view.handle("city2/s1/gw-1/data", b"\x00")
    view.handle("city2/s1/gw-1/status/extra", b"\x00")
    assert view.gateways == {} and view.problems == {}


def test_gateways_are_bounded() -> None:
    view = FleetView(max_gateways=2)
    for i in range(4):
        m = gateway("gw-%d" % i)
        connect(view, m)
    assert len(view.gateways) == 2 and view.problems == {"too many gateways": 4}  # status and inventory each


# -- the county plan ----------------------------------------------------------------------------


def test_county_plan_holds_what_was_asked_and_its_totals_load(tmp_path) -> None:
    plan = plan_county(40, 700, 1500, seed=3, districts=4)
    lamps = [d for g in plan.gateways for d in g.devices if d.model == "generic-lamp"]
    meters = [d for g in plan.gateways for d in g.devices if d.id.startswith("meter-")]
    assert sum(d.lights or 0 for d in lamps) == 700 and len(meters) == 1500
    assert any((d.lights or 0) > 1 for d in lamps) and any(not d.armed for d in lamps)
    assert any(not d.online for g in plan.gateways for d in g.devices)
    assert {g.district for g in plan.gateways} == set(plan.districts)
    assert any(g.will for g in plan.gateways) or any(g.age for g in plan.gateways)
    path = tmp_path / "totals.toml"
    path.write_text(plan.totals_toml())
    totals = load_totals(str(path))
    assert list(totals.districts) == plan.districts
    assert totals.city.public_lights == sum(t.public_lights for t in totals.districts.values())
    truth = plan.truth()
    assert truth["city"]["L1P3"]["total"] == totals.city.public_lights
    assert truth["city"]["L1P3"]["counted"] < 700  # offline, unarmed and stale lamps are not counted


def test_county_needs_room_for_lamps_and_meters() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        plan_county(1, 10, 10)
    with pytest.raises(ValueError):
        plan_county(5, 0, 0)
