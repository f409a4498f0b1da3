"""Plausibility at the wire: `fieldlink run` polling the simulator's demo site with a site profile folder
(`profiles = [...]`) whose `generic-lamp` allows at most 50 W and says energy never decreases, a real
Mosquitto, and a cbor2 subscriber.

* every lamp runs at about 82 W (dim 0.8): its power is never published, one `quality` alarm
  "implausible" per lamp, counted in …/health; its other points keep coming;
* lamp-01 is dimmed to 0.2 (about 28 W) through the simulator: its alarm clears ("good") and its power is
  published again, equal to the simulator's truth;
* lamp-03 reboots (its energy counter starts again from 0): "implausible" until REBASE_AFTER readings
  agree, then cleared, and the new count is published.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hil_tests.broker import Mosquitto
from hil_tests.link import Process, SimSite, sim_agent_config, start_agent, wait_until
from hil_tests.test_agent_e2e import BASE, FAST, Wire, same
from protocols.plausible import REBASE_AFTER
from protocols.profiles import profile_dir

pytestmark = pytest.mark.slow


@pytest.fixture
def procs() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def site_profile(folder: str) -> None:
    """generic-lamp with a 50 W power limit and a never-decreasing energy counter."""
    with open(os.path.join(profile_dir(), "generic-lamp.json")) as f:
        data = json.load(f)
    for point in data["points"]:
        if point["name"] == "power":
            point["plausible"] = {"min": 0, "max": 50}
        if point["name"] == "energy":
            point["plausible"] = {"min": 0, "rule": "non_decreasing"}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "generic-lamp.json"), "w") as f:
        json.dump(data, f, indent=2)


def test_implausible_values_are_alarmed_not_published(sim_site: Callable[..., SimSite], mosquitto: Mosquitto,
                                                      procs: list[Process], tmp_path: Any) -> None:
    site = sim_site("demo")
    lamps = [d["id"] for d in site.devices() if d["profile"] == "generic-lamp"]
    site_profile(str(tmp_path / "site-profiles"))
    config = sim_agent_config(site.ports_file, str(tmp_path / "agent.toml"), mosquitto.url,
                              str(tmp_path / "outbox.sqlite"), settings=FAST)
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("format = 1\n", 'format = 1\nprofiles = ["site-profiles"]\n', 1))
    wire = Wire(mosquitto, "plausible")
    try:
        agent = start_agent(config, str(tmp_path / "agent.log"))
        procs.append(agent)

        def quality(device: str, point: str) -> list[tuple[str, str]]:
            return [(a["value"], a["state"]) for a in wire.alarms()
                    if a.get("kind") == "quality" and a.get("device") == device and a.get("point") == point]

        def values(device: str, point: str, since: float = 0.0) -> list[tuple[float, Any]]:
            name = "%s%s/%s" % (BASE, device, point)
            return [(r.time, r.value) for r in wire.records() if r.name == name and r.time >= since]

        assert wait_until(lambda: all(quality(d, "power") for d in lamps), 30), wire.alarms()
        began = time.time()
        assert wait_until(lambda: all(len(values(d, "voltage", began)) >= 3 for d in lamps), 20)

        def counted(h: dict) -> bool:
            street = h.get("buses", {}).get("street", {})
            return all(street.get("bad_points", {}).get(d, {}).get("power", 0) >= 3 for d in lamps) and \
                all(street.get("quality", {}).get(d, {}).get("power") == "implausible" for d in lamps)

        assert wait_until(lambda: any(counted(h) for h in wire.health()), 10), wire.health()[-1:]

        site.client.write("lamp-01", "dim", 0.2)  # about 28 W: plausible again
        dimmed = time.time()
        assert wait_until(lambda: len(quality("lamp-01", "power")) == 2
                          and bool(values("lamp-01", "power", dimmed)), 20), quality("lamp-01", "power")

        site.client.fault("lamp-03", "reboot", duration=1.0)  # its counters start again from 0
        rebooted = time.time()
        assert wait_until(lambda: len(quality("lamp-03", "energy")) == 2, 30), quality("lamp-03", "energy")
        assert wait_until(lambda: values("lamp-03", "energy", rebooted), 10)
        cleared = time.time()

        def refused_energy() -> int | None:
            fresh = [h for h in wire.health() if h.get("time", 0) >= cleared + 1]
            if not fresh:
                return None
            counts = fresh[-1].get("buses", {}).get("street", {}).get("bad_points", {})
            return int(counts.get("lamp-03", {}).get("energy", 0))

        assert wait_until(lambda: refused_energy() is not None, 10)
        rc = agent.stop(timeout=20)
    finally:
        wire.close()
    assert rc == 0
    power = {d: values(d, "power") for d in lamps}
    energy = values("lamp-03", "energy")
    before = [v for t, v in energy if t < rebooted]
    after = [v for t, v in energy if t > rebooted]
    print("\npower published per lamp %s (lamp-01 after dimming: %s W); quality alarms lamp-01/power %s, "
          "lamp-03/energy %s; lamp-03 energy %s J before the reboot, then %s J"
          % ({d: len(v) for d, v in power.items()}, sorted({round(v, 1) for _, v in power["lamp-01"]}),
             quality("lamp-01", "power"), quality("lamp-03", "energy"), before[-1:], after[:3]))
    assert all(not power[d] for d in lamps if d != "lamp-01"), "no implausible power was published"
    assert power["lamp-01"] and all(t >= dimmed for t, _ in power["lamp-01"])
    for t, v in power["lamp-01"]:
        truth = site.client.truths("lamp-01", wall=t)["power"]
        assert same(v, truth) or same(v, site.client.truths("lamp-01", wall=t - 1.0)["power"]), (v, truth)
        assert v <= 50
    assert quality("lamp-01", "power") == [("implausible", "raised"), ("good", "cleared")]
    assert quality("lamp-03", "energy") == [("implausible", "raised"), ("good", "cleared")]
    assert before and after and after[0] < before[-1], "the new count is published after the rebase"
    assert sorted(after) == after
    assert refused_energy() == REBASE_AFTER - 1, "readings refused before the new count was accepted"
