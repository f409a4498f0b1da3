"""The fleet tools at the wire: `fieldlink sim county`, `fieldlink fleet report`, `fieldlink sim fleet`
as subprocesses against a real Mosquitto; a real agent (`fieldlink run` on `fieldlink sim demo`).

1. the report's numbers equal `--truth` for a simulated county, city and districts (and the truth at
   another `--stale`: stale devices are excluded, and counted once the limit allows them);
2. a real agent's inventory and health are counted by the report (hand-written totals);
3. the generator's traffic decodes with `fieldlink monitor` like a real gateway's (both payloads), and
   with cbor2 + RFC 8428 alone;
4. a command to a generated gateway gets its ack (plain, unsigned-switching refused, signed);
5. a dropped connection makes the broker publish the gateway's will (its connection's `session`), and
   the gateway comes back with a newer session; its inventory stays retained meanwhile;
6. Ctrl-C stops a fleet as the agent stops; its status, inventory and health pass the CDDL specs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import zlib
from typing import Any

import cbor2
import pytest

from agent.fleet.county import plan_county
from hil_tests.broker import Mosquitto, Subscriber
from hil_tests.link import PYTHON, ROOT, Process, sim_agent_config, start_agent, wait_until

pytestmark = pytest.mark.slow

FIELDLINK = [PYTHON, "-m", "agent.cli"]
COUNTY = dict(gateways=60, lamps=600, meters=2400, seed=11)


def fieldlink(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FIELDLINK, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def report_json(broker: Mosquitto, totals: str, *extra: str) -> dict:
    done = fieldlink("fleet", "report", "--broker", broker.url, "--totals", totals, "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def scopes(report: dict) -> dict[str, dict[str, dict]]:
    return {s["scope"]: {i["code"]: i for i in s["indicators"]} for s in report["scopes"]}


def assert_equals_truth(report: dict, truth: dict) -> None:
    got = scopes(report)
    for name, want in [("city", truth["city"]), *truth["districts"].items()]:
        for code in ("L1P3", "L1P9", "L2P4"):
            g, w = got[name][code], want[code]
            where = "%s %s" % (name, code)
            assert g["ratio"] == w["ratio"] and g["stars"] == w["stars"], (where, g, w)
            counted = {p["name"]: p["counted"] for p in g["parts"]}
            assert counted == ({"lamps": w["counted"]} if code == "L1P3" else w["counted"]), where


def test_county_report_equals_its_truth_and_stale_devices_are_left_out(mosquitto: Mosquitto,
                                                                       tmp_path) -> None:
    truth_file, totals = str(tmp_path / "truth.json"), str(tmp_path / "totals.toml")
    done = fieldlink("sim", "county", "--broker", mosquitto.url, "--gateways", str(COUNTY["gateways"]),
                     "--lamps", str(COUNTY["lamps"]), "--meters", str(COUNTY["meters"]),
                     "--seed", str(COUNTY["seed"]), "--truth", truth_file, "--totals", totals)
    assert done.returncode == 0, done.stderr
    with open(truth_file) as f:
        truth = json.load(f)
    csv_file, png = str(tmp_path / "report.csv"), str(tmp_path / "coverage.png")
    report = report_json(mosquitto, totals, "--csv", csv_file, "--plot", png)
    assert_equals_truth(report, truth)
    assert report["collected"]["complete"] and report["problems"] == {}
    assert report["gateways"]["gateways"] == COUNTY["gateways"]
    # the dropped gateways' wills replaced their status, not their inventory: every device is known
    assert report["gateways"]["devices"] == truth["devices_in_retained_inventories"] == truth["devices"]
    assert report["gateways"]["offline"] == sum(1 for g in plan_county(**COUNTY).gateways if g.will) > 0  # type: ignore[arg-type]
    assert report["gateways"]["offline_without_inventory"] == 0
    city = report["scopes"][0]
    assert city["excluded"]["lamps not reporting for 24 h"] > 0 and city["excluded"]["lamps offline"] > 0
    assert city["excluded"]["meters and sensors not reporting for 24 h"] > 0

    # with a longer limit the devices silent for 30 to 100 h count again: the truth says how many
    plan = plan_county(**COUNTY)  # type: ignore[arg-type]
    longer = report_json(mosquitto, totals, "--stale", "200")
    assert_equals_truth(longer, plan.truth(stale_hours=200))
    assert scopes(longer)["city"]["L1P9"]["ratio"] != scopes(report)["city"]["L1P9"]["ratio"]

    with open(csv_file) as f:
        rows = f.read().splitlines()
    assert rows[0].startswith("scope,indicator,") and len(rows) == 1 + (1 + len(truth["districts"])) * 7
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    text = fieldlink("fleet", "report", "--broker", mosquitto.url, "--totals", totals)
    assert text.returncode == 0
    assert re.search(r"L1P3 intelligent street lights: [\d.]+ %, \d stars?", text.stdout)
    assert "district Lixia" in text.stdout and "messages collected" in text.stdout


def test_report_refuses_missing_totals_before_touching_the_broker(tmp_path) -> None:
    missing = fieldlink("fleet", "report", "--broker", "127.0.0.1:1", "--totals", str(tmp_path / "no.toml"))
    assert missing.returncode == 2 and "no.toml: cannot read the totals file" in missing.stderr
    partial = tmp_path / "totals.toml"
    partial.write_text("public_lights = 100\nhouseholds = 50\n")
    done = fieldlink("fleet", "report", "--broker", "127.0.0.1:1", "--totals", str(partial))
    assert done.returncode == 2 and "network_length_m: missing" in done.stderr
    assert fieldlink("fleet").returncode == 2


def test_a_real_agents_inventory_is_counted(mosquitto: Mosquitto, sim_site: Any, tmp_path) -> None:
    site = sim_site("demo")
    config = sim_agent_config(site.ports_file, str(tmp_path / "agent.toml"), mosquitto.url,
                              str(tmp_path / "outbox.sqlite"), interval=1.0,
                              settings={"gateway": {"health_interval": 1, "district": "Lixia"}})
    with open(config) as f:
        text = f.read()
    # what the site's installer writes: the pressure sensor watches 1,200 m of the water mains; two of the
    # four lamps have a fault alarm (so two are intelligent)
    text = text.replace('id = "mains-pressure"\n', 'id = "mains-pressure"\nserves = {network = "water", '
                        'length_m = 1200}\n')
    assert "serves = " in text, text
    text += "".join('\n[[rules]]\ndevice = "%s"\npoint = "lamp_failure"\nkind = "fault"\n' % d
                    for d in ("lamp-01", "lamp-02"))
    with open(config, "w") as f:
        f.write(text)
    totals = tmp_path / "totals.toml"
    totals.write_text("# the demo street, by hand\npublic_lights = 4\n"
                      "households = {water = 2, electricity = 1, gas = 1}\n"
                      "network_length_m = {water = 1200, power = 500, gas = 300}\n"
                      "[districts.Lixia]\npublic_lights = 4\n"
                      "households = {water = 2, electricity = 1, gas = 1}\n"
                      "network_length_m = {water = 1200, power = 500, gas = 300}\n")
    agent = start_agent(config, str(tmp_path / "agent.log"))
    try:
        wanted = {"L1P3": "1/2", "L1P9": "1/2", "L2P4": "1/3"}
        last: dict = {}

        def counted() -> bool:
            nonlocal last
            last = report_json(mosquitto, str(totals), "--timeout", "20")
            got = scopes(last)
            return all(got[s][c]["ratio"] == r for s in ("city", "Lixia") for c, r in wanted.items())

        assert wait_until(counted, 60, step=0.5), (last, agent.log()[-3000:])
    finally:
        agent.stop()
    city = scopes(last)["city"]
    # L1P3: lamp-01 and lamp-02 of 4 public lights (50 %, 0 stars); L1P9: the DL/T 645 meter is 1 of 1
    # electricity household, the CJ/T 188 meter 1 of 2 water households, no gas (1/3 + 1/6 = 1/2, 3 stars)
    assert city["L1P3"]["stars"] == 0 and city["L1P9"]["stars"] == 3 and city["L2P4"]["stars"] == 0
    assert [p["counted"] for p in city["L1P9"]["parts"]] == [1, 1, 0]
    assert last["scopes"][0]["excluded"] == {"lamps without an armed fault alarm": 2}
    assert last["gateways"]["devices"] == 8


def fleet_process(broker: Mosquitto, tmp_path, *args: str) -> Process:
    return Process("fleet", [*FIELDLINK, "sim", "fleet", "--broker", broker.url, "--quiet", *args],
                   str(tmp_path / ("fleet-%s.log" % secrets.token_hex(3))))


@pytest.mark.parametrize("payload", ["senml", "compact"])
def test_generated_traffic_decodes_like_a_real_gateways(mosquitto: Mosquitto, tmp_path, payload: str) -> None:
    sub = Subscriber(mosquitto, client_id="raw-%s" % payload, persistent=False)
    monitor = subprocess.Popen([*FIELDLINK, "monitor", "--broker", mosquitto.url, "--json", "--once", "5",
                                "--timeout", "90"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:  # inventories are retained: the monitor has them (and the compact aliases) whenever it subscribes
        fleet = fleet_process(mosquitto, tmp_path, "--gateways", "5", "--devices", "6", "--interval", "1",
                              "--payload", payload, "--seconds", "8", "--health-interval", "2")
        out, err = monitor.communicate(timeout=120)
        assert fleet.wait(120) == 0, fleet.log()
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait(10)
        sub.close()
    assert monitor.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = {e["kind"] for e in events}
    assert "error" not in kinds and {"status", "reading", "health"} <= kinds, kinds
    inventories = {e["gateway"]: e["message"] for e in events if e["kind"] == "inventory"}
    # every online status names the CRC-32 of the inventory bytes as they crossed the wire
    crc = {cbor2.loads(raw)["gateway"]: zlib.crc32(raw) for raw in sub.on("inventory")}
    statuses = [cbor2.loads(raw) for raw in sub.on("status")]
    assert crc and all(m["inventory"] == crc[m["gateway"]] for m in statuses if m["online"]), (crc, statuses)
    for e in (e for e in events if e["kind"] == "reading"):
        inventory = inventories[e["gateway"]]
        assert inventory["payload"] == payload
        device = next(d for d in inventory["devices"] if d["id"] == e["device"])
        point = next(p for p in device["points"] if p["name"] == e["point"])
        assert e["unit"] == point["unit"]
        assert e["name"] == "%s:%s/%s" % (e["gateway"], e["device"], e["point"])
    if payload == "senml":  # an independent decoder: cbor2 and RFC 8428 alone
        names = {n for n, _, _ in sub.readings()}
        assert names and all(re.fullmatch(r"gw-0000[1-5]:[\w.-]+/[\w.-]+", n) for n in names)
        health = cbor2.loads(sub.on("health")[-1])
        assert any(bus["devices"] for bus in health["buses"].values()) and health["readings"]["made"] > 0


def test_a_command_to_a_generated_gateway_gets_its_ack(mosquitto: Mosquitto, tmp_path) -> None:
    key = tmp_path / "gw.key"
    key.write_text(secrets.token_hex(32) + "\n")
    os.chmod(key, 0o600)
    sub = Subscriber(mosquitto, topic="fieldlink/site-00001/gw-00001/#", client_id="cmd-watch",
                     persistent=False)
    fleet = fleet_process(mosquitto, tmp_path, "--gateways", "3", "--devices", "4", "--interval", "2",
                          "--mix", "street", "--seconds", "120", "--key-file", str(key))
    try:
        assert sub.wait_for(lambda: sub.on("status"), 60), fleet.log()
        base = ["send", "--broker", mosquitto.url, "--site", "site-00001", "--gateway", "gw-00001",
                "--device", "lamp-001", "--timeout", "20"]
        dim = fieldlink(*base, "--point", "dim", "--value", "0.4")
        assert dim.returncode == 0 and re.search(r"^ack \S+: ok, value 0.4$", dim.stdout, re.M), (
            dim.stdout, dim.stderr)
        acks = [a for a in sub.decoded("ack") if a["ok"]]
        assert acks and acks[-1]["value"] == 0.4
        assert sub.wait_for(lambda: any(r[0] == "gw-00001:lamp-001/dim" and r[1] == 0.4
                                        for r in sub.readings()), 30)  # read back and published
        unsigned = fieldlink(*base, "--point", "on", "--value", "0")
        assert unsigned.returncode == 1 and "refused unsigned" in unsigned.stdout + unsigned.stderr
        signed = fieldlink(*base, "--point", "on", "--value", "0", "--key-file", str(key))
        assert signed.returncode == 0, (signed.stdout, signed.stderr)
        assert sub.decoded("ack")[-1]["ok"] is True and sub.decoded("ack")[-1]["value"] == 0
        range_ = fieldlink(*base, "--point", "dim", "--value", "7")
        assert range_.returncode == 1 and "above the maximum" in range_.stdout + range_.stderr
    finally:
        fleet.stop()
        sub.close()


def test_a_dropped_connection_publishes_the_will_and_the_gateway_comes_back(mosquitto: Mosquitto,
                                                                               tmp_path) -> None:
    sub = Subscriber(mosquitto, topic="fieldlink/+/+/#", client_id="wills", persistent=False)
    fleet = fleet_process(mosquitto, tmp_path, "--gateways", "2", "--devices", "3", "--interval", "5",
                          "--seconds", "60", "--drop-every", "2")
    try:
        def statuses() -> list[dict]:
            return [m for m in sub.decoded("status")]

        assert sub.wait_for(lambda: any(not m["online"] for m in statuses()), 60), fleet.log()
        offline = next(i for i, m in enumerate(statuses()) if not m["online"])
        will = statuses()[offline]
        gateway = will["gateway"]
        assert any(m["online"] and m["gateway"] == gateway and m["session"] == will["session"]
                   for m in statuses()[:offline])  # the will of the connection that was up
        assert sub.wait_for(lambda: any(m["online"] and m["gateway"] == gateway
                                        and m["session"] > will["session"]
                                        for m in statuses()[offline + 1:]), 60)  # a new connection after it
    finally:
        assert fleet.stop() == 0
        sub.close()


def test_ctrl_c_stops_the_fleet_as_the_agent_stops_with_130_and_its_health_is_the_agents_shape(
        mosquitto: Mosquitto, tmp_path) -> None:
    """docs/cli.md: SIGINT ends `sim fleet` cleanly (offline status, figures printed), exit 130; the
    health it publishes passes docs/cddl/health.cddl (pycddl) and `fieldlink status --broker` reads a
    simulated gateway with its devices online."""
    from hil_tests.cddl import validate

    sub = Subscriber(mosquitto, topic="fieldlink/+/+/#", client_id="ctrl-c", persistent=False)
    fleet = Process("fleet", [*FIELDLINK, "sim", "fleet", "--broker", mosquitto.url, "--gateways", "2",
                              "--devices", "4", "--interval", "1", "--health-interval", "2"],
                    str(tmp_path / "fleet-ctrl-c.log"))
    try:
        assert sub.wait_for(lambda: len(sub.on("health")) >= 4, 60), fleet.log()
        for payload in sub.on("health"):
            validate("health", payload)
        for leaf in ("status", "inventory"):
            assert sub.on(leaf), leaf
            for payload in sub.on(leaf):
                validate(leaf, payload)
        last = cbor2.loads(sub.on("health")[-1])
        assert any(d["online"] for bus in last["buses"].values() for d in bus["devices"].values())
        status = fieldlink("status", "--broker", mosquitto.url, "--site", "site-00001", "--gateway",
                           "gw-00001", "--timeout", "20")
        assert status.returncode == 0 and "gw-00001" in status.stdout, (status.stdout, status.stderr)
        os.kill(fleet.pid, signal.SIGINT)
        assert fleet.wait(60) == 130, fleet.log()
    finally:
        if fleet.alive:
            fleet.stop()
        sub.close()
    assert "sustained" in fleet.log() and "Traceback" not in fleet.log()
    assert sub.wait_for(lambda: sum(1 for m in sub.decoded("status") if not m["online"]) >= 2, 10)
