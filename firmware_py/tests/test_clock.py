"""The board's clock after power-up (firmware_py/clock.py): an RP2040 starts it at 2021-01-01, which the
built-in 2020 floor took for a set clock; the compiled config's `clock_floor` does not. What the board
records before NTP sets the clock is stamped from 2000-01-01 and marked in the ring with its boot; the
uplink holds this boot's for a while for NTP, moves those times to POSIX time when NTP set the clock in
the same boot, and sends an earlier boot's as they are (CPython; the same code under MicroPython:
test_mpvm_clock.py)."""

from __future__ import annotations

import asyncio
import io
import json
from types import SimpleNamespace

import cbor2
import pytest

from firmware_py import clock, net
from firmware_py.packs import UNTIMED, Packs
from firmware_py.uplink import Uplink
from protocols import alarms, cbor, senml
from protocols.commands import CLOCK_SET_AFTER
from protocols.stamps import UNSET_BASE

RP2_START = 1609459200  # 2021-01-01: what MicroPython's rp2 port sets its clock to at power-up
MADE = 1_796_000_000  # when the host compiled the config
REAL = MADE + 3 * 86400  # the real time at this power-up


@pytest.fixture(autouse=True)
def fresh_clock():
    clock.reset()
    clock.set_floor(MADE - 86400)
    yield
    clock.reset()


def test_an_rp2040_clock_after_power_up_is_not_set(monkeypatch) -> None:
    monkeypatch.setattr(net, "_checked", [REAL])  # NTP set it at REAL
    assert RP2_START > CLOCK_SET_AFTER  # the built-in floor alone would take it for a set clock
    assert not clock.is_set(RP2_START + 120)
    assert net.clock_due(RP2_START + 120)  # so NTP is asked again at each connect
    assert clock.is_set(REAL) and not net.clock_due(REAL)
    clock.reset()
    clock.set_floor(None)  # a config compiled before clock_floor: the built-in floor
    assert clock.floor() == CLOCK_SET_AFTER and clock.is_set(RP2_START)
    clock.set_floor(MADE - 86400)
    assert clock.floor() == MADE - 86400


def test_stamps_count_from_2000_until_the_clock_is_set_and_the_jump_mends_them() -> None:
    assert [clock.stamp(RP2_START + s) for s in (30, 31, 45)] == [UNSET_BASE, UNSET_BASE + 1, UNSET_BASE + 15]
    assert clock.shift() == 0  # not known before NTP
    clock.jumped(RP2_START + 50, REAL)  # NTP: the clock read 50 s after the first stamp's 30
    assert UNSET_BASE + 15 + clock.shift() == REAL - 5  # the third stamp, 5 s before NTP
    assert clock.stamp(REAL + 1) == REAL + 1
    clock.jumped(REAL + 86400, REAL + 86401)  # the daily resync of a set clock changes nothing
    assert UNSET_BASE + clock.shift() == REAL - 20


class FakeHw:
    def open_ring(self, path: str, slots: int, slot_size: int):
        return io.BytesIO(b"\xff" * (slots * slot_size))


CFG = {"ring": {"path": "/r", "slots": 8, "slot_size": 256}, "gateway": {"base_name": "gw:"},
       "batch": {"max_records": 50, "max_age": 5, "max_bytes": 1024}}


def uplink(packs: Packs, boot: int) -> SimpleNamespace:
    """The uplink's pump on `packs`' ring, first connected at ticks 0; `sent` [(topic, payload)]."""
    sent: list = []

    async def publish(topic, payload, qos, retain):
        sent.append((topic, bytes(payload)))
        return len(sent)

    counters = {"mended": 0, "unmended": 0}
    up = SimpleNamespace(window=16, inflight_pid=[0] * 16, inflight_seq=[0] * 16, cursor=0, ring=packs.ring,
                         txbuf=bytearray(packs.ring.max_payload), topics=("data", "alarm", "event"),
                         client=SimpleNamespace(publish=publish), boot=boot, counters=counters, sent=sent,
                         up_since=0, waiting=False, hold_over=False, hold_looked=0, packs=packs)
    up.mend = lambda view, mine: Uplink.mend(up, view, mine)
    up.holding = lambda: Uplink.holding(up)
    return up


def pump(packs: Packs, boot: int) -> tuple:
    """Everything in the ring, as the uplink publishes it: [(topic, payload)], counters."""
    up = uplink(packs, boot)
    asyncio.run(Uplink._pump(up))
    return up.sent, up.counters


