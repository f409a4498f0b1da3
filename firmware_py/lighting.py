"""Lighting schedules on the board: the agent's lighting task (agent/lighting/runner.py) in asyncio,
running the same code: protocols/schedule.py says which step is in force and when the next comes (the
zone compiled by the host, protocols/zone.py), protocols/lighting.py how the state is written, retried,
alarmed and recorded. It needs no network: the board switches its lamps all night on its own clock.

* At boot, and whenever the step in force changes, the state in force is written to every device of
  the schedule through its bus task, between two polls, each point read back (a lamp's control point
  last when it switches on, first when it switches off).
* A device that answers again after it was reported offline gets the state in force again
  (`online`), so does one whose reading of a scheduled point shows it lost its state (`reset`, at
  most once a minute); a device known to be offline is not written, and is put right when it answers.
* A failed write raises a `schedule` alarm, is tried again a minute later and clears the alarm when it
  succeeds; a lamp whose lit point disagrees with its schedule for `alarm_after` seconds raises a
  `lighting` alarm (burning by day, dark at night).
* A hand write (a command) of a scheduled point holds until the next step.
* Every application is an `…/event` record in the flash ring, in order with the data and alarms.
* While the board's clock is not set (before 2020: no NTP and no RTC since power-up) it writes
  nothing: it cannot know which step is in force. `…/health` → `lighting.clock_set` says so.

The compiled config's `lighting` (agent/firmware/config.py) carries the place, the zone and the
schedules with their groups resolved to device ids; `lamps` the control and lit points.
"""

from firmware_py import log, rt
from firmware_py.commands import checked, failure
from protocols import cbor, lighting
from protocols.commands import CLOCK_SET_AFTER
from protocols.compiled import CompiledError
from protocols.schedule import LOOKBACK_DAYS, Place, ScheduleError, parse_schedule
from protocols.zone import zone_from_dict

IDLE_RECHECK = 86400  # s: with no change within LOOKBACK_DAYS, look again a day later
COUNTERS = ("changes", "applications", "writes_ok", "writes_failed", "not_written_offline", "resets",
            "overrides", "alarms", "errors")


class Run:
    """One schedule at run time: what is in force and what each device (by index) was given."""

    def __init__(self, schedule, devices: list, names: list) -> None:
        self.schedule = schedule
        self.devices = devices  # device indexes, in the schedule's order
        self.names = names  # name indexes of the points it sets (-1: a name the board does not know)
        self.key = None  # type: tuple | None  # the in-force change's key; None: not resolved yet
        self.reason = "start"
        self.change = None
        self.state: dict = {}
        self.valid_from = 0
        self.valid_until = 0
        self.next = None
        self.applied: dict = {}  # device -> key written to it
        self.pending: dict = {}  # devices with a write on their bus now
        self.dirty: dict = {}  # device -> why it must be written
        self.retry_at: dict = {}
        self.failed: dict = {}  # device -> error (a schedule alarm is up)
        self.overrides: dict = {}  # device -> {point: value} written by hand, until the next step
        self.manual: dict = {}  # (device << 16 | name) -> hand writes on their way
        self.last_reset: dict = {}
        # device -> when its last write finished, in seconds since the task's `epoch` (small integers
        # cost no heap): readings from before it do not show a lost state
        self.written_at: dict = {}
        self.away: dict = {}  # devices reported offline since they were written

    def wanted(self, d: int, point: str):
        """What device `d`'s `point` should be now: a hand override, else the state in force."""
        mine = self.overrides.get(d)
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
        self.results: dict = {}  # device index -> result
        self.waiting = 0


class Apply:
    """A bus job (firmware_py/poller.py runs `run(bus)`): one application's writes on one bus."""

    def __init__(self, task, app: Application, devices: list) -> None:
        self.task = task
        self.app = app
        self.devices = devices

    async def run(self, bus) -> None:
        task = self.task
        inv = task.inv
        run = self.app.run
        results: dict = {}
        for d in self.devices:
            values = dict(self.app.state)
            values.update(run.overrides.get(d) or {})
            read_back: dict = {}
            error = None
            for point, value in lighting.ordered(values, task.control(d)):
                ni = inv.find_name(point)
                ws, error = checked(inv, d, ni, point, value)
                if error is not None:
                    break
                try:
                    read_back[point] = await bus.write(inv, d, ws, value)
                except Exception as exc:
                    error = failure(exc)
                    break
            results[d] = {"ok": error is None, "error": error, "value": read_back or None}
        task.bus_done(self.app, results)


