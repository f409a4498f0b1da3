"""The bus scheduler: one owner thread per bus serialises every request on it.

Devices are polled in deadline order at their own intervals. A device that stops answering is
backed off exponentially (from max(interval, 10 response timeouts), doubling up to `backoff_max`)
and reported offline after `offline_after` failed cycles, so its neighbours keep their poll rate;
it is reported online again on its first answer (the rule of protocols/poll.py, shared with the
board). Commands and ad-hoc reads queue on the bus owner and run between two transactions, so they
wait at most one transaction; each bus holds at most `command_queue` commands waiting (`submit` says
"busy" beyond that), so a flooded or slow bus never delays another bus's commands, and `submit` never
blocks: `done(result)` is called by the bus owner when the command finished. Readings are
timestamped (time.time()) when their reply arrives and handed to `sink(readings)` as
(device, point, value, time) tuples, a device's poll at once when it completes; a long poll (a meter
of many requests on a slow line) hands on what it read so far whenever the oldest reading would
otherwise wait longer than `DELIVER_WITHIN` (judged by the last transaction's duration), so no reading
sits in its poll for seconds. Online/offline transitions go to `events(device, online, reason)`.

Stopping (SIGTERM) loses no reading: the poll in flight goes on for up to `STOP_GRACE` seconds and then
ends after its current transaction, and every reading it made is handed to `sink` before the owner
thread ends. A transaction still waiting for its reply when `stop(timeout)` gives up (a response
timeout of seconds) is abandoned: no reading is made from it.

Point quality: a point the device answered for but whose value could not be decoded (DL/T 645 all-FF
"not available", non-BCD nibbles, a CJ/T 188 field with bad BCD) is not a reading. It is counted per
point, and its transitions go to `quality(device, point, quality, time)`: the quality text when the point
turns bad (first bad answer, or bad after good), None when it is good again. A point that was never bad
reports nothing; a failed transaction (timeout, CRC, ...) is a comms matter and leaves quality alone
(the rule of protocols/quality.py, shared with the board). A value the profile says cannot physically
be (its `plausible` range or rule, protocols/plausible.py) is a bad point of quality "implausible" in
the same way: not a reading, counted, reported once.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agent import os_thread, seams
from agent.config_model import BusConfig, Config
from agent.diagnosis import Where, explain
from agent.drivers import Driver, WriteRefused, error_kind, make_driver
from agent.link import Link, LinkClosed, LinkError, open_link
from agent.planner import PlannedRequest
from protocols import poll, quality
from protocols.commands import is_switching, refusal
from protocols.errors import AbnormalReply, ExceptionResponse, ProtocolError
from protocols.plausible import IMPLAUSIBLE, for_points

__all__ = ["BusWorker", "DeviceState", "Scheduler", "outcome"]

log = logging.getLogger("fieldlink.bus")

Reading = seams.Reading
Sink = seams.Sink
Events = seams.Events
Quality = seams.QualityReport
ERROR_KINDS = ("timeout", "crc", "frame", "exception", "abnormal", "decode", "port", "other")
STOP_GRACE = 1.0  # seconds the poll in flight may go on after stop()
DELIVER_WITHIN = 0.25  # seconds a reading may wait in its device's poll before it is handed on


def _new_counters() -> dict:
    return {"polls": 0, "requests": 0, "replies": 0, "readings": 0, "bad_points": 0,
            "errors": {k: 0 for k in ERROR_KINDS}}


def outcome(value: Any, exc: BaseException | None) -> dict:
    """The ack fields of a command that ran: its value, or the error it ended with."""
    if exc is None:
        return {"ok": True, "error": None, "value": value}
    if isinstance(exc, WriteRefused):
        error = str(exc)
    elif isinstance(exc, (LinkError, ProtocolError)):
        error = "%s: %s" % (error_kind(exc), exc)
    else:
        error = "command failed: %s" % exc
    return {"ok": False, "error": error, "value": None}


class DeviceState:
    """Scheduling and health of one device on its bus."""

    def __init__(self, driver: Driver, due: float) -> None:
        self.driver = driver
        self.interval = float(driver.device.interval)
        self.due = due
        self.failures = 0
        self.online: bool | None = None
        self.last_error = ""
        self.last_ok = 0.0  # POSIX time of the last answer
        self.since = 0.0  # POSIX time `online` last changed (0: not yet known)
        self.reason = ""  # why it is online or offline (the comms alarm's text)
        self.last_exc: BaseException | None = None  # the last failure, for the log's likely cause
        self.counters = _new_counters()
        self.bad_by_point: dict[str, int] = {}  # point -> bad answers since start
        self.quality: dict[str, str] = {}  # point -> quality text, for the points that are bad now
        self.plausible = for_points(driver.profile.points)  # point -> its range/rule and last good value
        #: id(request) -> (request, the positions of its points that have a plausible check), for the
        #: planned requests: a reply that gave every point is screened at those positions only (`_screen`)
        self.checked = {id(r): (r, [i for i, (p, _off) in enumerate(r.points) if p.name in self.plausible])
                        for r in driver.requests}

    @property
    def id(self) -> str:
        return self.driver.id


class BusWorker:
    """The owner of one bus: its link, its devices, its thread and its job queue."""

    def __init__(self, bus: BusConfig, link: Link, drivers: list[Driver], sink: Sink,
                 events: Events | None = None, offline_after: int = poll.OFFLINE_AFTER,
                 backoff_max: float = poll.BACKOFF_MAX_S,
                 quality: Quality | None = None, command_queue: int = 32) -> None:
        self.bus = bus
        self.name = str(bus.name)
        self.link = link
        self.sink = sink
        self.events = events
        self.quality = quality
        self.offline_after = max(1, offline_after)
        self.backoff_max = backoff_max
        now = time.monotonic()
        # stagger first polls a little so devices with equal intervals do not bunch forever
        self.devices = {d.id: DeviceState(d, now + 0.001 * i) for i, d in enumerate(drivers)}
        self.counters = _new_counters()
        self.counters.update({"port_down": 0, "commands": 0, "late": 0, "commands_busy": 0})
        self.port_up: bool | None = None
        self.command_queue = max(1, command_queue)
        self._waiting = 0  # commands offered and not started yet (bounded by command_queue)
        self._waiting_lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._finish_by = 0.0  # after stop(): the poll in flight ends after the transaction at this time
        self._deliver_lock = threading.Lock()
        self._closed = False  # after a stop that gave up waiting: late readings are not made at all
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._heap: list[tuple[float, int, str]] = []
        for state in self.devices.values():
            self._push(state)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = os_thread.thread(self._run, "bus-%s" % self.name)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the owner to stop: the poll in flight may go on for STOP_GRACE s, then its readings go out."""
        if not self._stop.is_set():
            self._finish_by = time.monotonic() + STOP_GRACE
            self._stop.set()
            self._jobs.put(None)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and wait up to `timeout` s for the owner thread, then close the link (if it ended)."""
        self.request_stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                with self._deliver_lock:
                    self._closed = True
                log.warning("bus=%s event=stop_abandoned reason='a transaction still waits for its reply'",
                            self.name)
                return  # the thread still uses the link; the process is ending anyway
            self._thread = None
        self.link.close()

    def run_on_bus(self, fn: Callable[[Link], Any]) -> Future:
        """Run `fn(link)` on the bus owner between two transactions; a Future of its result."""
        future: Future = Future()
        if self._stop.is_set():
            future.set_exception(LinkClosed("bus %s is stopping" % self.name))
            return future
        self._jobs.put((fn, future))
        return future

    def offer(self, fn: Callable[[Link], Any], done: Callable[[Any, BaseException | None], None]) -> bool:
        """Queue a command `fn(link)` unless `command_queue` commands already wait (then False: busy).
        The bus owner calls `done(result, None)` or `done(None, exception)` when it has run."""
        with self._waiting_lock:
            if self._waiting >= self.command_queue or self._stop.is_set():
                self.counters["commands_busy"] += 1
                return False
            self._waiting += 1
        self._jobs.put((fn, done))
        return True

    @property
    def waiting(self) -> int:
        """Commands queued on this bus and not started."""
        return self._waiting

    def full(self) -> dict | None:
        """The `busy` refusal (ack fields), counted, when `command_queue` commands already wait on this
        bus; None when there is room (`offer` still says whether the command got it)."""
        if self._waiting < self.command_queue:
            return None
        self.counters["commands_busy"] += 1
        return self.busy()

    def busy(self) -> dict:
        """The ack fields of a command refused because this bus has no room for it."""
        return {"ok": False, "error": refusal("busy", self.name, self._waiting), "value": None,
                "reason": "busy"}

    # ------------------------------------------------------------------ loop
    def _push(self, state: DeviceState) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (state.due, self._seq, state.id))

    def _wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, running queued jobs as they arrive."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                job = self._jobs.get(timeout=left)
            except queue.Empty:
                return
            self._run_job(job)

    def _run_jobs(self) -> None:
        if self._jobs.empty():  # the usual case between two transactions: nothing queued
            return
        while not self._stop.is_set():
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            self._run_job(job)

    def _run_job(self, job: Any) -> None:
        if job is None:
            return
        fn, future = job
        if not isinstance(future, Future):  # a command from `offer`: report through its callback
            with self._waiting_lock:
                self._waiting -= 1
            self.counters["commands"] += 1
            try:
                result = fn(self.link)
            except Exception as exc:
                self._done(future, None, exc)
                return
            self._done(future, result, None)
            return
        if not future.set_running_or_notify_cancel():
            return
        self.counters["commands"] += 1
        try:
            future.set_result(fn(self.link))
        except BaseException as exc:
            future.set_exception(exc)

    def _done(self, done: Callable[[Any, BaseException | None], None], result: Any,
              exc: BaseException | None) -> None:
        try:
            done(result, exc)
        except Exception:
            log.exception("bus=%s event=command_callback_failed", self.name)

    def _run(self) -> None:
        log.info("bus=%s port=%s devices=%d event=started", self.name, self.link.port, len(self.devices))
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # a bug must not kill the bus owner; log it and carry on
                log.exception("bus=%s event=error", self.name)
                self._wait(1.0)
        self._run_jobs()
        self._cancel_waiting()
        log.info("bus=%s event=stopped", self.name)

    def _cancel_waiting(self) -> None:
        """Commands still queued when the bus stops: reported as not run."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                continue
            _fn, done = job
            if isinstance(done, Future):
                done.cancel()
                continue
            with self._waiting_lock:
                self._waiting -= 1
            self._done(done, None, LinkClosed("bus %s stopped before the command ran" % self.name))

    def _step(self) -> None:
        self._run_jobs()
        if not self.link.is_open:
            try:
                self.link.ensure_open()
            except LinkClosed as exc:
                self._port_down(str(exc))
                self._wait(min(max(self.link.retry_in(), 0.05), 1.0))
                return
            self._port_up()
        if not self._heap:
            self._wait(1.0)
            return
        due, _, device_id = self._heap[0]
        now = time.monotonic()
        if due > now:
            self._wait(due - now)
            return
        heapq.heappop(self._heap)
        state = self.devices[device_id]
        self._poll(state)
        self._push(state)

    def _port_down(self, reason: str) -> None:
        if self.port_up is not False:
            self.port_up = False
            self.counters["port_down"] += 1
            log.warning("bus=%s port=%s event=port_down reason=%r", self.name, self.link.port, reason)
            for state in self.devices.values():
                if state.online is not False:
                    self._set_online(state, False, "port %s unavailable: %s" % (self.link.port, reason))

    def _port_up(self) -> None:
        if self.port_up is not True:
            if self.port_up is False:
                log.info("bus=%s port=%s event=port_reopened", self.name, self.link.port)
            self.port_up = True
            now = time.monotonic()
            for state in self.devices.values():  # poll everyone soon after the port returns
                if state.online is False and state.failures == 0:
                    state.due = min(state.due, now)
            self._heap = []
            for state in self.devices.values():
                self._push(state)

    def _set_online(self, state: DeviceState, online: bool, reason: str) -> None:
        if state.online is online:
            return
        state.online = online
        state.since = time.time()
        state.reason = reason
        if online or state.last_exc is None:
            log.log(logging.INFO if online else logging.WARNING, "bus=%s device=%s event=%s reason=%r",
                    self.name, state.id, "online" if online else "offline", reason)
        else:
            where = Where.of(self.bus, state.driver.address, state.driver.profile, state.id)
            log.warning("bus=%s device=%s event=offline reason=%r likely_cause=%r", self.name, state.id,
                        reason, explain(state.last_exc, where))
        if self.events is not None:
            try:
                self.events(state.id, online, reason)
            except Exception:
                log.exception("bus=%s device=%s event=events_callback_failed", self.name, state.id)

    def _count_error(self, state: DeviceState, kind: str) -> None:
        state.counters["errors"][kind] = state.counters["errors"].get(kind, 0) + 1
        self.counters["errors"][kind] = self.counters["errors"].get(kind, 0) + 1

    def _poll(self, state: DeviceState) -> None:
        """One poll cycle of a device: its planned requests, commands interleaved between them."""
        answered = False
        failed = False
        readings: list[Reading] = []
        state.counters["polls"] += 1
        self.counters["polls"] += 1
        oldest = 0.0  # monotonic time of the oldest reading not handed on yet
        last = 0.0  # how long the last transaction took: what the next one is likely to take
        for request in state.driver.requests:
            self._run_jobs()
            if self._stop.is_set() and time.monotonic() >= self._finish_by:
                break  # stopping: what this poll read so far is delivered below
            began = time.monotonic()
            if readings and began - oldest + last > DELIVER_WITHIN:
                self._deliver(readings)  # a long poll: the next transaction would make these wait too long
                readings = []
            had = len(readings)
            ok, kind, exc = self._transaction(state, request, readings)
            last = time.monotonic() - began
            if had == 0 and readings:
                oldest = time.monotonic()
            if ok:
                answered = True
                continue
            if self._stop.is_set():
                break
            if kind == "port":
                self._deliver(readings)
                self._port_down(str(exc))
                state.due = time.monotonic()  # retry as soon as the port is back; not the device's fault
                return
            failed = True
            state.last_error = "%s: %s" % (kind, exc)
            state.last_exc = exc
            if kind in ("exception", "abnormal"):
                answered = True  # the device is there; it refused this request
                continue
            if kind == "timeout":
                break  # a silent device gets no more of the line this cycle
        self._deliver(readings)
        now = time.monotonic()
        if answered:
            state.failures = 0
            state.last_ok = time.time()
            self._set_online(state, True, poll.online_reason(failed))
            if state.due + state.interval < now:
                self.counters["late"] += 1
            state.due = poll.next_due(state.due, state.interval, now)
            return
        state.failures += 1
        if poll.offline_now(state.failures, self.offline_after):
            self._set_online(state, False, poll.offline_reason(state.failures, state.last_error))
        delay = poll.retry_delay(state.failures, state.interval, self.link.timeout, self.backoff_max)
        state.due = now + delay
        log.debug("bus=%s device=%s event=poll_failed failures=%d retry_in=%.1f error=%r", self.name,
                  state.id, state.failures, delay, state.last_error)

    def _transaction(self, state: DeviceState, request: PlannedRequest,
                     readings: list[Reading]) -> tuple[bool, str, BaseException | None]:
        counters = state.counters
        counters["requests"] += 1
        self.counters["requests"] += 1
        try:
            names, values, bad = state.driver.read_values(self.link, request)
        except (LinkError, ProtocolError) as exc:
            kind = error_kind(exc)
            self._count_error(state, kind)
            if isinstance(exc, (ExceptionResponse, AbnormalReply)):
                counters["replies"] += 1
                self.counters["replies"] += 1
            return False, kind, exc
        stamp = time.time()
        counters["replies"] += 1
        self.counters["replies"] += 1
        device = state.driver.id
        checked = state.checked.get(id(request)) if not bad else None
        if checked is not None and checked[0] is request:  # every point of a planned request, in plan order
            refused = _implausible(state, names, values, checked[1]) if checked[1] else None
            if refused is None and not state.quality:  # the usual reply: readings of every point, at once
                readings += [(device, name, value, stamp) for name, value in zip(names, values, strict=True)]
                return True, "", None
            pairs = [(names[i], values[i]) for i in range(len(names)) if refused is None or i not in refused]
            if refused is not None:
                bad = [(names[i], IMPLAUSIBLE) for i in refused]
        else:  # as `Driver.read` pairs them, then screened point by point
            pairs = [(n, v) for n, v in zip(names, values, strict=True) if v is not None or not bad]
            if state.plausible:
                pairs, bad = _screen(state, pairs, bad)
        readings += [(device, point, value, stamp) for point, value in pairs]
        if state.quality:  # some point is bad now: a good value clears it
            for point, _value in pairs:
                if quality.change(point in state.quality, None) == quality.CLEARED:
                    self._set_quality(state, point, None, stamp)
        if bad:
            state.counters["bad_points"] += len(bad)
            self.counters["bad_points"] += len(bad)
            for point, text in bad:
                state.bad_by_point[point] = state.bad_by_point.get(point, 0) + 1
                if quality.change(point in state.quality, str(text)) == quality.RAISED:
                    self._set_quality(state, point, str(text), stamp)
        return True, "", None

    def _set_quality(self, state: DeviceState, point: str, quality: str | None, stamp: float) -> None:
        """Record a quality transition of one point and report it (bad: its text; good again: None)."""
        if quality is None:
            was = state.quality.pop(point, "")
            log.info("bus=%s device=%s point=%s event=quality_good was=%r", self.name, state.id, point, was)
        else:
            state.quality[point] = quality
            log.info("bus=%s device=%s point=%s event=quality_bad quality=%r", self.name, state.id, point,
                     quality)
        if self.quality is not None:
            try:
                self.quality(state.id, point, quality, stamp)
            except Exception:
                log.exception("bus=%s device=%s event=quality_callback_failed", self.name, state.id)

    def _deliver(self, readings: list[Reading]) -> None:
        if not readings:
            return
        with self._deliver_lock:
            if self._closed:
                return
            device = readings[0][0]
            self.devices[device].counters["readings"] += len(readings)
            self.counters["readings"] += len(readings)
            try:
                self.sink(readings)
            except Exception:
                log.exception("bus=%s event=sink_failed", self.name)

    # ------------------------------------------------------------------ reporting
    def snapshot(self) -> dict:
        """Counters of the bus and each device (a copy, safe to read from another thread)."""
        devices = {}
        for state in self.devices.values():
            entry = dict(state.counters)
            entry["errors"] = dict(state.counters["errors"])
            entry["online"] = state.online
            entry["failures"] = state.failures
            entry["last_error"] = state.last_error
            entry["since"] = state.since
            entry["reason"] = state.reason
            entry["last_ok"] = state.last_ok  # POSIX seconds of its last answer, 0.0: never
            entry["bad_by_point"] = dict(state.bad_by_point)
            entry["quality"] = dict(state.quality)
            devices[state.id] = entry
        bus = dict(self.counters)
        bus["errors"] = dict(self.counters["errors"])
        bus["port_up"] = self.port_up
        bus["link"] = dict(self.link.counters)
        bus["port"] = self.link.port
        bus["devices"] = devices
        return bus


