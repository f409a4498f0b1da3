"""The board's clock after a power cut: no battery clock, so only NTP sets it, and the network may come up
after the board (a street cabinet's router boots with it). NTP failing at boot is tried again each time
the uplink reaches the broker while the clock is not set, then once a day (firmware_py/net.py). Under
genuine MicroPython with an `ntptime` that fails twice, then sets the clock; and the day's resync on
CPython with the tick clock moved on."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

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
    ntp_wait = 60000
    ntp_next = 0

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


def test_ntp_is_asked_again_while_connected_with_a_growing_wait(monkeypatch) -> None:
    """A broker that stays up gives no second connect: the session asks NTP again (`ntp_next`) one
    minute after a failure, then 2, 4, 8 and 15; once it works, when the day has passed."""
    from firmware_py.uplink import NTP_RETRY_MAX_MS, NTP_RETRY_MS, Uplink

    ticks = [0]
    now = [1000]  # not set
    tries = []

    def sync() -> bool:
        tries.append(ticks[0] // 1000)
        if len(tries) != 6:  # the sixth works
            return False
        now[0] = net._checked[0] = 1_800_000_000  # as sync_clock does
        return True

    monkeypatch.setattr(rt, "ticks_ms", lambda: ticks[0])
    monkeypatch.setattr(rt, "now", lambda: now[0])
    monkeypatch.setattr(net, "sync_clock", sync)
    monkeypatch.setattr(net, "_checked", [0])
    up = types.SimpleNamespace(clock_said=False, ntp_wait=NTP_RETRY_MS, ntp_next=0)
    for second in range(3600):  # the session's check, once a second for an hour
        ticks[0] = second * 1000
        if rt.ticks_diff(rt.ticks_ms(), up.ntp_next) >= 0:
            Uplink.set_clock(up)
    assert tries == [0, 60, 180, 420, 900, 1800]  # waits of 1, 2, 4, 8 and 15 min after each failure
    assert NTP_RETRY_MAX_MS == 15 * 60000 and up.ntp_wait == NTP_RETRY_MS  # reset once it worked
    monkeypatch.setattr(net, "_checked", [1_800_000_000])
    now[0] = 1_800_000_000 + net.RESYNC_S + 1  # a day later, still connected
    for second in range(3600, 3600 + 3 * 3600):  # NTP fails now (a set clock): asked once an hour
        ticks[0] = second * 1000
        if rt.ticks_diff(rt.ticks_ms(), up.ntp_next) >= 0:
            Uplink.set_clock(up)
    assert tries[6:] == [3600, 7200, 10800]


def test_a_set_clock_is_set_again_after_a_day(monkeypatch) -> None:
    calls = []
    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(settime=lambda: 1 / 0))
    now = 1_800_000_000
    monkeypatch.setattr(rt, "now", lambda: now)
    monkeypatch.setattr(net, "_checked", [0])
    net.up({})  # the clock is set at boot (the host's, or an ESP32's kept over a watchdog reset)
    assert not net.clock_due(now) and not net.clock_due(now + net.RESYNC_S)  # left alone for a day
    assert net.clock_due(now + net.RESYNC_S + 1)  # then NTP, against drift
    assert net.clock_due(1000)  # not set: ask
    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(settime=lambda: calls.append(1)))
    assert net.sync_clock() and calls == [1]
    assert not net.clock_due(now)
    assert net.clock_due(1000)  # a clock that went back before 2020
    assert not net.clock_due(now + net.RESYNC_S)
    assert net.clock_due(now + net.RESYNC_S + 1)
    # by the clock NTP set, not by ticks: a week without a connect (ticks_diff wraps after 6.2 days)
    assert net.clock_due(now + 7 * 86400)
    assert net.clock_due(now - 60)  # set back since NTP: ask again
    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(settime=lambda: 1 / 0))
    assert net.sync_clock() is False  # never raises


# -- an RP2040 after a power cut, the router and the broker up later --------------------------------
RP2_RUN = """
import json, hostio, time, ntptime
import hw_host
from firmware_py import app, net, rt, uplink

T0 = time.ticks_ms()
def rp2_clock():   # MicroPython's rp2 port starts the clock at 2021-01-01 at power-up
    if ntptime.ok[0]:
        return int(time.time())
    return 1609459200 + time.ticks_diff(time.ticks_ms(), T0) // 1000
rt.now = rp2_clock

app.WDT_MAX_MS["webassembly"] = 8000    # an RP2040's watchdog counts at most 8388 ms
uplink.NTP_RETRY_MS = 3000               # NTP asked again 3 s after a failure, not a minute
cfg = json.load(open('/config.json'))
net.up(cfg)                          # NTP fails at boot: the network is not there yet
gw = app.Firmware(cfg, hw_host.Host())
await gw.main(run_ms=%(run_ms)d)
hostio.emit(json.dumps({"counters": gw.counters, "pending": gw.ring.pending(), "ntp": ntptime.calls[0],
                        "epoch": rt.EPOCH}))
