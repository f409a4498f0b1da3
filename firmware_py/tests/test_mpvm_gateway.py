"""The real main loop under genuine MicroPython: pty bus in, Mosquitto out, decoded and checked."""

import threading
import time

import pytest

from firmware_py.tests import mpvm
from firmware_py.tests.fakebus import FakeBus, expected
from firmware_py.tests.site import write_site
from hil_tests.broker import broker_or_skip
from protocols import birth, cbor, senml

pytestmark = pytest.mark.skipif(mpvm.available() is not None, reason=str(mpvm.available()))

RUN = """
import json, fwhost
from firmware_py import app, hw_host
cfg = json.load(open('/config.json'))
gw = app.Gateway(cfg, hw_host.Host())
import asyncio
async def chaos():
    await asyncio.sleep_ms(%(drop_at)d)
    if %(drop_at)d:
        fwhost.kill_tcp()
asyncio.create_task(chaos())
await gw.main(run_ms=%(run_ms)d)
fwhost.emit(json.dumps({"made": gw.counters["made"], "packs": gw.counters["packs"],
    "connects": gw.counters["connects"], "pending": gw.ring.pending(), "errors": gw.stats}))
"""


class Collector:
    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.msgs = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="collector")
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def _on(self, client, userdata, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.retain))

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()

    def of(self, leaf):
        with self.lock:
            return [m for m in self.msgs if m[0].endswith("/" + leaf)]


def test_gateway_publishes_ground_truth_through_mosquitto(tmp_path):
    broker = broker_or_skip()
    try:
        with FakeBus([1, 2, 3]) as bus:
            cfg = write_site(str(tmp_path), bus.path, broker.port, [1, 2, 3])
            col = Collector(broker.port, "fieldlink/lab/fw-01/#")
            res = mpvm.run(RUN % {"run_ms": 7000, "drop_at": 3500}, files={"/config.json": cfg})
            time.sleep(0.5)
            col.close()
        assert res.returncode == 0, res.stderr[-3000:]
        summary = res.values()[-1]
        assert summary["made"] > 30 and summary["connects"] >= 2, summary
        # data: every reading decodes and equals the device's registers
        records = []
        for _topic, payload, _ in col.of("data"):
            records += senml.decode(payload)
        assert len(records) >= 30
        seen = set()
        for r in records:
            device, point = r["n"].split(":")[1].split("/")
            want = expected(int(device[1:]))[point]
            assert r["v"] == pytest.approx(want, rel=1e-9), r
            seen.add((device, point))
        assert seen == {("m%d" % u, p) for u in (1, 2, 3) for p in expected(1)}
        # birth (retained, online) and, after the dropped connection, the will (offline), then birth again
        status = [birth.decode(p) for _t, p, _r in col.of("status")]
        online = [s["online"] for s in status]
        assert online[0] is True and False in online and online[-1] is True, online
        assert status[0]["devices"][0]["points"][0]["unit"] == "%"
        health = [cbor.loads(p) for _t, p, _r in col.of("health")]
        assert health and health[-1]["polls"] > 0 and "mem_free" in health[-1]
        # hardware contract: DE pin high and low around every UART write; watchdog fed in time
        host = res.host
        assert host["pins"]["%2"][1] == host["pins"]["%2"][0] > 0
        assert host["wdt_feeds"] > 10 and host["wdt_max_gap_ms"] < host["wdt_timeout"]
    finally:
        broker.close()