def times(payload: bytes) -> list:
    return [r["t"] for r in senml.resolve(cbor.loads(payload))]


def test_what_was_recorded_before_ntp_goes_out_in_posix_time() -> None:
    packs = Packs(CFG, FakeHw())
    packs.boot = 7
    packs.add(b"e1/", b"p", 1.5, RP2_START + 30)
    packs.add(b"e1/", b"q", 2, RP2_START + 40)
    alarm = alarms.alarm("e1", None, "comms", "no answer", True, clock.stamp(RP2_START + 41), 7 << 16 | 1)
    packs.add_alarm(cbor.dumps(alarm), True)
    packs.add(b"e1/", b"p", 1.6, RP2_START + 45)
    clock.jumped(RP2_START + 50, REAL)
    packs.add(b"e1/", b"p", 1.7, REAL + 2)  # a new pack: the clock is set now
    packs.commit()
    assert [r[0] & UNTIMED for r in raw_records(packs)] == [UNTIMED, UNTIMED, UNTIMED, 0]
    sent, counters = pump(packs, 7)
    assert [topic for topic, _ in sent] == ["data", "alarm", "data", "data"]
    assert times(sent[0][1]) == [REAL - 20, REAL - 10]  # 20 and 10 s before NTP, as they were read
    assert cbor2.loads(sent[1][1])["time"] == REAL - 9
    assert times(sent[2][1]) == [REAL - 5]
    assert times(sent[3][1]) == [REAL + 2]
    assert counters == {"mended": 3, "unmended": 0}
    assert [r[0] & UNTIMED for r in raw_records(packs)] == [UNTIMED, UNTIMED, UNTIMED, 0]  # the ring kept


def test_an_earlier_boots_times_go_out_as_they_are() -> None:
    packs = Packs(CFG, FakeHw())
    packs.boot = 6  # recorded in boot 6, which lost power before NTP
    packs.add(b"e1/", b"p", 1.5, RP2_START + 30)
    packs.commit()
    sent, counters = pump(packs, 7)  # at once: no NTP answer can mend them
    assert times(sent[0][1]) == [UNSET_BASE] and counters == {"mended": 0, "unmended": 1}


def unset_records(n: int) -> Packs:
    packs = Packs(CFG, FakeHw())
    packs.boot = 7
    for i in range(n):  # one pack each: a poll 10 s apart, max_age 5 s
        packs.add(b"e1/", b"p", 1.5 + i, RP2_START + 30 + 10 * i)
        packs.commit()
    return packs


def test_this_boots_unset_times_wait_for_ntp_and_go_out_mended(monkeypatch) -> None:
    """NTP failed at the connect (one lost UDP answer, the router's NTP not up yet): what was read
    before waits in the ring instead of going out dated 2000, and goes out in POSIX time once NTP
    answers a minute later. Nothing is read from the ring while it waits."""
    from firmware_py import rt

    ticks = [1000]
    monkeypatch.setattr(rt, "ticks_ms", lambda: ticks[0])
    packs = unset_records(2)
    up = uplink(packs, 7)
    asyncio.run(Uplink._pump(up))
    assert up.sent == [] and up.waiting
    reads = []
    read = packs.ring.read
    monkeypatch.setattr(packs.ring, "read", lambda seq, buf: reads.append(seq) or read(seq, buf))
    ticks[0] = 60000
    asyncio.run(Uplink._pump(up))  # the session pumps every 10 ms while it waits
    assert up.sent == [] and reads == []
    clock.jumped(RP2_START + 70, REAL)  # NTP answers at the retry
    asyncio.run(Uplink._pump(up))
    assert up.sent == []  # the wait is looked at once a second
    ticks[0] += 1000
    asyncio.run(Uplink._pump(up))
    assert [times(p) for _, p in up.sent] == [[REAL - 40], [REAL - 30]]
    assert up.counters == {"mended": 2, "unmended": 0} and not up.waiting


def test_an_alarm_raised_before_ntp_does_not_wait(monkeypatch) -> None:
    """A gas or water warning matters now: with an alarm of unset-clock time in the ring nothing waits;
    all goes out at once, in order, with times from 2000."""
    from firmware_py import rt

    monkeypatch.setattr(rt, "ticks_ms", lambda: 1000)
    monkeypatch.setattr("firmware_py.log.warning", lambda text: None)
    packs = unset_records(1)
    alarm = alarms.alarm("e1", None, "comms", "no answer", True, clock.stamp(RP2_START + 45), 7 << 16 | 1)
    packs.add_alarm(cbor.dumps(alarm), True)
    packs.add(b"e1/", b"p", 9, RP2_START + 50)
    packs.commit()
    up = uplink(packs, 7)
    asyncio.run(Uplink._pump(up))
    assert [topic for topic, _ in up.sent] == ["data", "alarm", "data"]
    assert cbor2.loads(up.sent[1][1])["time"] == UNSET_BASE + 15
    assert up.counters == {"mended": 0, "unmended": 3}