"""


@mpvm.needs_vm
@pytest.mark.parametrize("fails", [1, 2])
def test_an_rp2040_publishes_what_it_read_before_ntp_in_posix_time(tmp_path, fails) -> None:
    """The board reads its meter with the clock at 2021 and no broker; the broker comes back, NTP
    answers at that connect (fails=1) or at its retry while connected (fails=2: what was read waits in
    the ring meanwhile, firmware_py/uplink.py `holding`; its meter raises no alarm, which would end the
    wait), and every reading and alarm on the broker has the time it was taken."""
    from agent.firmware.config import dumps
    from firmware_py.tests.test_quality import GOOD, Meter, PtyMeter, compiled
    from hil_tests.broker import Mosquitto, Subscriber, find_mosquitto
    from hil_tests.link import wait_until

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    fake = tmp_path / "ntptime.py"
    fake.write_text(FAKE_NTP.replace("fail = [2]", "fail = [%d]" % fails))
    read_at: list = []
    errors: list = []
    broker = Mosquitto(persistence=True).start()
    try:
        sub = Subscriber(broker, "fieldlink/lab/fw-01/#", client_id="clock-test", persistent=True)
        broker.stop()  # the board powers up without its broker; the subscription is kept
        meter = Meter(GOOD)  # voltage_a all FF: a quality alarm, raised while the clock is not set
        meter.bad = fails == 1
        answer = meter.answer

        def timed(frame):
            reply = answer(frame)
            if reply is not None:
                read_at.append(time.time())
            return reply

        meter.answer = timed
        back = []

        def director() -> None:
            try:
                # 12 polls, ~6 s offline: readings are stamped in whole seconds, so a second or two
                # of them could not be told from readings taken after the broker came back
                assert wait_until(lambda: len(read_at) >= 48, 40), "the board did not poll its meter"
                back.append(time.time())
                broker.start()
                mended = lambda: any(h.get("clock", {}).get("mended") for h in sub.decoded("health"))  # noqa: E731
                assert wait_until(mended, 30), "no mended record reported"
            except AssertionError as exc:
                errors.append(exc)

        with PtyMeter(meter) as pty:
            cfg = tmp_path / "fw.json"
            board = compiled(str(tmp_path), pty.path, broker.port)
            board["ring"]["slots"] = 64  # room to wait for NTP: the wait ends when the ring is half full
            cfg.write_text(dumps(board))
            t = threading.Thread(target=director, daemon=True)
            t.start()
            res = mpvm.run(RP2_RUN % {"run_ms": 20000},
                           files={"/config.json": str(cfg), "/ntptime.py": str(fake)})
            t.join(30)
        wait_until(lambda: sub.readings() and max(r[2] for r in sub.readings()) >= back[0], 5)
        readings = sub.readings()
        got_alarms = sub.decoded("alarm")
        health = sub.decoded("health")
        sub.close()
    finally:
        broker.close()
    assert res.returncode == 0, res.stderr[-3000:]
    assert not errors, (errors, res.values())
    out = res.stdout + res.stderr
    assert "clock set by NTP" in out, out[-3000:]
    summary = res.values()[-1]
    assert summary["ntp"] == fails + 1  # at boot (failed), at the first connect (set, or failed and retried)
    assert summary["epoch"] == 0  # this port counts from 1970, as an RP2040 (an ESP32: test_clock.py)
    assert res.host["wdt_timeout"] == 8000 and res.host["wdt_max_gap_ms"] < 8000  # armed, and fed

    before = [r for r in readings if r[2] < back[0] - 2]  # mended times are right within a second
    assert len(before) >= 6, "readings taken while the broker was away: %d" % len(before)  # 3 a poll
    for name, _value, t in readings:  # each at the time the meter answered, not in 2000 or 2021
        assert min(abs(t - at) for at in read_at) <= 2.5, (name, t, read_at[0], read_at[-1])
    if fails == 1:
        assert [a["point"] for a in got_alarms] == ["voltage_a"]
        assert abs(got_alarms[0]["time"] - read_at[0]) <= 5, (got_alarms[0], read_at[0])
    else:
        assert got_alarms == []
        # the board said so while its readings waited (health each second, NTP retried after 3 s)
        clocks = [h["clock"] for h in health]
        assert any(c["waiting"] and not c["set"] for c in clocks), clocks
    last = health[-1]["clock"]
    assert last["set"] is True and last["unmended"] == 0 and last["mended"] >= 3, last
    assert last["waiting"] is False
    assert summary["counters"]["mended"] >= 3 and summary["counters"]["unmended"] == 0
