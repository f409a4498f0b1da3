"""DL/T 645 follow-up frames (B1 -> C=12 -> B2 .. 92) and block points (0001FF00 tariffs) at the wire:
the driver against a fake meter and the simulator, and `fieldlink read` printing the tariff points."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from typing import Any

import pytest

from agent.config_model import BusConfig, DeviceConfig
from agent.drivers import make_driver
from agent.link import open_link
from agent.tests.fakes import FakeMeter645
from hil_tests.buses import VirtualBus
from protocols import dlt645
from protocols.errors import FrameError
from protocols.profiles import load_profile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A = "000000000161"
TARIFFS = ["energy_import_total", "energy_import_t1", "energy_import_t2", "energy_import_t3",
           "energy_import_t4"]
KWH = [12345.67, 1234.56, 4567.89, 3456.78, 3086.44]  # the tariffs add up to the total


def block(values: list[float]) -> bytes:
    return b"".join(dlt645.encode_value(v, "XXXXXX.XX") for v in values)


def driver_for(path: str, points: list[str], **options: Any) -> Any:
    profile = load_profile("dlt645-3p")
    bus = BusConfig(name="l", port=path, baud=2400, parity="E", timeout_ms=300)
    device = DeviceConfig(id="e", bus="l", profile="dlt645-3p", address=A, points=points, options=options)
    return make_driver(device, profile, bus), bus


def test_b1_reply_is_followed_up_and_the_block_split_into_points():
    fake = VirtualBus("dlt645")
    try:
        raw = bytearray(block(KWH))
        raw[8:12] = b"\xff\xff\xff\xff"  # tariff 2 not available: that point only is bad
        fake.devices["m"] = FakeMeter645(A, {"0001FF00": bytes(raw)}, followup=8)
        driver, bus = driver_for(fake.path, TARIFFS)
        (request,) = driver.requests  # five points, one request
        assert request.di == "0001FF00" and [off for _, off in request.points] == [0, 4, 8, 12, 16]
        assert (request.request_bytes, request.reply_bytes) == (20, 36)  # 12 + DI + 5 x 4 bytes
        with open_link(bus) as link:
            result = driver.read(link, request)
        scale = driver.profile.point("energy_import_t1").scale
        values = dict(result.values)
        for name, kwh in zip(TARIFFS, KWH, strict=True):
            if name != "energy_import_t2":
                assert values[name] == pytest.approx(kwh * scale), name
        assert result.bad == [("energy_import_t2", "not_available")]
        # on the wire: C=11, then C=12 with SEQ 1 and 2 (B1, B2, then the last frame 92)
        assert fake.devices["m"].requests == ["0001FF00", "0001FF00+1", "0001FF00+2"]
        sent = [f for f in dlt645.Dlt645FrameReader().feed(bytes(fake.received)) if not f.is_reply]
        assert [(f.control, f.data[4:]) for f in sent] == [(0x11, b""), (0x12, b"\x01"), (0x12, b"\x02")]
    finally:
        fake.close()


class LoopingMeter(FakeMeter645):
    """A meter that always says "more follows" (B2), whatever is asked."""

    def handle(self, frame: Any) -> bytes | None:
        if frame.control == 0x12:
            di, seq = dlt645.parse_followup_request(frame)
            self.requests.append("%s+%d" % (di, seq))
            return dlt645.followup_reply(self.address, di, b"\x00", seq, more=True)
        return super().handle(frame)


def test_follow_ups_are_bounded_with_a_readable_error():
    fake = VirtualBus("dlt645")
    try:
        fake.devices["m"] = LoopingMeter(A, {"0001FF00": block(KWH)}, followup=8)
        driver, bus = driver_for(fake.path, TARIFFS, max_followups=3)
        with open_link(bus) as link, pytest.raises(FrameError) as err:
            driver.read(link, driver.requests[0])
        assert "meter 000000000161 DI 0001FF00: more data announced after 3 follow-up frames (limit 3)" \
            in str(err.value)
        assert "device e" in str(err.value)
        assert fake.devices["m"].requests == ["0001FF00", "0001FF00+1", "0001FF00+2", "0001FF00+3"]
    finally:
        fake.close()


def test_seq_settings_for_meters_that_count_from_zero_without_seq_echo():
    class ZeroMeter(FakeMeter645):
        def handle(self, frame: Any) -> bytes | None:
            if frame.control == 0x12:
                di, seq = dlt645.parse_followup_request(frame)
                self.requests.append("%s+%d" % (di, seq))
                return self.frames[seq + 1] if seq + 1 < len(self.frames) else None
            reply = super().handle(frame)
            value = self.values[dlt645.parse_read_request(frame)]
            self.frames = dlt645.read_reply_frames(A, "0001FF00", value, 8, 0, False, 2)
            return reply

    fake = VirtualBus("dlt645")
    try:
        fake.devices["m"] = ZeroMeter(A, {"0001FF00": block(KWH)}, followup=8)
        driver, bus = driver_for(fake.path, TARIFFS, followup_seq_start=0, followup_reply_seq=False)
        with open_link(bus) as link:
            result = driver.read(link, driver.requests[0])
        assert [n for n, _ in result.values] == TARIFFS and result.bad == []
        assert fake.devices["m"].requests == ["0001FF00", "0001FF00+0", "0001FF00+1"]
    finally:
        fake.close()


def fieldlink(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_fieldlink_read_prints_the_tariff_points_from_the_simulator():
    from simulator.scenario import parse
    from simulator.site import Site

    text = """
[[bus]]
name = "meters"
line = "2400 8E1"
instant = true
[[bus.device]]
id = "e1"
profile = "dlt645-3p"
address = "000000000161"
faults = [{kind = "followup", size = 8}]
"""
    site = Site(parse(tomllib.loads(text), "test.toml"), start=1717200000.0, speed=0.0001)
    site.start()
    try:
        args = ["read", "--port", site.bus("meters").device_path, "--protocol", "dlt645",
                "--profile", "dlt645-3p", "--address", "161", "--timeout-ms", "500", "--verbose", "--si"]
        for name in ["energy_import", *TARIFFS]:
            args += ["--point", name]
        result = fieldlink(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        got = {}
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] in TARIFFS and parts[2] == "J":
                got[parts[0]] = float(parts[1])
        assert sorted(got) == sorted(TARIFFS), result.stdout
        assert sum(got[n] for n in TARIFFS[1:]) == pytest.approx(got["energy_import_total"])
        device = site.device("e1")
        now = site.clock.now()
        for name in TARIFFS:
            assert got[name] == pytest.approx(device.truth(name, now), abs=36000), name
        # -v shows the follow-up requests: C=12 with SEQ 1 and 2 (DI 0001FF00 and SEQ, each +33)
        assert "  tx FE FE FE FE 68 61 01 00 00 00 00 68 12 05 33 32 34 33 34 49 16" in lines
        assert any(line.startswith("  tx ") and " 68 12 05 33 32 34 33 35 " in line for line in lines)
    finally:
        site.stop()
