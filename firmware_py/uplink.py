"""The board's uplink: the MQTT session that empties the ring.

A persistent session (clean session off unless broker.persistent_session is false): the broker keeps the
`…/cmd` subscription and queues commands while the board is away. At each connect: the will (the offline
status, with this connection's number), then SUBSCRIBE `…/cmd` only when the broker holds no session of
ours (the backlog waits for the SUBACK, so no command is missed), the status (a small retained map), the
retained inventory (streamed from flash) only when the broker does not hold this one (the agent's rule,
agent/broker_memory.py; the board records in BROKER_RECORD what the broker acknowledged), then the packs
from the ring with a window of QoS 1 publishes in flight, acknowledged in the ring on PUBACK (this
boot's records of unset-clock times wait a while for NTP, `holding`); the acks of commands; health on
its own schedule; ping on schedule. On any error close and reconnect on the agent's schedule for one
endpoint (mqtt.Backoff, seeded per board). Only this task writes to the socket.
"""

import binascii

from firmware_py import clock, log, net, rt
from firmware_py.mqtt import REFUSED, UNREACHABLE, UP, Backoff, Client, MqttError, jitter_bits, topic_item
from firmware_py.packs import UNTIMED
from protocols import cbor, stamps
from protocols.commands import CLOCK_SET_AFTER
from protocols.errors import ProtocolError

INVENTORY_PATH = "/inventory.cbor"
NTP_RETRY_MS = 60000  # while connected, NTP is asked again this long after a failure (then doubled)
NTP_RETRY_MAX_MS = 900000
NTP_RESYNC_RETRY_MS = 3600000  # a set clock whose daily NTP failed (a network without NTP): an hour
# this boot's records of unset-clock times wait this long after the first connect for NTP to answer (at
# the connect, then 1, 3 and 7 min later), so that they go out mended, while the ring is under half full
UNTIMED_HOLD_MS = 600000
BROKER_RECORD = "/broker.rec"  # "<subscription crc> <inventory crc>" the broker acknowledged


def held() -> list:
    """[subscription crc, inventory crc] the broker acknowledged (0: not held)."""
    try:
        with open(BROKER_RECORD) as f:
            parts = f.read().split()
        return [int(parts[0]), int(parts[1])]
    except (OSError, ValueError, IndexError):
        return [0, 0]


def record(sub, inv) -> None:
    """Note what the broker acknowledged (None: unchanged); written only when it changes."""
    before = held()
    now = [before[0] if sub is None else sub, before[1] if inv is None else inv]
    if now == before:
        return
    try:
        with open(BROKER_RECORD, "w") as f:
            f.write("%d %d" % (now[0], now[1]))
    except OSError:
        pass


