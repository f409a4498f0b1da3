"""What a single-precision MicroPython port (esp32: MICROPY_FLOAT_IMPL_FLOAT) would compute: protocols/
solar.py run with every float as numpy.float32 (its math functions replaced by float32 ones), against
the same module in double precision. Not a pytest test: numpy is not a project dependency.

    python -m venv /tmp/f32 && /tmp/f32/bin/pip install numpy
    PYTHONPATH=. /tmp/f32/bin/python protocols/tests/solar_float32.py

Prints the largest difference in seconds, every second day of 2026, in ten cities; docs/lighting.md
quotes it. Integers (day numbers, the POSIX instant) stay integers, as they do on a board.
"""

import datetime as dt
import importlib.util
import sys

import numpy as np

sys.path.insert(0, ".")

from protocols import solar as single  # patched below into float32

spec = importlib.util.spec_from_file_location("solar_double", "protocols/solar.py")
assert spec is not None and spec.loader is not None
double = importlib.util.module_from_spec(spec)
spec.loader.exec_module(double)

f32 = np.float32


def single_precision(fn):  # type: ignore[no-untyped-def]
    return lambda x: f32(fn(f32(x)))


for name, fn in (("sin", np.sin), ("cos", np.cos), ("tan", np.tan), ("asin", np.arcsin)):
    setattr(single, name, single_precision(fn))
single.radians = lambda x: f32(x) * f32(np.pi / 180)  # type: ignore
single.degrees = lambda x: f32(x) * f32(180 / np.pi)  # type: ignore
assert isinstance(single._altitude(20000, f32(700.0), f32(36.6), f32(117.1)), np.float32)  # type: ignore

CITIES = {"Jinan": (36.6512, 117.1201), "Harbin": (45.8038, 126.5349), "Sanya": (18.2528, 109.5119),
          "Urumqi": (43.8256, 87.6168), "Quito": (-0.1807, -78.4678), "Sydney": (-33.8688, 151.2093),
          "New York": (40.7128, -74.0060), "Reykjavik": (64.1466, -21.9426), "Tromso": (69.6492, 18.9553),
          "Longyearbyen": (78.2232, 15.6267)}
days = [dt.date(2026, 1, 1) + dt.timedelta(i) for i in range(0, 365, 2)]
for name, (lat, lon) in CITIES.items():
    worst, events, disagree = 0, 0, 0
    for d in days:
        for event in single.EVENTS:
            a = single.sun_event(d.year, d.month, d.day, f32(lat), f32(lon), event)  # type: ignore[arg-type]
            b = double.sun_event(d.year, d.month, d.day, lat, lon, event)
            if isinstance(b, int) and not isinstance(a, str):
                events += 1
                worst = max(worst, abs(int(a) - b))
            elif a != b:
                disagree += 1
    print("%-13s %4d events, max |float32 - float64| %d s, event/no-event disagreements %d"
          % (name, events, worst, disagree))
