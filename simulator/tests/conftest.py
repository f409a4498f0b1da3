"""Fixtures for the simulator tests: sites built from inline TOML, started and always stopped."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Iterator

import pytest
import serial

from simulator.scenario import parse
from simulator.site import Site

START = 1717200000.0  # 2024-06-01T00:00:00Z: 08:00 local at the default UTC+8


@pytest.fixture
def make_site() -> Iterator[Callable[..., Site]]:
    """make_site(toml_text, **Site kwargs) -> a started Site, stopped after the test."""
    sites: list[Site] = []

    def build(text: str, **kw: object) -> Site:
        kw.setdefault("start", START)
        site = Site(parse(tomllib.loads(text), "test.toml"), **kw)  # type: ignore[arg-type]
        sites.append(site)
        return site.start()

    yield build
    for site in sites:
        site.stop()


def open_port(site: Site, bus: str, timeout: float = 2.0) -> serial.Serial:
    """A raw client on a bus pty. Parity N on purpose: a pty carries bytes, not bits, and some kernels
    refuse to re-apply even parity on a pty (EINVAL); the bus still times the line as configured."""
    return serial.Serial(site.bus(bus).device_path, 9600, timeout=timeout)


def open_url(site: Site, bus: str, kind: str = "rfc2217", timeout: float = 2.0,
             **settings: object) -> serial.Serial:
    """A pyserial client on a bus's RFC 2217 (or raw `socket`) server; settings default to the bus's."""
    info = site.bus(bus).describe()
    for key in ("baudrate", "bytesize", "parity", "stopbits"):
        settings.setdefault(key, info["baud" if key == "baudrate" else key])
    return serial.serial_for_url(info[kind], timeout=timeout, **settings)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `predicate` until it is true or the deadline passes (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def read_frame(port: serial.Serial, reader: object, timeout: float = 3.0) -> object:
    """Feed bytes from the port into a codec frame reader until it completes a frame (or time out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = port.read(max(1, port.in_waiting))
        if chunk:
            frames = reader.feed(chunk)  # type: ignore[attr-defined]
            if frames:
                return frames[0]
    return None


def read_silence(port: serial.Serial, seconds: float) -> bytes:
    """Everything that arrives within `seconds`."""
    deadline = time.monotonic() + seconds
    out = b""
    saved, port.timeout = port.timeout, 0.05
    try:
        while time.monotonic() < deadline:
            out += port.read(max(1, port.in_waiting))
    finally:
        port.timeout = saved
    return out


LAMPS_AND_METER = """
[[bus]]
name = "street"
line = "9600 8N1"
instant = true
[[bus.device]]
id = "lamp-{n}"
count = 3
profile = "generic-lamp"
address = 1
params = { dim = 0.8 }
[[bus.device]]
id = "meter"
profile = "dtsu666"
address = 10
[[bus.device]]
id = "cabinet"
profile = "lighting-cabinet"
address = 20
"""

METERS = """
[[bus]]
name = "meters"
line = "2400 8E1"
instant = true
[[bus.device]]
id = "e1"
profile = "dlt645-3p"
address = "000000000161"
[[bus.device]]
id = "e97"
profile = "dlt645-1997"
address = "000000000197"
[[bus.device]]
id = "w1"
profile = "cjt188-water"
address = "00000000123456"
"""
