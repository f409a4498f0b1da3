"""The cases of protocols/lighting_run.py, written once in the shared dialect: the pytest module
(protocols/tests/test_lighting_run.py) asserts them on CPython, the check script
(protocols/tests/mp/check_lighting_run.py) runs them under MicroPython too. Each case returns
[(label, got, want)], `got` taken when the label is written (copies of what changes later).

The street: lamps "a" and "b" on bus 1, "c" on bus 2, a fixed UTC+8 zone, one schedule: on at full
level at 22:00, off at 02:00 (local). The instants below are of 2026-03-11/12.
"""

from protocols import lighting
from protocols.lighting import LightWatch, not_written
from protocols.lighting_run import COUNTERS, INFO, WARNING, Machine, Run
from protocols.schedule import Place, parse_schedule
from protocols.solar import days_from_civil
from protocols.zone import fixed_zone

PLACE = Place(36.6512, 117.1201, fixed_zone(8 * 3600, "Asia/Shanghai"))
DAY = days_from_civil(2026, 3, 11) * 86400
ON = DAY + 14 * 3600  # 22:00 local
OFF = DAY + 18 * 3600  # 02:00 local, the next day
NIGHT = ON + 60
STREET = {"name": "street", "devices": ["a", "b", "c"], "steps": [
    {"at": "22:00", "set": {"on": True, "dim": 1.0}},
    {"at": "02:00", "set": {"on": False}}]}
LIT = {"on": True, "dim": 1.0}
DARK = {"on": False, "dim": 1.0}


class Driver:
    """The machine with a driver that does nothing but remember what it was told to do."""

    def __init__(self, watches=None) -> None:
        self.counters: dict = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self.bus = {"a": 1, "b": 1, "c": 2}
        self.down: dict = {}  # device -> why it does not answer
        self.machine = Machine(PLACE, self.counters, self.tolerance, self.down.get, self.bus.get,
                               str, watches or {})
        self.run = Run(parse_schedule(STREET), ["a", "b", "c"])
        self.machine.set_runs([self.run])
        self.writes: list = []  # (app, bus, devices)
        self.alarms: list = []
        self.events: list = []
        self.lines: list = []

    def tolerance(self, device, point):
        return lighting.tolerance(0.01 if point == "dim" else 1)

    def carry(self) -> None:
        self.machine.carry_out(self.write, self.alarm, self.events.append, self.say)

    def write(self, app, bus, devices) -> None:
        self.writes.append((app, bus, devices))

    def alarm(self, device, point, kind, value, raised, when) -> None:
        self.alarms.append((device, point, kind, value, raised, when))

    def say(self, level, text) -> None:
        self.lines.append((level, text.split(" ")[0]))

    def tick(self, now):
        wait = self.machine.tick(now, 60)
        self.carry()
        return wait

    def sent(self) -> list:
        """[(reason, bus, devices)] written since the last call."""
        out = [(app.reason, bus, devices) for app, bus, devices in self.writes]
        self.writes = []
        return out

    def done(self, app, results: dict, now, stamp) -> None:
        self.machine.bus_done(app, results, now, stamp)
        self.carry()

    def start(self, now=NIGHT, stamp=100) -> None:
        """The first tick at `now`, every write succeeding."""
        self.tick(now)
        self.finish_all(now, stamp)

    def finish_all(self, now, stamp, error=None) -> None:
        writes, self.writes = self.writes, []
        for app, _, devices in writes:
            self.done(app, results(devices, error), now, stamp)


def results(devices, error=None) -> dict:
    out = {}
    for d in devices:
        out[d] = {"ok": error is None, "error": error, "value": None if error else {"on": 1}}
    return out


def case_start():
    """The first tick writes the state in force, one WRITE per bus, one event when both are done."""
    drv = Driver()
    wait = drv.tick(NIGHT)
    writes = list(drv.writes)
    app = writes[0][0]
    out: list = [("wait until the next change, at most the horizon", wait, 60),
           ("wait until the next change", drv.machine.tick(OFF - 10, 3600), 10),
           ("one WRITE per bus", drv.sent(), [("start", 1, ["a", "b"]), ("start", 2, ["c"])]),
           ("the state in force", app.state, LIT),
           ("dim before the lamp lights", drv.machine.values(app, "a", "on"), [("dim", 1.0), ("on", True)]),
           ("a device being written is not written again", (drv.tick(NIGHT + 1), drv.sent()), (60, []))]
    drv.done(app, results(["a", "b"]), NIGHT + 1, 101)
    out.append(("no event while a bus writes", list(drv.events), []))
    drv.done(writes[1][0], results(["c"]), NIGHT + 1, 101)
    event = drv.machine.event_of(drv.events[0], NIGHT + 2, {})
    out.append(("one event", (len(drv.events), sorted(drv.events[0].results)), (1, ["a", "b", "c"])))
    got = (event["schedule"], event["step"], event["at"], event["due"], event["reason"], event["set"])
    out.append(("the event map", got, ("street", 1, "22:00", ON, "start", LIT)))
    out.append(("counters", [drv.counters[k] for k in ("changes", "applications", "writes_ok")], [1, 1, 3]))
    out.append(("log", list(drv.lines), [(INFO, "event=schedule_step"), (INFO, "event=schedule_applied")]))
    out.append(("nothing more to write", (drv.tick(NIGHT + 2), drv.sent()), (60, [])))
    return out