class Uplink:
    """The MQTT client, the in-flight window, the status and the inventory; `health()` is asked for the
    health map. `boot` is this boot's number (connections are numbered boot * 65536 + n)."""

    def __init__(self, cfg: dict, hw, packs, commands, counters: dict, health, boot: int = 1) -> None:
        g = cfg["gateway"]
        prefix = "%s/%s/%s/" % (g["prefix"], g["site"], g["id"])
        self.gateway_id = g["id"]
        self.site = g["site"]
        # ring record kinds 0, 1, 2 (firmware_py/packs.py)
        self.topics = (topic_item(prefix + "data"), topic_item(prefix + "alarm"),
                       topic_item(prefix + "event"))
        self.status_topic = prefix + "status"
        self.t_status = topic_item(self.status_topic)
        self.t_inventory = topic_item(prefix + "inventory")
        self.t_health = topic_item(prefix + "health")
        self.t_ack = topic_item(prefix + "ack")
        self.cmd_topic = prefix + "cmd"
        self.health_ms = int(g.get("health", 60) * 1000)
        self.next_health = rt.ticks_ms()  # health keeps its schedule across reconnects
        self.ring = packs.ring
        self.packs = packs
        self.commands = commands
        self.counters = counters
        self.clock_said = False  # "clock not set and NTP failed" was logged (once until NTP works)
        self.ntp_next = rt.ticks_ms()  # while connected, NTP is looked at again from then on
        self.ntp_wait = NTP_RETRY_MS  # after a failure: doubled up to NTP_RETRY_MAX_MS
        self.health = health
        self.txbuf = bytearray(self.ring.max_payload)
        self.chunk = bytearray(128)  # the inventory is streamed from flash through this
        # the inventory waits on flash, not in RAM; the status and the will are small maps made per connect
        inventory = binascii.unhexlify(cfg["inventory"])
        with open(INVENTORY_PATH, "wb") as f:
            f.write(inventory)
        self.inventory_len = len(inventory)
        del inventory
        self.seq = cfg["seq"]
        self.inventory_crc = cfg["inventory_crc"]
        self.sub_crc = binascii.crc32(self.cmd_topic.encode() + b"\x01") & 0xFFFFFFFF or 1
        self.boot = boot
        self.connection = 0  # connections since boot
        self.session_no = 0  # this connection's number, in the status and the will
        self.sub_pid = 0  # the SUBSCRIBE the backlog waits for
        self.sub_sent = 0
        self.inventory_pid = 0  # the retained inventory in flight
        m = cfg["broker"]
        self.host = m["host"]
        self.port = m["port"]
        self.backoff = Backoff(int(m.get("reconnect_min", 1) * 1000), int(m.get("reconnect_max", 60) * 1000),
                               jitter_bits(m["client_id"]), int(m.get("probe_interval", 1.5) * 1000),
                               int(m.get("probe_window", 300) * 1000))
        self.client = Client(hw, m["client_id"], m.get("keepalive", 30), m.get("username"),
                             m.get("password"), None, 512, not m.get("persistent_session", True))
        self.client.on_open = self._on_open
        self.client.on_puback = self._puback
        self.client.on_suback = self._suback
        self.client.on_message = self._message
        commands.connected = lambda: self.client.connected
        self.window = cfg.get("inflight", 4)
        self.inflight_pid = [0] * self.window
        self.inflight_seq = [0] * self.window
        self.cursor = 0
        self.up_since = -1  # ticks of this boot's first connect (-1: not yet)
        self.waiting = False  # the next record to publish waits for NTP (health clock.waiting)
        self.hold_over = False  # the wait is over for this boot (time, room or an alarm)
        self.hold_looked = 0  # ticks the wait was last looked at
        # a data pack committed while connected (and not waiting for NTP) goes out at once: kept in RAM
        packs.defer = lambda: self.client.connected and not self.waiting

    def _on_open(self) -> None:
        """TCP is up, CONNECT goes next: number this connection, register its will (the offline status)."""
        self.connection += 1
        self.session_no = (self.boot << 16) + (self.connection & 0xFFFF)
        self.client.will = (self.status_topic, self.status(False), 1, True)

    def status(self, online: bool) -> bytes:
        """The status map of this connection (protocols/birth.py make_status / make_will, same bytes)."""
        msg = {"online": online, "gateway": self.gateway_id, "site": self.site, "seq": self.seq,
               "session": self.session_no}
        if online:
            msg["time"] = rt.now()
            msg["inventory"] = self.inventory_crc
        return cbor.dumps(msg)

    def _puback(self, pid: int) -> None:
        if pid == self.inventory_pid:
            self.inventory_pid = 0
            record(None, self.inventory_crc)
            return
        for i in range(self.window):
            if self.inflight_pid[i] == pid:
                self.ring.ack(self.inflight_seq[i])
                self.inflight_pid[i] = 0
                self.counters["packs"] += 1
                return

    def _suback(self, pid: int, granted: bool) -> None:
        if pid != self.sub_pid:
            return
        self.sub_pid = 0
        if granted:
            record(self.sub_crc, None)
        else:
            print("fieldlink: the broker refused our subscription to", self.cmd_topic, "(check its ACL)")

    def _message(self, topic, payload, retained=False) -> None:
        self.commands.received(payload, retained)

    async def publish_inventory(self) -> int:
        """The retained inventory streamed from flash; returns its packet id."""
        c = self.client
        pid = await c.begin_publish(self.t_inventory, self.inventory_len, 1, True)
        buf = self.chunk
        left = self.inventory_len
        with open(INVENTORY_PATH, "rb") as f:
            while left > 0:
                n = f.readinto(buf)
                if not n:
                    raise OSError(5)
                n = min(n, left)
                await c.send(memoryview(buf)[:n])
                left -= n
        return pid

    async def begin_session(self) -> None:
        """After CONNACK: the subscription (unless the broker holds it), the status, the inventory (unless
        the broker holds this one). With no session present the broker holds nothing of ours."""
        c = self.client
        if c.session_present:
            have = held()
        else:
            have = [0, 0]
            record(0, 0)
        if have[0] != self.sub_crc:
            self.sub_pid = await c.subscribe(self.cmd_topic, 1)
            self.sub_sent = rt.ticks_ms()
            self.counters["subscribes"] += 1
        await c.publish(self.t_status, self.status(True), 1, True)
        if have[1] != self.inventory_crc:
            self.inventory_pid = await self.publish_inventory()
            self.counters["inventories"] += 1

    def set_clock(self) -> None:
        """The network works (the broker answered, at each connect and then every `ntp_wait` while
        connected): set the clock by NTP if it is not set or is a day old (`net.clock_due`). A failure
        doubles the wait (1 min up to 15: NTP blocks the board for up to its timeout) and is said once
        until it works."""
        was = rt.now()
        wait = self.ntp_wait
        if not net.clock_due(was):
            pass  # not due: looked at again after the wait
        elif net.sync_clock():
            self.clock_said = False
            wait = self.ntp_wait = NTP_RETRY_MS
            if not clock.is_set(was):
                log.info("clock set by NTP: %d (it read %d)" % (rt.now(), was))
        elif clock.is_set(was):
            wait = NTP_RESYNC_RETRY_MS
        else:
            self.ntp_wait = min(wait * 2, NTP_RETRY_MAX_MS)
            if not self.clock_said:
                self.clock_said = True
                log.warning("clock not set and NTP failed: schedules, expiring commands and reading times "
                            "wait for it; tried again at each connect and every few minutes")
        self.ntp_next = rt.ticks_add(rt.ticks_ms(), wait)

    async def run(self, beats: list, slot: int, running) -> None:
        """The uplink task: sessions, reconnected on the failover schedule, until `running()` is False."""
        c = self.client
        while running():
            beats[slot] = rt.ticks_ms()
            up = False
            try:
                await c.connect(self.host, self.port)
                self.counters["connects"] += 1
                up = True
                if self.up_since < 0:
                    self.up_since = rt.ticks_ms()
                log.info("broker %s:%d connected" % (self.host, self.port))
                self.set_clock()
                await self.begin_session()
                await self.session(beats, slot, running)
            except (OSError, MqttError) as exc:
                log.warning("broker %s:%d: %s" % (self.host, self.port, "connection lost" if up else
                                                  "cannot connect (%r)" % (exc,)))
                c.close()
                self.counters["disconnects" if up else "connect_failures"] += 1
            for i in range(self.window):
                self.inflight_pid[i] = 0
            self.sub_pid = 0
            self.inventory_pid = 0
            outcome = UP if up else UNREACHABLE if not c.tcp_up else REFUSED
            delay = self.backoff.next_ms(outcome)
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
        while running():
            beats[slot] = rt.ticks_ms()
            c.poll()
            self.commands.take_waiting()
            acks = self.commands.acks
            while acks:
                await c.publish(self.t_ack, acks.pop(0), 1, False)
                self.counters["acks"] += 1
            if not self.sub_pid:  # the backlog waits for the SUBACK: no command is missed
                await self._pump()
            elif rt.ticks_diff(rt.ticks_ms(), self.sub_sent) > c.keepalive * 1000:
                raise OSError(110)  # no SUBACK: start again
            if rt.ticks_diff(rt.ticks_ms(), self.next_health) >= 0:
                self.next_health = rt.ticks_add(rt.ticks_ms(), self.health_ms)
                await c.publish(self.t_health, self.health(), 0, True)  # retained, as the agent's
            if rt.ticks_diff(rt.ticks_ms(), self.ntp_next) >= 0:  # a day since NTP, or not set yet
                self.set_clock()
            await c.keep_alive()
            await rt.sleep_ms(10)

    def holding(self) -> bool:
        """This boot's records of unset-clock times wait for NTP (they go out mended once it answers),
        once per boot: until UNTIMED_HOLD_MS after the first connect, the ring is half full or an alarm
        was raised (an alarm does not wait: a gas or water warning matters now, its time less); from
        then on they go out as they come, in order, mended when NTP has answered by then, else with
        their times from 2000 (counted `unmended`)."""
        if clock.shift() or self.hold_over:
            return False
        if rt.ticks_diff(rt.ticks_ms(), self.up_since) < UNTIMED_HOLD_MS and \
                self.ring.pending() * 2 < self.ring.slots and not self.packs.untimed_alarm:
            return True
        self.hold_over = True
        log.warning("clock still not set: publishing readings with times counted from 2000-01-01 "
                    "(mended if NTP answers before they go out)")
        return False

    async def _pump(self) -> None:
        if self.waiting:  # for NTP: nothing is read from the ring meanwhile, looked at each second
            now = rt.ticks_ms()
            if rt.ticks_diff(now, self.hold_looked) < 1000:
                return
            self.hold_looked = now
            if self.holding():
                return
            self.waiting = False
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
            kind = view[0]
            body = 1
            if kind & UNTIMED:  # recorded before the clock was set: mended when this boot's clock was
                mine = (view[1] | (view[2] << 8)) == self.boot & 0xFFFF  # recorded in this boot
                if mine and self.holding():
                    self.waiting = True  # this and what follows (all unset-clock times) wait for NTP
                    self.hold_looked = rt.ticks_ms()
                    return
                kind &= ~UNTIMED
                body = 3
                self.mend(view, mine)
            self.cursor = seq
            topic = self.topics[kind] if kind < 3 else self.topics[0]
            pid = await self.client.publish(topic, view[body:], 1, False)
            self.inflight_seq[i] = seq
            self.inflight_pid[i] = pid

    def mend(self, view, mine: bool) -> None:
        """Move the unset-clock times of a record (after its 3 front bytes) to POSIX time when it was
        made in this boot (`mine`) and NTP has set the clock since; counted in `clock` of the health."""
        shift = clock.shift()
        if not mine or not shift:
            self.counters["unmended"] += 1  # an earlier boot's, or no clock yet: its times stay in 2000
            return
        try:
            stamps.mend(view, 3, len(view), stamps.UNSET_BASE, CLOCK_SET_AFTER, shift)
        except (ProtocolError, ValueError, IndexError) as exc:  # not a record the board writes
            self.counters["unmended"] += 1
            log.error("record of unset-clock times not mended: %r" % (exc,))
            return
        self.counters["mended"] += 1

    async def stop(self) -> None:
        """A clean stop says offline itself (DISCONNECT discards the will), then disconnects."""
        c = self.client
        if c.connected:
            try:
                await c.publish(self.t_status, self.status(False), 1, True)
            except OSError:
                pass
        await c.disconnect()
