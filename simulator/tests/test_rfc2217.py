"""RFC 2217: the Telnet COM-PORT-OPTION protocol by bytes, and the bus servers with real clients
(pyserial's rfc2217:// handler, pymodbus) getting what a client of the pty gets."""

from __future__ import annotations

import socket
import struct

import pytest
import serial
from pymodbus.client import ModbusSerialClient

from protocols import dlt645, modbus
from simulator.control import SimClient
from simulator.rfc2217 import (
    BINARY,
    COM_PORT,
    DO,
    DONT,
    ECHO,
    IAC,
    SB,
    SE,
    SGA,
    WILL,
    WONT,
    ComPort,
    escape,
)
from simulator.tests.conftest import LAMPS_AND_METER, METERS, open_port, open_url, read_frame, wait_for
from simulator.uart import Framing

BUS_8E1 = Framing(2400, 8, "E", 1)


def sub(command: int, value: bytes) -> bytes:
    return bytes([IAC, SB, COM_PORT, command]) + escape(value) + bytes([IAC, SE])


# ---------------------------------------------------------------- the protocol, byte by byte
def test_negotiation_offers_binary_and_com_port_and_refuses_echo() -> None:
    port = ComPort(BUS_8E1)
    assert port.greet() == bytes([IAC, DO, BINARY, IAC, WILL, BINARY])
    port.feed(bytes([IAC, WILL, BINARY, IAC, DO, BINARY]))  # the answers to our own requests
    assert port.take() == b"" and BINARY in port.us and BINARY in port.them
    port.feed(bytes([IAC, WILL, COM_PORT, IAC, DO, COM_PORT, IAC, DO, ECHO, IAC, WILL, SGA, IAC, WILL, 99]))
    assert port.take() == bytes([IAC, DO, COM_PORT, IAC, WILL, COM_PORT, IAC, WONT, ECHO, IAC, DO, SGA,
                                 IAC, DONT, 99])
    port.feed(bytes([IAC, WILL, COM_PORT]))  # already on: no answer, no loop
    assert port.take() == b""
    port.feed(bytes([IAC, WONT, SGA]))
    assert port.take() == bytes([IAC, DONT, SGA]) and SGA not in port.them


def test_settings_are_answered_with_what_is_in_force() -> None:
    port = ComPort(BUS_8E1)
    events = port.feed(sub(1, struct.pack(">I", 9600)) + sub(2, b"\x07") + sub(3, b"\x02") + sub(4, b"\x03"))
    assert port.take() == (sub(101, struct.pack(">I", 9600)) + sub(102, b"\x07") + sub(103, b"\x02")
                           + sub(104, b"\x03"))
    assert port.framing == Framing(9600, 7, "O", 1.5)
    assert [e[0] for e in events] == ["settings"] * 4 and events[-1][1] == port.framing
    # refusals: the answer carries the value still in force
    port.feed(sub(2, b"\x09") + sub(3, b"\x09") + sub(1, struct.pack(">I", 10)))
    assert port.take() == sub(102, b"\x07") + sub(103, b"\x02") + sub(101, struct.pack(">I", 9600))
    assert port.counts["refused"] == 3
    # 0 asks without changing
    port.feed(sub(1, b"\x00\x00\x00\x00") + sub(4, b"\x00"))
    assert port.take() == sub(101, struct.pack(">I", 9600)) + sub(104, b"\x03")


def test_iac_in_a_setting_value_is_doubled_both_ways() -> None:
    port = ComPort(BUS_8E1)
    raw = bytes([IAC, SB, COM_PORT, 1, 0x00, 0x00, IAC, IAC, 0x00, IAC, SE])  # 65280 baud
    port.feed(raw)
    assert port.framing.baud == 0xFF00
    assert port.take() == bytes([IAC, SB, COM_PORT, 101, 0x00, 0x00, IAC, IAC, 0x00, IAC, SE])


def test_data_is_unescaped_even_across_reads() -> None:
    port = ComPort(BUS_8E1)
    assert port.feed(b"\x01\xff") == [("data", b"\x01")]
    assert port.feed(b"\xff\x02" + sub(12, b"\x01") + b"\x03") == [("data", b"\xff\x02"), ("purge", 1),
                                                                  ("data", b"\x03")]
    assert escape(b"\x00\xff\xff\x10") == b"\x00\xff\xff\xff\xff\x10"


