"""Live heap of the running gateway under genuine MicroPython: 16 devices, 100 points.

Run alone to see the figures:  .venv/bin/python -m pytest -q -s firmware_py/tests/test_mpvm_heap.py

How it is measured. In this WebAssembly build `gc.collect()` called from Python does not collect:
the port only marks a collection as pending and runs it the next time control is back in the
JavaScript event loop, where no C stack holds stale pointers (tested below). So every figure here is
`gc.collect()`, then `await asyncio.sleep_ms(1)` (the collection runs), then `gc.mem_alloc()`, and
the minimum of several such samples, because the gateway's own tasks may run between the collection
and the reading. Then: code = live bytes after importing every module the gateway uses, minus the
bare VM; state = live bytes with the gateway built (config decoded and dropped) and running, minus
code. The test fails if the gateway imports a module after the code was measured, so nothing it
loads lands silently in either figure.
"""


import pytest

from firmware_py.tests import mpvm
from firmware_py.tests.fakebus import FakeBus
from firmware_py.tests.site import write_site
from hil_tests.broker import broker_or_skip
from hil_tests.sample_configs import EVENING, schedule

pytestmark = mpvm.vm_module()

SIX = ["setpoint", "voltage", "current", "power", "energy", "frequency"]
STATE_LIMIT = 32 * 1024
MEASURE = """
import gc, json, sys, hostio, asyncio

async def live(n):
    best = 1 << 30
    for i in range(n):
        hostio.js_gc()  # JS lets go of the Python objects it was handed (timer callbacks)
        await asyncio.sleep_ms(5)  # ...in its finalizers, which run as later JS tasks
        gc.collect()
        await asyncio.sleep_ms(1)  # the pending collection runs in the JS event loop
        a = gc.mem_alloc()
        if a < best:
            best = a
    return best

def make(app, hw_host):  # as main.py: the decoded config dies with this frame
    cfg = json.load(open('/config.json'))
    return app.Firmware(cfg, hw_host.Host())

async def go():
    base = await live(5)
    import hw_host
    from firmware_py import app, bus, inventory, mqtt, pack, ring, rt
    from protocols import modbus, points, profiles, rules, cbor, errors, compat, bcd
    from protocols import registry, compiled, scaling, quality, poll, alarms, framing
    from protocols.modbus import device
%(imports)s
    known = set(sys.modules)
    code = await live(5) - base
    gw = make(app, hw_host)
    built = await live(5) - base - code
    samples = []
    async def until(ready, ms):  # wait for a condition, with a deadline (not a fixed time)
        left = ms
        while not ready() and left > 0:
            await asyncio.sleep_ms(50)
            left -= 50
    async def sampler():
        # settled: connected, every device polled, packs going out; then samples 700 ms apart
        await until(lambda: gw.counters["packs"] >= 2 and 0 not in gw.poller.due, %(deadline_ms)d)
        for i in range(6):
            await asyncio.sleep_ms(700)
            samples.append(await live(3) - base - code)
        await until(lambda: gw.counters["made"] > 400 and gw.counters["packs"] > 3, %(deadline_ms)d)
        gw.running = False
    asyncio.create_task(sampler())
    await gw.main()
    npoints = 0
    for d in range(gw.inv.count):
        for r in gw.inv.requests(d):
            npoints += gw.inv.points_at[r + 1] - gw.inv.points_at[r]
    hostio.emit(json.dumps({"base": base, "code": code, "built": built, "samples": samples,
        "late_modules": sorted(m for m in sys.modules if m not in known), "devices": gw.inv.count,
        "points": npoints, "made": gw.counters["made"], "packs": gw.counters["packs"],
        "rules": len(gw.inv.rules), "ring_slots": gw.ring.slots}))

await go()
"""


def test_gc_collect_runs_only_in_the_event_loop():
    """Why the measurement yields after gc.collect(): this port defers the collection."""
    res = mpvm.run("""
import gc, json, hostio, asyncio
async def go():
    gc.collect()
    await asyncio.sleep_ms(1)
    a = gc.mem_alloc()
    x = [bytearray(1000) for i in range(40)]
    x = None
    gc.collect()
    b = gc.mem_alloc()
    await asyncio.sleep_ms(1)
    c = gc.mem_alloc()
    hostio.emit(json.dumps([a, b, c]))
await go()
""")
    assert res.returncode == 0, res.stderr
    a, b, c = res.values()[0]
    assert b - a > 40000 and c - a < 2000, (a, b, c)


