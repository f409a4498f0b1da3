"""`fieldlink schedule` as a technician runs it: a subprocess on a config file. Its sunrise and sunset steps
(and civil dawn and dusk) are within one minute of astral 3.2 (an independent implementation) for
cities from the equator to 53° N and 34° S, on solstices, an equinox and the nights clocks change; a
polar day and night say so in words; days filters and the state in force at midnight are shown."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import zoneinfo

import pytest

from hil_tests.sample_configs import bus, lamp, site_head

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
astral = pytest.importorskip("astral")
from astral import Observer  # noqa: E402
from astral.sun import sun  # noqa: E402

PLACE = 'latitude = {lat}\nlongitude = {lon}\ntimezone = "{tz}"\n'  # filled in by CONFIG.format
CONFIG = site_head("s", place=PLACE) + "\n" + bus() + "\n" + lamp(1) + """
[[schedules]]
name = "sun"
devices = ["lamp-01"]

[[schedules.steps]]
at = "dawn"
set = {{dim = 0.3}}

[[schedules.steps]]
at = "sunrise"
set = {{on = false}}

[[schedules.steps]]
at = "sunset"
set = {{on = true, dim = 1.0}}

[[schedules.steps]]
at = "dusk"
set = {{dim = 0.8}}

[[schedules.steps]]
at = "23:30"
days = "mon-fri"
set = {{dim = 0.5}}
"""

CITIES = [  # name, latitude, longitude, time zone
    ("Jinan", 36.6512, 117.1201, "Asia/Shanghai"),
    ("Harbin", 45.8038, 126.5350, "Asia/Shanghai"),
    ("Urumqi", 43.8256, 87.6168, "Asia/Urumqi"),
    ("Berlin", 52.5200, 13.4050, "Europe/Berlin"),
    ("New York", 40.7128, -74.0060, "America/New_York"),
    ("Sydney", -33.8688, 151.2093, "Australia/Sydney"),
    ("Quito", -0.1807, -78.4678, "America/Guayaquil"),
]
DATES = ["2026-03-29", "2026-06-21", "2026-09-23", "2026-11-01", "2026-12-21"]
STEP_EVENT = {1: "dawn", 2: "sunrise", 3: "sunset", 4: "dusk"}


def run_schedule(tmp_path, lat: float, lon: float, tz: str, *args: str) -> subprocess.CompletedProcess:
    path = os.path.join(str(tmp_path), "site.toml")
    with open(path, "w") as f:
        f.write(CONFIG.format(lat=lat, lon=lon, tz=tz))
    return subprocess.run([sys.executable, "-m", "agent.cli", "schedule", path, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("city, lat, lon, tz", CITIES, ids=[c[0] for c in CITIES])
def test_sun_steps_within_a_minute_of_astral(tmp_path, city, lat, lon, tz):
    observer = Observer(latitude=lat, longitude=lon)
    worst = 0.0
    for date in DATES:
        result = run_schedule(tmp_path, lat, lon, tz, "--date", date, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["date"] == date and report["timezone"] == tz
        day = dt.date.fromisoformat(date)
        reference = sun(observer, date=day, tzinfo=zoneinfo.ZoneInfo(tz))
        rows = {row["step"]: row for row in report["schedules"][0]["steps"]}
        for step, event in STEP_EVENT.items():
            row = rows[step]
            assert "instant" in row, (city, date, row)
            theirs = reference[event].timestamp()
            worst = max(worst, abs(row["instant"] - theirs))
            assert abs(row["instant"] - theirs) <= 60, (city, date, event, row, reference[event])
            local = dt.datetime.fromtimestamp(row["instant"], zoneinfo.ZoneInfo(tz))
            assert row["time"] == local.strftime("%H:%M:%S")  # shown in the gateway's local time
    print("%s: worst difference from astral %.0f s" % (city, worst))


def test_text_output_shows_each_step_days_and_the_state_at_midnight(tmp_path):
    result = run_schedule(tmp_path, 36.6512, 117.1201, "Asia/Shanghai", "--date", "2026-06-21")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("gateway gw1 at 36.6512, 117.1201 (Asia/Shanghai, UTC+08:00 at noon)")
    assert "2026-06-21 (Sunday): dawn " in out
    assert "schedule 'sun' (lamp-01), from the config" in out
    # no 23:30 step on Saturdays: Saturday's dusk is in force at Sunday's midnight, `on` from its sunset
    assert "at 00:00 in force: step 4 (dusk, since 2026-06-20 20:03:51): dim=0.8 on=true" in out
    assert "step 5  23:30          skipped: not on Sundays (days: mon, tue, wed, thu, fri)" in out
    sunset = [line for line in out.splitlines() if "step 3  sunset" in line]
    assert sunset and sunset[0].split()[0].startswith("19:") and sunset[0].endswith("on=true dim=1.0")


def test_polar_day_and_night_are_explained(tmp_path):
    args = (78.2232, 15.6267, "Arctic/Longyearbyen")
    june = run_schedule(tmp_path, *args, "--date", "2026-06-21")
    assert june.returncode == 0, june.stderr
    assert "skipped: no sunset: the sun stays above the horizon all day (polar day)" in june.stdout
    assert "skipped: no sunrise: the sun stays above the horizon all day (polar day)" in june.stdout
    assert "no dusk: the sun stays above 6 degrees below the horizon all night (white night)" in june.stdout
    december = json.loads(run_schedule(tmp_path, *args, "--date", "2026-12-21", "--json").stdout)
    rows = {row["step"]: row for row in december["schedules"][0]["steps"]}
    assert rows[3]["skipped"] == "no sunset: the sun stays below the horizon all day (polar night)"
    first = december["schedules"][0]["in_force_at_start"]
    # no sun step for weeks: Friday's 23:30 is the last step, and `on` comes from the last sunset (October)
    assert first["at"] == "23:30" and first["since"] == "2026-12-18 23:30:00"
    assert first["state"] == {"dim": 0.5, "on": True}


def test_bad_date_and_missing_place(tmp_path):
    bad = run_schedule(tmp_path, 36.6512, 117.1201, "Asia/Shanghai", "--date", "2026-02-30")
    assert bad.returncode == 2 and "--date '2026-02-30' is not a date" in bad.stderr
    path = os.path.join(str(tmp_path), "site.toml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("latitude = 36.6512\n", ""))
    result = subprocess.run([sys.executable, "-m", "agent.cli", "schedule", path], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "gateway.latitude: missing" in result.stderr
