"""DL/T 698.45 meters at the wire: requests built by our client side (and by the PyPI dlt698 codec as an
independent client) go as bytes over the bus pty to the simulated meter; the replies are decoded and
the values equal the simulator's ground truth at the meter's own reported time."""

from __future__ import annotations

import datetime

import pytest

from protocols import axdr, dlt645, dlt698
from protocols.errors import CrcError
from simulator.scenario import load
from simulator.tests.conftest import open_port, read_frame, read_silence

METERS = """
[[bus]]
name = "meters"
line = "2400 8E1"
instant = true
[[bus.device]]
id = "m1"
profile = "dlt698-3p"
address = "000000000698"
[[bus.device]]
id = "m2"
profile = "dlt698-3p"
address = "000000000699"
params = { tariffs = 2 }
[[bus.device]]
id = "e1"
profile = "dlt645-3p"
address = "000000000161"
"""
ONE_METER = METERS.split("[[bus.device]]\nid = \"m2\"")[0]
TIME = "40000200"


def ask(port, request: bytes, reader=None) -> dlt698.Frame:  # type: ignore[no-untyped-def]
    port.reset_input_buffer()
    port.write(request)
    frame = read_frame(port, reader or dlt698.Dlt698FrameReader())
    assert frame is not None, "no reply"
    return frame  # type: ignore[return-value]


def sim_time(data: tuple, utc_offset: float = 8.0) -> float:
    """The simulated POSIX time of the meter's own clock reading (40000200, local time)."""
    y, mo, d, h, mi, s = data[1]
    local = datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.UTC)
    return local.timestamp() - utc_offset * 3600


def test_every_point_of_the_profile_equals_the_truth(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS)
    meter = site.device("m1")
    points = meter.profile.points
    oads = [TIME, *sorted({p.oad for p in points})]
    with open_port(site, "meters") as port:
        frame = ask(port, dlt698.read_request("000000000698", oads, piid=0x11, client=0x10, preamble=4))
    assert frame.address == "000000000698" and frame.client == 0x10
    results = dlt698.parse_read_response(frame, oads, piid=0x11, address="000000000698")
    by_oad = {r.oad: r.value(frame.address) for r in results}
    t = sim_time(by_oad[TIME])
    assert abs(t - site.clock.now()) < 5
    for point in points:
        got = dlt698.scaled(point.oad, by_oad[point.oad], point.element or 0) * point.scale + point.offset
        assert got == pytest.approx(meter.truth(point.name, t), rel=1e-12, abs=1e-9), point.name
    # the tariffs add up to the total, to the 0.01 kWh (the meter's register)
    energy = axdr.plain(by_oad["00100200"])
    assert len(energy) == 5 and sum(energy[1:]) == energy[0] and all(v > 0 for v in energy)
    assert 200 < dlt698.scaled("20000200", by_oad["20000200"], 1) < 240


def test_element_oads_and_the_second_meter(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS)
    with open_port(site, "meters") as port:
        oads = [TIME, "00100201", "00100200", "20040202", "20000204"]
        frame = ask(port, dlt698.read_request("000000000699", oads))
        r = dlt698.parse_read_response(frame, oads, address="000000000699")
        whole = axdr.plain(r[2].value())
        assert len(whole) == 3 and whole[1] + whole[2] == whole[0]  # params.tariffs = 2
        assert r[1].value() == (axdr.DOUBLE_LONG_UNSIGNED, whole[0])  # element 1 alone
        t = sim_time(r[0].value())
        truth = site.device("m2").truth("active_power_a", t)
        assert dlt698.scaled("20040202", r[3].value()) == pytest.approx(truth)
        assert r[4].dar == 8  # voltage has 3 elements
        with pytest.raises(dlt698.DarError, match="DAR 8: scope of access violated"):
            r[4].value(frame.address)


def test_unknown_oad_and_abnormal_fault(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS)
    with open_port(site, "meters") as port:
        frame = ask(port, dlt698.read_request("000000000698", "F1010200"))
        with pytest.raises(dlt698.DarError, match="OAD F1010200: DAR 4: object undefined"):
            dlt698.parse_read_response(frame, "F1010200")[0].value(frame.address)
        site.device("m1").inject("abnormal", {"code": 3})
        frame = ask(port, dlt698.read_request("000000000698", ["20000200", "200F0200"]))
        assert [r.dar for r in dlt698.parse_read_response(frame, ["20000200", "200F0200"])] == [3, 3]
        site.device("m1").clear("abnormal")
        assert dlt698.parse_read_response(ask(port, dlt698.read_request("000000000698", "200F0200")),
                                          "200F0200")[0].dar is None


