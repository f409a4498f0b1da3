"""The board's uplink: the MQTT session that empties the ring.

Connect with a will, subscribe to …/cmd, publish the retained birth (streamed from flash), health on
schedule, then the packs from the ring with a window of QoS 1 publishes in flight, acknowledged in
the ring on PUBACK; the acks of commands; ping on schedule. On any error close and reconnect with
exponential backoff and jitter (mqtt.Backoff, seeded per board). Only this task writes to the socket.
"""

import binascii

from firmware_py import log, rt
from firmware_py.mqtt import Backoff, Client, MqttError, jitter_bits, topic_item
from firmware_py.pack import uint_item

BIRTH_PATH = "/birth.cbor"


class Uplink:
    """The MQTT client, the in-flight window and the birth; `health()` is asked for the health map."""

    def __init__(self, cfg: dict, hw, packs, commands, counters: dict, health) -> None:
        g = cfg["gateway"]
        prefix = "%s/%s/%s/" % (g["prefix"], g["site"], g["id"])
        # ring record kinds 0, 1, 2 (firmware_py/packs.py)
        self.topics = (topic_item(prefix + "data"), topic_item(prefix + "alarm"),
                       topic_item(prefix + "event"))
        self.t_status = topic_item(prefix + "status")
        self.t_health = topic_item(prefix + "health")
        self.t_ack = topic_item(prefix + "ack")
        self.cmd_topic = prefix + "cmd"
        self.health_ms = int(g.get("health", 60) * 1000)
        self.ring = packs.ring
        self.commands = commands
        self.counters = counters
        self.health = health
        self.txbuf = bytearray(self.ring.max_payload)
        self.chunk = bytearray(128)  # the birth is streamed from flash through this
        # the birth: head + CBOR(time) + tail; the tail (the inventory) waits on flash, not in RAM
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
        commands.connected = lambda: self.client.connected
        self.window = cfg.get("inflight", 4)
        self.inflight_pid = [0] * self.window
        self.inflight_seq = [0] * self.window
        self.cursor = 0

    def _puback(self, pid: int) -> None:
        for i in range(self.window):
            if self.inflight_pid[i] == pid:
                self.ring.ack(self.inflight_seq[i])
                self.inflight_pid[i] = 0
                self.counters["packs"] += 1
                return

    def _message(self, topic, payload, retained=False) -> None:
        self.commands.received(payload, retained)

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

    async def run(self, beats: list, slot: int, running) -> None:
        """The uplink task: sessions, reconnected with backoff, until `running()` is False."""
        c = self.client
        while running():
            beats[slot] = rt.ticks_ms()
            up = False
            try:
                await c.connect(self.host, self.port)
                self.counters["connects"] += 1
                up = True
                log.info("broker %s:%d connected" % (self.host, self.port))
                await c.subscribe(self.cmd_topic, 1)
                await self.publish_birth()
                await self.session(beats, slot, running)
            except (OSError, MqttError) as exc:
                log.warning("broker %s:%d: %s" % (self.host, self.port, "connection lost" if up else
                                                  "cannot connect (%r)" % (exc,)))
                c.close()
                if self.counters["connects"]:
                    self.counters["disconnects"] += 1
                self.counters["connect_failures"] += 1
            for i in range(self.window):
                self.inflight_pid[i] = 0
            delay = self.backoff.next_ms(up)  # after a session from reconnect_min, else doubling
            start = rt.ticks_ms()
            while running():  # backoff without starving the watchdog
                beats[slot] = rt.ticks_ms()
                left = delay - rt.ticks_diff(rt.ticks_ms(), start)
                if left <= 0:
                    break
                await rt.sleep_ms(min(left, 100))

    async def session(self, beats: list, slot: int, running) -> None:
        c = self.client
        self.cursor = 0
        next_health = rt.ticks_ms()
        while running():
            beats[slot] = rt.ticks_ms()
            c.poll()
            self.commands.take_waiting()
            acks = self.commands.acks
            while acks:
                await c.publish(self.t_ack, acks.pop(0), 1, False)
                self.counters["acks"] += 1
            await self._pump()
            if rt.ticks_diff(rt.ticks_ms(), next_health) >= 0:
                next_health = rt.ticks_add(rt.ticks_ms(), self.health_ms)
                await c.publish(self.t_health, self.health(), 0, False)
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
            topic = self.topics[view[0]] if view[0] < 3 else self.topics[0]
            pid = await self.client.publish(topic, view[1:], 1, False)
            self.inflight_seq[i] = seq
            self.inflight_pid[i] = pid