def _implausible(state: DeviceState, names: list, values: list, positions: Any) -> list | None:
    """The indices among `positions` whose value (`values[i]` of point `names[i]`) the profile says
    cannot be (range, never decreasing), each checked once (a check keeps the point's reference); None
    when every one is plausible (the usual case)."""
    checks = state.plausible
    refused: list | None = None
    for i in positions:
        check = checks.get(names[i])
        if check is None or check.check(values[i]):
            continue
        if refused is None:
            refused = []
        refused.append(i)
        log.debug("device=%s point=%s event=implausible value=%r reference=%r", state.id, names[i], values[i],
                  check.last)
    return refused


def _screen(state: DeviceState, values: list, bad: list) -> tuple[list, list]:
    """Split off the (point, value) pairs the profile says cannot be as bad points; the lists themselves
    when every value is plausible. (A reply that gave every point of a planned request is screened at
    the positions of its checked points only: `DeviceState.checked`, `_implausible`.)"""
    refused = _implausible(state, [p for p, _v in values], [v for _p, v in values], range(len(values)))
    if refused is None:
        return values, bad
    kept = [values[i] for i in range(len(values)) if i not in refused]
    return kept, bad + [(values[i][0], IMPLAUSIBLE) for i in refused]


class Scheduler:
    """All buses of a config: builds the links, drivers and owners; routes commands."""

    def __init__(self, config: Config, sink: Sink, events: Events | None = None,
                 link_factory: Callable[[BusConfig], Link] = open_link,
                 offline_after: int = poll.OFFLINE_AFTER, backoff_max: float = poll.BACKOFF_MAX_S,
                 quality: Quality | None = None, command_queue: int | None = None) -> None:
        self.config = config
        self.workers: dict[str, BusWorker] = {}
        self.drivers: dict[str, tuple[BusWorker, Driver]] = {}
        by_bus: dict[str, list[Driver]] = {bus.name: [] for bus in config.buses}
        buses = {bus.name: bus for bus in config.buses}
        timezone = getattr(getattr(config, "gateway", None), "timezone", None)
        for device in config.devices:
            profile = config.profiles[device.profile]
            driver = make_driver(device, profile, buses[device.bus])
            driver.timezone = timezone  # relay deadlines in the meters' local time
            by_bus[device.bus].append(driver)
        for bus in config.buses:
            if not by_bus[bus.name]:
                continue
            queue_size = command_queue if command_queue is not None else getattr(
                getattr(config, "commands", None), "queue", 32)
            worker = BusWorker(bus, link_factory(bus), by_bus[bus.name], sink, events,
                               offline_after=offline_after, backoff_max=backoff_max, quality=quality,
                               command_queue=queue_size)
            self.workers[bus.name] = worker
            for driver in by_bus[bus.name]:
                self.drivers[driver.id] = (worker, driver)

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every bus at once (each finishes its poll in flight) and wait up to `timeout` s in all."""
        end = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.request_stop()
        for worker in self.workers.values():
            worker.stop(max(0.0, end - time.monotonic()))

    def switching(self, cmd: dict) -> bool:
        """True when `cmd` switches supply: a relay action, or a write of a point its device's profile
        marks switching (protocols/commands.is_switching)."""
        entry = self.drivers.get(str(cmd.get("device")))
        action = cmd.get("action")
        point = cmd.get("point")
        marked = False
        if entry is not None and isinstance(point, str) and entry[1].profile.has_point(point):
            marked = bool(entry[1].profile.point(point).switching)
        return is_switching(action, marked)

    def prepare(self, cmd: dict) -> tuple[BusWorker, Callable[[Link], Any]] | dict:
        """Check a command {device, point, value}, {device, action: "read", point} or {device, action}
        for an action the device's profile lists (such as "relay_trip"): (its bus owner, the job to run
        there), or the refusal ack fields {ok: False, error, value: None, reason?}. Sends nothing."""
        device = cmd.get("device")
        point = cmd.get("point")
        action = cmd.get("action", "write")
        entry = self.drivers.get(str(device))
        if entry is None:
            return {"ok": False, "error": refusal("unknown_device", repr(device)), "value": None}
        worker, driver = entry
        if action not in ("read", "write"):
            try:
                driver.check_action(action)
            except WriteRefused as exc:
                return {"ok": False, "error": str(exc), "value": None}

            def job(link: Link) -> Any:
                return driver.action(link, action)
        elif not isinstance(point, str):
            return {"ok": False, "error": refusal("no_point"), "value": None}
        elif action == "read":
            def job(link: Link) -> Any:
                result = driver.read_points(link, [point])
                if not result.values:
                    raise ProtocolError("point %s has no value (%s)" % (point, result.bad or "not read"))
                return result.values[0][1]
        else:  # write
            if "value" not in cmd:
                return {"ok": False, "error": refusal("no_value"), "value": None}
            value = cmd["value"]
            try:
                driver.check_write(point, value)
            except WriteRefused as exc:
                return {"ok": False, "error": str(exc), "value": None}

            def job(link: Link) -> Any:
                return driver.write(link, point, value)

        def run(link: Link) -> Any:
            result = job(link)
            log.info("bus=%s device=%s point=%s event=command action=%s value=%r", worker.name, device, point,
                     action, result)
            if result is not None and isinstance(point, str) and action in ("read", "write"):
                worker._deliver([(str(device), point, result, time.time())])
            return result

        return worker, run

    def submit(self, cmd: dict, done: Callable[[dict], None],
               before: Callable[[], None] | None = None) -> dict | None:
        """Check `cmd` and queue it on its bus without waiting: None when queued (`done(ack fields)` is
        called by the bus owner when it finished), else the refusal ack fields at once (nothing was
        queued; `busy` when the bus already has `command_queue` commands waiting). `before()` runs
        once the command is sure to be queued, before its bus can start it."""
        prepared = self.prepare(cmd)
        if isinstance(prepared, dict):
            return prepared
        worker, run = prepared
        full = worker.full()
        if full is not None:
            return full
        if before is not None:
            before()

        def finished(result: Any, exc: BaseException | None) -> None:
            done(outcome(result, exc))

        if not worker.offer(run, finished):
            return worker.busy()
        return None

    def command(self, cmd: dict, timeout: float = 15.0) -> dict:
        """Check and execute a command, waiting for its bus (tools and tests; the broker path uses
        `submit`). Returns the ack fields {ok, error, value}. A refused command sends nothing."""
        prepared = self.prepare(cmd)
        if isinstance(prepared, dict):
            return prepared
        worker, run = prepared
        future = worker.run_on_bus(run)
        try:
            value = future.result(timeout)
        except TimeoutError:
            future.cancel()
            return {"ok": False, "error": "bus %s busy: no result within %g s" % (worker.name, timeout),
                    "value": None}
        except Exception as exc:
            return outcome(None, exc)
        return outcome(value, None)

    def counters(self) -> dict:
        """Totals plus per bus and per device counters."""
        buses = {name: w.snapshot() for name, w in self.workers.items()}
        total = _new_counters()
        for b in buses.values():
            for key in ("polls", "requests", "replies", "readings", "bad_points"):
                total[key] += b[key]
            for kind, n in b["errors"].items():
                total["errors"][kind] = total["errors"].get(kind, 0) + n
        total["devices_online"] = sum(1 for b in buses.values() for d in b["devices"].values() if d["online"])
        total["devices_offline"] = sum(1 for b in buses.values() for d in b["devices"].values()
                                       if d["online"] is False)
        total["buses"] = buses
        return total
