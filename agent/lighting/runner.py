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
The core is `tick(now)`, which tests drive with their own clock; the thread only calls it. The rules
above are not kept here: protocols/lighting_run.Machine, the board's too, decides what is written when,
which alarms and events follow (docs/lighting.md, "One state machine for agent and board"); this module
asks it under its lock and carries its decisions out with threads, bus owners and the outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agent import os_thread
from agent.config_lighting import check_schedule
from agent.config_model import Config
from agent.lighting.lamps import LampFacts, lamp_facts, light_watch
from agent.lighting.store import ScheduleStore, StoreError
from agent.lighting.zones import compile_zone
from protocols import solar
from protocols.lighting import tolerance
from protocols.lighting_run import Application, Machine, Run
from protocols.schedule import Place, Schedule, ScheduleError

__all__ = ["LightingTask", "command_schedule", "load_schedules", "make_place"]

log = logging.getLogger("fieldlink.lighting")

RECHECK = 60.0  # seconds between two readings of the wall clock while waiting for a change


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


class LightingTask:
    """See the module docstring: the thread, the bus owners' jobs and the schedule store around the
    run's state machine (protocols/lighting_run.Machine), which decides what to write, when, and
    which alarms and events follow. Thread-safe: the bus owners, the network thread and the task's
    own thread call in; the machine is only touched under the lock."""

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
        watches = {}
        for d, f in self.lamps.items():
            watch = light_watch(f, self.alarm_after)
            if watch is not None:
                watches[d] = watch
        self.devices = {d.id: d for d in config.devices}
        self.store = ScheduleStore(config.lighting.store)
        self.running: dict[str, Run] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outgoing: list[tuple[str, tuple]] = []  # alarms and events, sent outside the lock
        self._tolerance = self._tolerances()
        self.counters = {"changes": 0, "applications": 0, "writes_ok": 0, "writes_failed": 0,
                         "not_written_offline": 0, "resets": 0, "overrides": 0, "replaced": 0,
                         "restored": 0, "alarms": 0, "stored_invalid": 0}
        self.machine = Machine(self.place, self.counters, self._tolerance_of, self._offline, self._bus_of,
                               str, watches)
        self._build()

    # -- the schedules --------------------------------------------------------------------------

    def _build(self) -> None:
        """The running schedules: the config's, with the store's replacements on top."""
        schedules, ignored = load_schedules(self.config, self.store.entries)
        for name, problem in ignored:
            self.counters["stored_invalid"] += 1
            log.error("event=stored_schedule_ignored name=%r file=%s: %s; the config's schedule (if any) "
                      "runs instead", name, self.store.path, problem)
        running = {name: _run(schedule, source) for name, (schedule, source) in schedules.items()}
        if running and self.place is None:
            raise ValueError("schedules need [gateway] latitude, longitude and timezone")
        self.running = running
        self.machine.set_runs(list(running.values()))

    def _check_command_schedule(self, target: str, raw: object, others: dict[str, Run]) -> Schedule:
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
            self.running[schedule.name] = _run(schedule, "command", "replaced")
            self.counters["replaced"] += 1
            self.machine.set_runs(list(self.running.values()))
            self._carry_out()
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
            self.running.pop(name, None)
            table = next((t for t in self.config.schedules if t.get("name") == name), None)
            if table is not None:
                schedule = check_schedule(table, self.config.groups, self.devices, self.config.profiles)
                self.running[name] = _run(schedule, "config", "replaced")
            self.counters["restored"] += 1
            self.machine.set_runs(list(self.running.values()))
            self._carry_out()
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

    # -- the machine's questions and decisions --------------------------------------------------

    def _tolerance_of(self, device: str, point: str) -> float:
        return self._tolerance.get((device, point), 1e-9)

    def _offline(self, device: str) -> str | None:
        """None when `device` may be written; why not when its bus owner knows it does not answer."""
        state = self.scheduler.drivers[device][0].devices[device]
        if state.online is False:
            return str(state.last_error or "no answer")
        return None

    def _bus_of(self, device: str) -> Any:
        return self.scheduler.drivers[device][0]

    def _carry_out(self) -> None:
        """Carry out the machine's decisions (under the lock): writes go to their bus owners at once,
        alarms and events are sent by _flush outside the lock."""
        self.machine.carry_out(self._write, self._send_alarm, self._event, log.log)

    def _send_alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
                    when: float | None) -> None:
        self._outgoing.append(("alarm", (device, point, kind, value, raised, when)))

    def _event(self, app: Application) -> None:
        results = {d: dict(r) for d, r in sorted(app.results.items())}
        self._outgoing.append(("event", (self.machine.event_of(app, int(self.clock()), results),)))

    def _write(self, app: Application, worker: Any, devices: list[str]) -> None:
        """Start one application's writes on one bus (its owner runs them between two polls)."""
        writes = []
        for device in devices:
            facts = self.lamps.get(device)
            writes.append((device, self.machine.values(app, device, facts.control if facts else None)))
        future = worker.run_on_bus(self._job(writes))
        self._watch_future(future, app, devices)

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, now: float) -> float:
        """Bring every schedule up to `now` and start the writes that are due; the seconds to wait."""
        with self._lock:
            wait = self.machine.tick(now, self.recheck)
            self._carry_out()
        self._flush()
        return wait

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
                # the bus's clock, which stamps the readings, for the written_at of each device
                self.machine.bus_done(app, results, self.clock(), time.time())
                self._carry_out()
            self._flush()
            self._wake.set()

        future.add_done_callback(done)

    # -- what the bus owners and the command path report ----------------------------------------

    def device_state(self, device: str, online: bool) -> None:
        """A device stopped answering, or answers again after that: then it gets the state in force
        (its first answer after start-up is no news: the start-up write reached it or is retried)."""
        with self._lock:
            self.machine.device_state(device, online)
        if online:
            self._wake.set()

    def readings(self, readings: list) -> None:
        """Readings from a bus owner: a scheduled point that differs from what was written (the device
        lost its state) is written again; a lamp's lit point is compared with its schedule."""
        wake = False
        machine = self.machine
        with self._lock:
            now = self.clock()
            for device, point, value, when in readings:
                if device in machine.by_device or device in machine.watches:
                    if machine.reading(device, point, value, when, when, now):
                        wake = True
            self._carry_out()
        self._flush()
        if wake:
            self._wake.set()

    def scheduled(self, device: str, point: str) -> bool:
        """True when a running schedule sets `point` of `device` (a hand write is then an override)."""
        with self._lock:
            return self.machine.sets(device, point)

    def command_queued(self, device: str, point: str) -> None:
        """A command is about to write a scheduled point by hand: readings do not count as a lost state
        until it finished."""
        with self._lock:
            self.machine.command_queued(device, point)

    def command_done(self, device: str, point: str, value: Any, ok: bool) -> None:
        """The hand write finished: when it succeeded, it holds until the schedule's next step."""
        with self._lock:
            # a poll cycle around the write read the old value: stamped on the readings' clock
            self.machine.command_done(device, point, value, ok, time.time())
            self._carry_out()

    # -- outgoing -------------------------------------------------------------------------------

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
            runs = sorted(self.running.items())
            out["schedules"] = {name: self.machine.describe(run) for name, run in runs}
            out["lamps_alarmed"] = self.machine.lamps_alarmed()
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
                    out[(device.id, point.name)] = tolerance(point.scale)
        return out

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or (not self.running and self.place is None):
            return
        self._thread = os_thread.thread(self._run, "fieldlink-lighting")
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


def _run(schedule: Schedule, source: str, reason: str = "start") -> Run:
    """A schedule at run time, its devices by id."""
    return Run(schedule, list(schedule.devices or []), source, reason)  # type: ignore[call-overload]


def _failed(error: str) -> dict:
    return {"ok": False, "error": error, "value": None}
