"""A client at the wrong settings on the RFC 2217 port: what the meter and the client get, in bytes.

The bus is like the DL/T 645 meters bus of the demo site (2400 8E1); the client is pyserial's
rfc2217:// handler, which tells the simulator its settings. The buses have no pty: on a shared machine
a stray process may open a reused /dev/pts/N, and everything on a bus is heard by every client."""

from __future__ import annotations

import time

import pytest
import serial

from protocols import dlt645, modbus
from protocols.errors import ProtocolError
from simulator.control import SimClient
from simulator.tests.conftest import LAMPS_AND_METER, open_url, read_frame, wait_for

METER = """
[[bus]]
name = "meters"
line = "2400 8E1"
instant = true
pty = false
uart_errors = "%s"
[[bus.device]]
id = "e1"
profile = "dlt645-3p"
address = "000000000161"
"""
ADDRESS = "000000000161"
DI = "00010000"  # forward active energy, kWh with 2 decimals


def listen(port: serial.Serial, seconds: float) -> bytes:
    """Everything the client's UART delivers within `seconds` (a deadline, not a sleep)."""
    deadline = time.monotonic() + seconds
    out = b""
    while time.monotonic() < deadline:
        out += port.read(max(1, port.in_waiting))
    return out


def frames_in(data: bytes) -> tuple[list, int]:
    """(DL/T 645 frames a reader finds in `data`, errors it reports)."""
    reader = dlt645.Dlt645FrameReader()
    frames = reader.feed(data)
    reader.reset()
    return frames, len(reader.take_errors())


def expected_value(site) -> bytes:  # type: ignore[no-untyped-def]
    """The value bytes the meter answers now (time stands still in these tests)."""
    request = dlt645.Dlt645FrameReader().feed(dlt645.read_request(ADDRESS, DI))[0]
    reply = site.device("e1").server.handle(request, site.clock.now())
    return dlt645.parse_read_reply(dlt645.Dlt645FrameReader().feed(reply)[0], DI)


def via_socket(site) -> bytes:  # type: ignore[no-untyped-def]
    """A client at the bus's settings (the raw TCP port) reads the meter: the value bytes."""
    with open_url(site, "meters", kind="socket") as port:
        port.write(dlt645.read_request(ADDRESS, DI))
        frame = read_frame(port, dlt645.Dlt645FrameReader())
    assert frame is not None
    return dlt645.parse_read_reply(frame, DI)  # type: ignore[arg-type]


def test_9600_8n1_on_the_2400_8e1_bus_the_meter_hears_garbage_and_stays_silent(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METER % "drop", speed=1e-6)
    request = dlt645.read_request(ADDRESS, DI)
    with open_url(site, "meters", baudrate=9600, bytesize=8, parity="N", stopbits=1, timeout=0.05) as port, \
            SimClient(site.describe()["control"]) as control:
        got = b""
        for _ in range(10):
            port.write(request)
            got += listen(port, 0.3)
        wire = control.line("meters")["counts"]["to_devices"]
        counters = control.counters("e1")
    assert got == b""  # no reply at all: the technician sees a dead meter
    assert counters["devices"]["e1"]["requests"] == 0 and counters["buses"]["meters"]["frames"] == 0
    sent = 10 * len(request)
    assert wire["bytes"] == sent
    # a 2400 8E1 character (4.58 ms) spans 4.4 characters at 9600 8N1 (1.04 ms): about 1 in 4.4 survives
    assert sent / 6 <= wire["chars"] <= sent / 3.5
    assert wire["framing_errors"] + wire["parity_errors"] + wire["breaks"] >= wire["chars"] / 2
    assert wire["dropped"] >= wire["chars"] / 2


