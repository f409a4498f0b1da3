"""The run of a gateway's lighting schedules as one state machine, shared by the agent's lighting task
(agent/lighting/runner.py: threads, futures, bus owners) and the board's (firmware_py/lighting.py:
asyncio, bus jobs). Pure, the shared dialect: no I/O, no clock reads (every method is given the time),
no threads. It keeps the bookkeeping of each schedule and says what to do; the drivers do it.

    machine = Machine(place, counters, tolerance, offline, bus_of, name, watches)
    machine.set_runs([Run(schedule, devices), ...])
    wait = machine.tick(now, horizon)          # seconds until the next thing to do
    machine.carry_out(write, alarm, event, say)  # the driver carries out what it decided, in order

Devices are whatever keys the driver uses (the agent: device ids; the board: device indexes, which
cost its heap nothing); points are names. What the driver tells the machine, and the rules it applies:

* `tick(now, horizon)`: the step in force of each schedule (protocols/schedule.py). At the first tick
  and whenever the step in force changes (also when the clock is set back or forward), every device
  of the schedule is due the state in force, and hand overrides end. Due devices that are not being
  written and whose retry time has come are written, one application per reason, one `WRITE` per bus;
  a device the driver says is offline is not written (`lighting.not_written`: it would only cost its
  bus the timeouts) until it answers again.
* `bus_done(app, results, now, stamp)`: a bus finished its writes. A failed write raises a `schedule`
  alarm (once), is retried `RETRY_AFTER` seconds later; a write that succeeds clears it. When every
  bus of an application is done, it is an `EVENT` to record (docs/payload.md §6).
* `device_state(device, online)`: a device that answers again after it was reported offline is due
  the state in force (`online`).
* `reading(device, point, value, when, stamp, now)`: a reading of a scheduled point that contradicts
  what the device should be at (beyond half its step: `lighting.same`) after its write finished, with
  no hand write on its way, means it lost its state (a reboot): due again (`reset`), at most once per
  `RESET_GAP` seconds. A reading of a lamp's lit point goes to its `LightWatch` (a `lighting` alarm).
* `command_queued(device, point)` / `command_done(device, point, value, ok, stamp)`: a hand write of a
  scheduled point; once it succeeded it holds until the schedule's next step (an override).

Times: `now` is the gateway's clock (the schedules' time, retries, resets); `when` a reading's own time
(the `lighting` alarm's); `stamp` the time on the clock the readings are stamped with, as the driver
keeps it (the board counts from its start, which keeps the numbers small), to tell readings made
before a write finished from those made after.

Decisions, handed to the driver's functions by `carry_out` in the order they were made (as tuples in
`Machine.out` until then):
    (WRITE, app, bus, devices)    write `values(app, device, control)` to each device, on that bus;
                                  then call bus_done(app, results by device)
    (EVENT, app)                  record `event_of(app, now, results)`
    (ALARM, device, point, kind, value, raised, when)   when None: the driver's now
    (LOG, level, text)            a line for the operator (INFO, WARNING)
"""

from protocols import lighting
from protocols.schedule import LOOKBACK_DAYS
from protocols.solar import format_instant

TYPE_CHECKING = False
if TYPE_CHECKING:
    from protocols.schedule import Change

IDLE_RECHECK = 86400  # s: with no change within LOOKBACK_DAYS, look again a day later
EARLIEST = -(1 << 62)  # the start of a run with no step in force
COUNTERS = ("changes", "applications", "writes_ok", "writes_failed", "not_written_offline", "resets",
            "overrides", "alarms")

WRITE = "write"
EVENT = "event"
ALARM = "alarm"
LOG = "log"
INFO = 20  # the levels of Python's logging and of firmware_py/log.py
WARNING = 30

NOTHING = ()  # the runs of a device no schedule has: no allocation on the readings' path


class Run:
    """One schedule at run time: what is in force and what each device was given."""

    def __init__(self, schedule, devices: list, source: str = "config", reason: str = "start") -> None:
        self.schedule = schedule
        self.devices = devices  # device keys, in the schedule's order
        self.source = source  # "config" or "command"
        self.reason = reason  # why the first state in force is written: "start" or "replaced"
        self.live = True  # False once the run was replaced: its late results change nothing
        self.key = None  # type: tuple | None  # the in-force change's key; None: not resolved yet
        self.change: Change | None = None  # not evaluated: an annotation in a function
        self.state: dict = {}
        self.valid_from = 0
        self.valid_until = 0
        self.next = None  # the instant of the next change, None when none within LOOKBACK_DAYS
        self.applied: dict = {}  # device -> key written to it
        self.pending: dict = {}  # devices with a write on their bus now
        self.dirty: dict = {}  # device -> why it must be written
        self.retry_at: dict = {}
        self.failed: dict = {}  # device -> error (a schedule alarm is up)
        self.overrides: dict = {}  # device -> {point: value} written by hand, until the next step
        self.manual: dict = {}  # (device, point) -> hand writes on their way
        self.last_reset: dict = {}  # device -> now of its last reset
        self.written_at: dict = {}  # device -> stamp its last write finished
        self.away: dict = {}  # devices reported offline since they were written

    def wanted(self, device, point: str):
        """What `device`'s `point` should be now: a hand override, else the state in force."""
        mine = self.overrides.get(device)
        if mine is not None and point in mine:
            return mine[point]
        return self.state.get(point)


