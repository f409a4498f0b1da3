"""The agent's serial link through serial device servers: rfc2217:// and socket:// ports of the simulator
(pyserial's URL handlers underneath), and what it says when one cannot be opened or goes away."""

from __future__ import annotations

import socket
import time
import tomllib

import pytest

from agent.config_model import BusConfig, DeviceConfig
from agent.drivers import make_driver
from agent.link import LinkClosed, LinkTimeout, open_link
from protocols.profiles import load_profile
from simulator.scenario import parse
from simulator.site import Site

SITE = """
[[bus]]
name = "meters"
line = "2400 8E1"
instant = true
pty = false
[[bus.device]]
id = "e1"
profile = "dlt645-3p"
address = "000000000161"
"""


@pytest.fixture
def meters():  # type: ignore[no-untyped-def]
    site = Site(parse(tomllib.loads(SITE), "urls.toml"), start=1717200000.0, speed=1e-6).start()
    yield site
    site.stop()


def read_meter(site: Site, port: str, **settings: object) -> dict:
    settings = {"baud": 2400, "parity": "E", "timeout_ms": 500, **settings}
    bus = BusConfig(name="meters", port=port, **settings)  # type: ignore[arg-type]
    profile = load_profile("dlt645-3p")
    driver = make_driver(DeviceConfig(id="e1", bus="meters", profile="dlt645-3p", address="000000000161"),
                         profile, bus)
    values: dict = {}
    with open_link(bus) as link:
        for request in driver.requests[:3]:
            values.update(driver.read(link, request).values)
    return values


@pytest.mark.parametrize("kind", ["rfc2217", "socket"])
def test_the_agent_reads_a_meter_through_a_serial_device_server(meters, kind: str) -> None:  # type: ignore[no-untyped-def]
    url = meters.bus("meters").describe()[kind]
    values = read_meter(meters, url)
    meter = meters.device("e1")
    assert values and all(v == pytest.approx(meter.truth(p, meters.clock.now())) for p, v in values.items())
    client = meters.bus("meters").servers[kind].counts
    assert client["connections"] == 1


def test_wrong_settings_through_rfc2217_get_no_reply(meters) -> None:  # type: ignore[no-untyped-def]
    url = meters.bus("meters").describe()["rfc2217"]
    with pytest.raises(LinkTimeout, match="no reply"):
        read_meter(meters, url, baud=9600, parity="N")
    assert meters.device("e1").counts["requests"] == 0


def test_open_failures_name_the_url_and_what_to_check(meters) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]  # bound, never listening: connections are refused
        for url in ("rfc2217://127.0.0.1:%d" % free, "socket://127.0.0.1:%d" % free):
            bus = BusConfig(name="meters", port=url, baud=2400, parity="E")
            with pytest.raises(LinkClosed) as err:
                open_link(bus).open()
            text = str(err.value)
            assert text.startswith("meters: cannot open %s: " % url) and text.count(url) == 1
            assert "refused" in text and "serial device server at 127.0.0.1:%d" % free in text
    raw = meters.bus("meters").describe()["socket"].split("://")[1]
    with pytest.raises(LinkClosed, match="does not speak RFC 2217 .* use socket://%s" % raw):
        open_link(BusConfig(name="meters", port="rfc2217://" + raw, baud=2400, parity="E")).open()


def test_a_server_that_goes_away_closes_the_link_naming_the_url(meters) -> None:  # type: ignore[no-untyped-def]
    url = meters.bus("meters").describe()["rfc2217"]
    bus = BusConfig(name="meters", port=url, baud=2400, parity="E", timeout_ms=500)
    link = open_link(bus)
    try:
        link.open()
        meters.stop()
        started = time.monotonic()
        with pytest.raises(LinkClosed) as err:
            for _ in range(20):
                link.transact(b"\x68", _NoFrames())
        assert url in str(err.value) and "serial device server closed the connection" in str(err.value)
        assert time.monotonic() - started < 2.5  # not pyserial's 3 s wait for a purge answer
    finally:
        link.close()


class _NoFrames:
    """A frame reader that never completes a frame (the test only needs the link's errors)."""

    def feed(self, chunk: bytes) -> list:
        return []

    def take_errors(self) -> list:
        return []

    def reset(self) -> None:
        return None
