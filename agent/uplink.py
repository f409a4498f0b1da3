"""The façade the acquisition side calls: readings in, packs on the broker, commands back.

    uplink = Uplink(config, inventory)        # inventory: [{id, kind, model, protocol, address,
    uplink.commands = gate                    #              points: [{name, unit, resolution}]}]
    uplink.add_counters("polls", lambda: scheduler.polls)
    uplink.start()
    uplink.submit([("meter-1", "energy", 44444412000, 1710498030.0), ...])
    uplink.device_state("meter-1", False, "no answer at address 000000000161")
    uplink.stop()                             # flush, drain briefly, offline status, disconnect

Wiring: ``submit`` -> Batcher (pack by count, size, age; encoded with the gateway's payload profile)
-> Outbox (committed; with ``fsync = normal`` a pack closed while connected with nothing waiting is kept
unwritten until its PUBACK is late; bounded) -> Publisher (QoS 1 window, delete on PUBACK, replay in
order after reconnect). ``submit`` never blocks on the network; it returns once the readings are queued in the
batcher (a full pack is committed to the outbox inside the call).

Latency adapts like Nagle's algorithm: while the uplink is idle (connected, every pack acknowledged)
the network thread closes the open pack when its oldest reading is ``[batch] linger`` old (0.25 s by
default, from the reading's own time; at once for readings that arrive older than that, e.g. the end of
a long poll) and publishes it in the same turn; while readings stream in it closes one pack every
``linger`` (a reading never waits longer), so a stream costs that thread one wake-up per pack: it
reads the last pack's PUBACK, closes and publishes the next one (agent/publisher.py). Each reading so
reaches the broker within about ``linger`` of being read, together with the polls that ended meanwhile.
While a pack waits for its PUBACK, or while offline, readings gather in the open pack until the outbox
is empty again or until the batch limits (``max_records``, ``max_bytes``, ``max_age``) close it. Under
load packs therefore grow to the batch limits. ``linger = 0`` publishes each poll as soon as it is
done: every pack then costs an outbox row written and deleted, a PUBLISH and a PUBACK
(docs/benchmarks.md measures the trade).

The batch thread closes packs at ``max_age`` (the idle rule above aside), retries a failing disk and
looks whether the system clock was stepped (agent/system_clock.py `StepWatch`, health `clock.step`): it
sleeps until the open pack reaches ``max_age``, with no pack open for ``max_age`` (a pack opening
meanwhile falls due later than that) but at most ``_IDLE`` seconds, and every ``_TICK`` while the
outbox's disk fails. A pack committed to the outbox by another thread wakes the publisher's network
thread (``Publisher.wake``), and so does a pack that falls due before the network thread would look.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import paho.mqtt

import agent
import protocols
from agent import os_thread, seams, system_clock
from agent.batcher import Batcher, Reading, make_encoder
from agent.config_model import Config
from agent.health import Health
from agent.outbox import Outbox
from agent.publisher import Publisher
from protocols import alarms, cbor
from protocols import birth as birth_msg

log = logging.getLogger(__name__)

_TICK = 0.1  # how often the batch thread looks at the outbox while its disk fails
_IDLE = 5.0  # the longest the batch thread sleeps with nothing due (a safety net; wake-ups are exact)
_SEQ_LIMIT = 1 << 32


def versions() -> dict:
    """Software versions for the birth message."""
    return {"fieldlink": agent.__version__, "protocols": protocols.__version__,
            "python": platform.python_version(), "paho-mqtt": paho.mqtt.__version__}


class Uplink:
    """Batcher + outbox + publisher + health behind one small API (see module docstring)."""

    def __init__(self, config: Config, inventory: list[dict], clock: Callable[[], float] = time.time) -> None:
        g = config.gateway
        self.config = config
        self.clock = clock
        o = config.outbox
        self.outbox = Outbox(o.path, o.max_bytes, o.fsync, memory_bytes=o.memory_bytes,
                             sync_every=o.sync_every)  # OutboxInUse
        devices = [dict(d) for d in inventory]
        self.seq = self._inventory_seq(devices, g.payload)
        #: the inventory map (retained on …/inventory), its bytes and their digest (in every status)
        self.inventory = birth_msg.make_inventory(g.id, g.site, devices, seq=self.seq, payload=g.payload,
                                                  versions=versions(), district=g.district)
        self.inventory_bytes = birth_msg.encode(self.inventory)
        self.inventory_digest = birth_msg.digest(self.inventory_bytes)
        b = config.batch
        self.batcher = Batcher(make_encoder(g.payload, self.inventory), self._store,
                               max_records=b.max_records, max_bytes=b.max_bytes, max_age=b.max_age,
                               linger=b.linger)
        self.health = Health(g.id, g.site, clock)
        self.publisher: seams.Publisher = Publisher(
            config, self.outbox, status=self._status,
            inventory=lambda: (self.inventory_bytes, self.inventory_digest), health=self.health.encode)
        self.publisher.before_pump = self._close_due
        self.health.add("connected", lambda: self.publisher.connected)
        self.health.add("readings", self._reading_counters)
        self.health.add("outbox", self.outbox.stats)
        self.health.add("mqtt", self.publisher.stats)
        #: the kernel's NTP state and the clock's last step (agent/system_clock.py); the batch thread looks
        self.clock_watch = system_clock.StepWatch()
        self.health.add("clock", self.clock_watch.health)
        self._devices_online: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # stop, the outbox's disk failed or its WAL owes an fsync: look now
        self.outbox.on_due = self._wake.set
        self._ticker: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start the batch-age timer."""
        if self._ticker is not None:
            return
        self._ticker = os_thread.thread(self._tick, "fieldlink-batch")
        self._ticker.start()
        self.publisher.start()

    def stop(self, flush: bool = True, drain: float = 2.0, timeout: float = 1.0) -> None:
        """Flush the open pack to the outbox, publish what fits in `drain` s, go offline (waiting at most
        `timeout` s for that), disconnect, close the outbox."""
        self._stopping.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.join(5)
            self._ticker = None
        if flush:
            self.batcher.flush()
        self.publisher.stop(drain=drain if flush else 0.0, timeout=timeout)
        if flush:
            self.batcher.flush()  # a reading that came in while draining (a bus that finished late)
        self.outbox.close()

    # -- what the acquisition side calls -------------------------------------------------------

    def submit(self, readings: list[Reading] | tuple[Reading, ...]) -> None:
        """Queue readings `(device, point, value, time)` for publishing: within `linger` when the uplink
        is idle (the network thread closes the pack), else with the next pack (module docstring)."""
        if readings and self.batcher.add(readings):
            # the open pack falls due before the network thread would look: wake it. In a stream the
            # next pack opens after that thread already planned to look (one `linger` after the last
            # pack), and no reading needs a wake-up.
            self.publisher.wake()

    def device_state(self, device_id: str, online: bool, reason: str = "") -> None:
        """Report a device's comms state; a change raises or clears a `comms` alarm."""
        with self._lock:
            before = self._devices_online.get(device_id)
            self._devices_online[device_id] = online
        if before == online or (before is None and online):
            return
        self.alarm(device_id, None, "comms", reason or ("back online" if online else "offline"), not online)

    def alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
              when: float | None = None) -> None:
        """Publish an alarm map on `…/alarm` (QoS 1, through the outbox, in order with the data). Its `n`
        (one more per alarm, kept in the outbox file) lets a consumer drop an alarm sent twice."""
        with self._lock:
            number = self.outbox.get_meta("alarm_n", 0) + 1
            self.outbox.set_meta("alarm_n", number)
        self.publisher.publish_alarm(alarms.alarm(device, point, kind, value, raised,
                                                  self.clock() if when is None else when, number))
        self._watch_disk()

    def event(self, event: dict) -> None:
        """Commit an event map (a lighting schedule's switching, docs/payload.md §6) to the outbox for
        `…/event` (QoS 1, in order with the data and alarms)."""
        self.publisher.publish_event(event)
        self._watch_disk()

    def add_counters(self, name: str, getter: Callable[[], Any]) -> None:
        """Merge `getter()` into the health message under `name` (e.g. "polls", "errors")."""
        self.health.add(name, getter)

    @property
    def counters(self) -> dict:
        """The health map as it would be published now."""
        return self.health.snapshot()

    def counters_of(self, names: tuple[str, ...]) -> dict:
        """The health map with only the counters under `names` (see `Health.snapshot`)."""
        return self.health.snapshot(names)

    @property
    def connected(self) -> bool:
        return self.publisher.connected

    @property
    def idle(self) -> bool:
        """Connected and nothing waiting for a PUBACK or in the outbox: a pack closed now goes out now
        (never with `batch.adaptive = false`: packs then close at the batch limits only)."""
        return self.config.batch.adaptive and self.publisher.connected and len(self.outbox) == 0

    # -- internals -----------------------------------------------------------------------------

    def _store(self, payload: bytes, records: int) -> None:
        try:
            # connected, the pack goes out now if nothing waits before it (the outbox judges that): it is
            # then written only if its PUBACK is late (with `batch.adaptive = false` too)
            self.outbox.put(self.publisher.topic_data, payload, 1, records, defer=self.publisher.connected)
        finally:
            self.publisher.wake()  # the network thread publishes it now
            self._watch_disk()

    def _watch_disk(self) -> None:
        """After a put: while the outbox's disk fails, the batch thread retries it every _TICK from now on."""
        if self.outbox.state != "ok":
            self._wake.set()

    def _status(self, session: int, online: bool) -> bytes:
        """The status map of connection `session`: online (with the inventory's digest) or the will."""
        g = self.config.gateway
        if online:
            return birth_msg.encode(birth_msg.make_status(g.id, g.site, self.seq, session, int(self.clock()),
                                                          self.inventory_digest))
        return birth_msg.encode(birth_msg.make_will(g.id, g.site, self.seq, session))

    def _inventory_seq(self, devices: list[dict], payload: str) -> int:
        """The inventory's `seq`: kept while the devices (hence the aliases) stay the same, so compact
        packs still in the outbox after a restart decode with the new inventory; bumped when they change."""
        probe = birth_msg.make_inventory(self.config.gateway.id, self.config.gateway.site, devices,
                                         seq=0, payload=payload)
        digest = zlib.crc32(cbor.dumps([probe["base_name"], probe["devices"]]))
        seq = self.outbox.get_meta("birth_seq", -1)
        if seq < 0 or self.outbox.get_meta("birth_digest", -1) != digest:
            seq = (seq + 1) % _SEQ_LIMIT
            self.outbox.set_meta("birth_seq", seq)
            self.outbox.set_meta("birth_digest", digest)
            if len(self.outbox):
                log.warning("inventory changed: seq %d; %d packs in the outbox use older aliases",
                            seq, len(self.outbox))
        return seq

    @property
    def commands(self) -> Any:
        """The command gate (agent/command_gate.py) the publisher hands `…/cmd` payloads to."""
        return self.publisher.commands

    @commands.setter
    def commands(self, gate: Any) -> None:
        self.publisher.commands = gate

    def send_ack(self, payload: bytes, ran: bool = False) -> None:
        """Publish an encoded ack on `…/ack` (QoS 1; dropped and counted while offline; a refusal also
        when a flood of them is waiting, `ran` = the ack of a command that ran is always sent)."""
        self.publisher.send_ack(payload, ran)

    def _reading_counters(self) -> dict:
        stats = self.outbox.stats()
        pub = self.publisher.stats()
        bc = self.batcher.counters
        # why readings were dropped: the outbox's byte bound (oldest first), the memory hold while the
        # disk failed, packs a damaged or deleted file cost, packs the outbox refused (never expected)
        dropped_by = {"outbox_full": stats["dropped_records"], "memory_full": stats["memory_dropped_records"],
                      "unreadable": stats["lost_records"], "not_stored": bc["unstored"]}
        return {"made": bc["readings"], "published": pub["records_published"],
                "buffered": stats["records"] + self.batcher.pending,
                "dropped": sum(dropped_by.values()), "dropped_by": dropped_by, "rejected": bc["rejected"]}

    def _close_due(self) -> float | None:
        """From the publisher's network thread, every turn (and once when a session ends): while the
        uplink is idle, close the open pack if it is due (the thread publishes it next); when to look
        again (monotonic), None when a reading's `submit` will wake it."""
        return self.batcher.close_due(self.idle)

    def _sleep_for(self) -> float:
        """How long the batch thread may sleep: until the open pack reaches `max_age`; with none open
        `max_age` (a pack opening meanwhile is due no sooner than the thread looks); no longer than the
        outbox's `maintain` waits (a deferred delete, the WAL's fsync); at most `_IDLE`, at most `_TICK`
        while the outbox's disk fails (the outbox then retries it from `maintain`)."""
        due = self.batcher.due()
        if due is None:
            wait = self.batcher.max_age
        else:
            wait = max(0.001, due - self.batcher.clock())
        if self.outbox.state != "ok":
            wait = min(wait, _TICK)
        work = self.outbox.due()
        if work is not None:
            wait = min(wait, max(0.001, work - time.monotonic()))
        return min(wait, _IDLE)

    def _tick(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._sleep_for())
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.batcher.tick()
            except Exception:
                log.exception("batcher: closing a pack failed")
            self.clock_watch.look(self.batcher.counters["readings"])  # a step: logged, in health
            try:
                # a failing disk is retried from here too, packs or not; a deferred delete and the WAL's
                # fsync when due (maintain looks at each one's time itself)
                self.outbox.maintain()
            except Exception:
                log.exception("outbox: retrying the disk failed")


__all__ = ["Uplink", "versions"]
