"""A plain read (a Modbus RTU poll, run by the driver without its step generator) is the step's read.

`Driver.read` sends a plain read's fixed frame itself and decodes the reply with the protocol's
`decode_reply` (protocols/modbus/device.py `plain_read`); every other read runs its step. Both must
give the same values, the same bad points, the same errors with the same words, and the same bytes
and counters on the line, whatever comes back: checked here on many scripted replies (good, torn,
corrupted, an exception, another unit's, our own echo, silence), then on a real pty.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config_model import BusConfig, DeviceConfig
from agent.drivers import Driver, make_driver
from agent.link import open_link
from agent.link.base import Link
from agent.link.virtual import VirtualClock
from agent.tests.fakes import FakeModbus
from protocols import modbus
from protocols.profiles import load_profile

LAMP = load_profile("generic-lamp")  # a holding read of 2 registers, an input read of 9 with bit fields
BUS = BusConfig(name="lamps", port="/dev/null", timeout_ms=200)


class Scripted(Link):
    """A link whose line answers each request with the chunks `answer(request)` gives; time is virtual,
    so a silence or a timeout passes at once."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        Link.__init__(self, "lamps", "scripted", timeout=0.2, silence=0.004, char_time=0.00104)
        self.virtual = VirtualClock()
        self.clock = self.virtual
        self.sleep = self.virtual.sleep
        self.answer = answer
        self.wire = bytearray()
        self._chunks: list[bytes] = []

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _write(self, data: bytes) -> None:
        self.wire += data
        self._chunks = list(self.answer(bytes(data)))

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        self.virtual.advance(timeout)
        return b""


def drivers() -> tuple[Driver, Driver]:
    """The same lamp twice: its reads plain, and the same reads forced through the step."""
    device = DeviceConfig(id="lamp-07", bus="lamps", profile="generic-lamp", address="7")
    plain = make_driver(device, LAMP, BUS)
    stepped = make_driver(device, LAMP, BUS)
    for prepared in stepped._prepared.values():
        prepared.plain = None
    return plain, stepped


def outcome(driver: Driver, answer) -> tuple:  # type: ignore[no-untyped-def]
    """What each planned read gave (its ReadResult or its error's type and words), with the line."""
    link = Scripted(answer)
    link.open()
    results: list = []
    for request in driver.requests:
        try:
            results.append(driver.read(link, request))
        except Exception as exc:
            results.append((type(exc).__name__, str(exc), getattr(exc, "received", None)))
    return results, bytes(link.wire), dict(link.counters), link.echoed


def test_a_modbus_rtu_read_is_plain_and_a_modbus_tcp_read_is_not() -> None:
    plain, _ = drivers()
    assert [p.plain is not None for p in plain._prepared.values()] == [True, True]
    tcp = make_driver(DeviceConfig(id="lamp-07", bus="lamps", profile="generic-lamp", address="7"), LAMP,
                      BusConfig(name="lamps", port="tcp://127.0.0.1:1502"))
    assert [p.plain for p in tcp._prepared.values()] == [None, None]


PIECES = ["good", "exception", "short count", "bad crc", "other unit", "echo", "noise", "nothing"]


@st.composite
def answers(draw: st.DrawFn) -> tuple:
    """What the line gives back to a request: some pieces, cut into chunks at random places."""
    pieces = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=3))
    registers = draw(st.lists(st.integers(0, 0xFFFF), min_size=9, max_size=9))
    cuts = draw(st.lists(st.integers(1, 40), max_size=4))
    return pieces, registers, cuts


def reply_to(case: tuple):  # type: ignore[no-untyped-def]
    pieces, registers, cuts = case

    def answer(request: bytes) -> list[bytes]:
        unit, pdu = request[0], request[1:-2]
        function, count = pdu[0], (pdu[3] << 8) | pdu[4]
        line = b""
        for piece in pieces:
            if piece == "good":
                line += modbus.rtu_frame(unit, modbus.read_response(function, registers[:count]))
            elif piece == "exception":
                line += modbus.rtu_frame(unit, modbus.exception_response(function, 2))
            elif piece == "short count":
                short = registers[:count - 1] or [1, 2]
                line += modbus.rtu_frame(unit, modbus.read_response(function, short))
            elif piece == "bad crc":
                frame = bytearray(modbus.rtu_frame(unit, modbus.read_response(function, registers[:count])))
                frame[-1] ^= 0x5A
                line += bytes(frame)
            elif piece == "other unit":
                line += modbus.rtu_frame(unit + 1, modbus.read_response(function, registers[:count]))
            elif piece == "echo":
                line += request
            elif piece == "noise":
                line += b"\xff\x00\xfe"
        chunks, at = [], 0
        for cut in sorted(cuts):
            if at < cut < len(line):
                chunks.append(line[at:cut])
                at = cut
        if at < len(line):
            chunks.append(line[at:])
        return chunks

    return answer


@settings(max_examples=300, deadline=None)
@given(answers())
def test_a_plain_read_gives_what_the_step_gives(case: tuple) -> None:
    plain, stepped = drivers()
    got = outcome(plain, reply_to(case))
    assert got == outcome(stepped, reply_to(case))


def test_good_replies_decode_the_same_both_ways_on_many_register_values() -> None:
    plain, stepped = drivers()
    for seed in range(200):
        registers = [(seed * 7919 + i * 104729) & 0xFFFF for i in range(9)]
        case: tuple = (["good"], registers, [])
        results = outcome(plain, reply_to(case))
        assert results == outcome(stepped, reply_to(case))
        assert all(r.values for r in results[0])  # decoded values, not an error


def test_a_plain_read_on_a_pty(fake_bus) -> None:  # type: ignore[no-untyped-def]
    """Real bytes on a pseudo-terminal: the plain read sends the planned frame and decodes the reply."""
    fake_bus.devices[7] = FakeModbus({0: 1, 1: 40}, inputs={0: 2301, 1: 150, 2: 345, 3: 0, 4: 1000, 5: 0,
                                                           6: 12, 7: 0xFFF6, 8: 0b101})
    bus = BusConfig(name="lamps", port=fake_bus.path, timeout_ms=300)
    plain, _ = drivers()
    with open_link(bus) as link:
        values: dict = {}
        for request in plain.requests:
            values.update(plain.read(link, request).values)
    assert values == {"on": 1, "dim": 0.4, "voltage": 230.1, "current": 0.15, "power": 34.5,
                      "energy": 3600000, "burn_hours": 4320, "temperature": -1.0, "faults": 5,
                      "lamp_failure": True, "cable_fault": False, "over_temperature": True}
    assert bytes(fake_bus.received[:8]) == modbus.rtu_frame(7, modbus.read_request(3, 0, 2))