class Lighting:
    """The schedules of one board; `run` is its task, the poller and commands call the hooks."""

    def __init__(self, spec: dict, inv, buses: list, poller, alarms, packs, max_event: int) -> None:
        self.inv = inv
        self.buses = buses
        self.poller = poller
        self.alarms = alarms
        self.packs = packs
        self.max_event = max_event  # bytes an event record may have (a ring slot)
        try:
            self.zone = zone_from_dict(spec["zone"])
            self.place = Place(spec["latitude"], spec["longitude"], self.zone)
        except ValueError as exc:
            raise CompiledError("config.json: lighting: %s" % exc) from None
        self.alarm_after = spec["alarm_after"]
        self.runs: list = []
        self.by_device: dict = {}  # device -> [Run]
        self.watched = bytearray(inv.count)  # 1: the poller tells this task of the device's readings
        schedules = spec["schedules"]
        for i in range(len(schedules)):
            raw = schedules[i]
            try:
                schedule = parse_schedule(raw)
            except ScheduleError as exc:
                raise CompiledError("config.json: lighting.schedules[%d]: %s" % (i, exc)) from None
            devices = []
            for device in raw["devices"]:
                d = inv.find_device(device)
                if d < 0:
                    raise CompiledError("config.json: lighting.schedules[%d]: no device %r" % (i, device))
                devices.append(d)
                self.watched[d] = 1
            schedule.devices = None  # the ids stay in the inventory: the run keeps device indexes
            run = Run(schedule, devices, [inv.find_name(p) for p in schedule.points])
            self.runs.append(run)
            for d in devices:
                self.by_device.setdefault(d, []).append(run)
        # one tuple of runs for the devices that have the same (most of a street)
        shared: dict = {}
        for d in self.by_device:
            runs = tuple(self.by_device[d])
            self.by_device[d] = shared.setdefault(tuple(id(r) for r in runs), runs)
        self.watches: dict = {}  # device -> protocols.lighting.LightWatch of a lamp whose lit point is polled
        self.lit: dict = {}  # device -> name index of its lit point
        for d in inv.lamps:
            lamp = inv.lamps[d]
            if lamp[3] >= 0:
                control = inv.names[lamp[0]].decode() if lamp[0] >= 0 else None
                self.watches[d] = lighting.LightWatch(control, inv.names[lamp[3]].decode(), lamp[4],
                                                      self.alarm_after)
                self.lit[d] = lamp[3]
                self.watched[d] = 1
        self.counters: dict = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self.clock_set = False
        self.wake = False
        self.epoch = rt.now()  # written_at counts from here

    def control(self, d: int):
        """The control point (name) of device `d` when it is a lamp, else None."""
        lamp = self.inv.lamps.get(d)
        if lamp is None or lamp[0] < 0:
            return None
        return self.inv.names[lamp[0]].decode()

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, now: int) -> int:
        """Bring every schedule up to `now` and queue the writes that are due; seconds until the next
        thing to do (a change, a retry)."""
        wake = now + IDLE_RECHECK
        for run in self.runs:
            self._refresh(run, now)
            self._launch(run, now)
            if run.valid_until < wake:
                wake = run.valid_until
            for d in run.retry_at:
                if d in run.dirty and run.retry_at[d] < wake:
                    wake = run.retry_at[d]
        return wake - now if wake > now else 0

    def _refresh(self, run: Run, now: int) -> None:
        if run.key is not None and run.valid_from <= now < run.valid_until:
            return
        change = run.schedule.in_force(now, self.place)
        nxt = run.schedule.next_change(now, self.place)
        run.valid_from = change.instant if change is not None else -(1 << 62)
        run.valid_until = nxt.instant if nxt is not None else now + IDLE_RECHECK
        run.next = nxt.instant if nxt is not None else None
        key = change.key() if change is not None else ()
        if key == run.key:
            return
        reason = run.reason if run.key is None else "change"
        run.key = key
        run.change = change
        run.state = run.schedule.state_at(now, self.place) if change is not None else {}
        run.overrides = {}
        run.applied = {}
        if change is None:
            log.warning("schedule %r: no step within the last %d days" % (run.schedule.name,
                                                                               LOOKBACK_DAYS))
            return
        self.counters["changes"] += 1
        log.info("schedule %r step %d (%s) due %d: %r, %s" % (
            run.schedule.name, change.index + 1, change.step.at, change.instant, run.state, reason))
        for d in run.devices:
            run.dirty[d] = reason
            run.retry_at.pop(d, None)
            watch = self.watches.get(d)
            if watch is not None:
                watch.written()

    def _launch(self, run: Run, now: int) -> None:
        """Queue the writes of the devices that need the state in force (one job per bus)."""
        if run.change is None or not run.state:
            run.dirty = {}
            return
        by_reason: dict = {}
        for d in list(run.dirty):
            if d not in run.pending and run.retry_at.get(d, 0) <= now:
                by_reason.setdefault(run.dirty.pop(d), []).append(d)
        poller = self.poller
        for reason in by_reason:
            app = Application(run, reason)
            jobs: dict = {}  # bus -> [device]
            for d in by_reason[reason]:
                if not poller.online[d]:  # it would only cost its bus the timeouts
                    self.counters["not_written_offline"] += 1
                    app.results[d] = lighting.not_written(poller.last_error[d] or "no answer")
                    continue
                jobs.setdefault(self.inv.bus[d], []).append(d)
                run.pending[d] = True
            app.waiting = len(jobs)
            self.counters["applications"] += 1
            if not jobs:
                self._finish(app)
                continue
            for b in jobs:
                self.buses[b].jobs.append(Apply(self, app, jobs[b]))

    def bus_done(self, app: Application, results: dict) -> None:
        """An Apply job finished on its bus: results by device index."""
        run = app.run
        now = rt.now()
        current = app.key == run.key
        for d in results:
            result = results[d]
            app.results[d] = result
            run.pending.pop(d, None)
            run.written_at[d] = now - self.epoch
            if result["ok"]:
                watch = self.watches.get(d)
                if watch is not None:  # just switched: its light may take a reading to follow
                    watch.written()
                self.counters["writes_ok"] += 1
                if current:
                    run.applied[d] = app.key
                    run.retry_at.pop(d, None)
                if d in run.failed:
                    del run.failed[d]
                    self.alarms.alarm(d, None, lighting.SCHEDULE, lighting.APPLIED, False, now)
                continue
            self.counters["writes_failed"] += 1
            log.warning("schedule %r: device %s: %s; retry in %d s" % (
                run.schedule.name, self.inv.device_id(d), result["error"], lighting.RETRY_AFTER))
            if current:
                run.dirty.setdefault(d, "retry")
                run.retry_at[d] = now + lighting.RETRY_AFTER
            if d not in run.failed:
                run.failed[d] = result["error"]
                self.alarms.alarm(d, None, lighting.SCHEDULE, result["error"], True, now)
        app.waiting -= 1
        if app.waiting <= 0:
            self._finish(app)
        self.wake = True

    def _finish(self, app: Application) -> None:
        """The application's `…/event` record(s) into the ring, after the readings made before it."""
        change = app.run.change
        if change is None:
            return
        devices = [d for d in app.run.devices if d in app.results]
        self._record(app, change, devices, rt.now())

    def _record(self, app: Application, change, devices: list, now: int) -> None:
        """One event for `devices`; halves the devices over two events while it does not fit a slot."""
        inv = self.inv
        results = {}
        for d in devices:
            results[inv.device_id(d)] = app.results[d]
        data = cbor.dumps(lighting.event(app.run.schedule.name, change.index + 1, change.step.at,
                                         change.instant, now, app.reason, app.state, results))
        if len(data) + 1 <= self.max_event or len(devices) < 2:
            try:
                self.packs.add_event(data)
            except ValueError as exc:  # one device's result beyond a slot: counted, never fatal
                self.counters["errors"] += 1
                log.error("event not stored: %s" % exc)
            return
        half = len(devices) // 2
        self._record(app, change, devices[:half], now)
        self._record(app, change, devices[half:], now)

    # -- what the poller and the commands report --------------------------------------------------

    def device_state(self, d: int, online: bool) -> None:
        """Device `d` stopped answering, or answers again after that: then it gets the state in force."""
        for run in self.by_device.get(d, ()):
            if not online:
                run.applied.pop(d, None)
                run.away[d] = True
                continue
            if d in run.away:
                del run.away[d]
                if d not in run.pending:
                    run.dirty[d] = "online"
                    run.retry_at.pop(d, None)
                    self.wake = True

    def reading(self, d: int, ni: int, value, when: int) -> None:
        """A reading of a watched device: a scheduled point that differs from what was written (the
        device lost its state) is written again; a lamp's lit point is compared with its schedule."""
        for run in self.by_device.get(d, ()):
            if ni in run.names and self._lost(run, d, ni, value, when):
                self.wake = True
        if self.lit.get(d) == ni:
            watch = self.watches[d]
            wanted = self._wanted(d, watch.control)
            change = watch.reading(value, when, wanted)
            if change is not None:
                if change[1]:
                    self.counters["alarms"] += 1
                log.log(log.WARNING if change[1] else log.INFO, "lamp %s: %s (wanted %s=%r)" % (
                    self.inv.device_id(d), change[0], watch.control, wanted))
                self.alarms.alarm(d, watch.control, lighting.LIGHTING, change[0], change[1], when)

    def _wanted(self, d: int, point):
        if point is None:
            return None
        for run in self.by_device.get(d, ()):
            if point in run.schedule.points and run.change is not None:
                return run.wanted(d, point)
        return None

    def _lost(self, run: Run, d: int, ni: int, value, when: int) -> bool:
        if run.applied.get(d) != run.key or d in run.pending or d in run.dirty:
            return False
        if when - self.epoch <= run.written_at.get(d, -(1 << 29)):
            return False
        if run.manual.get(d << 16 | ni):
            return False
        point = self.inv.names[ni].decode()
        wanted = run.wanted(d, point)
        ws = self.inv.writes.get(d << 16 | ni)
        scale = self.inv.steps(d).point_spec(ws[4:]).get("scale", 1) if ws is not None else 1
        if wanted is None or lighting.same(value, wanted, lighting.tolerance(scale)):
            return False
        now = rt.now()
        if now - run.last_reset.get(d, -lighting.RESET_GAP) < lighting.RESET_GAP:
            return False
        run.last_reset[d] = now
        run.dirty[d] = "reset"
        self.counters["resets"] += 1
        log.warning("schedule %r: device %s point %s read %r, wanted %r: it lost its state; "
              "writing it again" % (run.schedule.name, self.inv.device_id(d), point, value, wanted))
        return True

    def command_queued(self, d: int, ni: int) -> None:
        """A command is about to write point `ni` of device `d` by hand: until it finished, readings
        of a scheduled point are no lost state."""
        for run in self.by_device.get(d, ()):
            if ni in run.names:
                key = d << 16 | ni
                run.manual[key] = run.manual.get(key, 0) + 1

    def command_done(self, d: int, ni: int, value, ok: bool) -> None:
        """The hand write finished: when it succeeded, it holds until the schedule's next step."""
        for run in self.by_device.get(d, ()):
            if ni not in run.names:
                continue
            key = d << 16 | ni
            left = run.manual.get(key, 1) - 1
            if left > 0:
                run.manual[key] = left
            else:
                run.manual.pop(key, None)
            run.written_at[d] = rt.now() - self.epoch  # a poll cycle around the write read the old value
            if ok:
                run.overrides.setdefault(d, {})[self.inv.names[ni].decode()] = value
                self.counters["overrides"] += 1

    # -- health -------------------------------------------------------------------------------------

    def stats(self) -> dict:
        """`…/health` → `lighting`, with the agent's keys where the board has the same."""
        inv = self.inv
        out: dict = dict(self.counters)
        schedules = {}
        for run in self.runs:
            schedules[run.schedule.name] = {
                "source": "config", "devices": len(run.devices),
                "step": run.change.index + 1 if run.change is not None else None, "next": run.next,
                "failed": sorted(inv.device_id(d) for d in run.failed),
                "overrides": sorted(inv.device_id(d) for d in run.overrides)}
        out["schedules"] = schedules
        out["lamps_alarmed"] = sorted(inv.device_id(d) for d in self.watches if self.watches[d].raised)
        out["clock_set"] = self.clock_set
        now = rt.now()
        out["zone_expired"] = self.clock_set and self.zone.expired(now)
        return out

    # -- the task -----------------------------------------------------------------------------------

    async def run(self, beats: list, slot: int, running) -> None:
        """The lighting task: ticks on the board's clock until `running()` is False; `beats[slot]`
        shows the watchdog it makes progress. Checks every second, every 100 ms in the second
        before a change (the writes start within about 0.1 s of the step's second)."""
        wait = 0
        while running():
            beats[slot] = rt.ticks_ms()
            now = rt.now()
            if now < CLOCK_SET_AFTER:
                if self.clock_set or not wait:
                    log.warning("lighting: the clock is not set; no schedule is applied until it is")
                self.clock_set = False
                wait = 1
                await rt.sleep_ms(1000)
                continue
            self.clock_set = True
            self.wake = False
            try:
                wait = self.tick(now)
            except Exception as exc:  # a bug must not end the street's schedule: try again soon
                self.counters["errors"] += 1
                log.error("lighting failed: %r" % (exc,))
                wait = 5
            step = 100 if wait <= 1 else 1000
            left = step
            while left > 0 and not self.wake and running():
                await rt.sleep_ms(100)
                left -= 100