@pytest.mark.parametrize("code_form", ["mpy", "source"])
def test_heap_16_devices_100_points(tmp_path, code_form):
    from agent.firmware import build

    broker = broker_or_skip()
    run_args: dict = {}
    if code_form == "mpy":  # the bundle `make firmware` builds: bytecode v6 from mpy-cross 1.22
        out = str(tmp_path / "bundle")
        build.build(out, verbose=False)
        run_args = {"root": out, "packages": ("protocols", "firmware_py")}
    units = list(range(1, 17))
    rules = [{"device": "m1", "point": "voltage", "above": 250, "hysteresis": 1},
             {"device": "m2", "point": "frequency", "below": 49.5, "above": 50.5}]
    try:
        with FakeBus(units) as fake:
            cfg = write_site(str(tmp_path), fake.path, broker.port, units, interval=1.0, health=2.0,
                             points={u: SIX for u in range(1, 13)}, ring_slots=48, rules=rules)
            files = dict(run_args.pop("files", {}), **{"/config.json": cfg})
            res = mpvm.run(MEASURE % {"deadline_ms": 60000, "imports": ""}, files=files, **run_args)
    finally:
        broker.close()
    assert res.returncode == 0, res.stderr[-3000:]
    m = res.values()[-1]
    assert m["devices"] == 16 and m["points"] == 100 and m["rules"] == 2 and m["ring_slots"] == 48
    assert m["made"] > 400 and m["packs"] > 3, m
    assert m["late_modules"] == [], "imported after the code was measured: %s" % m["late_modules"]
    state = min(m["samples"])
    print("\nheap [%s] MicroPython 1.27 wasm, live bytes: code %d (%.1f KiB); state built %d, running %s;"
          " state %d (%.1f KiB); total %d (%.1f KiB)"
          % (code_form, m["code"], m["code"] / 1024, m["built"], m["samples"], state, state / 1024,
             m["code"] + state, (m["code"] + state) / 1024))
    # no growth while polling: the live minimum of the last samples is that of the first ones
    assert min(m["samples"][3:]) <= min(m["samples"][:3]) + 256, m["samples"]
    assert state <= STATE_LIMIT, m


STREET_SCHEDULE = "\n[groups]\nstreet = [%s]\n\n" + schedule("street", EVENING, group="street")
LIGHTING_IMPORTS = """    from firmware_py import lighting
    from protocols import schedule, solar, zone
    from protocols import lighting as rules_of_lighting
"""


@pytest.mark.parametrize("schedules", [False, True], ids=["no-schedule", "schedule"])
def test_heap_of_the_street_with_and_without_its_schedule(tmp_path, schedules):
    """What running the lighting schedules costs the board: the simulator's `street` (40 lamps, a
    cabinet and its meter on two buses; the .mpy bundle) measured without and with one schedule for
    its 40 lamps (the place, a compiled zone, three steps: sunset, a weeknight dim, sunrise)."""
    from agent.firmware import build
    from firmware_py.tests.simsite import Simulator, SimulatorMissing

    broker = broker_or_skip()
    out = str(tmp_path / "bundle")
    build.build(out, verbose=False)
    try:
        with Simulator("street", str(tmp_path)) as sim:
            lamps = ", ".join('"lamp-%02d"' % n for n in range(1, 41))
            place = 'latitude = 36.6512\nlongitude = 117.1201\ntimezone = "Asia/Shanghai"\n'
            cfg = sim.firmware_config(broker.port, interval=1.0, timeout_ms=100,
                                      extra=STREET_SCHEDULE % lamps if schedules else "",
                                      gateway=place if schedules else "", ring_slots=48)
            res = mpvm.run(MEASURE % {"deadline_ms": 90000, "imports": LIGHTING_IMPORTS if schedules else ""},
                           files={"/config.json": cfg}, root=out, packages=("protocols", "firmware_py"))
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
    finally:
        broker.close()
    assert res.returncode == 0, res.stderr[-3000:]
    m = res.values()[-1]
    assert m["devices"] == 42 and m["late_modules"] == [], m
    state = min(m["samples"])
    print("\nheap [street, %s] code %d (%.1f KiB), state built %d, running %d (%.1f KiB), %d points"
          % ("schedule" if schedules else "no schedule", m["code"], m["code"] / 1024, m["built"], state,
             state / 1024,
             m["points"]))
    assert min(m["samples"][3:]) <= min(m["samples"][:3]) + 256, m["samples"]
    assert state <= 2 * STATE_LIMIT, m
