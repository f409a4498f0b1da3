"""The fleet engine: many simulated gateways (agent/fleet/model.py) on one asyncio loop, one MQTT
connection each (agent/fleet/mqtt.py), at field rates; what it achieved, measured.

Each gateway behaves as the agent's publisher does (agent/publisher.py): CONNECT with its will (the
retained offline status of this connection), subscribe to `…/cmd`, the retained status, the retained
inventory (at every connect: a clean session, so the broker is taken to hold nothing of ours, as the
agent does with `broker.persistent_session = false`), health, then its packs in order
with at most `inflight` waiting for a PUBACK; a pack leaves the outbox only on its PUBACK, and the
unacknowledged ones are sent again after a reconnect; reconnects back off as the agent's do. One
scheduler task polls every device at its interval (the devices of a gateway one after another, 50 ms
apart, as on a bus), closes aged packs, publishes health every `health_interval` (retained, as the
agent does since docs/payload.md made health retained), and pumps the outboxes.

    engine = Engine(models, Options(host="127.0.0.1", port=1883))
    stats = asyncio.run(engine.run(seconds=300))
    print(stats.summary())
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.fleet.model import GatewayModel, Pack
from agent.fleet.mqtt import MqttError, Session
from agent.fleet.stats import Stats, ms, percentile
from agent.publisher import backoff_delay
from protocols.mqtt_packet import encode_string

__all__ = ["Engine", "Options", "Stats", "percentile", "raise_fd_limit"]

BUS_GAP = 0.05  # seconds between the polls of two devices of one gateway (one bus request each)
TICK = 0.1  # how often aged packs are closed and outboxes pumped
LATENCY_SAMPLES = 1_000_000
FULL_HINT = ("; a broker that resets or closes new connections is often at its open-file limit: raise it "
             "(ulimit -n, or LimitNOFILE= in its systemd unit) and check its max_connections")


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 1883
    inflight: int = 20  # [outbox] inflight: packs awaiting PUBACK per gateway
    keepalive: int = 30
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    connect_rate: float = 200.0  # new connections per second at start (a fleet after a broker restart)
    drop_every: float = 0.0  # seconds between abrupt connection drops of a random gateway (0: none)
    username: str | None = None
    password: str | None = None
    seed: int = 1
    progress: Callable[[str], None] | None = None  # a line every `progress_every` seconds
    progress_every: float = 10.0
    on_window: Callable[[str], None] | None = None  # called with "begin" and "end" of the measured window


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit to `needed` (within the hard limit); returns the soft limit.
    Raises OSError naming the numbers when the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OSError("%d connections need %d open files, but the hard limit is %d: raise it (as root: "
                      "ulimit -Hn %d; for a service, LimitNOFILE=) and try again" % (
                          needed - 64, needed, hard, needed))
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Link:
    """The network side of one gateway: its session, its in-flight packs, its reconnects."""

    __slots__ = ("failures", "hello", "inflight", "model", "next_health", "session", "topics")

    def __init__(self, model: GatewayModel) -> None:
        self.model = model
        self.session: Session | None = None
        self.inflight: list[tuple[Pack, float]] = []  # in publish order: (pack, monotonic sent)
        self.failures = 0
        self.next_health = 0.0
        # the PUBACKs of the status, inventory and health of a connect
        self.hello: list[asyncio.Future[Any]] = []
        self.topics = {topic: encode_string(topic) for topic in model.topic.values()}


class Engine:
    """Runs `models` against one broker; see the module docstring."""

    def __init__(self, models: list[GatewayModel], options: Options) -> None:
        self.models = models
        self.options = options
        self.links = [_Link(m) for m in models]
        self._index = {id(m): i for i, m in enumerate(models)}
        self.stats = Stats(gateways=len(models))
        self.rng = random.Random(options.seed)
        self._stopping = False
        self._dirty: set[int] = set()  # links with something to send
        self._measuring = False
        self._ever_connected = 0

    # -- running ---------------------------------------------------------------------------------

    async def run(self, seconds: float | None, polls: bool = True,
                  stop: asyncio.Event | None = None) -> Stats:
        """Connect every gateway, run for `seconds` (None: until `stop` is set) after they are all
        connected, polling devices when `polls`, then stop as the agent stops: drain, offline status,
        DISCONNECT. `stop` ends the run early too."""
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        for model in self.models:
            model.run_later = functools.partial(self._later, loop, model)
        started = time.monotonic()
        tasks = [asyncio.ensure_future(self._keep_connected(i, started + i / self.options.connect_rate))
                 for i in range(len(self.links))]
        scheduler = asyncio.ensure_future(self._schedule(polls))
        try:
            while self._ever_connected < len(self.links) and not stop.is_set():
                await asyncio.sleep(0.05)
                if not self._ever_connected and all(link.failures >= 3 for link in self.links):
                    raise MqttError("broker %s:%d could not be reached: every gateway failed 3 times "
                                    "and none connected (%s)" % (self.options.host, self.options.port,
                                                                 self.stats.failure_reasons))
                if time.monotonic() - started > 120 + len(self.links) / self.options.connect_rate:
                    reasons = self.stats.failure_reasons
                    full = any("reset" in r or "before CONNACK" in r for r in reasons)
                    raise MqttError("not every gateway could connect within %.0f s (%d of %d did): %s%s" % (
                        time.monotonic() - started, self._ever_connected, len(self.links), reasons,
                        FULL_HINT if full else ""))
            self.stats.connected_after = time.monotonic() - started
            self._begin_window()
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                pass
            self._end_window()
        finally:
            self._stopping = True
            scheduler.cancel()
            await self._stop_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, scheduler, return_exceptions=True)
        return self.stats

    async def publish_once(self, drop: set[int], attempts: int = 3) -> Stats:
        """Connect every gateway once (at `connect_rate`), publish its status, inventory and health
        (retained) and wait for their PUBACKs; then drop the connections of the gateways in `drop` (the
        broker publishes their wills over their status; their inventory stays) and DISCONNECT the others,
        whose online status stays. No polls, no data."""
        started = time.monotonic()
        self._begin_window()

        async def one(index: int) -> None:
            link = self.links[index]
            await asyncio.sleep(max(0.0, started + index / self.options.connect_rate - time.monotonic()))
            for attempt in range(attempts):
                try:
                    await self._connect(link)
                    await asyncio.gather(*link.hello)
                    return
                except (OSError, MqttError, TimeoutError) as exc:
                    reason = _reason(exc)
                    self.stats.connect_failures += 1
                    self.stats.failure_reasons[reason] = self.stats.failure_reasons.get(reason, 0) + 1
                    if link.session is not None:
                        link.session.abort(reason)
                    if attempt + 1 == attempts:
                        raise MqttError("gateway %s could not publish its status, inventory and health: %s"
                                        % (link.model.id, reason)) from None
                    await asyncio.sleep(backoff_delay(attempt + 1, self.options.reconnect_min, 4.0, self.rng))

        try:
            await asyncio.gather(*(one(i) for i in range(len(self.links))))
            self.stats.connected_after = time.monotonic() - started
        finally:
            ends = []
            for i, link in enumerate(self.links):
                if link.session is None or not link.session.up:
                    continue
                if i in drop:
                    self.stats.drops += 1
                    link.session.abort("dropped on purpose")
                else:
                    ends.append(link.session.disconnect())
                link.model.connected = False
            await asyncio.gather(*ends, return_exceptions=True)
            self._end_window()
        return self.stats

    def _begin_window(self) -> None:
        s = self.stats
        s.messages.clear()
        s.message_bytes.clear()
        s.readings_made = s.readings_published = s.packs_acked = 0
        s.latency.clear()
        s.wire.clear()
        s.late_polls = 0
        s.max_lag = 0.0
        self._window_start = time.monotonic()
        self._cpu_start = _cpu()
        self._wire_start = self._wire()
        self._measuring = True
        if self.options.on_window is not None:
            self.options.on_window("begin")

    def _end_window(self) -> None:
        s = self.stats
        s.window = time.monotonic() - self._window_start
        s.cpu = _cpu() - self._cpu_start
        s.wire_bytes = self._wire() - self._wire_start
        if self.options.on_window is not None:
            self.options.on_window("end")
        s.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        s.backlog = sum(len(m.outbox) for m in self.models)
        s.waiting = sum(sum(p.records for p in m.outbox) + m.batcher.pending for m in self.models) + sum(
            p.records for link in self.links for p, _ in link.inflight)
        self._measuring = False

    def _wire(self) -> int:
        """Bytes written by every session so far (a session replaced by a reconnect counts no more)."""
        return sum(link.session.sent_bytes for link in self.links if link.session is not None)

    async def _keep_connected(self, index: int, start_at: float) -> None:
        link = self.links[index]
        o = self.options
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        while not self._stopping:
            up = False
            try:
                await self._connect(link)
                up = True
                self._ever_connected += link.model.counters["connects"] == 1
                assert link.session is not None and link.session.closed is not None
                await link.session.closed
                if not self._stopping and link.session.error != "dropped on purpose":
                    self.stats.lost += 1
            except (TimeoutError, OSError, MqttError) as exc:
                reason = _reason(exc)
                self.stats.connect_failures += 1
                self.stats.failure_reasons[reason] = self.stats.failure_reasons.get(reason, 0) + 1
                link.model.counters["connect_failures"] += 1
                if link.session is not None:
                    link.session.abort(reason)
            self._session_ended(link, up)
            if self._stopping:
                return
            link.failures = 0 if up else link.failures + 1
            await asyncio.sleep(backoff_delay(link.failures, o.reconnect_min, o.reconnect_max, self.rng))

    async def _connect(self, link: _Link) -> None:
        o = self.options
        m = link.model
        session = Session("%s-%s-%s" % (m.config.gateway.prefix, m.site, m.id), keepalive=o.keepalive,
                          will=(m.topic["status"], m.next_session(), 1, True),
                          on_message=lambda topic, payload, retain: self._command(link, topic, payload,
                                                                                  retain),
                          username=o.username, password=o.password)
        link.session = session
        await session.connect(o.host, o.port)
        m.connected = True
        m.counters["connects"] += 1
        self.stats.connects += 1
        await session.subscribe([(m.topic["cmd"], 1)])
        link.hello = [f for f in (self._publish(link, "status", m.status_bytes(), retain=True),
                                  self._publish(link, "inventory", m.inventory_bytes, retain=True),
                                  self._publish(link, "health", m.health_bytes(), retain=True)) if f]
        link.next_health = time.monotonic() + m.config.gateway.health_interval
        self._pump(link)

    def _session_ended(self, link: _Link, up: bool) -> None:
        m = link.model
        m.connected = False
        if up:
            m.counters["disconnects"] += 1
        if link.inflight:
            m.put_back([p for p, _ in link.inflight])
            link.inflight.clear()

    async def _stop_all(self) -> None:
        """As `Publisher.stop(drain=2)`: close open packs, publish for up to 2 s, offline status,
        DISCONNECT."""
        for m in self.models:
            m.batcher.flush()
        for link in self.links:
            self._pump(link)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(link.inflight or link.model.outbox for link in self.links
                                                  if link.session is not None and link.session.up):
            await asyncio.sleep(0.05)
            for link in self.links:
                self._pump(link)
        goodbyes = []
        for link in self.links:
            if link.session is not None and link.session.up:
                self._publish(link, "status", link.model.will_bytes(), retain=True)
                goodbyes.append(link.session.disconnect())
        await asyncio.gather(*goodbyes, return_exceptions=True)

    # -- the scheduler ---------------------------------------------------------------------------

    async def _schedule(self, polls: bool) -> None:
        interval_of: Callable[[Any], float] = lambda d: d.config.interval  # noqa: E731
        now = time.time()
        heap: list[tuple[float, int, str]] = []
        for gi, m in enumerate(self.models):
            offset = self.rng.uniform(0, min(interval_of(d) for d in m.devices.values()) if m.devices else 1)
            for di, d in enumerate(m.devices.values()):
                d.due = now + offset + di * BUS_GAP
                heap.append((d.due, gi, d.config.id))
        heapq.heapify(heap)
        self.stats.devices = sum(len(m.devices) for m in self.models)
        intervals = sorted({d.config.interval for m in self.models for d in m.devices.values()})
        self.stats.interval = intervals[0] if len(intervals) == 1 else float("nan")
        self.stats.max_age = max((m.config.batch.max_age for m in self.models), default=5.0)
        self.stats.points = sum(len(d.points) for m in self.models for d in m.devices.values())
        self.stats.expected_rps = sum(len(d.points) / interval_of(d) for m in self.models
                                      for d in m.devices.values() if d.online)
        self._last_progress = self._last_drop = time.monotonic()
        active: set[int] = set()
        while True:
            try:
                self._turn(heap, active, polls)
            except Exception as exc:  # a bug must not stop every gateway: counted, and the next turn runs
                reason = "scheduler: %s" % exc
                self.stats.failure_reasons[reason] = self.stats.failure_reasons.get(reason, 0) + 1
            wait = TICK
            if polls and heap:
                wait = min(TICK, max(0.0, heap[0][0] - time.time()))
            await asyncio.sleep(wait)

    def _turn(self, heap: list[tuple[float, int, str]], active: set[int], polls: bool) -> None:
        """One turn of the scheduler: due polls, aged packs, outboxes, health, drops, progress."""
        now = time.time()
        while polls and heap and heap[0][0] <= now:
            due, gi, device_id = heapq.heappop(heap)
            m = self.models[gi]
            device = m.devices[device_id]
            lag = now - due
            if lag > 1.0 and self._measuring:
                self.stats.late_polls += 1
            self.stats.max_lag = max(self.stats.max_lag, lag) if self._measuring else self.stats.max_lag
            made = m.poll(device, due)
            if self._measuring:
                self.stats.readings_made += made
            device.due = due + device.config.interval
            heapq.heappush(heap, (device.due, gi, device_id))
            active.add(gi)
        mono = time.monotonic()
        for gi in list(active):
            m = self.models[gi]
            m.batcher.tick()
            if not m.batcher.pending:
                active.discard(gi)
            self._dirty.add(gi)
        for gi in self._dirty:
            self._pump(self.links[gi])
        self._dirty.clear()
        for link in self.links:  # health: the agent sends it every health_interval while connected
            if link.model.connected and mono >= link.next_health and link.session is not None \
                    and link.session.up:
                link.next_health = mono + link.model.config.gateway.health_interval
                self._publish(link, "health", link.model.health_bytes(), retain=True)
        o = self.options
        if o.drop_every and mono - self._last_drop >= o.drop_every:
            self._last_drop = mono
            self._drop_one()
        if o.progress is not None and self._measuring and mono - self._last_progress >= o.progress_every:
            self._last_progress = mono
            o.progress(self._progress_line())

    def _progress_line(self) -> str:
        s = self.stats
        window = time.monotonic() - getattr(self, "_window_start", time.monotonic())
        rate = s.readings_published / window if self._measuring and window > 0 else 0.0
        up = sum(1 for m in self.models if m.connected)
        return ("%6.0f s  %d/%d connected  readings/s %.0f (expected %.0f)  latency p99 %.1f ms  "
                "outbox packs %d" % (window, up, len(self.models), rate, s.expected_rps,
                                     ms(percentile(s.latency[-5000:], 0.99)),
                                     sum(len(m.outbox) for m in self.models)))

    def _drop_one(self) -> None:
        up = [link for link in self.links if link.session is not None and link.session.up]
        if up:
            link = self.rng.choice(up)
            self.stats.drops += 1
            assert link.session is not None
            link.session.abort("dropped on purpose")

    # -- publishing --------------------------------------------------------------------------------

    def _publish(self, link: _Link, leaf: str, payload: bytes,
                 retain: bool = False) -> asyncio.Future[Any] | None:
        m = link.model
        topic = m.topic[leaf]
        assert link.session is not None
        future = link.session.publish(topic, payload, 1, retain, topic_bytes=link.topics[topic])
        if self._measuring:
            self.stats.messages[leaf] = self.stats.messages.get(leaf, 0) + 1
            self.stats.message_bytes[leaf] = self.stats.message_bytes.get(leaf, 0) + len(payload)
        return future

    def _pump(self, link: _Link) -> None:
        """Fill the in-flight window from the outbox, oldest first; send waiting acks."""
        session = link.session
        m = link.model
        if session is None or not session.up or not m.connected:
            return
        while m.acks:
            self._publish(link, "ack", m.acks.popleft())
            self.stats.acks += 1
        free = self.options.inflight - len(link.inflight)
        if free <= 0 or not m.outbox:
            return
        for pack in m.take(free):
            leaf = "alarm" if pack.topic == m.topic["alarm"] else "data"
            sent = time.monotonic()
            future = self._publish(link, leaf, pack.payload)
            link.inflight.append((pack, sent))
            assert future is not None
            future.add_done_callback(functools.partial(self._acked, link, pack, sent))
            m.counters["bytes_published"] += len(pack.payload)

    def _acked(self, link: _Link, pack: Pack, sent: float, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the session ended: _session_ended puts the pack back
        try:
            link.inflight.remove((pack, sent))
        except ValueError:
            return
        m = link.model
        m.counters["packs_published"] += 1
        m.counters["records_published"] += pack.records
        if self._measuring:
            now = time.monotonic()
            s = self.stats
            s.readings_published += pack.records
            s.packs_acked += 1
            if len(s.latency) < LATENCY_SAMPLES:
                s.latency.append(now - pack.closed)
                s.wire.append(now - sent)
        self._pump(link)

    def _command(self, link: _Link, topic: str, payload: bytes, retain: bool) -> None:
        m = link.model
        if topic != m.topic["cmd"]:
            return
        self.stats.commands += 1
        try:
            m.gate.take(payload, retain)
        except Exception as exc:  # a bug must not end the session: as the agent's publisher
            self.stats.failure_reasons["command handling: %s" % exc] = 1
        self._dirty.add(self._index[id(m)])

    def _later(self, loop: asyncio.AbstractEventLoop, model: GatewayModel, delay: float,
               fn: Callable[[], None]) -> None:
        loop.call_later(delay, self._after, model, fn)

    def _after(self, model: GatewayModel, fn: Callable[[], None]) -> None:
        fn()
        self._dirty.add(self._index[id(model)])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
