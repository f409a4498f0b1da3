"""The firmware's main loop: poll buses, batch into SenML-CBOR packs, store in the flash ring, publish.

Tasks (asyncio, so the same loop runs on a board and under the WebAssembly VM):
- one poller per bus: devices in turn when due; readings go into the pack writer;
- the uplink: connect with a will, birth (retained), subscribe to …/cmd, send pending packs from
  the ring with a window of QoS 1 publishes in flight, acknowledge them in the ring on PUBACK, ping
  on schedule, health every `health` seconds; on any error close and reconnect with backoff;
- the watchdog is fed by the main loop only while every task made progress recently.

Ring records start with one byte naming the topic (0 data, 1 alarm), then the CBOR payload.
"""

import asyncio
import gc

from firmware_py import rt
from firmware_py.bus import Bus, Device
from firmware_py.mqtt import Client, MqttError, topic_item
from firmware_py.pack import PackWriter, text_item
from firmware_py.ring import Ring

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = "0.1.0"
KIND_DATA = 0
KIND_ALARM = 1
ERRORS = ("timeout", "crc", "frame", "exception", "decode", "quality")


class Gateway:
    def __init__(self, cfg: dict, hw) -> None:
        self.cfg = cfg
        self.hw = hw
        g = cfg["gateway"]
        self.gw = g
        prefix = "%s/%s/%s/" % (g["prefix"], g["site"], g["id"])
        self.topics = [topic_item(prefix + "data"), topic_item(prefix + "alarm")]
        self.t_status = topic_item(prefix + "status")
        self.t_health = topic_item(prefix + "health")
        self.t_ack = topic_item(prefix + "ack")
        self.cmd_topic = prefix + "cmd"
        self.status_topic = prefix + "status"
        r = cfg["ring"]
        self.ring = Ring(hw.open_ring(r["path"], r["slots"], r["slot_size"]), r["slots"], r["slot_size"])
        b = cfg["batch"]
        self.max_records = b["max_records"]
        self.max_age_ms = int(b["max_age"] * 1000)
        size = min(b["max_bytes"], self.ring.max_payload)
        self.writer = PackWriter(size - 1, g["base_name"], 4)  # a byte in front for the record kind
        self.batch_started = 0
        self.txbuf = bytearray(self.ring.max_payload)
        self.stats = {"polls": 0}
        for k in ERRORS:
            self.stats[k] = 0
        self.counters = {"made": 0, "published": 0, "connects": 0, "disconnects": 0,
                         "connect_failures": 0, "packs": 0}
        self.buses = []
        for spec in cfg["buses"]:
            self.buses.append(Bus(spec, hw.uart(spec), self.stats))
        self.devices = []
        self.names = []  # per device: {point: cbor name item}
        for i, spec in enumerate(cfg["devices"]):
            d = Device(spec, i)
            self.devices.append(d)
            self.buses[spec["bus"]].devices.append(d)
            items = {}
            for _frame, pts in d.requests:
                for name, _args in pts:
                    items[name] = text_item("%s/%s" % (d.id, name))
            self.names.append(items)
        m = cfg["broker"]
        self.broker = m
        self.birth_seq = cfg.get("birth_seq", 0)  # the will carries the birth's seq
        self.client = Client(hw, m["client_id"], m.get("keepalive", 30), m.get("username"),
                             m.get("password"), None, 512)
        self.client.on_puback = self._puback
        self.client.on_message = self._message
        self.window = cfg.get("inflight", 4)
        self.inflight_pid = [0] * self.window
        self.inflight_seq = [0] * self.window
        self.cursor = 0
        self.started = rt.ticks_ms()
        self.beats = [rt.ticks_ms()] * (len(self.buses) + 1)
        self.running = True
        self.commands: list = []

    # -- acquisition ------------------------------------------------------------------------------
    def sink(self, device, name: str, value, now: int) -> None:
        """One reading into the current pack; a full or time-jumping pack is committed first."""
        item = self.names[device.index][name]
        w = self.writer
        if w.count >= self.max_records or not w.add(item, value, now):
            self.commit()
            if not w.add(item, value, now):
                return
        if w.count == 1:
            self.batch_started = rt.ticks_ms()
        self.counters["made"] += 1

    def commit(self) -> None:
        """Store the current pack in the flash ring (committed when this returns)."""
        w = self.writer
        if not w.count:
            return
        head = w.pos - len(w.finish())  # 1..3: the pack starts after its kind byte
        w.buf[head - 1] = KIND_DATA
        self.ring.append(w.view[head - 1 : w.pos])
        w.reset()

    def _append_copy(self, kind: int, payload) -> None:
        buf = self.txbuf
        buf[0] = kind
        n = len(payload)
        buf[1 : 1 + n] = payload
        self.ring.append(memoryview(buf)[: 1 + n])

    async def poll_bus(self, bus, slot: int) -> None:
        while self.running:
            now_ms = rt.ticks_ms()
            self.beats[slot] = now_ms
            idle = True
            for d in bus.devices:
                if rt.ticks_diff(now_ms, d.due) >= 0:
                    d.due = rt.ticks_add(now_ms, d.interval_ms)
                    await bus.poll(d, self.sink, rt.now())
                    self.beats[slot] = rt.ticks_ms()
                    idle = False
            if self.writer.count and rt.ticks_diff(rt.ticks_ms(), self.batch_started) >= self.max_age_ms:
                self.commit()
            if idle:
                await rt.sleep_ms(20)

    # -- uplink -----------------------------------------------------------------------------------
    def _puback(self, pid: int) -> None:
        for i in range(self.window):
            if self.inflight_pid[i] == pid:
                self.ring.ack(self.inflight_seq[i])
                self.inflight_pid[i] = 0
                self.counters["packs"] += 1
                return

    def _message(self, topic, payload) -> None:
        if len(self.commands) < 4:
            self.commands.append(bytes(payload))

    def birth(self) -> bytes:
        from protocols import birth

        g = self.gw
        msg = birth.make_birth(g["id"], g["site"], self.cfg["birth_devices"], rt.now(), self.birth_seq,
                               g.get("payload", "senml"), {"fieldlink": VERSION, "firmware": VERSION},
                               g["base_name"])
        return birth.encode(msg)

    def will(self) -> bytes:
        from protocols import birth

        g = self.gw
        return birth.encode(birth.make_will(g["id"], g["site"], self.birth_seq))

    def health(self) -> bytes:
        from protocols import cbor

        ring = self.ring
        msg = {
            "gateway": self.gw["id"], "site": self.gw["site"], "time": rt.now(),
            "uptime": rt.ticks_diff(rt.ticks_ms(), self.started) // 1000, "connected": self.client.connected,
            "readings": {"made": self.counters["made"], "published": self.counters["packs"],
                         "buffered": self.writer.count, "dropped": ring.dropped},
            "outbox": {"packs": ring.pending(), "bytes": ring.used_bytes(),
                       "max_bytes": ring.slots * ring.max_payload, "dropped_packs": ring.dropped,
                       "corrupt_skipped": ring.skipped},
            "mqtt": {"connects": self.counters["connects"], "disconnects": self.counters["disconnects"],
                     "connect_failures": self.counters["connect_failures"],
                     "packs_published": self.counters["packs"], "pings": self.client.pings},
            "polls": self.stats["polls"],
            "errors": {k: self.stats[k] for k in ERRORS},
            "mem_free": gc.mem_free(),
        }
        return cbor.dumps(msg)

    async def uplink(self) -> None:
        failures = 0
        c = self.client
        m = self.broker
        slot = len(self.buses)
        while self.running:
            self.beats[slot] = rt.ticks_ms()
            try:
                c.will = (self.status_topic, self.will(), 1, True)
                await c.connect(m["host"], m["port"])
                self.counters["connects"] += 1
                failures = 0
                await c.publish(self.t_status, self.birth(), 1, True)
                await c.subscribe(self.cmd_topic, 1)
                await self.session()
            except (OSError, MqttError):
                c.close()
                if self.counters["connects"]:
                    self.counters["disconnects"] += 1
                self.counters["connect_failures"] += 1
                failures += 1
            for i in range(self.window):
                self.inflight_pid[i] = 0
            low = m.get("reconnect_min", 1) * 1000
            delay = min(m.get("reconnect_max", 60) * 1000, low * (1 << min(failures, 10)))
            waited = 0
            while waited < delay and self.running:  # backoff without starving the watchdog
                self.beats[slot] = rt.ticks_ms()
                await rt.sleep_ms(100)
                waited += 100

    async def session(self) -> None:
        c = self.client
        slot = len(self.buses)
        self.cursor = 0
        next_health = rt.ticks_ms()
        interval = int(self.gw.get("health", 60) * 1000)
        while self.running:
            self.beats[slot] = rt.ticks_ms()
            c.poll()
            while self.commands:
                await self.command(self.commands.pop(0))
            await self._pump()
            if rt.ticks_diff(rt.ticks_ms(), next_health) >= 0:
                next_health = rt.ticks_add(rt.ticks_ms(), interval)
                await c.publish(self.t_health, self.health(), 0, False)
            await c.keep_alive()
            await rt.sleep_ms(10)

    async def _pump(self) -> None:
        for i in range(self.window):
            if self.inflight_pid[i]:
                continue
            seq = self.ring.next_pending(self.cursor)
            while seq:
                view = self.ring.read(seq, self.txbuf)
                if view is not None:
                    break
                seq = self.ring.next_pending(seq)
            if not seq:
                return
            self.cursor = seq
            topic = self.topics[view[0]] if view[0] < 2 else self.topics[0]
            pid = await self.client.publish(topic, view[1:], 1, False)
            self.inflight_seq[i] = seq
            self.inflight_pid[i] = pid

    async def command(self, data: bytes) -> None:
        """…/cmd: only a writable point within its range is written; anything else is refused."""
        from protocols import cbor

        ack: dict = {"id": None, "ok": False}
        try:
            cmd: Any = cbor.loads(data)
            ack["id"] = cmd.get("id")
            ack["error"] = self.refuse(cmd)
        except Exception as exc:
            ack["error"] = "bad command: %s" % exc
        await self.client.publish(self.t_ack, cbor.dumps(ack), 1, False)

    def refuse(self, cmd: dict) -> str:
        writable = self.cfg.get("writable", {}).get("%s/%s" % (cmd.get("device"), cmd.get("point")))
        if writable is None:
            return "point %s of device %s is not writable" % (cmd.get("point"), cmd.get("device"))
        return "writes are not enabled on this firmware build"

    # -- supervision ------------------------------------------------------------------------------
    async def main(self, run_ms: int = 0) -> None:
        """Run everything; feed the watchdog while every task shows progress. `run_ms` > 0 stops."""
        tasks = [asyncio.create_task(self.poll_bus(b, i)) for i, b in enumerate(self.buses)]
        tasks.append(asyncio.create_task(self.uplink()))
        wdt = self.hw.wdt(self.cfg.get("watchdog_ms", 30000))
        limit = self.cfg.get("watchdog_ms", 30000) // 2
        start = rt.ticks_ms()
        while self.running:
            now = rt.ticks_ms()
            stuck = False
            for b in self.beats:
                if rt.ticks_diff(now, b) > limit:
                    stuck = True
            if not stuck:
                wdt.feed()
            if run_ms and rt.ticks_diff(now, start) >= run_ms:
                break
            await rt.sleep_ms(200)
        self.running = False
        self.commit()
        await rt.sleep_ms(50)
        for t in tasks:
            t.cancel()
        await self.client.disconnect()