def case_offline():
    """A device known to be offline is not written: its result says so; with no device to write
    the event is recorded at once."""
    drv = Driver()
    drv.down["c"] = "timeout"
    drv.tick(NIGHT)
    app = drv.writes[0][0]
    out: list = [("only the devices that answer", drv.sent(), [("start", 1, ["a", "b"])]),
           ("its result", app.results["c"], not_written("timeout")),
           ("counted", drv.counters["not_written_offline"], 1)]
    drv = Driver()
    drv.down.update({"a": "timeout", "b": "crc", "c": "timeout"})
    drv.tick(NIGHT)
    out.append(("all offline: no write, an event", (drv.sent(), len(drv.events)), ([], 1)))
    out.append(("and not written again on the next tick", (drv.tick(NIGHT + 1), drv.sent()), (60, [])))
    return out


def case_retry():
    """A failed write raises one schedule alarm, is retried RETRY_AFTER seconds later, and clears
    the alarm when it succeeds."""
    drv = Driver()
    drv.tick(NIGHT)
    drv.finish_all(NIGHT, 100, "timeout: no reply")
    raised = ("a", None, "schedule", "timeout: no reply", True, None)
    out: list = [("raised once per device", sorted(drv.alarms)[0], raised),
           ("counted", (drv.counters["writes_failed"], len(drv.alarms)), (3, 3)),
           ("not before the retry", (drv.tick(NIGHT + 59), drv.sent()), (1, []))]
    drv.tick(NIGHT + 60)
    out.append(("retried", [(w[0].reason, w[2]) for w in drv.writes],
                [("retry", ["a", "b"]), ("retry", ["c"])]))
    drv.finish_all(NIGHT + 60, 160, "timeout: no reply")
    out.append(("no second alarm", len(drv.alarms), 3))
    drv.tick(NIGHT + 120)
    drv.finish_all(NIGHT + 120, 220)
    out.append(("cleared", sorted(drv.alarms[3:]), [("a", None, "schedule", "applied", False, None),
                                            ("b", None, "schedule", "applied", False, None),
                                            ("c", None, "schedule", "applied", False, None)]))
    out.append(("applied", dict(drv.run.applied), {"a": drv.run.key, "b": drv.run.key, "c": drv.run.key}))
    return out


def case_change():
    """At the next step every device is due the new state; a clock set back does the same."""
    drv = Driver()
    drv.start()
    drv.tick(OFF)
    writes = list(drv.writes)
    app = writes[0][0]
    out: list = [("written at the change", drv.sent(), [("change", 1, ["a", "b"]), ("change", 2, ["c"])]),
           ("the new state", app.state, DARK),
           ("the lamp dark before anything else", drv.machine.values(app, "a", "on"),
            [("on", False), ("dim", 1.0)])]
    drv.writes = writes
    drv.finish_all(OFF, 200)
    drv.tick(NIGHT)  # NTP sets the clock back into the night
    out.append(("a clock set back", [(w[0].reason, w[0].state) for w in drv.writes], [("change", LIT)] * 2))
    out.append(("changes", drv.counters["changes"], 3))
    return out


def case_online():
    """A device that answers again after an outage is due the state in force; its first answer
    after start-up is no news."""
    drv = Driver()
    drv.start()
    out: list = [("first answer", drv.machine.device_state("a", True), False),
           ("offline", drv.machine.device_state("a", False), False),
           ("nothing due while away", (drv.tick(NIGHT + 1), drv.sent()), (60, [])),
           ("back", drv.machine.device_state("a", True), True)]
    drv.tick(NIGHT + 2)
    out.append(("written again", drv.sent(), [("online", 1, ["a"])]))
    return out


def case_lost():
    """A reading that contradicts the state in force after the write finished: written again
    (`reset`), at most once per RESET_GAP seconds."""
    drv = Driver()
    drv.start(NIGHT, 100)
    m = drv.machine
    out: list = [("read before the write ended", m.reading("a", "on", False, NIGHT, 100, NIGHT + 1), False),
           ("the same value", m.reading("a", "on", True, NIGHT, 101, NIGHT + 1), False),
           ("within half a step", m.reading("a", "dim", 0.996, NIGHT, 101, NIGHT + 1), False),
           ("a point no schedule sets", m.reading("a", "colour", 3, NIGHT, 101, NIGHT + 1), False),
           ("lost", m.reading("a", "on", False, NIGHT, 101, NIGHT + 1), True),
           ("not twice", m.reading("a", "dim", 0.2, NIGHT, 101, NIGHT + 1), False)]
    drv.tick(NIGHT + 2)
    app = drv.writes[0][0]
    out.append(("written again", drv.sent(), [("reset", 1, ["a"])]))
    drv.done(app, results(["a"]), NIGHT + 3, 110)
    out.append(("not again within RESET_GAP", m.reading("a", "on", False, NIGHT, 111, NIGHT + 60), False))
    out.append(("again after it", m.reading("a", "on", False, NIGHT, 112, NIGHT + 61), True))
    out.append(("counted", drv.counters["resets"], 2))
    drv.carry()
    out.append(("logged", [line for line in drv.lines if line[0] == WARNING],
                [(WARNING, "event=lamp_reset")] * 2))
    return out


