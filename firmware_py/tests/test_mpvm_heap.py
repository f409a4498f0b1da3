"""Steady-state heap of the running gateway under MicroPython: 16 devices, 100 points.

Run alone to see the figures:  .venv/bin/python -m pytest -q -s firmware_py/tests/test_mpvm_heap.py
"""

import os

import pytest

from firmware_py.tests import mpvm
from firmware_py.tests.fakebus import FakeBus
from firmware_py.tests.site import write_site
from hil_tests.broker import broker_or_skip

pytestmark = pytest.mark.skipif(mpvm.available() is not None, reason=str(mpvm.available()))

SIX = ["setpoint", "voltage", "current", "power", "energy", "frequency"]
MEASURE = """
import gc, json, fwhost
gc.collect()
base = gc.mem_alloc()
from firmware_py import app, hw_host, bus, mqtt, pack, ring, rt
from protocols import modbus, points, cbor, senml, birth
gc.collect()
code = gc.mem_alloc() - base
cfg = json.load(open('/config.json'))
gw = app.Gateway(cfg, hw_host.Host())
del cfg
gc.collect()
state = gc.mem_alloc() - base - code
import asyncio
samples = []
async def sampler():
    for i in range(8):
        await asyncio.sleep_ms(1000)
        gc.collect()
        samples.append(gc.mem_alloc() - base)
asyncio.create_task(sampler())
await gw.main(run_ms=9000)
npoints = sum(len(p) for d in gw.devices for f, p in d.requests)
fwhost.emit(json.dumps({"state": state, "base": base, "code": code, "samples": samples,
    "devices": len(gw.devices),
    "points": npoints, "made": gw.counters["made"], "packs": gw.counters["packs"]}))
"""


@pytest.mark.parametrize("code_form", ["mpy", "source"])
def test_heap_16_devices_100_points(tmp_path, code_form):
    from firmware_py import build

    broker = broker_or_skip()
    run_args: dict = {}
    if code_form == "mpy":  # the bundle `make firmware` builds: bytecode v6 from mpy-cross 1.22
        out = str(tmp_path / "bundle")
        build.build(out, verbose=False)
        run_args = {"root": out, "packages": ("protocols", "firmware_py")}
        run_args["files"] = {"/firmware_py/hw_host.py": os.path.join(mpvm.ROOT, "firmware_py", "hw_host.py")}
    units = list(range(1, 17))
    try:
        with FakeBus(units) as fake:
            cfg = write_site(str(tmp_path), fake.path, broker.port, units, interval=1.0, health=2.0,
                             points={u: SIX for u in range(1, 13)})
            files = dict(run_args.pop("files", {}), **{"/config.json": cfg})
            res = mpvm.run(MEASURE, files=files, **run_args)
    finally:
        broker.close()
    assert res.returncode == 0, res.stderr[-3000:]
    m = res.values()[-1]
    assert m["devices"] == 16 and m["points"] == 100
    assert m["made"] > 500 and m["packs"] > 3, m
    steady = m["samples"][3:]
    print("\nheap [%s] (live bytes after gc.collect, MicroPython 1.27 wasm): code %d, gateway state %s"
          % (code_form, m["code"], [s - m["code"] for s in steady]))
    # The wasm port's GC is conservative: single samples carry 10-15 KB of retained garbage, so the
    # minimum is the live figure. No growth per poll: later samples stay inside the early range.
    early, late = m["samples"][1:4], m["samples"][5:]
    assert min(late) <= max(early) + 2048, m["samples"]
    print("heap [%s] total live min %d bytes (%.1f KiB), of which code %d; state %d bytes (%.1f KiB)"
          % (code_form, min(steady), min(steady) / 1024, m["code"], min(steady) - m["code"],
             (min(steady) - m["code"]) / 1024))
    assert min(steady) - m["code"] <= 48 * 1024, m