def test_control_commands_and_line_state() -> None:
    port = ComPort(BUS_8E1)
    events = port.feed(sub(5, b"\x01") + sub(5, b"\x09") + sub(5, b"\x07") + sub(5, b"\x05") + sub(5, b"\x04")
                       + sub(5, b"\x0c") + sub(5, b"\x00") + sub(5, b"\x63"))
    assert port.take() == (sub(105, b"\x01") + sub(105, b"\x09") + sub(105, b"\x09") + sub(105, b"\x05")
                           + sub(105, b"\x05") + sub(105, b"\x0c") + sub(105, b"\x01"))
    assert events == [("break", True)] and port.counts["refused"] == 1
    port.feed(sub(7, b"") + sub(11, b"\x30") + sub(7, b""))
    assert port.take() == sub(107, b"\xb0") + sub(111, b"\x30") + sub(107, b"\x30")
    port.us.add(COM_PORT)
    port.linestate({"parity", "framing"})
    assert port.take() == b""  # the client's mask is 0 until it asks
    port.feed(sub(10, b"\x0c"))
    port.take()
    port.linestate({"parity", "break"})
    assert port.take() == sub(106, b"\x04")


def test_hostile_subnegotiations_are_bounded() -> None:
    port = ComPort(BUS_8E1)
    flood = bytes([IAC, SB, COM_PORT]) + b"\x01" * 5000 + bytes([IAC, SE])
    assert port.feed(flood + b"ok") == [("data", b"ok")]
    assert port.feed(bytes([IAC, SB, 99, 1, IAC, SE]) + bytes([IAC, 241])) == []  # foreign option, NOP
    assert port.take() == b"" and port.counts["refused"] >= 1


# ---------------------------------------------------------------- the servers, with real clients
NO_PTY = 'instant = true\npty = false'  # a stray process on a reused /dev/pts/N would be heard too


@pytest.fixture
def meters(make_site):  # type: ignore[no-untyped-def]
    return make_site(METERS.replace("instant = true", NO_PTY), speed=1e-6)  # time stands still


def expected_reply(site, address: str = "000000000161", di: str = "00010000") -> object:  # type: ignore[no-untyped-def]
    """The reply frame the meter's own server gives now."""
    request = dlt645.Dlt645FrameReader().feed(dlt645.read_request(address, di))[0]
    return dlt645.Dlt645FrameReader().feed(site.device("e1").server.handle(request, site.clock.now()))[0]


def dlt645_read(port: serial.Serial, address: str = "000000000161", di: str = "00010000") -> object:
    port.reset_input_buffer()
    port.write(dlt645.read_request(address, di))
    return read_frame(port, dlt645.Dlt645FrameReader())


def test_rfc2217_at_the_bus_settings_answers_as_the_pty(make_site) -> None:  # type: ignore[no-untyped-def]
    meters = make_site(METERS, speed=1e-6)
    with open_port(meters, "meters") as pty:
        expected = dlt645_read(pty)
    assert expected is not None and expected == expected_reply(meters)
    with open_url(meters, "meters") as port, SimClient(meters.describe()["control"]) as control:
        assert dlt645_read(port) == expected
        line = control.line("meters")
        client = next(c for c in line["clients"] if c["name"] == "rfc2217")
        assert client["client"] == "2400 8E1" == line["line"]
        assert line["servers"]["rfc2217"]["client"] == client["peer"]
        port.baudrate = 9600  # the client's settings reach the bus's wire at once
        assert wait_for(lambda: next(c for c in control.line("meters")["clients"]
                                     if c["name"] == "rfc2217")["client"] == "9600 8E1")


def test_raw_socket_runs_at_the_bus_settings(meters) -> None:  # type: ignore[no-untyped-def]
    with open_url(meters, "meters", kind="socket", baudrate=9600, parity="N") as port:
        assert dlt645_read(port) == expected_reply(meters)  # settings cannot travel over a raw socket
    assert meters.describe()["buses"][0]["path"] is None


def test_a_technician_reconnects(meters) -> None:  # type: ignore[no-untyped-def]
    server = meters.bus("meters").servers["rfc2217"]
    for _ in range(2):
        with open_url(meters, "meters") as port:
            assert dlt645_read(port) is not None
        assert wait_for(lambda: server.describe()["client"] is None)  # the server saw the client leave
    assert server.counts == {"connections": 2, "takeovers": 0}


def test_a_new_connection_takes_the_port_over(meters) -> None:  # type: ignore[no-untyped-def]
    first = open_url(meters, "meters")
    try:
        assert dlt645_read(first) is not None
        with open_url(meters, "meters") as second:
            assert dlt645_read(second) is not None
            with pytest.raises(serial.SerialException):
                for _ in range(50):  # the first client's session was closed by the server
                    first.write(b"\x00")
                    first.read(1)
        assert meters.bus("meters").servers["rfc2217"].counts == {"connections": 2, "takeovers": 1}
    finally:
        first.close()


