"""DL/T 645 meters at the wire: the PyPI `dlt645` client (independent) and our own codec."""

from __future__ import annotations

import time

import pytest
from dlt645 import MeterClientService

from protocols import dlt645
from protocols.errors import AbnormalReply
from simulator.tests.conftest import METERS, open_port, read_frame, read_silence


@pytest.fixture
def meters(make_site):  # type: ignore[no-untyped-def]
    return make_site(METERS)


def ask(port, request: bytes) -> dlt645.Frame:  # type: ignore[no-untyped-def]
    port.reset_input_buffer()
    port.write(request)
    frame = read_frame(port, dlt645.Dlt645FrameReader())
    assert frame is not None, "no reply"
    return frame  # type: ignore[return-value]


def test_pypi_dlt645_client_reads_the_meter(meters) -> None:  # type: ignore[no-untyped-def]
    # parity N: see conftest.open_port. The library sends the address bytes in the order given,
    # i.e. wire order (A0 first), so meter 000000000161 is "610100000000" to it.
    svc = MeterClientService.new_rtu_client(meters.bus("meters").device_path, 2400, 8, 1, "N", 3.0)
    try:
        svc.set_address("610100000000")
        meter = meters.device("e1")
        reads = ((0x00010000, "energy_import", svc.read_00), (0x02010100, "voltage_a", svc.read_02),
                 (0x02020200, "current_b", svc.read_02), (0x02030000, "active_power", svc.read_02))
        for _di, point, read in reads:
            before = time.time()
            item = read(_di)
            after = time.time()
            assert item is not None, point
            scale = meter.profile.point(point).scale
            got = item.value * scale
            truths = [meter.truth(point, meters.clock.sim(w)) for w in (before, after)]
            assert any(got == pytest.approx(t) for t in truths), (point, got, truths)
    finally:
        svc.disconnect()


def test_own_codec_reads_and_blocks(meters) -> None:  # type: ignore[no-untyped-def]
    with open_port(meters, "meters") as port:
        frame = ask(port, dlt645.read_request("000000000161", "0201FF00"))
        raw = dlt645.parse_read_reply(frame, "0201FF00", address="000000000161")
        volts = dlt645.decode_block(raw, "XXX.X")
        assert len(volts) == 3 and all(200 < v[0] < 240 and v[1] == dlt645.QUALITY_GOOD for v in volts)
        # abbreviated address: the meter answers with its full address
        frame = ask(port, dlt645.read_request(dlt645.abbreviated_address("000000000161", 2), "00010000"))
        assert frame.address == "000000000161"
        # an unknown DI: abnormal reply "no requested data"
        frame = ask(port, dlt645.read_request("000000000161", "03300000"))
        with pytest.raises(AbnormalReply) as err:
            dlt645.parse_read_reply(frame, "03300000")
        assert err.value.code == 0x02
        # the meter's clock follows simulated local time
        frame = ask(port, dlt645.read_request("000000000161", "04000102"))
        hhmmss = dlt645.decode_value(dlt645.parse_read_reply(frame, "04000102"), "hhmmss")
        assert str(hhmmss).startswith("08")  # 2024-06-01 00:00Z is 08:00 at UTC+8


def test_1997_meter(meters) -> None:  # type: ignore[no-untyped-def]
    with open_port(meters, "meters") as port:
        frame = ask(port, dlt645.read_request("000000000197", "9010", version=1997))
        kwh = dlt645.decode_value(dlt645.parse_read_reply(frame, "9010", version=1997), "XXXXXX.XX")
        assert kwh * 3600000 == pytest.approx(meters.device("e97").truth("energy_import", meters.clock.now()))


def test_read_address_and_relay(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS.split("[[bus.device]]\nid = \"e97\"")[0])  # one DL/T 645 meter on the bus
    with open_port(site, "meters") as port:
        frame = ask(port, dlt645.read_address_request())
        assert dlt645.parse_read_address_reply(frame) == "000000000161"
        assert site.device("e1").truth("active_power", site.clock.now()) > 0
        frame = ask(port, dlt645.relay_request("000000000161", dlt645.RELAY_TRIP, (2099, 1, 1, 0, 0, 0)))
        assert frame.control == 0x9C
        assert site.device("e1").truth("active_power", site.clock.now()) == 0
        now = site.clock.now()
        energy = site.device("e1").quantity("energy_import", now + 2)
        assert site.device("e1").quantity("energy_import", now + 600) == energy  # no power, no energy
        # broadcast time sync: obeyed silently
        port.write(dlt645.time_sync_request((2024, 6, 1, 8, 0, 0)))
        assert read_silence(port, 0.3) == b""
