"""`fieldlink monitor`: decoding both payload profiles, errors counted, output at the CLI."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from agent.commands import monitor
from agent.commands.monitor import MonitorState, line, parse_broker, table
from hil_tests.broker import broker_or_skip
from protocols import birth as birth_msg
from protocols import compact, senml

INVENTORY = [
    {"id": "meter-1", "kind": "electricity_meter", "model": "m", "protocol": "dlt645",
     "address": "000000000161", "points": [{"name": "energy", "unit": "J", "resolution": 3600},
                                           {"name": "voltage", "unit": "V", "resolution": 0.1}]},
]
READINGS = [("meter-1", "energy", 44444412000, 1710498030), ("meter-1", "voltage", 230.5, 1710498031)]
NOW = 1710498040.0


def birth(payload="senml", seq=1):
    return birth_msg.encode(birth_msg.make_birth("gw-01", "site-a", INVENTORY, time=1710498000, seq=seq,
                                                 payload=payload))


def test_senml_pack_with_units_from_the_birth():
    st = MonitorState()
    st.handle("fieldlink/site-a/gw-01/status", birth(), NOW)
    events = st.handle("fieldlink/site-a/gw-01/data", senml.encode(READINGS, "gw-01:"), NOW)
    assert [(e["device"], e["point"], e["value"], e["unit"], e["time"]) for e in events] == [
        ("meter-1", "energy", 44444412000, "J", 1710498030), ("meter-1", "voltage", 230.5, "V", 1710498031)]
    text = table(st, NOW)
    assert "meter-1" in text and "voltage" in text and "230.5" in text and "9s" in text
    # units people read, rounded to the resolution the birth declares (3600 J = 0.001 kWh)
    assert [line(e).split(" = ")[1] for e in events] == ["12345.670 kWh", "230.5 V"]
    assert "12345.670" in text and "kWh" in text
    si = MonitorState(si=True)
    si.handle("fieldlink/site-a/gw-01/status", birth(), NOW)
    shown = si.handle("fieldlink/site-a/gw-01/data", senml.encode(READINGS, "gw-01:"), NOW)
    assert line(shown[0]).endswith(" = 44444412000 J")


def test_any_senml_pack_decodes_even_without_a_birth():
    st = MonitorState()
    pack = cbor2.dumps([{-2: "urn:dev:ow:10e2073a01080063:", 0: "temp", 1: "Cel", 2: 23.1, 6: 1710498000}])
    (event,) = st.handle("fieldlink/x/y/data", pack, NOW)
    assert (event["device"], event["point"], event["value"], event["unit"]) == (
        "urn:dev:ow:10e2073a01080063:temp", "", 23.1, "Cel")
    (event, _) = st.handle("fieldlink/x/y/data", senml.encode(READINGS, "gw-01:"), NOW)
    assert (event["device"], event["point"], event["unit"]) == ("gw-01:meter-1", "energy", "")


def test_compact_pack_needs_the_birth_of_its_seq():
    st = MonitorState()
    data = compact.encode(READINGS, birth_msg.decode(birth("compact", seq=4)))
    (err,) = st.handle("fieldlink/site-a/gw-01/data", data, NOW)
    assert err["kind"] == "error" and "seq" in err["error"] and st.errors == 1
    st.handle("fieldlink/site-a/gw-01/status", birth("compact", seq=4), NOW)
    events = st.handle("fieldlink/site-a/gw-01/data", data, NOW)
    assert [(e["point"], e["value"], e["unit"]) for e in events] == [("energy", 44444412000, "J"),
                                                                     ("voltage", 230.5, "V")]


@pytest.mark.parametrize("payload", [b"", b"\xff\xff", cbor2.dumps({"not": "a pack"}), cbor2.dumps([1, 2]),
                                     cbor2.dumps([{0: "bad name!", 2: 1}])])
def test_bad_payloads_are_counted_never_raised(payload):
    st = MonitorState()
    events = st.handle("fieldlink/s/g/data", payload, NOW)
    assert [e["kind"] for e in events] == ["error"] and st.errors == 1
    assert "bad payload" in line(events[0])


def test_alarm_status_and_ack_lines():
    st = MonitorState()
    alarm = cbor2.dumps({"device": "meter-1", "point": None, "kind": "comms", "value": "no answer",
                         "state": "raised", "time": 1710498000})
    (e,) = st.handle("fieldlink/s/g/alarm", alarm, NOW)
    assert line(e) == "ALARM s/g raised comms meter-1 : no answer"
    (e,) = st.handle("fieldlink/s/g/status", birth_msg.encode(birth_msg.make_will("g", "s", 2)), NOW)
    assert "OFFLINE" in line(e) and st.status[("s", "g")] == "offline"
    (e,) = st.handle("fieldlink/s/g/ack", cbor2.dumps({"id": 3, "ok": False, "error": "not writable"}), NOW)
    assert line(e) == "ack s/g id=3 ok=False not writable"
    assert st.handle("other/s/g/data", b"", NOW) == []


def test_parse_broker():
    assert parse_broker("localhost") == ("localhost", 1883)
    assert parse_broker("10.0.0.2:8883") == ("10.0.0.2", 8883)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_broker("host:port")


def test_monitor_prints_what_it_receives():
    broker = broker_or_skip()
    try:
        parser = argparse.ArgumentParser()
        monitor.add_arguments(parser)
        args = parser.parse_args(["--broker", broker.url, "--site", "site-a", "--once", "2",
                                  "--timeout", "20"])
        out = io.StringIO()
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(monitor.run(args, out)))
        thread.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        pub.publish("fieldlink/site-a/gw-01/status", birth(), qos=1, retain=True).wait_for_publish(5)
        deadline = time.monotonic() + 15
        while "online" not in out.getvalue():  # the retained birth arrived: the monitor has subscribed
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        for topic, payload in (("fieldlink/site-b/gw-09/data", senml.encode(READINGS, "gw-09:")),
                               ("fieldlink/site-a/gw-01/data", senml.encode(READINGS, "gw-01:")),
                               ("fieldlink/site-a/gw-01/data", b"\x00garbage")):
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        thread.join(25)
        pub.loop_stop()
        assert result == [0]
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("* site-a/gw-01 online")
        assert any("meter-1/voltage = 230.5 V" in t for t in lines)
        assert not any("site-b" in t for t in lines), "--site filters"
        assert any("bad payload" in t for t in lines)
    finally:
        broker.close()


def test_json_lines():
    st = MonitorState()
    (e, _) = st.handle("fieldlink/s/gw-01/data", senml.encode(READINGS, "gw-01:"), NOW)
    assert json.loads(monitor._json(e))["value"] == 44444412000
