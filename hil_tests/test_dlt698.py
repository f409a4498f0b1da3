"""DL/T 698.45 through the registry, end to end: `fieldlink read` and `fieldlink scan` against the
simulated meters of simulator/scenarios/dlt698.toml (two DL/T 698.45 meters beside a DL/T 645 meter on
one 2400 8E1 bus), every value equal to the simulator's ground truth. The agent with Mosquitto reads the
same site in test_agent_e2e.py (parametrized by scenario); the board under MicroPython in
firmware_py/tests/test_dlt698_board.py."""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from hil_tests.link import PYTHON, ROOT, SimSite
from protocols.profiles import load_profile

pytestmark = pytest.mark.slow

LINE = re.compile(r"^(\S+)\s+(\S+)(?: (\S+))?$")


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def fieldlink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_fieldlink_read_gives_the_simulators_truth(sim_site: Callable[..., SimSite]) -> None:
    """In SenML units (--si), as on the wire: the truth compares exactly."""
    site = sim_site("dlt698")
    port = site.ports["buses"][0]["path"]
    meters = [d for d in site.devices() if d["protocol"] == "dlt698"]
    assert len(meters) == 2
    profile = load_profile("dlt698-3p")
    units = {p.name: p.unit for p in profile.points}
    client = site.client
    for meter in meters:
        before = time.time()
        result = fieldlink("read", "--port", port, "--protocol", "dlt698", "--address", meter["address"],
                           "--si")
        after = time.time()
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "dlt698 dlt698-3p at %s on %s (2400 8E1)" % (meter["address"], port), lines[0]
        values = {}
        for line in lines[1:]:
            m = LINE.match(line)
            assert m, line
            name, text, unit = m.groups()
            assert (unit or "") == units[name], line
            values[name] = float(text)
        assert sorted(values) == sorted(units), "points not read: %s" % sorted(set(units) - set(values))
        # the truth at some moment of the read (values move in 1 s steps of simulated time)
        samples = [client.truths(meter["id"], wall=before + k * 0.25)
                   for k in range(int((after - before) * 4) + 5)]
        wrong = {n: (v, sorted({s[n] for s in samples})) for n, v in values.items()
                 if not any(same(v, s[n]) for s in samples)}
        assert not wrong, wrong
        assert values["energy_import"] > 0 and values["voltage_a"] > 100


def test_fieldlink_scan_finds_the_meter_and_a_bad_address_is_named(sim_site: Callable[..., SimSite]) -> None:
    site = sim_site("dlt698")
    port = site.ports["buses"][0]["path"]
    addresses = {d["address"] for d in site.devices() if d["protocol"] == "dlt698"}
    found = fieldlink("scan", "--port", port, "--protocol", "dlt698", "--sweep", "200-203")
    assert found.returncode == 0, found.stderr
    listed = {line.split()[0] for line in found.stdout.splitlines() if line.strip()}
    assert addresses <= listed, found.stdout
    bad = fieldlink("read", "--port", port, "--protocol", "dlt698", "--address", "12345678901234")
    assert bad.returncode == 2
    assert "--address 12345678901234: expected a DL/T 698.45 server address of up to 12 digits" in bad.stderr
