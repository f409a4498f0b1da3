"""The board's clock after a power cut: no battery clock, so only NTP sets it, and the network may come up
after the board (a street cabinet's router boots with it). NTP failing at boot is tried again each time
the uplink reaches the broker while the clock is not set, then once a day (firmware_py/net.py). Under
genuine MicroPython with an `ntptime` that fails twice, then sets the clock; and the day's resync on
CPython with the tick clock moved on."""

from __future__ import annotations

import sys
import types

from firmware_py import net, rt
from firmware_py.tests import mpvm

FAKE_NTP = """
calls = [0]
fail = [2]   # the network is not there yet for the first two tries
ok = [False]
host = "pool.ntp.org"
asked = []

def settime():
    asked.append(host)
    calls[0] += 1
    if fail[0] > 0:
        fail[0] -= 1
        raise OSError(110)
    ok[0] = True
"""

CODE = """
import json, hostio, ntptime
from firmware_py import net, rt
from firmware_py.uplink import Uplink

rt.now = lambda: 1800000000 if ntptime.ok[0] else 1000   # no clock until NTP sets it

class Stub:
    clock_said = False

u = Stub()
net.up({"ntp_host": "10.1.2.3"})    # boot: no Wi-Fi in this config; NTP fails (the router is not up)
seen = [[ntptime.calls[0], u.clock_said, net.clock_due(rt.now())]]
for connect in range(3):            # three connects to the broker
    Uplink.set_clock(u)
    seen.append([ntptime.calls[0], u.clock_said, net.clock_due(rt.now())])
hostio.emit(json.dumps(seen))
hostio.emit(json.dumps(ntptime.asked))
"""


@mpvm.needs_vm
def test_ntp_is_tried_again_at_each_connect_until_the_clock_is_set(tmp_path) -> None:
    fake = tmp_path / "ntptime.py"
    fake.write_text(FAKE_NTP)
    res = mpvm.run(CODE, files={"/ntptime.py": str(fake)})
    assert res.returncode == 0, res.stderr
    # [NTP calls so far, "clock not set" said, NTP still due] after boot (fails, nothing said: the
    # uplink says it) and each connect: fails (said once), sets the clock, then not asked again
    assert res.values() == [[[1, False, True], [2, True, True], [3, False, False], [3, False, False]],
                            ["10.1.2.3"] * 3]  # the site's NTP server from config.json
    out = res.stdout + res.stderr
    assert out.count("clock not set and NTP failed") == 1, out
    assert out.count("clock set by NTP: 1800000000 (it read 1000)") == 1, out


def test_a_clock_ntp_set_is_set_again_after_a_day(monkeypatch) -> None:
    calls = []
    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(settime=lambda: calls.append(1)))
    monkeypatch.setattr(net, "_synced", [False, 0])
    now = 1_800_000_000
    assert not net.clock_due(now)  # set by the host, never by NTP since boot: left alone
    assert net.clock_due(1000)  # not set: ask
    ticks = [5_000]
    monkeypatch.setattr(rt, "ticks_ms", lambda: ticks[0])
    assert net.sync_clock() and calls == [1]
    assert not net.clock_due(now)
    assert net.clock_due(1000)  # a clock that went back before 2020
    ticks[0] += net.RESYNC_S * 1000
    assert not net.clock_due(now)
    ticks[0] += 1
    assert net.clock_due(now)
    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(settime=lambda: 1 / 0))
    assert net.sync_clock() is False  # never raises