def test_a_client_that_speaks_no_telnet_still_gets_bytes(meters) -> None:  # type: ignore[no-untyped-def]
    host, port = meters.bus("meters").rfc2217_address  # type: ignore[misc]
    with socket.create_connection((host, port), timeout=3) as sock:
        greeting = sock.recv(6)
        assert greeting == bytes([IAC, DO, BINARY, IAC, WILL, BINARY])
        sock.sendall(escape(dlt645.read_request("000000000161", "00010000")))
        reader = dlt645.Dlt645FrameReader()
        frames: list = []

        def more() -> bool:
            frames.extend(reader.feed(sock.recv(256)))
            return bool(frames)

        assert wait_for(more, timeout=5)
        assert dlt645.parse_read_reply(frames[0], "00010000") is not None


# ---------------------------------------------------------------- Modbus, IAC in values, pymodbus
IAC_LAMP = """
[[bus]]
name = "street"
line = "9600 8N1"
instant = true
pty = false
[[bus.device]]
id = "lamp"
profile = "generic-lamp"
address = 87                        # the read request's CRC ends in 0xFF
params = {on = false, burn_hours_start = 6553, rated_power = 100}
"""


class Rfc2217ModbusClient(ModbusSerialClient):
    """pymodbus's serial client on pyserial's rfc2217:// handler. pymodbus 3.16 opens ports with a
    write timeout, which pyserial 3.5's RFC 2217 client refuses (NotImplementedError), so only the
    opening is done here; framing, transactions and decoding stay pymodbus's."""

    def connect(self) -> bool:
        if self.socket is None:
            params = self.comm_params
            self.socket = serial.serial_for_url(params.host, baudrate=params.baudrate,
                                                bytesize=params.bytesize, parity=params.parity,
                                                stopbits=params.stopbits, timeout=params.timeout_connect)
            self.socket.inter_byte_timeout = self.inter_byte_timeout
        return True


def test_iac_bytes_in_register_values_arrive_intact(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(IAC_LAMP)
    request = modbus.rtu_frame(87, modbus.read_request(4, 3, 4))
    assert request[-1] == 0xFF
    with open_url(site, "street") as port:
        port.write(request)
        frame = read_frame(port, modbus.RtuFrameReader(expect="response"))
    assert isinstance(frame, tuple)
    unit, pdu = frame
    registers = modbus.parse_response(modbus.read_request(4, 3, 4), pdu)
    assert unit == 87 and registers == [0x0007, 0xFFD0, 0x0000, 0xFFFA]  # 524240 Wh, 6553.0 h
    assert b"\xff" in modbus.rtu_frame(unit, pdu)
    assert site.device("lamp").truth("burn_hours", site.clock.now()) == 6553 * 3600


IAC_LAMP_ON_STREET = """
[[bus.device]]
id = "lamp"
profile = "generic-lamp"
address = 87
params = {on = false, burn_hours_start = 6553, rated_power = 100}
"""


@pytest.mark.parametrize("kind", ["rfc2217", "socket"])
def test_pymodbus_over_the_serial_servers_reads_what_it_reads_on_the_pty(make_site, kind: str) -> None:  # type: ignore[no-untyped-def]
    site = make_site(LAMPS_AND_METER + IAC_LAMP_ON_STREET, speed=1e-6)
    url = site.bus("street").describe()[kind]
    f32 = ModbusSerialClient.DATATYPE.FLOAT32

    def registers(client: ModbusSerialClient) -> list:
        assert client.connect()
        try:
            out = []
            for unit, table, address, count in ((10, 3, 0x2000, 0x2E), (1, 4, 0, 9), (87, 4, 3, 4)):
                read = client.read_holding_registers if table == 3 else client.read_input_registers
                rr = read(address, count=count, device_id=unit)
                assert not rr.isError(), (kind, unit, rr)
                out.append(rr.registers)
            assert not client.write_register(1, 30, device_id=2).isError()
            return out
        finally:
            client.close()

    on_pty = registers(ModbusSerialClient(port=site.bus("street").device_path, baudrate=9600, timeout=2,
                                          retries=1))
    client_class = Rfc2217ModbusClient if kind == "rfc2217" else ModbusSerialClient
    remote = registers(client_class(port=url, baudrate=9600, timeout=2, retries=1))
    assert remote == on_pty
    volts = ModbusSerialClient.convert_from_registers(remote[0][6:8], f32) * 0.1  # type: ignore[operator]
    assert volts == pytest.approx(site.device("meter").truth("voltage_a", site.clock.now()))
    assert remote[2] == [0x0007, 0xFFD0, 0x0000, 0xFFFA]
    assert site.device("lamp-2").counts["writes"] == 2