def test_9600_8n1_listener_on_the_2400_8e1_bus_gets_garbled_replies(make_site) -> None:  # type: ignore[no-untyped-def]
    """A client at the right settings (the raw TCP port) polls the meter; a laptop at 9600 8N1 on the
    RFC 2217 port hears the same line: every reply comes out garbled, about twice as long, with breaks."""
    site = make_site(METER % "drop", speed=1e-6)
    request = dlt645.read_request(ADDRESS, DI)
    truth = expected_value(site)
    with open_url(site, "meters", kind="socket") as agent, \
            open_url(site, "meters", baudrate=9600, parity="N", timeout=0.05) as laptop, \
            SimClient(site.describe()["control"]) as control:
        heard = b""
        for _ in range(5):
            agent.write(request)
            reply = read_frame(agent, dlt645.Dlt645FrameReader())
            assert reply is not None and dlt645.parse_read_reply(reply, DI) == truth  # type: ignore[arg-type]
            heard += listen(laptop, 0.3)
        wire = next(c for c in control.line("meters")["clients"] if c["name"] == "rfc2217")["counts"]
    to_client = wire["to_client"]
    # the laptop heard the agent's requests (at 2400 8E1) and the meter's replies, and garbled both
    assert to_client["bytes"] >= 5 * 2 * len(request)  # 20-byte requests, 20-byte replies
    assert to_client["chars"] == len(heard)
    assert len(heard) > 1.5 * to_client["bytes"]  # one 2400 character becomes 2-3 at 9600
    assert to_client["breaks"] >= 5 and heard.count(0) >= to_client["breaks"]
    assert to_client["framing_errors"] > 0
    frames, _errors = frames_in(heard)
    for frame in frames:  # no valid frame decodes to a wrong value
        try:
            assert dlt645.parse_read_reply(frame, DI) == truth
        except ProtocolError:
            pass
    assert not frames


@pytest.mark.parametrize("bytesize,parity,stopbits", [(8, "N", 1), (8, "O", 1), (8, "N", 2)])
def test_wrong_framing_at_the_right_baud_strict_meter_stays_silent(make_site, bytesize, parity,  # type: ignore[no-untyped-def]
                                                                   stopbits) -> None:
    site = make_site(METER % "drop", speed=1e-6)
    with open_url(site, "meters", bytesize=bytesize, parity=parity, stopbits=stopbits, timeout=0.05) as port:
        port.write(dlt645.read_request(ADDRESS, DI))
        assert listen(port, 0.5) == b""
    assert site.device("e1").counts["requests"] == 0
    wire = site.bus("meters").wire_counts()["to_devices"]
    assert wire["chars"] == len(dlt645.read_request(ADDRESS, DI))  # same baud: one character per byte
    assert wire["dropped"] > 0 and wire["parity_errors"] + wire["framing_errors"] > 0


def test_8n1_on_an_8e1_bus_with_a_meter_that_keeps_bad_bytes_gets_garbled_replies(make_site) -> None:  # type: ignore[no-untyped-def]
    """A meter whose firmware ignores its UART's error flags takes the request (the data bits were
    right, only parity and framing were wrong) and answers; the client at 8N1 reads the 8E1 reply's
    parity bits as stop bits: where one is 0 a framing error, a resynchronisation, garbage."""
    site = make_site(METER % "keep", speed=1e-6)
    with open_url(site, "meters", parity="N", timeout=0.05) as port:
        port.write(dlt645.read_request(ADDRESS, DI))
        heard = listen(port, 0.5)
    assert site.device("e1").counts["answered"] == 1
    wire = site.bus("meters").wire_counts()
    assert wire["to_devices"]["framing_errors"] == len(dlt645.read_request(ADDRESS, DI)) - 1
    assert wire["to_client"]["framing_errors"] > 0 and heard
    frames, errors = frames_in(heard)
    assert not frames and errors >= 1  # the checksum (or the frame) is broken: no value at all


def test_odd_for_even_parity_is_invisible_to_linux_when_the_meter_keeps_bad_bytes(make_site) -> None:  # type: ignore[no-untyped-def]
    """Linux with pyserial delivers bytes with parity errors as received (INPCK off): with a lenient
    meter, 8O1 on an 8E1 bus reads correct values; only the parity error counts show it."""
    site = make_site(METER % "keep", speed=1e-6)
    truth = via_socket(site)
    assert truth == expected_value(site)
    with open_url(site, "meters", parity="O", timeout=0.05) as port:
        port.write(dlt645.read_request(ADDRESS, DI))
        reply = read_frame(port, dlt645.Dlt645FrameReader())
        client = next(c for c in site.bus("meters").line_state()["clients"] if c["name"] == "rfc2217")
    assert reply is not None and dlt645.parse_read_reply(reply, DI) == truth  # type: ignore[arg-type]
    assert client["counts"]["to_client"]["parity_errors"] == client["counts"]["to_client"]["chars"] > 0


