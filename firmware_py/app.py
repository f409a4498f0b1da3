"""The firmware's main loop: poll buses, batch into SenML-CBOR packs, store in the flash ring, publish.

Tasks (asyncio, so the same loop runs on a board and under the WebAssembly VM):
- one poller per bus: devices in turn when due, commands between polls; readings go into the pack
  writer and through the threshold rules; a device that stops answering is backed off and raises a
  `comms` alarm (cleared when it answers again), as the agent's scheduler does; a point answered
  without a usable value raises a `quality` alarm once (its quality text), cleared ("good") by its
  next good value: one byte of state per point (`quality`), a count of bad answers per point;
- the uplink: connect with a will, subscribe to …/cmd, birth (retained, streamed from flash), health,
  then the packs from the ring with a window of QoS 1 publishes in flight, acknowledged in the ring on
  PUBACK; acks of commands; ping on schedule; on any error close and reconnect with exponential
  backoff and jitter (mqtt.Backoff, seeded per board);
- the watchdog is fed by the main loop only while every task made progress recently.

Only the uplink task writes to the MQTT socket. Ring records start with one byte naming the topic
(0 data, 1 alarm), then the CBOR payload; alarms go through the ring in order with the data.
State is preallocated at start (see docs/flashing.md, "Memory"): polling allocates only the
short-lived values the codecs return.
"""

import array
import asyncio
import gc

from firmware_py import rt
from firmware_py.bus import FAILED, OK, Bus, WriteRefused
from firmware_py.commands import Remote
from firmware_py.inventory import MODBUS, Inventory
from firmware_py.mqtt import Backoff, Client, MqttError, jitter_bits, topic_item
from firmware_py.pack import PackWriter, uint_item
from firmware_py.ring import Ring
from protocols import cbor
from protocols import commands as rules
from protocols.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

KIND_DATA = 0
KIND_ALARM = 1
ERRORS = ("timeout", "crc", "frame", "exception", "decode", "quality")
COUNTERS = ("made", "connects", "disconnects", "connect_failures", "packs", "alarms", "commands",
            "commands_bad", "acks", "acks_dropped")
BIRTH_PATH = "/birth.cbor"
OFFLINE_AFTER = 3  # failed poll cycles before a device is reported offline
BACKOFF_TIMEOUTS = 10  # a silent device is retried after max(interval, 10 response timeouts), doubling
BACKOFF_MAX_MS = 300000
QUALITY = ("good", "not_available", "bad_bcd", "decode", "unit", "other")  # a point's quality code