@pytest.mark.parametrize("why", ["time", "room"])
def test_unset_times_go_out_as_they_are_after_the_wait_or_when_the_ring_fills(monkeypatch, why) -> None:
    """A network without NTP: after UNTIMED_HOLD_MS connected, or once the ring is half full (the wait
    must not cost readings), they go out with their times from 2000, said once, and nothing waits again
    in this boot."""
    from firmware_py import rt
    from firmware_py.uplink import UNTIMED_HOLD_MS

    ticks = [0]
    monkeypatch.setattr(rt, "ticks_ms", lambda: ticks[0])
    said: list = []
    monkeypatch.setattr("firmware_py.log.warning", said.append)
    packs = unset_records(3)
    up = uplink(packs, 7)
    asyncio.run(Uplink._pump(up))
    assert up.sent == []
    if why == "time":
        ticks[0] = UNTIMED_HOLD_MS - 1000
        asyncio.run(Uplink._pump(up))
        assert up.sent == []
        ticks[0] = UNTIMED_HOLD_MS
    else:
        ticks[0] = 120000
        packs.add(b"e1/", b"p", 4.5, RP2_START + 60)  # a fourth: the ring (8 slots) half full
        packs.commit()
    asyncio.run(Uplink._pump(up))
    sent = len(up.sent)
    assert sent == (3 if why == "time" else 4) and times(up.sent[0][1]) == [UNSET_BASE]
    assert up.counters == {"mended": 0, "unmended": sent}
    assert len(said) == 1 and said[0].startswith("clock still not set: publishing readings")
    packs.add(b"e1/", b"p", 9, RP2_START + 100)  # read after the wait: out at once
    packs.commit()
    asyncio.run(Uplink._pump(up))
    assert len(up.sent) == sent + 1 and len(said) == 1


def raw_records(packs: Packs) -> list:
    ring = packs.ring
    buf = bytearray(ring.max_payload)
    out = []
    seq = ring.next_pending(0)
    while seq:
        out.append(bytes(ring.read(seq, buf)))
        seq = ring.next_pending(seq)
    return out


def test_a_relay_action_waits_for_the_clock() -> None:
    """A DL/T 645 relay command carries a validity time from the board's clock: with the clock at
    2021 the meter would refuse it (or worse); the board refuses it itself and sends nothing."""
    from firmware_py import commands, rt

    sent: list = []

    class Bus:
        async def action(self, inv, d, ws, until):
            sent.append(until)
            return 1

    finished: list = []
    remote = SimpleNamespace(finish=lambda cid, ok, ack: finished.append(cbor2.loads(ack)))
    box = commands.Commands(SimpleNamespace(), [], {"acks_dropped": 0}, remote)
    now = [RP2_START + 60]
    saved = rt.now
    rt.now = lambda: now[0]
    try:
        asyncio.run(box.run_job(Bus(), ["c1", 0, -1, "relay_trip", None, False]))
        assert sent == [] and finished[-1]["ok"] is False and finished[-1]["error"] == commands.NO_CLOCK
        now[0] = REAL
        asyncio.run(box.run_job(Bus(), ["c2", 0, -1, "relay_trip", None, False]))
        assert len(sent) == 1 and sent[0][0] == rt.localtime(REAL)[0] and finished[-1]["ok"] is True
    finally:
        rt.now = saved


def test_the_compiled_config_carries_the_day_before_it_was_made() -> None:
    import tempfile

    from agent.config import load_config
    from agent.firmware.config import compile_config
    from firmware_py.tests.test_quality import site_toml
    from protocols import compiled

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compile_config(load_config(site_toml(tmp, "/dev/null")), board="host", now=MADE)
    assert cfg["clock_floor"] == MADE - 86400
    compiled.check(cfg)
    cfg["clock_floor"] = "yesterday"
    with pytest.raises(compiled.CompiledError, match="clock_floor"):
        compiled.check(cfg)


