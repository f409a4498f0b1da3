"""The lighting task: runs the config's schedules (and those replaced by signed commands) on the gateway,
with or without a broker.

    task = LightingTask(config, scheduler, record_event=uplink.event, alarm=gateway.alarm)
    task.start()                         # a thread: applies the state in force, then waits for changes
    task.device_state("lamp-01", True)   # from the bus owner: the device answers again
    task.readings([...])                 # every reading: a lamp that lost its state, lit or not
    task.stop()

What it does (docs/lighting.md, "How the agent runs a schedule"):

* At start-up, and whenever the step in force changes, it writes the state in force (protocols/
  schedule.Schedule.state_at) to every device of the schedule, through its bus owner like any command:
  Scheduler.prepare checks each write against the profile, the bus owner runs it between two poll
  transactions and reads the value back, the write is counted in the bus's `commands`.
* It sleeps until the next change (Schedule.next_change), but at most `recheck` seconds, reading the
  wall clock again each time: a clock set forward or back (NTP after a cold start) changes the step in
  force, which is written at once.
* A device that answers again after being offline (its bus reconnected, it rebooted, a cable was
  mended) gets the state in force again; so does a device whose reading of a scheduled point shows it
  lost the state it was given (a short reboot back to its power-on state), at most once a minute.
* A write that fails raises a `schedule` alarm for the device and is tried again after a minute (or
  when the device answers again); the alarm clears when a write succeeds. A device known to be offline
  is not written (it would only cost the bus its timeouts) until it answers.
* A command that writes a scheduled point by hand holds until the next step (an override); the
  schedule does not fight it.
* Each application is recorded in the outbox as an `event` (docs/payload.md §6): the schedule, the
  step, why, the state and each device's result, so the platform learns of every switching, also those
  made while the broker was unreachable.
* Lamps with a lit point are watched: lit while the schedule wants them off, or dark while it wants them
  on, for `alarm_after` seconds raises a `lighting` alarm (agent/lighting/lamps.py).

A schedule command (`action` "schedule") replaces a schedule by name, or adds one; it is kept in the
store beside the outbox (agent/lighting/store.py) and checked again against the config at every start.
The core is `tick(now)`, which tests drive with their own clock; the thread only calls it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from agent.config_lighting import check_schedule
from agent.config_model import Config
from agent.lighting.lamps import LampFacts, LightWatch, lamp_facts, light_watch
from agent.lighting.store import ScheduleStore, StoreError
from agent.lighting.zones import compile_zone
from protocols import lighting, solar
from protocols.lighting import RESET_GAP, RETRY_AFTER
from protocols.schedule import LOOKBACK_DAYS, Change, Place, Schedule, ScheduleError

__all__ = ["LightingTask", "command_schedule", "load_schedules", "make_place"]

log = logging.getLogger("fieldlink.lighting")

RECHECK = 60.0  # seconds between two readings of the wall clock while waiting for a change
IDLE_RECHECK = 86400  # with no change within LOOKBACK_DAYS, look again a day later
_UNSET = ("unset",)  # the key of a schedule that was never resolved


def command_schedule(config: Config, target: str, raw: object, others: dict[str, Schedule]) -> Schedule:
    """A schedule from a command's value for `target` (a group or a device): checked like the config's,
    and clashing with no other schedule's points. ValueError / ScheduleError saying why."""
    if not isinstance(raw, dict):
        raise ValueError("a schedule command's value is a map {name, steps} or {name, restore: true}")
    if "group" in raw or "devices" in raw:
        raise ValueError("the schedule's devices are the command's device (a group or a device); "
                         "leave group and devices out of its value")
    devices = {d.id: d for d in config.devices}
    table = dict(raw)
    if target in config.groups:
        table["group"] = target
    elif target in devices:
        table["devices"] = [target]
    else:
        raise ValueError("no group or device %r on this gateway" % (target,))
    schedule = check_schedule(table, config.groups, devices, config.profiles)
    for other in others.values():
        if other.name == schedule.name:
            continue
        for device in schedule.devices or []:  # type: ignore[attr-defined]
            if device in (other.devices or []):  # type: ignore[operator]
                shared = [p for p in schedule.points if p in other.points]
                if shared:
                    raise ValueError("schedule %r already sets %s of device %s" % (
                        other.name, ", ".join(shared), device))
    return schedule


