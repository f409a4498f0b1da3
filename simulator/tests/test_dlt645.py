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


RELAY_METER = """
[[bus]]
name = "meters"
line = "2400 8E1"
instant = true
[[bus.device]]
id = "e1"
profile = "dlt645-1p"
address = "000000000161"
params = { password = "02123456", operator = "00000007" }
"""


def test_relay_needs_the_meter_password_and_operator(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(RELAY_METER)
    e1 = site.device("e1")
    until = (2099, 1, 1, 0, 0, 0)
    good, operator = bytes.fromhex("02123456"), bytes.fromhex("00000007")
    with open_port(site, "meters") as port:
        for password, op in ((dlt645.ZERO4, operator), (bytes.fromhex("02123457"), operator),
                             (good, dlt645.ZERO4)):
            frame = ask(port, dlt645.relay_request("000000000161", dlt645.RELAY_TRIP, until, password, op))
            assert frame.control == 0xDC and frame.data == b"\x04"  # password error / not authorised
            with pytest.raises(AbnormalReply, match="password error or not authorised"):
                dlt645.parse_reply(frame, 0x1C)
        assert e1.counts["writes"] == 0 and e1.quantity("relay", site.clock.now()) == "closed"
        assert e1.truth("active_power", site.clock.now()) > 0
        frame = ask(port, dlt645.relay_request("000000000161", dlt645.RELAY_TRIP, until, good, operator))
        assert frame.control == 0x9C and e1.quantity("relay", site.clock.now()) == "open"
        now = site.clock.now()
        assert e1.truth("active_power", now) == 0 and e1.truth("current", now) == 0
        assert e1.quantity("energy_import", now + 3600) == e1.quantity("energy_import", now + 2)
        close = dlt645.RELAY_CLOSE_DIRECT
        frame = ask(port, dlt645.relay_request("000000000161", close, until, good, operator))
        assert frame.control == 0x9C and e1.quantity("relay", site.clock.now()) == "closed"
        assert e1.truth("active_power", site.clock.now()) > 0
        assert e1.counts["writes"] == 2 and e1.counts["relay_requests"] == 5


def test_bad_password_param_names_the_device(make_site) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"device e1: params\.password must be 8 hex digits"):
        make_site(RELAY_METER.replace('"02123456"', '"0212"'))


def _mantissas(raw: bytes) -> list[int]:
    return [dlt645.decode_raw(raw[i:i + 4], "XXXXXX.XX") for i in range(0, len(raw), 4)]


def test_tariff_block_sums_to_the_total(meters) -> None:  # type: ignore[no-untyped-def]
    with open_port(meters, "meters") as port:
        frame = ask(port, dlt645.read_request("000000000161", "0001FF00"))
        assert frame.control == 0x91  # no follow-up unless asked for
        block = _mantissas(dlt645.parse_read_reply(frame, "0001FF00", address="000000000161"))
        assert len(block) == 5 and all(t > 0 for t in block[1:])
        assert sum(block[1:]) == block[0]  # tariffs 1..4 add up to the total, to the 0.01 kWh
        # single tariff DIs read the same registers (energy moves on: compare within a few 0.01 kWh)
        for k, di in enumerate(("00010100", "00010200", "00010300", "00010400"), 1):
            raw = dlt645.parse_read_reply(ask(port, dlt645.read_request("000000000161", di)), di)
            assert abs(dlt645.decode_raw(raw, "XXXXXX.XX") - block[k]) <= 5
        # the 1997 meter's 901F block: total + tariffs too
        frame = ask(port, dlt645.read_request("000000000197", "901F", version=1997))
        old = _mantissas(dlt645.parse_read_reply(frame, "901F", version=1997))
        assert len(old) == 5 and sum(old[1:]) == old[0]
    e1 = meters.device("e1")
    now = meters.clock.now()
    truths = [e1.truth("energy_import_t%d" % k, now) for k in range(1, 5)]
    assert sum(truths) == pytest.approx(e1.truth("energy_import_total", now))


def _read_split(port, address: str, di: str, seq_start: int = 1, reply_seq: bool = True):  # type: ignore[no-untyped-def]
    """Read ``di`` following B1 replies on the wire: (value bytes, controls of the replies)."""
    asm = dlt645.FollowupAssembler(address, di, seq_start=seq_start, reply_seq=reply_seq)
    request: bytes | None = dlt645.read_request(address, di)
    controls = []
    while request is not None:
        frame = ask(port, request)
        controls.append(frame.control)
        request = asm.feed(frame)
    return asm.value, controls


def test_followup_fault_splits_long_replies(meters) -> None:  # type: ignore[no-untyped-def]
    e1 = meters.device("e1")
    e1.inject("followup", {"size": 8})
    with open_port(meters, "meters") as port:
        raw, controls = _read_split(port, "000000000161", "0001FF00")
        assert controls == [0xB1, 0xB2, 0x92]
        block = _mantissas(raw)
        assert len(block) == 5 and sum(block[1:]) == block[0]
        # a short value is not split; a follow-up nobody announced: abnormal "no requested data" (D2)
        assert ask(port, dlt645.read_request("000000000161", "02010100")).control == 0x91
        frame = ask(port, dlt645.read_followup_request("000000000161", "0001FF00", 1))
        assert frame.control == 0xD2 and frame.data == b"\x02"
        # a follow-up frame may be asked again (a client retrying after a lost reply)
        ask(port, dlt645.read_request("000000000161", "0001FF00"))
        again = [ask(port, dlt645.read_followup_request("000000000161", "0001FF00", 1)) for _ in range(2)]
        assert again[0] == again[1] and again[0].control == 0xB2
        e1.clear("followup")
        assert _read_split(port, "000000000161", "0001FF00")[1] == [0x91]


def test_followup_per_meter_setting_without_seq_byte(make_site) -> None:  # type: ignore[no-untyped-def]
    params = "params = {followup = 6, followup_seq_start = 0, followup_reply_seq = false}"
    site = make_site(METERS.replace('address = "000000000161"', 'address = "000000000161"\n' + params))
    with open_port(site, "meters") as port:
        raw, controls = _read_split(port, "000000000161", "0001FF00", seq_start=0, reply_seq=False)
        assert controls == [0xB1, 0xB2, 0xB2, 0x92]  # 20 bytes: 6 + 6 + 6 + 2
        assert len(raw) == 20 and sum(_mantissas(raw)[1:]) == _mantissas(raw)[0]


def test_pypi_dlt645_reads_tariffs_but_has_no_followup(meters) -> None:  # type: ignore[no-untyped-def]
    from dlt645.model.types.dlt645_type import CtrlCode

    # dlt645 3.2.0 knows no read-follow-up control code (C=12) and accepts only C=91 replies: it cannot
    # read a split value or a block DI. It reads the tariff DIs one by one, which a split never touches.
    assert 0x12 not in {int(c) for c in CtrlCode}
    meters.device("e1").inject("followup", {"size": 4})  # the 20-byte block would be split, 4 bytes not
    svc = MeterClientService.new_rtu_client(meters.bus("meters").device_path, 2400, 8, 1, "N", 3.0)
    try:
        svc.set_address("610100000000")
        tariffs = []
        for di in (0x00010100, 0x00010200, 0x00010300, 0x00010400):
            item = svc.read_00(di)
            assert item is not None, hex(di)
            tariffs.append(round(item.value * 100))
        total = svc.read_00(0x00010000)
        assert total is not None
        assert abs(sum(tariffs) - round(total.value * 100)) <= 8
    finally:
        svc.disconnect()