def test_wildcard_reads_the_address_of_the_only_meter(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(ONE_METER)
    with open_port(site, "meters") as port:
        frame = ask(port, dlt698.read_address_request(piid=0x25))
        assert dlt698.parse_read_address_response(frame, piid=0x25) == "000000000698"
        # a partial wildcard selects by the digits it keeps
        wildcard = dlt698.read_request("AAAAAAAAA698", "40010200", address_type=dlt698.ADDRESS_WILDCARD)
        frame = ask(port, wildcard)
        assert frame.address == "000000000698"
        # a broadcast is obeyed silently; another meter's address gets no answer
        port.write(dlt698.read_request(dlt698.BROADCAST, TIME, address_type=dlt698.ADDRESS_BROADCAST))
        assert read_silence(port, 0.3) == b""
        port.write(dlt698.read_request("000000000697", TIME))
        assert read_silence(port, 0.3) == b""
    assert site.bus("meters").counts["unaddressed"] == 1


def test_dlt645_meter_on_the_same_bus_still_answers(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS)
    with open_port(site, "meters") as port:
        old = ask(port, dlt645.read_request("000000000161", "02010100"), dlt645.Dlt645FrameReader())
        assert 200 < dlt645.decode_value(dlt645.parse_read_reply(old, "02010100"), "XXX.X") < 240  # type: ignore[arg-type, operator]
        new = ask(port, dlt698.read_request("000000000698", "20000200"))
        assert new.address == "000000000698"


def test_wire_faults_reach_the_client_as_crc_errors(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(ONE_METER)
    site.device("m1").inject("bad_crc")
    with open_port(site, "meters") as port:
        port.write(dlt698.read_request("000000000698", TIME))
        reader = dlt698.Dlt698FrameReader()
        raw = read_silence(port, 0.5)
        assert raw and reader.feed(raw) == []
        assert any(isinstance(e, CrcError) and "FCS" in str(e) for e in reader.take_errors())


def test_an_independent_client_reads_the_meter(make_site) -> None:  # type: ignore[no-untyped-def]
    """Requests encoded and replies decoded by the PyPI dlt698 package (its own C++ codec)."""
    native = pytest.importorskip("dlt698._native")
    site = make_site(ONE_METER)
    meter = site.device("m1")

    def oad(text: str):  # type: ignore[no-untyped-def]
        return native.Oad(oi=int(text[:4], 16), attribute=int(text[4:6], 16), index=int(text[6:], 16))

    request = native.GetRequest(piid=7, list=True, attributes=[oad(TIME), oad("00100200"), oad("20010200")])
    wire = dlt698.parse_address("000000000698")  # 98 06 00 00 00 00
    server = native.ServerAddress(bytes=wire, logical=0, type=native.AddressType.single)
    frame = native.Frame(client=0, control=0x43, payload=native.encode_apdu(request), server=server)
    with open_port(site, "meters") as port:
        port.reset_input_buffer()
        port.write(native.encode_frame(frame))
        raw = b""
        decoder = native.FrameStreamDecoder()
        got: list = []
        deadline = 50
        while not got and deadline:
            chunk = read_silence(port, 0.1)
            raw += chunk
            got = [f for f in decoder.feed(chunk) if isinstance(f, native.Frame)]
            deadline -= 1
    assert got, "no reply the package could decode: %s" % raw.hex()
    response = native.decode_apdu(got[0].payload)
    assert isinstance(response, native.GetResponse) and response.piid_acd == 7
    when, energy, current = [r.result for r in response.attributes]
    y_hi, y_lo, mo, d, h, mi, s = when.as_date_time_s()
    t = sim_time((28, (y_hi << 8 | y_lo, mo, d, h, mi, s)))
    total = energy.value[0].as_uint32()
    assert total / 100 * 3600000 == pytest.approx(meter.truth("energy_import", t))
    assert current.value[0].as_int32() / 1000 == pytest.approx(meter.truth("current_a", t))


def test_shipped_scenario() -> None:
    scenario = load("dlt698")
    devices = [d for b in scenario.buses for d in b.devices]
    assert {d.profile for d in devices} == {"dlt698-3p", "dlt645-3p"}