def test_ids_are_not_forgotten_when_the_clock_jumps(tmp_path) -> None:
    """An id is remembered for `id_window` from the board's now; with the clock at 2021 that time
    passes the moment NTP sets it, and a forged NTP answer can move the clock days ahead and back:
    the board forgets an id only when its memory is full, never because the clock passed its time."""
    from firmware_py import commands
    from protocols import commands as rules

    spec = {"signed": "switching", "id_window": 3600}
    remote = commands.Remote(spec, "fw-01", str(tmp_path / "ids"))

    def run(cid: str, now: int) -> rules.Command:
        raw = cbor.dumps({"id": cid, "device": "e1", "point": "p", "value": 1})
        cmd = rules.open_command(raw, [], "fw-01")
        assert remote.check(cmd, False, now) is None
        remote.begin(cmd, now)
        remote.finish(cid, True, b"\xa0")
        return cmd

    first = run("c1", RP2_START + 60)  # before NTP
    run("c2", REAL + 10 * 86400)  # after a forged answer ten days ahead
    for r in (remote, commands.Remote(spec, "fw-01", str(tmp_path / "ids"))):  # and after a reboot
        assert r.check(first, False, REAL) == b"\xa0"  # a repeat: the original ack, not a second run
    for i in range(commands.LIMIT - 1):  # a full memory forgets the id that expires first
        run("n%d" % i, REAL + i)
    assert remote.check(first, False, REAL) is None and remote.memory.evicted == 1


def test_posix_time_on_a_port_whose_epoch_is_2000(monkeypatch) -> None:
    """MicroPython's esp32 port counts time.time() from 2000-01-01 (its ntptime sets the clock so): the
    board must still stamp, judge its clock and date relay deadlines in POSIX seconds. Before rt.EPOCH,
    an ESP32 read 2026 as 1996, took its clock for never set and stamped every reading 30 years early."""
    from firmware_py import rt

    posix = 1_796_600_000  # 2026-12-06 23:33:20 UTC

    class Esp32Time:  # the esp32 port's time module after NTP
        @staticmethod
        def gmtime(t):
            import time as host

            return host.gmtime(t + 946684800)

        localtime = gmtime

        @staticmethod
        def time():
            return posix - 946684800

    assert rt.epoch_of(Esp32Time) == 946684800 and rt.epoch_of(__import__("time")) == 0
    monkeypatch.setattr(rt, "time", Esp32Time)
    monkeypatch.setattr(rt, "EPOCH", rt.epoch_of(Esp32Time))
    assert rt.now() == posix and clock.is_set(rt.now())
    assert rt.localtime(posix) == (2026, 12, 6, 23, 33, 20)


def test_a_relay_deadline_is_the_meters_local_time_on_board_and_agent(tmp_path) -> None:
    """A DL/T 645 relay command carries until when it is valid, which the meter compares with its own
    clock, set to local time. MicroPython has no time zones: the board sent UTC, 8 h in the past for a
    meter in Shandong. With [gateway] timezone the board gets the compiled zone (config `zone`) and the
    agent the same name; both send the same local deadline."""
    from agent.config import load_config
    from agent.drivers import make_driver
    from agent.firmware.config import compile_config
    from firmware_py import commands, rt
    from protocols.zone import zone_from_dict

    text = """format = 1
[gateway]
site = "lab"
id = "fw-01"
latitude = 36.65
longitude = 117.12
timezone = "Asia/Shanghai"
[broker]
host = "127.0.0.1"
[[buses]]
name = "meters"
port = "/dev/null"
baud = 2400
[[devices]]
id = "e1"
bus = "meters"
profile = "dlt645-1p"
address = "000000000161"
"""
    (tmp_path / "site.toml").write_text(text)
    config = load_config(str(tmp_path / "site.toml"))
    cfg = compile_config(config, board="host", now=REAL)
    assert cfg["zone"]["name"] == "Asia/Shanghai"
    sent: list = []

    class Bus:
        async def action(self, inv, d, ws, until):
            sent.append(until)
            return 1

    remote = SimpleNamespace(finish=lambda cid, ok, ack: None)
    box = commands.Commands(SimpleNamespace(), [], {"acks_dropped": 0}, remote, zone_from_dict(cfg["zone"]))
    saved = rt.now
    rt.now = lambda: REAL
    try:
        asyncio.run(box.run_job(Bus(), ["c1", 0, -1, "relay_trip", None, False]))
    finally:
        rt.now = saved
    driver = make_driver(config.devices[0], config.profiles["dlt645-1p"], config.buses[0])
    driver.timezone = config.gateway.timezone
    assert sent == [driver.deadline(REAL)] == [rt.localtime(REAL + 300 + 8 * 3600)]