def case_override():
    """A hand write of a scheduled point holds until the next step; while it is on its way no
    reading counts as a lost state."""
    drv = Driver()
    drv.start(NIGHT, 100)
    m = drv.machine
    m.command_queued("a", "dim")
    m.command_queued("a", "colour")
    out: list = [("scheduled points", (m.sets("a", "dim"), m.sets("a", "colour"), m.sets("x", "dim")),
            (True, False, False)),
           ("on its way", m.reading("a", "dim", 0.5, NIGHT, 101, NIGHT + 1), False),
           ("counted for the scheduled point only", dict(drv.run.manual), {("a", "dim"): 1})]
    m.command_done("a", "dim", 0.5, True, 102)
    drv.carry()
    m.command_done("b", "dim", 0.3, False, 102)
    out.append(("held", (dict(drv.run.overrides), m.wanted("a", "dim"), m.wanted("b", "dim")),
                ({"a": {"dim": 0.5}}, 0.5, 1.0)))
    out.append(("read before the hand write finished", m.reading("b", "dim", 0.3, NIGHT, 102, NIGHT + 2),
                False))
    out.append(("the override is no lost state", m.reading("a", "dim", 0.5, NIGHT, 103, NIGHT + 2), False))
    out.append(("counted", (drv.counters["overrides"], dict(drv.run.manual)), (1, {})))
    out.append(("the health", m.describe(drv.run), {"source": "config", "devices": 3, "step": 1, "next": OFF,
                                                    "failed": [], "overrides": ["a"]}))
    out.append(("contradicting the override", m.reading("a", "dim", 1.0, NIGHT, 103, NIGHT + 2), True))
    drv.tick(NIGHT + 3)
    app = drv.writes[0][0]
    out.append(("written with the override", m.values(app, "a", "on"), [("dim", 0.5), ("on", True)]))
    drv.finish_all(NIGHT + 3, 110)
    drv.tick(OFF)
    out.append(("the next step ends it", (drv.run.overrides, m.wanted("a", "dim")), ({}, 1.0)))
    return out


def case_replaced():
    """A schedule no longer run: its schedule alarms are cleared, late results change nothing."""
    drv = Driver()
    drv.tick(NIGHT)
    first, second = drv.writes[0][0], drv.writes[1][0]
    drv.done(first, results(["a", "b"], "timeout"), NIGHT, 100)
    old = drv.run
    new = Run(parse_schedule(STREET), ["a", "b", "c"], "command", "replaced")
    drv.machine.set_runs([new])
    drv.carry()
    out: list = [("cleared", sorted(drv.alarms[2:]), [("a", None, "schedule", "applied", False, None),
                                        ("b", None, "schedule", "applied", False, None)]),
           ("the old run", (old.live, dict(old.failed)), (False, {}))]
    drv.done(second, results(["c"]), NIGHT + 1, 101)
    out.append(("a late result", (dict(old.applied), sorted(old.dirty)), ({}, ["a", "b"])))
    drv.writes = []
    drv.tick(NIGHT + 2)
    out.append(("the new one writes", drv.sent(), [("replaced", 1, ["a", "b"]), ("replaced", 2, ["c"])]))
    out.append(("its health", drv.machine.describe(new)["source"], "command"))
    return out


def case_lamp():
    """A lamp dark while its schedule wants it on for alarm_after seconds: a lighting alarm."""
    watch = LightWatch("on", "power", 1.0, 300)
    drv = Driver({"a": watch})
    drv.start(NIGHT, 100)
    m = drv.machine
    out: list = [("dark, not yet", m.reading("a", "power", 0.0, NIGHT + 10, 110, NIGHT + 10), False),
           ("no alarm yet", list(drv.alarms), [])]
    m.reading("a", "power", 0.0, NIGHT + 310, 410, NIGHT + 310)
    drv.carry()
    m.reading("a", "power", 150.0, NIGHT + 320, 420, NIGHT + 320)
    drv.carry()
    out.append(("raised and cleared", list(drv.alarms),
                [("a", "on", "lighting", "dark", True, NIGHT + 310),
                 ("a", "on", "lighting", "as_scheduled", False, NIGHT + 320)]))
    out.append(("counted", drv.counters["alarms"], 1))
    out.append(("none up", m.lamps_alarmed(), []))
    return out


CASES = (case_start, case_offline, case_retry, case_change, case_online, case_lost, case_override,
         case_replaced, case_lamp)