class Application:
    """One write of a schedule's state to some of its devices, recorded as one event."""

    def __init__(self, run: Run, reason: str) -> None:
        self.run = run
        self.key = run.key
        self.reason = reason
        self.state = dict(run.state)
        self.results: dict = {}  # device -> {ok, error, value}
        self.waiting = 0  # buses still writing


class Machine:
    """The runs of one gateway. `counters` holds at least COUNTERS (the driver's own keys beside);
    `tolerance(device, point)` half a step of the point; `offline(device)` None, or why the device is
    known not to answer; `bus_of(device)` its bus (any key); `name(device)` its id for the log;
    `watches` {device: lighting.LightWatch} of the lamps whose lit point is polled."""

    def __init__(self, place, counters: dict, tolerance, offline, bus_of, name, watches: dict) -> None:
        self.place = place
        self.counters = counters
        self.tolerance = tolerance
        self.offline = offline
        self.bus_of = bus_of
        self.name = name
        self.watches = watches
        self.runs: list = []
        self.by_device: dict = {}  # device -> (Run, ...)
        self.out: list = []

    def carry_out(self, write, alarm, event, say) -> None:
        """Hand each decision to the driver, in order, also those made while it carried out earlier
        ones (a bus job that finished at once): write(app, bus, devices), alarm(device, point, kind,
        value, raised, when), event(app), say(level, text)."""
        while self.out:
            out = self.out
            self.out = []
            for decision in out:
                what = decision[0]
                if what == WRITE:
                    write(decision[1], decision[2], decision[3])
                elif what == ALARM:
                    alarm(decision[1], decision[2], decision[3], decision[4], decision[5], decision[6])
                elif what == EVENT:
                    event(decision[1])
                else:
                    say(decision[1], decision[2])

    def set_runs(self, runs: list) -> None:
        """Run these schedules from now on; the schedule alarms of a run no longer run are cleared."""
        for old in self.runs:
            if old not in runs:
                old.live = False
                for device in old.failed:
                    self.out.append((ALARM, device, None, lighting.SCHEDULE, lighting.APPLIED, False, None))
                old.failed = {}
        self.runs = runs
        by_device: dict = {}
        for run in runs:
            for device in run.devices:
                by_device.setdefault(device, []).append(run)
        shared: dict = {}  # one tuple of runs for the devices that have the same (most of a street)
        for device in by_device:
            both = tuple(by_device[device])
            by_device[device] = shared.setdefault(tuple(id(r) for r in both), both)
        self.by_device = by_device

    def _say(self, level: int, text: str) -> None:
        self.out.append((LOG, level, text))

    def _alarm(self, device, point, kind: str, value, raised: bool, when) -> None:
        self.out.append((ALARM, device, point, kind, value, raised, when))

    # -- the clock --------------------------------------------------------------------------------

    def tick(self, now, horizon):
        """Bring every schedule up to `now` and decide the writes that are due; the seconds until the
        next thing to do (a change, a retry), at most `horizon`."""
        wake = now + horizon
        for run in self.runs:
            self._refresh(run, now)
            self._launch(run, now)
            if run.valid_until < wake:
                wake = run.valid_until
            for device in run.retry_at:
                if device in run.dirty and run.retry_at[device] < wake:
                    wake = run.retry_at[device]
        return wake - now if wake > now else 0

    def _refresh(self, run: Run, now) -> None:
        if run.key is not None and run.valid_from <= now < run.valid_until:
            return
        instant = int(now)
        change = run.schedule.in_force(instant, self.place)
        nxt = run.schedule.next_change(instant, self.place)
        run.valid_from = change.instant if change is not None else EARLIEST
        run.valid_until = nxt.instant if nxt is not None else instant + IDLE_RECHECK
        run.next = nxt.instant if nxt is not None else None
        key = change.key() if change is not None else ()
        if key == run.key:
            return
        reason = run.reason if run.key is None else "change"
        run.key = key
        run.change = change
        run.state = run.schedule.state_at(instant, self.place) if change is not None else {}
        run.overrides = {}
        run.applied = {}
        name = run.schedule.name
        if change is None:
            self._say(WARNING, "event=schedule_idle name=%r: no step within the last %d days" % (
                name, LOOKBACK_DAYS))
            return
        self.counters["changes"] += 1
        self._say(INFO, "event=schedule_step name=%r step=%d at=%r due=%s state=%r reason=%s" % (
            name, change.index + 1, change.step.at, format_instant(change.instant), run.state, reason))
        for device in run.devices:
            run.dirty[device] = reason
            run.retry_at.pop(device, None)
            watch = self.watches.get(device)
            if watch is not None:
                watch.written()

    def _launch(self, run: Run, now) -> None:
        """Decide the writes of the devices that need the state in force (one WRITE per bus)."""
        if run.change is None or not run.state:
            run.dirty = {}
            return
        if not run.dirty:
            return
        by_reason: dict = {}  # reason -> [device], in the schedule's order
        reasons: list = []
        for device in run.devices:
            if device in run.dirty and device not in run.pending and run.retry_at.get(device, 0) <= now:
                _group(by_reason, reasons, run.dirty.pop(device), device)
        for reason in reasons:
            app = Application(run, reason)
            jobs: dict = {}  # bus -> [device]
            buses: list = []
            for device in by_reason[reason]:
                why = self.offline(device)
                if why is not None:
                    self.counters["not_written_offline"] += 1
                    app.results[device] = lighting.not_written(why)
                    continue
                _group(jobs, buses, self.bus_of(device), device)
                run.pending[device] = True
            app.waiting = len(buses)
            self.counters["applications"] += 1
            if not buses:
                self._finish(app)
                continue
            for bus in buses:
                self.out.append((WRITE, app, bus, jobs[bus]))

    def values(self, app: Application, device, control) -> list:
        """[(point, value)] to write to `device`: the application's state with the device's hand
        overrides, in writing order (`control`: the lamp's control point, or None)."""
        values = dict(app.state)
        mine = app.run.overrides.get(device)
        if mine:
            values.update(mine)
        return lighting.ordered(values, control)

    def bus_done(self, app: Application, results: dict, now, stamp) -> None:
        """A bus finished its writes of `app`: {device: {ok, error, value}}."""
        run = app.run
        current = run.live and app.key == run.key
        for device in results:
            result = results[device]
            app.results[device] = result
            run.pending.pop(device, None)
            run.written_at[device] = stamp
            if result["ok"]:
                watch = self.watches.get(device)
                if watch is not None:  # just switched: its light may take a reading to follow
                    watch.written()
                self.counters["writes_ok"] += 1
                if current:
                    run.applied[device] = app.key
                    run.retry_at.pop(device, None)
                if device in run.failed:
                    del run.failed[device]
                    self._alarm(device, None, lighting.SCHEDULE, lighting.APPLIED, False, None)
                continue
            error = str(result["error"])
            self.counters["writes_failed"] += 1
            self._say(WARNING, "event=schedule_write_failed name=%r device=%s error=%r retry_in=%d" % (
                run.schedule.name, self.name(device), error, lighting.RETRY_AFTER))
            if current:
                run.dirty.setdefault(device, "retry")
                run.retry_at[device] = now + lighting.RETRY_AFTER
            if run.live and device not in run.failed:  # a replaced run's alarms were cleared: none again
                run.failed[device] = error
                self._alarm(device, None, lighting.SCHEDULE, error, True, None)
        app.waiting -= 1
        if app.waiting <= 0:
            self._finish(app)

    def _finish(self, app: Application) -> None:
        if app.run.change is None:
            return
        ok = 0
        for device in app.results:
            if app.results[device]["ok"]:
                ok += 1
        self._say(INFO, "event=schedule_applied name=%r step=%d reason=%s devices=%d ok=%d" % (
            app.run.schedule.name, app.run.change.index + 1, app.reason, len(app.results), ok))
        self.out.append((EVENT, app))

    def event_of(self, app: Application, now: int, results: dict) -> dict:
        """The `…/event` map of a finished application (`results` by device id, as sent)."""
        change = app.run.change
        if change is None:  # never: an EVENT is decided only with a step in force
            raise ValueError("schedule %r has no step in force" % (app.run.schedule.name,))
        return lighting.event(app.run.schedule.name, change.index + 1, change.step.at, change.instant, now,
                              app.reason, app.state, results)

    # -- what the buses and the commands report ---------------------------------------------------

    def device_state(self, device, online: bool) -> bool:
        """A device stopped answering, or answers again after that: then it is due the state in force
        (its first answer after start-up is no news: the start-up write reached it or is retried).
        True when a write became due."""
        due = False
        for run in self.by_device.get(device, NOTHING):
            if not online:
                run.applied.pop(device, None)
                run.away[device] = True
                continue
            if device in run.away:  # back after an outage: it may have lost what it was given
                del run.away[device]
                if device not in run.pending:
                    run.dirty[device] = "online"
                    run.retry_at.pop(device, None)
                    due = True
        return due

    def reading(self, device, point: str, value, when, stamp, now) -> bool:
        """A reading of `device`'s `point`: a scheduled point that contradicts its state is written
        again; a lamp's lit point is compared with its schedule. True when a write became due."""
        due = False
        for run in self.by_device.get(device, NOTHING):
            if point in run.schedule.points and self._lost(run, device, point, value, stamp, now):
                due = True
        watch = self.watches.get(device)
        if watch is not None and point == watch.lit:
            wanted = self.wanted(device, watch.control)
            change = watch.reading(value, when, wanted)
            if change is not None:
                if change[1]:
                    self.counters["alarms"] += 1
                self._say(WARNING if change[1] else INFO, "event=lamp_%s device=%s %s=%r wanted %s=%r" % (
                    change[0], self.name(device), point, value, watch.control, wanted))
                self._alarm(device, watch.control, lighting.LIGHTING, change[0], change[1], when)
        return due

    def wanted(self, device, point):
        """What the schedules want of `device`'s `point` now, or None (no schedule in force sets it)."""
        if point is None:
            return None
        for run in self.by_device.get(device, NOTHING):
            if point in run.schedule.points and run.change is not None:
                return run.wanted(device, point)
        return None

    def _lost(self, run: Run, device, point: str, value, stamp, now) -> bool:
        if run.applied.get(device) != run.key or device in run.pending or device in run.dirty:
            return False
        written = run.written_at.get(device)
        if written is not None and stamp <= written:  # read before the write finished
            return False
        if run.manual.get((device, point)):
            return False
        wanted = run.wanted(device, point)
        if wanted is None or lighting.same(value, wanted, self.tolerance(device, point)):
            return False
        if now - run.last_reset.get(device, -lighting.RESET_GAP) < lighting.RESET_GAP:
            return False
        run.last_reset[device] = now
        run.dirty[device] = "reset"
        self.counters["resets"] += 1
        self._say(WARNING, "event=lamp_reset name=%r device=%s point=%s read=%r wanted=%r: the device "
                  "lost its state; writing it again" % (run.schedule.name, self.name(device), point, value,
                                                         wanted))
        return True

    def sets(self, device, point: str) -> bool:
        """True when a running schedule sets `point` of `device` (a hand write is then an override)."""
        for run in self.by_device.get(device, NOTHING):
            if point in run.schedule.points:
                return True
        return False

    def command_queued(self, device, point: str) -> None:
        """A command is about to write `point` by hand: until it finished, readings of a scheduled
        point are no lost state."""
        for run in self.by_device.get(device, NOTHING):
            if point in run.schedule.points:
                key = (device, point)
                run.manual[key] = run.manual.get(key, 0) + 1

    def command_done(self, device, point: str, value, ok: bool, stamp) -> None:
        """The hand write finished: when it succeeded, it holds until the schedule's next step."""
        for run in self.by_device.get(device, NOTHING):
            if point not in run.schedule.points:
                continue
            key = (device, point)
            left = run.manual.get(key, 1) - 1
            if left > 0:
                run.manual[key] = left
            else:
                run.manual.pop(key, None)
            run.written_at[device] = stamp  # a poll cycle around the write read the old value
            if ok:
                run.overrides.setdefault(device, {})[point] = value
                self.counters["overrides"] += 1
                self._say(INFO, "event=schedule_override name=%r device=%s point=%s value=%r: held until "
                          "the next step" % (run.schedule.name, self.name(device), point, value))

    # -- health -----------------------------------------------------------------------------------

    def describe(self, run: Run) -> dict:
        """`…/health` → `lighting.schedules[name]` of one run (devices by their ids)."""
        name = self.name
        return {"source": run.source, "devices": len(run.devices),
                "step": run.change.index + 1 if run.change is not None else None, "next": run.next,
                "failed": sorted([name(d) for d in run.failed]),
                "overrides": sorted([name(d) for d in run.overrides])}

    def lamps_alarmed(self) -> list:
        """The ids of the lamps whose `lighting` alarm is up."""
        return sorted([self.name(d) for d in self.watches if self.watches[d].raised])


def _group(groups: dict, order: list, key, item) -> None:
    """Add `item` to group `key`; `order` lists the keys as they first came (MicroPython's dicts keep
    no order, and the decisions must come in the same order on both runtimes)."""
    members = groups.get(key)
    if members is None:
        members = groups[key] = []
        order.append(key)
    members.append(item)