def load_schedules(config: Config, stored: dict[str, dict]) -> tuple[dict[str, tuple[Schedule, str]],
                                                                    list[tuple[str, str]]]:
    """The schedules the agent runs: the config's, with the replacements kept by schedule commands on top
    ({name: (Schedule, "config" | "command")}), and the kept ones that no longer fit the config
    ([(name, why)])."""
    devices = {d.id: d for d in config.devices}
    out: dict[str, tuple[Schedule, str]] = {}
    for table in config.schedules:
        schedule = check_schedule(table, config.groups, devices, config.profiles)
        out[schedule.name] = (schedule, "config")
    ignored = []
    for name, entry in sorted(stored.items()):
        others = {n: s for n, (s, _) in out.items()}
        try:
            schedule = command_schedule(config, entry["target"], entry["schedule"], others)
        except (ScheduleError, ValueError) as exc:
            ignored.append((name, str(exc)))
            continue
        out[schedule.name] = (schedule, "command")
    return out, ignored


def make_place(config: Config, now: float | None = None) -> Place | None:
    """The gateway's Place (latitude, longitude and the compiled zone), or None when not configured."""
    g = config.gateway
    if g.latitude is None or g.longitude is None or not g.timezone:
        return None
    year = solar.civil_from_days(int((time.time() if now is None else now) // 86400))[0]
    return Place(float(g.latitude), float(g.longitude), compile_zone(g.timezone, year - 1))


@dataclass
class Running:
    """One schedule at run time: what is in force, what each device was given."""

    schedule: Schedule
    source: str  # "config" or "command"
    first_reason: str = "start"
    key: tuple = _UNSET
    change: Change | None = None
    state: dict = field(default_factory=dict)
    valid_from: float = 0.0
    valid_until: float = 0.0
    next: int | None = None  # the instant of the next change, None when none within LOOKBACK_DAYS
    applied: dict[str, tuple] = field(default_factory=dict)  # device -> key written to it
    pending: set[str] = field(default_factory=set)  # devices with a write on their bus now
    dirty: dict[str, str] = field(default_factory=dict)  # device -> why it must be written
    retry_at: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # device -> error (a schedule alarm is up)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # by hand, until the next step
    manual: dict[tuple[str, str], int] = field(default_factory=dict)  # hand writes on their way
    last_reset: dict[str, float] = field(default_factory=dict)
    # device -> time.time() its last write finished: readings stamped before it (a poll cycle the
    # write ran in the middle of) do not show a lost state
    written_at: dict[str, float] = field(default_factory=dict)
    away: set[str] = field(default_factory=set)  # devices reported offline since they were written

    @property
    def devices(self) -> list[str]:
        return list(self.schedule.devices or [])  # type: ignore[call-overload]

    def wanted(self, device: str, point: str) -> Any:
        """What `device`'s `point` should be now: a hand override, else the state in force."""
        return self.overrides.get(device, {}).get(point, self.state.get(point))


@dataclass
class Application:
    """One write of a schedule's state to some of its devices, recorded as one event."""

    running: Running
    key: tuple
    reason: str
    state: dict
    results: dict[str, dict] = field(default_factory=dict)
    waiting: int = 0


class LightingTask:
    """See the module docstring. Thread-safe: the bus owners, the network thread and the task's own
    thread call in."""

    def __init__(self, config: Config, scheduler: Any, record_event: Callable[[dict], None],
                 alarm: Callable[..., None], clock: Callable[[], float] = time.time,
                 place: Place | None = None, recheck: float = RECHECK) -> None:
        self.config = config
        self.scheduler = scheduler
        self.record_event = record_event
        self.alarm = alarm
        self.clock = clock
        self.recheck = recheck
        self.place = place if place is not None else make_place(config, clock())
        self.alarm_after = config.lighting.alarm_after
        self.lamps: dict[str, LampFacts] = lamp_facts(config)
        self.watches: dict[str, LightWatch] = {}
        for d, f in self.lamps.items():
            watch = light_watch(f, self.alarm_after)
            if watch is not None:
                self.watches[d] = watch
        self.devices = {d.id: d for d in config.devices}
        self.store = ScheduleStore(config.lighting.store)
        self.running: dict[str, Running] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outgoing: list[tuple[str, tuple]] = []  # alarms and events, sent outside the lock
        self._tolerance = self._tolerances()
        self.counters = {"changes": 0, "applications": 0, "writes_ok": 0, "writes_failed": 0,
                         "not_written_offline": 0, "resets": 0, "overrides": 0, "replaced": 0,
                         "restored": 0, "alarms": 0, "stored_invalid": 0}
        self._build()

    # -- the schedules --------------------------------------------------------------------------

    def _build(self) -> None:
        """The running schedules: the config's, with the store's replacements on top."""
        schedules, ignored = load_schedules(self.config, self.store.entries)
        for name, problem in ignored:
            self.counters["stored_invalid"] += 1
            log.error("event=stored_schedule_ignored name=%r file=%s: %s; the config's schedule (if any) "
                      "runs instead", name, self.store.path, problem)
        running = {name: Running(schedule, source) for name, (schedule, source) in schedules.items()}
        if running and self.place is None:
            raise ValueError("schedules need [gateway] latitude, longitude and timezone")
        self.running = running
        self._index()

    def _index(self) -> None:
        self._by_device: dict[str, list[Running]] = {}
        for run in self.running.values():
            for device in run.devices:
                self._by_device.setdefault(device, []).append(run)

    def _check_command_schedule(self, target: str, raw: object, others: dict[str, Running]) -> Schedule:
        return command_schedule(self.config, target, raw, {n: r.schedule for n, r in others.items()})

    def replace(self, fields: dict) -> dict:
        """A schedule command ({device, action: "schedule", value}): the ack fields. The new schedule is
        on disk before this returns ok, and its state in force is written at once."""
        value = fields.get("value")
        target = fields.get("device")
        if self.place is None:
            return _failed("this gateway has no latitude, longitude and timezone in [gateway]; it cannot run "
                           "schedules")
        if isinstance(value, dict) and value.get("restore") is True:
            return self._restore(value)
        with self._lock:
            try:
                schedule = self._check_command_schedule(str(target), value, self.running)
            except (ScheduleError, ValueError) as exc:
                return _failed("schedule refused: %s" % exc)
            now = int(self.clock())
            try:
                self.store.put(schedule.name, str(target), dict(value), fields.get("id"), now)  # type: ignore[arg-type]
            except StoreError as exc:
                return _failed("schedule not kept, nothing changed: %s" % exc)
            old = self.running.get(schedule.name)
            self.running[schedule.name] = Running(schedule, "command", first_reason="replaced")
            self._index()
            self.counters["replaced"] += 1
            self._drop_alarms(old)
            ack = self._describe(schedule, now)
        log.info("event=schedule_replaced name=%r target=%s steps=%d id=%r", schedule.name, target,
                 len(schedule.steps), fields.get("id"))
        self._flush()
        self._wake.set()
        return {"ok": True, "error": None, "value": ack}

    def _restore(self, value: dict) -> dict:
        name = value.get("name")
        extra = [k for k in value if k not in ("name", "restore")]
        if not isinstance(name, str) or extra:
            return _failed("schedule refused: a restore is {name, restore: true}")
        with self._lock:
            try:
                dropped = self.store.drop(name)
            except StoreError as exc:
                return _failed("schedule not restored, nothing changed: %s" % exc)
            if not dropped:
                return _failed("schedule refused: no replacement of schedule %r is kept" % name)
            old = self.running.pop(name, None)
            table = next((t for t in self.config.schedules if t.get("name") == name), None)
            if table is not None:
                schedule = check_schedule(table, self.config.groups, self.devices, self.config.profiles)
                self.running[name] = Running(schedule, "config", first_reason="replaced")
            self._index()
            self.counters["restored"] += 1
            self._drop_alarms(old)
            now = int(self.clock())
            ack = self._describe(self.running[name].schedule, now) if name in self.running else {
                "schedule": name, "devices": 0, "step": None, "next": None}
        log.info("event=schedule_restored name=%r config=%s", name, table is not None)
        self._flush()
        self._wake.set()
        return {"ok": True, "error": None, "value": ack}

    def _describe(self, schedule: Schedule, now: int) -> dict:
        assert self.place is not None
        change = schedule.in_force(now, self.place)
        nxt = schedule.next_change(now, self.place)
        return {"schedule": schedule.name, "devices": len(schedule.devices or []),  # type: ignore[arg-type]
                "step": change.index + 1 if change else None, "next": nxt.instant if nxt else None}

    def _drop_alarms(self, old: Running | None) -> None:
        """Clear the schedule alarms of a schedule that is no longer run."""
        if old is None:
            return
        for device in list(old.failed):
            self._send_alarm(device, None, lighting.SCHEDULE, lighting.APPLIED, False)
        old.failed.clear()

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, now: float) -> float:
        """Bring every schedule up to `now` and start the writes that are due; the seconds to wait."""
        with self._lock:
            wake = now + self.recheck
            for run in list(self.running.values()):
                self._refresh(run, now)
                self._launch(run, now)
                wake = min(wake, run.valid_until)
                for device, at in run.retry_at.items():
                    if device in run.dirty:
                        wake = min(wake, at)
        self._flush()
        return max(0.0, wake - now)

    def _refresh(self, run: Running, now: float) -> None:
        if run.key is not _UNSET and run.valid_from <= now < run.valid_until:
            return
        assert self.place is not None
        instant = int(now)
        change = run.schedule.in_force(instant, self.place)
        nxt = run.schedule.next_change(instant, self.place)
        run.valid_from = change.instant if change is not None else -float("inf")
        run.valid_until = nxt.instant if nxt is not None else instant + IDLE_RECHECK
        run.next = nxt.instant if nxt is not None else None
        key = change.key() if change is not None else ()
        if key == run.key:
            return
        reason = run.first_reason if run.key is _UNSET else "change"
        run.key = key
        run.change = change
        run.state = run.schedule.state_at(instant, self.place) if change is not None else {}
        run.overrides.clear()
        run.applied.clear()
        if change is None:
            log.warning("event=schedule_idle name=%r: no step within the last %d days", run.schedule.name,
                        LOOKBACK_DAYS)
            return
        self.counters["changes"] += 1
        log.info("event=schedule_step name=%r step=%d at=%r due=%s state=%s reason=%s", run.schedule.name,
                 change.index + 1, change.step.at, solar.format_instant(change.instant), run.state, reason)
        for device in run.devices:
            run.dirty[device] = reason
            run.retry_at.pop(device, None)
            watch = self.watches.get(device)
            if watch is not None:
                watch.written()

    def _launch(self, run: Running, now: float) -> None:
        """Start the writes of the devices that need the state in force (one job per bus)."""
        if run.change is None or not run.state:
            run.dirty.clear()
            return
        due = [d for d in run.dirty if d not in run.pending and run.retry_at.get(d, 0.0) <= now]
        by_reason: dict[str, list[str]] = {}
        for device in due:
            by_reason.setdefault(run.dirty.pop(device), []).append(device)
        for reason, devices in by_reason.items():
            app = Application(run, run.key, reason, dict(run.state))
            jobs: dict[str, tuple[Any, list[str]]] = {}
            for device in devices:
                worker = self.scheduler.drivers[device][0]
                state = worker.devices[device]
                if state.online is False:
                    self.counters["not_written_offline"] += 1
                    app.results[device] = lighting.not_written(state.last_error or "no answer")
                    continue
                jobs.setdefault(worker.name, (worker, []))[1].append(device)
                run.pending.add(device)
            app.waiting = len(jobs)
            self.counters["applications"] += 1
            if not jobs:
                self._finish(app)
                continue
            for worker, members in jobs.values():
                writes = [(d, self._ordered(d, run)) for d in members]
                future = worker.run_on_bus(self._job(writes))
                self._watch_future(future, app, members)

    def _ordered(self, device: str, run: Running) -> list[tuple[str, Any]]:
        """The points to write, hand overrides included; a lamp's control point last when it switches
        on (its dim level is set before it lights) and first when it switches off."""
        values = dict(run.state)
        values.update(run.overrides.get(device, {}))
        facts = self.lamps.get(device)
        return lighting.ordered(values, facts.control if facts is not None else None)

    def _job(self, writes: list[tuple[str, list[tuple[str, Any]]]]) -> Callable[[Any], dict]:
        scheduler = self.scheduler

        def job(link: Any) -> dict:
            from agent.scheduler import outcome

            results = {}
            for device, values in writes:
                read_back: dict[str, Any] = {}
                error = None
                for point, value in values:
                    prepared = scheduler.prepare({"device": device, "point": point, "value": value})
                    if isinstance(prepared, dict):
                        error = str(prepared.get("error"))
                        break
                    try:
                        read_back[point] = prepared[1](link)
                    except Exception as exc:
                        error = outcome(None, exc)["error"]
                        break
                results[device] = {"ok": error is None, "error": error, "value": read_back or None}
            return results

        return job

    def _watch_future(self, future: Future, app: Application, devices: list[str]) -> None:
        def done(f: Future) -> None:
            if self._stop.is_set() and (f.cancelled() or f.exception() is not None):
                return  # the gateway is stopping and the bus went first: no alarm for that
            try:
                results = f.result()
            except BaseException as exc:
                from agent.scheduler import outcome

                error = outcome(None, exc)["error"] if isinstance(exc, Exception) else str(exc)
                results = {d: {"ok": False, "error": error, "value": None} for d in devices}
            with self._lock:
                self._bus_done(app, results)
            self._flush()
            self._wake.set()

        future.add_done_callback(done)

    def _bus_done(self, app: Application, results: dict) -> None:
        run = app.running
        now = self.clock()
        current = self.running.get(run.schedule.name) is run and app.key == run.key
        for device, result in results.items():
            app.results[device] = result
            run.pending.discard(device)
            run.written_at[device] = time.time()  # the bus's clock, which stamps the readings
            if result["ok"]:
                watch = self.watches.get(device)
                if watch is not None:  # the lamp was just switched: its light may take a reading to follow
                    watch.written()
                self.counters["writes_ok"] += 1
                if current:
                    run.applied[device] = app.key
                    run.retry_at.pop(device, None)
                if device in run.failed:
                    del run.failed[device]
                    self._send_alarm(device, None, lighting.SCHEDULE, lighting.APPLIED, False)
                continue
            self.counters["writes_failed"] += 1
            log.warning("event=schedule_write_failed name=%r device=%s error=%r retry_in=%.0f",
                        run.schedule.name, device, result["error"], RETRY_AFTER)
            if current:
                run.dirty.setdefault(device, "retry")
                run.retry_at[device] = now + RETRY_AFTER
            if device not in run.failed:
                run.failed[device] = str(result["error"])
                self._send_alarm(device, None, lighting.SCHEDULE, str(result["error"]), True)
        app.waiting -= 1
        if app.waiting <= 0:
            self._finish(app)

    def _finish(self, app: Application) -> None:
        change = app.running.change
        if change is None:
            return
        event = lighting.event(app.running.schedule.name, change.index + 1, change.step.at, change.instant,
                               int(self.clock()), app.reason, app.state,
                               {d: dict(r) for d, r in sorted(app.results.items())})
        ok = sum(1 for r in app.results.values() if r["ok"])
        log.info("event=schedule_applied name=%r step=%d reason=%s devices=%d ok=%d", event["schedule"],
                 event["step"], app.reason, len(app.results), ok)
        self._outgoing.append(("event", (event,)))

    # -- what the bus owners and the command path report ----------------------------------------

    def device_state(self, device: str, online: bool) -> None:
        """A device stopped answering, or answers again after that: then it gets the state in force
        (its first answer after start-up is no news: the start-up write reached it or is retried)."""
        with self._lock:
            for run in self._by_device.get(device, ()):
                if not online:
                    run.applied.pop(device, None)
                    run.away.add(device)
                    continue
                if device in run.away:  # back after an outage: it may have lost what it was given
                    run.away.discard(device)
                    if device not in run.pending:
                        run.dirty[device] = "online"
                        run.retry_at.pop(device, None)
        if online:
            self._wake.set()

    def readings(self, readings: list) -> None:
        """Readings from a bus owner: a scheduled point that differs from what was written (the device
        lost its state) is written again; a lamp's lit point is compared with its schedule."""
        wake = False
        with self._lock:
            for device, point, value, when in readings:
                runs = self._by_device.get(device)
                watch = self.watches.get(device)
                if runs is None and watch is None:
                    continue
                for run in runs or ():
                    if point in run.schedule.points and self._lost(run, device, point, value, when):
                        wake = True
                if watch is not None and point == watch.lit:
                    wanted = self._wanted(device, watch.control)  # type: ignore[arg-type]
                    change = watch.reading(value, when, wanted)
                    if change is not None:
                        if change[1]:
                            self.counters["alarms"] += 1
                        level = logging.WARNING if change[1] else logging.INFO
                        log.log(level, "event=lamp_%s device=%s %s=%r wanted %s=%r", change[0], device, point,
                                value, watch.control, wanted)
                        self._send_alarm(device, watch.control, lighting.LIGHTING,  # type: ignore[arg-type]
                                         change[0], change[1], when)
        self._flush()
        if wake:
            self._wake.set()

    def _wanted(self, device: str, point: str | None) -> Any:
        if point is None:
            return None
        for run in self._by_device.get(device, ()):
            if point in run.schedule.points and run.change is not None:
                return run.wanted(device, point)
        return None

    def _lost(self, run: Running, device: str, point: str, value: Any, when: float) -> bool:
        if run.applied.get(device) != run.key or device in run.pending or device in run.dirty:
            return False
        if when <= run.written_at.get(device, 0.0):
            return False
        if run.manual.get((device, point)):
            return False
        wanted = run.wanted(device, point)
        if wanted is None or lighting.same(value, wanted, self._tolerance.get((device, point), 1e-9)):
            return False
        now = self.clock()
        if now - run.last_reset.get(device, -RESET_GAP) < RESET_GAP:
            return False
        run.last_reset[device] = now
        run.dirty[device] = "reset"
        self.counters["resets"] += 1
        log.warning("event=lamp_reset name=%r device=%s point=%s read=%r wanted=%r: the device lost its "
                    "state; writing it again", run.schedule.name, device, point, value, wanted)
        return True

    def scheduled(self, device: str, point: str) -> bool:
        """True when a running schedule sets `point` of `device` (a hand write is then an override)."""
        with self._lock:
            return any(point in run.schedule.points for run in self._by_device.get(device, ()))

    def command_queued(self, device: str, point: str) -> None:
        """A command is about to write a scheduled point by hand: readings do not count as a lost state
        until it finished."""
        with self._lock:
            for run in self._by_device.get(device, ()):
                if point in run.schedule.points:
                    run.manual[(device, point)] = run.manual.get((device, point), 0) + 1

    def command_done(self, device: str, point: str, value: Any, ok: bool) -> None:
        """The hand write finished: when it succeeded, it holds until the schedule's next step."""
        with self._lock:
            for run in self._by_device.get(device, ()):
                if point not in run.schedule.points:
                    continue
                left = run.manual.get((device, point), 1) - 1
                if left > 0:
                    run.manual[(device, point)] = left
                else:
                    run.manual.pop((device, point), None)
                run.written_at[device] = time.time()  # a poll cycle around the write read the old value
                if ok:
                    run.overrides.setdefault(device, {})[point] = value
                    self.counters["overrides"] += 1
                    log.info("event=schedule_override name=%r device=%s point=%s value=%r: held until the "
                             "next step", run.schedule.name, device, point, value)

    # -- outgoing -------------------------------------------------------------------------------

    def _send_alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
                    when: float | None = None) -> None:
        self._outgoing.append(("alarm", (device, point, kind, value, raised, when)))

    def _flush(self) -> None:
        """Send the alarms and events collected under the lock (the outbox may take a few ms)."""
        with self._lock:
            outgoing, self._outgoing = self._outgoing, []
        for what, args in outgoing:
            try:
                if what == "event":
                    self.record_event(*args)
                else:
                    self.alarm(*args)
            except Exception:
                log.exception("event=lighting_output_failed what=%s", what)

    # -- health ---------------------------------------------------------------------------------

    def stats(self) -> dict:
        """`…/health` → `lighting`."""
        with self._lock:
            out: dict[str, Any] = dict(self.counters)
            out["schedules"] = {
                name: {"source": run.source, "devices": len(run.devices),
                       "step": run.change.index + 1 if run.change is not None else None,
                       "next": run.next,
                       "failed": sorted(run.failed), "overrides": sorted(run.overrides)}
                for name, run in sorted(self.running.items())}
            out["lamps_alarmed"] = sorted(d for d, w in self.watches.items() if w.raised)
        out["store"] = self.store.path
        if self.store.problem:
            out["store_problem"] = self.store.problem
        return out

    def _tolerances(self) -> dict[tuple[str, str], float]:
        """Half a step of each schedulable point of each device: closer readings are the same value."""
        out = {}
        for device in self.config.devices:
            profile = self.config.profiles[device.profile]
            for point in profile.points:
                if point.writable:
                    out[(device.id, point.name)] = lighting.tolerance(point.scale)
        return out

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or (not self.running and self.place is None):
            return
        self._thread = threading.Thread(target=self._run, name="fieldlink-lighting", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        log.info("event=lighting_started schedules=%d place=%s", len(self.running),
                 "%.4f,%.4f %s" % (self.place.latitude, self.place.longitude, self.place.zone.name)  # type: ignore[attr-defined]
                 if self.place is not None else "none")
        while not self._stop.is_set():
            self._wake.clear()  # a wake-up during the tick is kept for the wait below
            try:
                wait = self.tick(self.clock())
            except Exception:  # a bug must not end the lamps' schedule: log it, try again soon
                log.exception("event=lighting_error")
                wait = 5.0
            self._wake.wait(min(wait, self.recheck))


def _failed(error: str) -> dict:
    return {"ok": False, "error": error, "value": None}