def test_firmware_config_warns_of_relays_without_a_time_zone(tmp_path, capsys) -> None:
    from agent.cli import main

    site = tmp_path / "relay.toml"
    site.write_text('format = 1\n[gateway]\nsite = "lab"\nid = "fw-01"\n[broker]\nhost = "127.0.0.1"\n'
                    '[[buses]]\nname = "meters"\nport = "/dev/null"\nbaud = 2400\n[[devices]]\nid = "e1"\n'
                    'bus = "meters"\nprofile = "dlt645-1p"\naddress = "000000000161"\n')
    assert main(["firmware", "config", str(site), "-o", str(tmp_path / "fw.json")]) == 0
    err = capsys.readouterr().err
    assert "%s: warning: relay commands carry a deadline in the meter's local time" % site in err
    assert "zone" not in json.loads((tmp_path / "fw.json").read_text())


def test_an_rp2040_gets_a_watchdog_it_can_arm() -> None:
    """machine.WDT on an RP2040 refuses more than 8388 ms ("timeout exceeds 8388"), and the default is
    30 s: the firmware raised at start, main.py printed it and spun with no watchdog armed, for ever.
    The hardware timeout is capped per port; a stuck task is still one silent for watchdog_ms / 2."""
    from firmware_py.app import wdt_timeout

    assert wdt_timeout(30000, "rp2") == 8000 <= 8388
    assert wdt_timeout(5000, "rp2") == 5000
    assert wdt_timeout(30000, "esp32") == 30000 and wdt_timeout(30000, "webassembly") == 30000


def test_firmware_config_warns_of_host_names_on_an_rp2040(tmp_path, capsys) -> None:
    """An RP2040's watchdog allows 8 s, and a DNS lookup blocks the board: a name whose lookup times out
    resets it. `fieldlink firmware config --board rp2040` names each host that is not an address."""
    from agent.cli import main

    site = tmp_path / "site.toml"
    site.write_text('format = 1\n[gateway]\nsite = "lab"\nid = "fw-01"\n[broker]\nhost = "mqtt.example"\n')
    out = str(tmp_path / "fw.json")
    assert main(["firmware", "config", str(site), "--board", "rp2040", "-o", out]) == 0
    err = capsys.readouterr().err
    assert "broker host mqtt.example is a name: on an RP2040 a DNS lookup" in err
    assert "NTP host (--ntp-host) pool.ntp.org is a name" in err
    site.write_text(site.read_text().replace("mqtt.example", "10.0.0.2"))
    args = ["firmware", "config", str(site), "--board", "rp2040", "--ntp-host", "10.0.0.1", "-o", out]
    assert main(args) == 0
    assert "is a name" not in capsys.readouterr().err
    site.write_text(site.read_text().replace("10.0.0.2", "mqtt.example"))
    assert main(["firmware", "config", str(site), "--board", "esp32", "-o", out]) == 0
    assert "is a name" not in capsys.readouterr().err  # an ESP32's watchdog is the 30 s asked for


def test_a_site_with_schedules_and_relays_compiles_one_time_zone(tmp_path) -> None:
    """Lighting schedules and relay deadlines read the same local time: the compiled config carries the
    zone once, top-level (format 6; format 5 had it in `lighting` and again for relays), and a config
    with schedules but no zone is refused, naming the key."""
    import pytest

    from agent.config import load_config
    from agent.firmware.config import compile_config, dumps
    from hil_tests.sample_configs import SUN, bus, group, lamp, schedule, site_head
    from protocols import compiled

    meter = ('[[buses]]\nname = "meters"\nport = "/dev/null"\nbaud = 2400\n[[devices]]\nid = "e1"\n'
             'bus = "meters"\nprofile = "dlt645-1p"\naddress = "000000000161"\n')
    text = "\n".join([site_head(signed=None), bus(), lamp(1), group("street", ["lamp-01"]),
                      schedule("street", SUN, group="street"), meter])
    (tmp_path / "site.toml").write_text(text)
    cfg = compile_config(load_config(str(tmp_path / "site.toml")), board="host", now=REAL)
    assert cfg["actions"] and "schedules" in cfg["lighting"]  # both users of the zone
    assert "zone" not in cfg["lighting"] and cfg["zone"]["name"] == "Asia/Shanghai"
    assert dumps(cfg).count('"Asia/Shanghai"') == 1
    del cfg["zone"]
    with pytest.raises(compiled.CompiledError, match=r"config\.json: zone: lighting schedules need"):
        compiled.check(cfg)