class Gateway:
    def __init__(self, cfg: dict, hw) -> None:
        """Build everything from the compiled config; `cfg` is not kept (drop it after this)."""
        self.hw = hw
        g = cfg["gateway"]
        self.gateway_id = g["id"]
        self.site = g["site"]
        prefix = "%s/%s/%s/" % (g["prefix"], g["site"], g["id"])
        self.topics = (topic_item(prefix + "data"), topic_item(prefix + "alarm"))
        self.t_status = topic_item(prefix + "status")
        self.t_health = topic_item(prefix + "health")
        self.t_ack = topic_item(prefix + "ack")
        self.cmd_topic = prefix + "cmd"
        self.health_ms = int(g.get("health", 60) * 1000)
        r = cfg["ring"]
        self.ring = Ring(hw.open_ring(r["path"], r["slots"], r["slot_size"]), r["slots"], r["slot_size"])
        b = cfg["batch"]
        self.max_records = b["max_records"]
        self.max_age_ms = int(b["max_age"] * 1000)
        size = min(b["max_bytes"], self.ring.max_payload)
        self.writer = PackWriter(size - 1, g["base_name"], 4)  # a byte in front for the record kind
        self.batch_started = 0
        self.txbuf = bytearray(self.ring.max_payload)
        self.chunk = bytearray(128)  # the birth is streamed from flash through this
        self.stats = {"polls": 0}
        for k in ERRORS:
            self.stats[k] = 0
        self.counters = {}
        for k in COUNTERS:
            self.counters[k] = 0
        inv = Inventory(cfg)
        self.inv = inv
        self.buses = [Bus(spec, hw.uart(spec), self.stats) for spec in cfg["buses"]]
        n = inv.count
        self.due = [0] * n
        self.failures = bytearray(n)
        self.online = bytearray(b"\x01" * n)
        self.last_error: list = [None] * n
        slots = len(inv.points)  # one slot per polled point of each device (inventory.points)
        self.quality = bytearray(slots)  # QUALITY code of each point; 0: good
        self.bad_answers = array.array("H", bytes(2 * slots))  # answers without a value, per point
        for bus in self.buses:
            bus.quality = self.quality
            bus.on_quality = self.point_quality
        for d in range(n):
            bus = self.buses[inv.bus[d]]
            bus.devices.append(d)
            bus.reader(inv.protocol[d])  # codec modules and frame readers are loaded now, not later
        if inv.uses(MODBUS) or inv.writes:
            from protocols import points  # noqa: F401  (register decoding, writes)
        if inv.writes:
            from protocols import profiles  # noqa: F401  (Point.check_write for commands)
        # the birth: head + CBOR(time) + tail; the tail (the inventory) waits on flash, not in RAM
        import binascii

        self.birth_head = binascii.unhexlify(cfg["birth"][0])
        tail = binascii.unhexlify(cfg["birth"][1])
        with open(BIRTH_PATH, "wb") as f:
            f.write(tail)
        self.birth_tail = len(tail)
        del tail
        self.will = binascii.unhexlify(cfg["will"])
        m = cfg["broker"]
        self.host = m["host"]
        self.port = m["port"]
        self.backoff = Backoff(int(m.get("reconnect_min", 1) * 1000), int(m.get("reconnect_max", 60) * 1000),
                               jitter_bits(m["client_id"]))
        self.client = Client(hw, m["client_id"], m.get("keepalive", 30), m.get("username"),
                             m.get("password"), (prefix + "status", self.will, 1, True), 512)
        self.client.on_puback = self._puback
        self.client.on_message = self._message
        self.window = cfg.get("inflight", 4)
        self.inflight_pid = [0] * self.window
        self.inflight_seq = [0] * self.window
        self.cursor = 0
        self.watchdog_ms = cfg.get("watchdog_ms", 30000)
        self.started = rt.ticks_ms()
        self.beats = [rt.ticks_ms()] * (len(self.buses) + 1)
        self.running = True
        self.commands: list = []  # (payload, retained) from …/cmd, at most 4 waiting
        spec = cfg.get("commands") or {}
        self.remote = Remote(spec, self.gateway_id, spec.get("path", "/cmdids.cbor"))
        self.acks: list = []  # encoded acks waiting for the uplink, at most 8

    # -- acquisition ------------------------------------------------------------------------------
    def sink(self, d: int, spec: int, value, now: int) -> None:
        """One reading into the current pack; a full or time-jumping pack is committed first."""
        inv = self.inv
        ni = inv.specs[spec][0]
        front = inv.ids[d]
        point = inv.names[ni]
        w = self.writer
        if w.count >= self.max_records or not w.add_name(front, point, value, now):
            self.commit()
            if not w.add_name(front, point, value, now):
                return
        if w.count == 1:
            self.batch_started = rt.ticks_ms()
        self.counters["made"] += 1
        if inv.ruled[d]:
            self.check_rules(d, ni, value, now)

    def commit(self) -> None:
        """Store the current pack in the flash ring (committed when this returns)."""
        w = self.writer
        if not w.count:
            return
        head = w.pos - len(w.finish())  # 1..3: the pack starts after its kind byte
        w.buf[head - 1] = KIND_DATA
        self.ring.append(w.view[head - 1 : w.pos])
        w.reset()

    def check_rules(self, d: int, ni: int, value, now: int) -> None:
        """The shared alarm rules (protocols/rules.py, as the agent): an alarm when one starts or ends."""
        for rd, rn, rule in self.inv.rules:
            if rd == d and rn == ni:
                change = rule.update(value)
                if change is not None:
                    self.alarm(d, rule.point, rule.kind, value, change, now)

    def alarm(self, d: int, point, kind: str, value, raised: bool, now: int) -> None:
        """An alarm map (the agent's) into the ring, after the readings made before it."""
        msg = {"device": self.inv.device_id(d), "point": point, "kind": kind, "value": value,
               "state": "raised" if raised else "cleared", "time": now}
        self.commit()
        self.ring.append(b"\x01" + cbor.dumps(msg))
        self.counters["alarms"] += 1

    def point_quality(self, d: int, k: int, text, now: int) -> None:
        """From the bus: point slot `k` of device `d` answered without a value (`text` says why), or
        gave a good value after bad ones (None). An alarm on each change, as agent/gateway.py: raised
        with the quality text, cleared with "good"; repeated bad answers are only counted."""
        q = self.quality
        if text is None:
            was = q[k]
            q[k] = 0
            if was:
                self.alarm(d, self.inv.name(self.inv.points[k]), "quality", "good", False, now)
            return
        if self.bad_answers[k] < 0xFFFF:
            self.bad_answers[k] += 1
        if q[k]:
            return
        code = QUALITY.index(text) if text in QUALITY else 0
        if not code:
            code = 3 if text.startswith("decode") else 4 if text.startswith("unit") else 5
        q[k] = code
        self.alarm(d, self.inv.name(self.inv.points[k]), "quality", text, True, now)

    async def poll_device(self, bus, d: int) -> None:
        """One poll cycle of device `d`; schedules the next, with backoff while it is silent."""
        inv = self.inv
        answered = False
        failed = False
        for r in inv.requests(d):
            outcome = await bus.request(inv, d, r, self.sink, rt.now(), True)
            if outcome == OK:
                answered = True
            elif outcome == FAILED:
                answered = True  # the device is there; it refused or garbled this request
                failed = True
                self.last_error[d] = "error"
            else:
                self.last_error[d] = "timeout"
                break  # a silent device gets no more of the line this cycle
        interval = inv.interval_ms[d]
        t = rt.ticks_ms()
        if answered:
            self.failures[d] = 0
            if not self.online[d]:
                self.online[d] = 1
                self.alarm(d, None, "comms", "answering" if not failed else "answering with errors",
                           False, rt.now())
            due = rt.ticks_add(self.due[d], interval)
            self.due[d] = due if rt.ticks_diff(due, t) > 0 else t
            return
        if self.failures[d] < 255:
            self.failures[d] += 1
        fails = self.failures[d]
        if fails >= OFFLINE_AFTER and self.online[d]:
            self.online[d] = 0
            self.alarm(d, None, "comms", "no reply to %d polls (%s)" % (fails, self.last_error[d]), True,
                       rt.now())
        base = max(interval, BACKOFF_TIMEOUTS * bus.timeout_ms)
        delay = min(base << min(fails - 1, 16), max(BACKOFF_MAX_MS, interval))
        self.due[d] = rt.ticks_add(t, delay)

    async def poll_bus(self, bus, slot: int) -> None:
        while self.running:
            now_ms = rt.ticks_ms()
            self.beats[slot] = now_ms
            idle = True
            for d in bus.devices:
                while bus.jobs:
                    await self.run_job(bus, bus.jobs.pop(0))
                if rt.ticks_diff(now_ms, self.due[d]) >= 0:
                    await self.poll_device(bus, d)
                    self.beats[slot] = rt.ticks_ms()
                    idle = False
            while bus.jobs:
                await self.run_job(bus, bus.jobs.pop(0))
            if self.writer.count and rt.ticks_diff(rt.ticks_ms(), self.batch_started) >= self.max_age_ms:
                self.commit()
            if idle:
                await rt.sleep_ms(20)

    # -- commands ---------------------------------------------------------------------------------
    def take_command(self, data, retained: bool = False) -> None:
        """Check a command from …/cmd (firmware_py/commands.py: the agent's rules, ids in flash): a
        refusal or a repeat is acked now; a write or read waits for its bus, at most `queue` per bus.

        The checks and their texts are the agent's (protocols/commands.py, agent/scheduler.py) and the
        profile's own `Point.check_write`, so both gateways refuse the same commands the same way."""
        self.counters["commands"] += 1
        remote = self.remote
        now = rt.now()
        try:
            cmd = remote.open(data, retained, now)
        except rules.Refused as exc:
            return self.refuse(exc)
        cid = cmd.id
        device = cmd.device
        point = cmd.point
        action = cmd.fields.get("action", "write")
        inv = self.inv
        d = inv.find_device(device)
        ni = inv.find_name(point)
        marked = d >= 0 and ni >= 0 and (d << 16 | ni) in inv.switching
        try:
            prior = remote.check(cmd, rules.is_switching(action, marked), now)
        except rules.Refused as exc:
            return self.refuse(exc)
        if prior is not None:
            if prior:
                self.ack_raw(prior)  # a repeat: the original ack again, nothing runs
            return
        if d < 0:
            return self.ack(cid, False, rules.refusal("unknown_device", repr(device)))
        if type(point) is not str:
            return self.ack(cid, False, rules.refusal("no_point"))
        bus = self.buses[inv.bus[d]]
        if action == "read":
            return self.queue(bus, cmd, (cid, d, ni, None, None, True), now)
        if action != "write":
            return self.ack(cid, False, "unknown action %r; expected write or read" % (action,))
        if "value" not in cmd.fields:
            return self.ack(cid, False, rules.refusal("no_value"))
        value = cmd.fields["value"]
        from protocols.profiles import Point

        ws = inv.writes.get(d << 16 | ni) if ni >= 0 else None
        spec: dict
        if ws is None:
            spec = {"name": point}
        else:
            spec = {"name": point, "writable": True, "min": ws[1], "max": ws[2], "values": ws[3]}
            if inv.protocol[d] == MODBUS:
                spec["table"] = ws[4]
                spec["type"] = ws[6]
                spec["scale"] = ws[8]  # the register grid: a write must not be rounded on the wire
                spec["offset"] = ws[9]
        reason = Point(spec).check_write(value)
        if reason is not None:
            return self.ack(cid, False, reason)
        self.queue(bus, cmd, (cid, d, ni, ws, value, False), now)

    def refuse(self, exc) -> None:
        """A refusal: counted by reason, acked when the command had an id (else counted as bad)."""
        self.remote.refuse(exc.reason)
        if rules.valid_id(exc.cmd_id):
            self.ack(exc.cmd_id, False, exc.text)
        else:
            self.counters["commands_bad"] += 1

    def queue(self, bus, cmd, job, now: int) -> None:
        """Onto the bus's job list unless `queue` jobs already wait (busy); remembered in flash first."""
        if len(bus.jobs) >= self.remote.queue:
            self.remote.refuse("busy")
            return self.ack(cmd.id, False, rules.refusal("busy", bus.name, len(bus.jobs)))
        self.remote.begin(cmd, now)
        bus.jobs.append(job)

    async def run_job(self, bus, job) -> None:
        cid, d, ni, ws, value, read = job
        inv = self.inv
        try:
            if read:
                got: list = []
                for r in inv.requests(d):
                    await bus.request(inv, d, r, lambda _d, spec, v, _t: got.append((spec, v)), 0)
                for spec, v in got:
                    if inv.specs[spec][0] == ni:
                        return self.done(cid, True, None, v)
                return self.done(cid, False, "point has no value (not read)")
            v = await bus.write(inv, d, ws, value)
            self.done(cid, True, None, v)
        except WriteRefused as exc:
            self.done(cid, False, str(exc))
        except ProtocolError as exc:
            from firmware_py.bus import _kind

            self.done(cid, False, "%s: %s" % (_kind(exc), exc))
        except Exception as exc:  # as the agent: an error ack, the poller goes on
            self.done(cid, False, "command failed: %s" % exc)

    def done(self, cid, ok: bool, error, value=None) -> None:
        """A command finished: its ack is kept with its id in flash, then sent."""
        ack = rules.ack_bytes(cid, ok, error, value)
        try:
            self.remote.finish(cid, ok, ack)
        except OSError as exc:
            print("fieldlink: command id store:", exc.args[0] if exc.args else exc)
        self.ack_raw(ack)

    def ack_raw(self, ack: bytes) -> None:
        if len(self.acks) >= 8 or not self.client.connected:
            self.counters["acks_dropped"] += 1
            return
        self.acks.append(ack)

    def ack(self, cid, ok: bool, error, value=None) -> None:
        if len(self.acks) >= 8 or not self.client.connected:
            self.counters["acks_dropped"] += 1
            return
        self.acks.append(cbor.dumps({"id": cid, "ok": ok, "error": error, "value": value}))

    # -- uplink -----------------------------------------------------------------------------------
    def _puback(self, pid: int) -> None:
        for i in range(self.window):
            if self.inflight_pid[i] == pid:
                self.ring.ack(self.inflight_seq[i])
                self.inflight_pid[i] = 0
                self.counters["packs"] += 1
                return

    def _message(self, topic, payload, retained=False) -> None:
        if len(self.commands) < 4:
            self.commands.append((bytes(payload), retained))
        else:
            self.counters["commands_bad"] += 1

    async def publish_birth(self) -> None:
        """The retained birth: its head, the time, then the inventory streamed from flash."""
        c = self.client
        t = uint_item(rt.now())
        await c.begin_publish(self.t_status, len(self.birth_head) + len(t) + self.birth_tail, 1, True)
        await c.send(self.birth_head)
        await c.send(t)
        buf = self.chunk
        left = self.birth_tail
        with open(BIRTH_PATH, "rb") as f:
            while left > 0:
                n = f.readinto(buf)
                if not n:
                    raise OSError(5)
                n = min(n, left)
                await c.send(memoryview(buf)[:n])
                left -= n

    def points_health(self) -> dict:
        """Per bus, as the agent's health: bad answers per point so far, the points bad now."""
        inv = self.inv
        out = {}
        for bus in self.buses:
            counts: dict = {}
            bad: dict = {}
            for d in bus.devices:
                for r in inv.requests(d):
                    for k in range(inv.points_at[r], inv.points_at[r + 1]):
                        if self.bad_answers[k]:
                            point = inv.name(inv.points[k])
                            counts.setdefault(inv.device_id(d), {})[point] = self.bad_answers[k]
                            if self.quality[k]:
                                bad.setdefault(inv.device_id(d), {})[point] = QUALITY[self.quality[k]]
            out[bus.name] = {"bad_points": counts, "quality": bad}
        return out

    def health(self) -> bytes:
        ring = self.ring
        c = self.counters
        msg = {
            "gateway": self.gateway_id, "site": self.site, "time": rt.now(),
            "uptime": rt.ticks_diff(rt.ticks_ms(), self.started) // 1000, "connected": self.client.connected,
            "readings": {"made": c["made"], "published": c["packs"], "buffered": self.writer.count,
                         "dropped": ring.dropped},
            "outbox": {"packs": ring.pending(), "bytes": ring.used_bytes(),
                       "max_bytes": ring.slots * ring.max_payload, "dropped_packs": ring.dropped,
                       "corrupt_skipped": ring.skipped},
            "mqtt": {"connects": c["connects"], "disconnects": c["disconnects"],
                     "connect_failures": c["connect_failures"], "packs_published": c["packs"],
                     "pings": self.client.pings, "commands": c["commands"], "commands_bad": c["commands_bad"],
                     "acks": c["acks"], "acks_dropped": c["acks_dropped"],
                     "oversized_dropped": self.client.oversized, "reconnect_ms": self.backoff.last_ms},
            "polls": self.stats["polls"],
            "errors": {k: self.stats[k] for k in ERRORS},
            "alarms": c["alarms"],
            "commands": self.remote.stats(),
            "devices_offline": self.inv.count - sum(self.online),
            "points_bad": sum(1 for q in self.quality if q),
            "buses": self.points_health(),
            "mem_free": gc.mem_free(),
        }
        return cbor.dumps(msg)

    async def uplink(self) -> None:
        c = self.client
        slot = len(self.buses)
        while self.running:
            self.beats[slot] = rt.ticks_ms()
            up = False
            try:
                await c.connect(self.host, self.port)
                self.counters["connects"] += 1
                up = True
                await c.subscribe(self.cmd_topic, 1)
                await self.publish_birth()
                await self.session()
            except (OSError, MqttError):
                c.close()
                if self.counters["connects"]:
                    self.counters["disconnects"] += 1
                self.counters["connect_failures"] += 1
            for i in range(self.window):
                self.inflight_pid[i] = 0
            delay = self.backoff.next_ms(up)  # after a session from reconnect_min, else doubling
            start = rt.ticks_ms()
            while self.running:  # backoff without starving the watchdog
                self.beats[slot] = rt.ticks_ms()
                left = delay - rt.ticks_diff(rt.ticks_ms(), start)
                if left <= 0:
                    break
                await rt.sleep_ms(min(left, 100))

    async def session(self) -> None:
        c = self.client
        slot = len(self.buses)
        self.cursor = 0
        next_health = rt.ticks_ms()
        while self.running:
            self.beats[slot] = rt.ticks_ms()
            c.poll()
            while self.commands:
                data, retained = self.commands.pop(0)
                try:
                    self.take_command(data, retained)
                except Exception as exc:  # a bug must not take the uplink down
                    self.counters["commands_bad"] += 1
                    print("fieldlink: command failed:", repr(exc))
            while self.acks:
                await c.publish(self.t_ack, self.acks.pop(0), 1, False)
                self.counters["acks"] += 1
            await self._pump()
            if rt.ticks_diff(rt.ticks_ms(), next_health) >= 0:
                next_health = rt.ticks_add(rt.ticks_ms(), self.health_ms)
                await c.publish(self.t_health, self.health(), 0, True)  # retained, as the agent's
            await c.keep_alive()
            await rt.sleep_ms(10)

    async def _pump(self) -> None:
        for i in range(self.window):
            if self.inflight_pid[i]:
                continue
            seq = self.ring.next_pending(self.cursor)
            view = None
            while seq:
                view = self.ring.read(seq, self.txbuf)
                if view is not None:
                    break
                seq = self.ring.next_pending(seq)
            if not seq or view is None:
                return
            self.cursor = seq
            topic = self.topics[view[0]] if view[0] < 2 else self.topics[0]
            pid = await self.client.publish(topic, view[1:], 1, False)
            self.inflight_seq[i] = seq
            self.inflight_pid[i] = pid

    # -- supervision ------------------------------------------------------------------------------
    async def main(self, run_ms: int = 0) -> None:
        """Run everything; feed the watchdog while every task shows progress. `run_ms` > 0 stops."""
        tasks = [asyncio.create_task(self.poll_bus(b, i)) for i, b in enumerate(self.buses)]
        tasks.append(asyncio.create_task(self.uplink()))
        wdt = self.hw.wdt(self.watchdog_ms)
        limit = self.watchdog_ms // 2
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