COMMON = [(baud, framing) for baud in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
          for framing in ("8N1", "8E1", "8O1", "8N2")]


def test_only_the_bus_settings_get_a_valid_reply(make_site) -> None:  # type: ignore[no-untyped-def]
    """What `scan --auto` relies on: of the common settings, a meter that drops bad bytes answers at
    its own (2400 8E1) only; the broadcast read-address request finds its address there."""
    site = make_site(METER % "drop", speed=1e-6)
    bus, meter = site.bus("meters"), site.device("e1")
    request = dlt645.read_address_request()
    answered: dict[str, list] = {}
    with open_url(site, "meters", timeout=0.02) as port:
        access = next(a for a in bus.accesses() if a.name == "rfc2217")
        for baud, framing in COMMON:
            port.apply_settings({"baudrate": baud, "bytesize": int(framing[0]), "parity": framing[1],
                                 "stopbits": int(framing[2])})
            port.reset_input_buffer()
            handled, replies = access.handled, meter.counts["answered"]
            port.write(request)
            target = handled + len(request)
            assert wait_for(lambda t=target: access.handled == t)  # type: ignore[misc]  # the meter decided
            if meter.counts["answered"] > replies:
                heard = read_frame(port, dlt645.Dlt645FrameReader())
                frames = [heard] if heard is not None else []
            else:
                frames, _errors = frames_in(listen(port, 0.05))
            if frames:
                answered["%d %s" % (baud, framing)] = frames
    assert list(answered) == ["2400 8E1"]
    (frame,) = answered["2400 8E1"]
    assert dlt645.parse_read_address_reply(frame) == ADDRESS  # type: ignore[arg-type]


def test_two_stop_bits_on_a_one_stop_bit_modbus_bus_work(make_site) -> None:  # type: ignore[no-untyped-def]
    """8N2 on an 8N1 bus: the devices check one stop bit (fine); the client checks two and flags the
    replies' back-to-back bytes with framing errors that Linux does not report: the values are right."""
    site = make_site(LAMPS_AND_METER.replace('instant = true', 'instant = true\npty = false'), speed=1e-6)
    read = modbus.read_request(4, 0, 9)
    with open_url(site, "street", kind="socket") as reference:
        reference.write(modbus.rtu_frame(1, read))
        expected = read_frame(reference, modbus.RtuFrameReader(expect="response"))
    assert expected is not None
    with open_url(site, "street", stopbits=2) as port:
        port.write(modbus.rtu_frame(1, read))
        assert read_frame(port, modbus.RtuFrameReader(expect="response")) == expected
        client = next(c for c in site.bus("street").accesses() if c.name == "rfc2217").wire.counts
    assert client["to_devices"]["framing_errors"] == 0
    assert client["to_client"]["framing_errors"] == 22  # every reply byte but the last


def test_a_dlt698_meter_through_rfc2217_answers_at_its_settings_only(make_site) -> None:  # type: ignore[no-untyped-def]
    """DL/T 698.45 meters (2400 8E1, HDLC-like frames with CRC-16) behave as the DL/T 645 one does."""
    from protocols import axdr, dlt698
    from simulator.tests.test_dlt698 import METERS as DLT698_METERS

    site = make_site(DLT698_METERS.replace("instant = true", "instant = true\npty = false"), speed=1e-6)
    request = dlt698.read_request("000000000698", ["00100200"], piid=0x11, client=0x10, preamble=4)
    with open_url(site, "meters", timeout=0.05) as port:
        port.write(request)
        frame = read_frame(port, dlt698.Dlt698FrameReader())
        assert isinstance(frame, dlt698.Frame)
        (result,) = dlt698.parse_read_response(frame, ["00100200"], piid=0x11, address="000000000698")
        energy = axdr.plain(result.value(frame.address))
        assert len(energy) == 5 and sum(energy[1:]) == energy[0] > 0  # total and four tariffs
        port.apply_settings({"baudrate": 9600, "parity": "N"})
        port.reset_input_buffer()
        port.write(request)
        assert listen(port, 0.5) == b""
    assert site.device("m1").counts["answered"] == 1
