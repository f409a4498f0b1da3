"""The bit-level UART model: worked examples by hand, mismatches of each setting, properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.uart import Framing, FramingError, Receiver, Waveform, parity_bit, serialise, transfer
from simulator.wire import LineFaults, Wire, reflection_ber

N1_9600 = Framing(9600)
E1_2400 = Framing(2400, 8, "E", 1)
REQUEST = bytes.fromhex("fefefefe68610100000000681104333334331816")  # DL/T 645 read 00010000


class NoJitter(random.Random):
    """The receiver sees every start edge at once (no 1/16-bit sampling delay)."""

    def random(self) -> float:
        return 0.0


def receive(data: bytes, sender: Framing, receiver: Framing, seed: int | None = None, **kw: object) -> list:
    rng = NoJitter() if seed is None else random.Random(seed)
    return transfer(data, sender, Receiver(receiver), rng, **kw)[0]  # type: ignore[arg-type]


def values(chars: list) -> bytes:
    return bytes(c.value for c in chars)


def test_framing_checks_and_names() -> None:
    assert str(E1_2400) == "2400 8E1" and E1_2400.char_bits == 11
    assert str(Framing(19200, 7, "O", 1.5)) == "19200 7O1.5" and Framing(19200, 7, "O", 1.5).char_bits == 10.5
    for bad in ({"baud": 10}, {"baud": 9600, "bytesize": 9}, {"baud": 9600, "parity": "X"},
                {"baud": 9600, "stopbits": 3}):
        with pytest.raises(FramingError):
            Framing(**bad)  # type: ignore[arg-type]
    assert [parity_bit(0x68, p) for p in "NEOMS"] == [0, 1, 0, 1, 0]  # 0x68 has three 1 bits


def test_serialised_levels_of_one_byte() -> None:
    wave, flips = serialise(b"\x68", E1_2400)
    bit = 1 / 2400
    levels = [wave.level((k + 0.5) * bit) for k in range(12)]
    # start, 0x68 LSB first (0 0 0 1 0 1 1 0), even parity 1, stop 1, then idle
    assert levels == [0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1] and flips == 0
    assert wave.level(-1.0) == 1 and wave.level(wave.end + 1) == 1


def test_worked_example_client_byte_at_9600_reaches_a_2400_meter() -> None:
    """docs/simulator.md: 0x68 sent at 9600 8N1, read by a meter's UART at 2400 8E1.

    The 2400 receiver finds the start edge at 0 and samples every 416.7 us: d0 at 625 us falls in the
    sender's d5 (1); everything later reads the idle line (1): 0xFF, and parity 1 where even parity
    of 0xFF wants 0: a parity error.
    """
    (char,) = receive(b"\x68", N1_9600, E1_2400)
    assert char.value == 0xFF and char.parity_error and not char.framing_error and not char.brk
    assert char.at == pytest.approx(10.5 / 2400)  # the meter has it 4.4 ms after the start bit


def test_worked_example_meter_byte_at_2400_reaches_a_9600_client() -> None:
    """docs/simulator.md: the meter's 0x68 at 2400 8E1 read by a client UART at 9600 8N1: 00 F8 F8.

    A 2400 bit lasts four 9600 bits: the start bit and d0..d2 (all 0) fill a whole 9600 character with
    zeros and its stop sample too: a break (0x00). The next falling edges (d4, d7 of the meter's byte)
    start two characters whose first three samples are 0 and the rest 1: 0xF8, 0xF8.
    """
    chars = receive(b"\x68", E1_2400, N1_9600)
    assert values(chars) == b"\x00\xf8\xf8"
    assert chars[0].brk and not any(c.bad for c in chars[1:])


def test_same_settings_pass_every_byte_unchanged() -> None:
    data = bytes(range(256)) + REQUEST
    for fr in (N1_9600, E1_2400, Framing(115200, 8, "O", 2), Framing(1200, 8, "M", 1), Framing(4800, 8, "S")):
        chars = receive(data, fr, fr, seed=3)
        assert values(chars) == data and not any(c.bad for c in chars), fr


def test_wrong_baud_shrinks_and_garbles_a_request() -> None:
    chars = receive(REQUEST, N1_9600, E1_2400, seed=1)
    assert 3 <= len(chars) <= len(REQUEST) // 4 + 1  # one 2400 character spans 4.4 bytes at 9600
    assert values(chars) != REQUEST[: len(chars)]
    assert any(c.bad for c in chars)


def test_wrong_baud_multiplies_and_breaks_a_reply() -> None:
    chars = receive(REQUEST, E1_2400, N1_9600, seed=1)
    assert len(chars) > 1.5 * len(REQUEST)
    assert sum(c.brk for c in chars) >= 4  # each FE preamble byte and each 00 hold the line at space
    assert REQUEST[4:] not in values(chars)


def test_missing_parity_bit_at_the_receiver() -> None:
    """8E1 sent back to back, read at 8N1: the stop sample lands on the parity bit; where it is 0, a
    framing error and a resynchronisation on it, the following bytes are garbage."""
    clean = bytes([0x68, 0x61, 0x01])  # even parity bits 1, 1, 1: all read correctly
    assert values(receive(clean, E1_2400, Framing(2400))) == clean
    chars = receive(b"\x03\x68", E1_2400, Framing(2400))  # 0x03: parity bit 0
    assert chars[0].value == 0x03 and chars[0].framing_error and not chars[0].brk
    assert values(chars)[1] == 0xA1  # sampled from the parity bit on: 1 0 0 0 0 1 0 1
    # a 0x00 with parity 0 holds the line at space for a whole 8N1 character: a break
    brk = receive(b"\x00\x68", E1_2400, Framing(2400))
    assert brk[0].brk and values(brk) == b"\x00\x68"


def test_extra_parity_bit_at_the_receiver() -> None:
    """8N1 back to back, read at 8E1: data right, parity checked against the sender's stop bit, the
    stop sample on the next start bit: framing error on all but the last byte."""
    chars = receive(REQUEST, Framing(2400), E1_2400)
    assert values(chars) == REQUEST
    assert [c.framing_error for c in chars] == [True] * (len(REQUEST) - 1) + [False]
    assert [c.parity_error for c in chars] == [parity_bit(b, "E") != 1 for b in REQUEST]


def test_odd_for_even_is_a_parity_error_on_every_byte() -> None:
    chars = receive(REQUEST, Framing(2400, 8, "O"), E1_2400)
    assert values(chars) == REQUEST and all(c.parity_error and not c.framing_error for c in chars)


def test_two_stop_bits_expected_framing_error_only_when_the_next_start_comes_early() -> None:
    n2 = Framing(9600, 8, "N", 2)
    back_to_back = receive(b"\x01\x02\x03", N1_9600, n2)
    assert values(back_to_back) == b"\x01\x02\x03"  # the resynchronisation keeps the data
    assert [c.framing_error for c in back_to_back] == [True, True, False]
    one_by_one = [receive(bytes([b]), N1_9600, n2)[0] for b in b"\x01\x02\x03"]
    assert not any(c.framing_error for c in one_by_one)
    assert not any(c.bad for c in receive(REQUEST, n2, N1_9600))  # more stop bits than expected: fine


def test_seven_data_bits() -> None:
    seven = Framing(9600, 7, "E", 1)
    assert values(receive(b"\x41\xc1", seven, seven)) == b"\x41\x41"  # bit 7 never leaves a 7-bit UART
    assert values(receive(b"\x41", seven, N1_9600)) == bytes([0x41 | parity_bit(0x41, "E") << 7])


def test_swapped_wires_invert_every_level_and_the_idle_line_is_a_break() -> None:
    rx = Receiver(N1_9600)
    chars, _ = transfer(b"\x01\x03\x00\x00\x00\x01", N1_9600, rx, NoJitter(), invert=True)
    assert chars[-1].brk and rx.in_break  # the line rests at space after the transmission
    assert values(chars[:-1]) != b"\x01\x03\x00\x00\x00\x01"
    again, _ = transfer(b"\x01", N1_9600, rx, NoJitter(), invert=True)
    assert again[-1].brk  # every transmission ends in a break


def test_bit_errors_at_a_rate() -> None:
    data = bytes(range(256)) * 4
    rng = random.Random(5)
    chars, flips = transfer(data, N1_9600, Receiver(N1_9600), rng, bit_error_rate=0.01)
    bits = len(data) * 10
    assert 0.5 * 0.01 * bits < flips < 1.5 * 0.01 * bits
    assert values(chars) != data and any(c.framing_error for c in chars)
    repeat, flips2 = transfer(data, N1_9600, Receiver(N1_9600), random.Random(5), bit_error_rate=0.01)
    assert values(repeat) == values(chars) and flips2 == flips  # deterministic from the seed


def test_reflection_rule_of_thumb() -> None:
    assert reflection_ber(2400, 1000) < 1e-12
    assert 1e-4 < reflection_ber(9600, 1000) < 3e-4
    assert reflection_ber(38400, 1000) > 0.05 and reflection_ber(115200, 1200) <= 0.5
    assert reflection_ber(9600, 0) == 0.0
    assert reflection_ber(9600, 1200) > reflection_ber(9600, 1000) > reflection_ber(9600, 300)


def test_wire_drops_or_keeps_bad_characters_and_counts_them() -> None:
    healthy = LineFaults()
    drop = Wire(E1_2400, Framing(2400), seed=1)
    assert drop.to_devices(REQUEST, healthy) == REQUEST[-1:]  # only the last byte had no framing error
    counts = drop.counts["to_devices"]
    assert counts["bytes"] == len(REQUEST) and counts["chars"] == len(REQUEST)
    assert counts["dropped"] == len(REQUEST) - 1 and counts["framing_errors"] == len(REQUEST) - 1
    keep = Wire(E1_2400, Framing(2400), seed=1, uart_errors="keep")
    assert keep.to_devices(REQUEST, healthy) == REQUEST
    same = Wire(E1_2400)
    assert same.to_devices(REQUEST, healthy) == REQUEST
    assert same.to_client(REQUEST, healthy) == (REQUEST, None)
    out, offsets = Wire(E1_2400, N1_9600).to_client(b"\x68", healthy)
    assert out == b"\x00\xf8\xf8" and offsets is not None and len(offsets) == 3


framings = st.builds(Framing, st.sampled_from([1200, 2400, 4800, 9600, 19200, 38400, 115200]),
                     st.sampled_from([5, 6, 7, 8]), st.sampled_from(["N", "E", "O", "M", "S"]),
                     st.sampled_from([1.0, 1.5, 2.0]))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), framings, st.integers(0, 2**31))
def test_property_same_settings_are_transparent(data: bytes, fr: Framing, seed: int) -> None:
    chars = receive(data, fr, fr, seed=seed)
    assert values(chars) == bytes(b & ((1 << fr.bytesize) - 1) for b in data)
    assert not any(c.bad for c in chars)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), framings, framings, st.integers(0, 2**31), st.booleans(),
       st.sampled_from([0.0, 0.001, 0.1]))
def test_property_any_mismatch_gives_bounded_ordered_characters(data: bytes, tx: Framing, rx: Framing,
                                                                seed: int, invert: bool, ber: float) -> None:
    rng = random.Random(seed)
    receiver = Receiver(rx)
    wave, _ = serialise(data, tx, invert, ber, rng)
    chars = receiver.receive(wave, rng)
    times = [c.at for c in chars]
    assert times == sorted(times)
    assert all(0 <= c.value < (1 << rx.bytesize) for c in chars)
    assert all(c.value == 0 for c in chars if c.brk)
    # a character takes at least half of the receiver's character time, and the receiver stops
    # within one character after the line goes idle
    assert len(chars) <= (wave.end + rx.char_time) / (rx.char_time / 2) + 1
    assert not chars or chars[-1].at <= wave.end + 2 * rx.char_time + tx.char_time


def test_waveform_edges() -> None:
    wave = Waveform(idle=1)
    wave.add(0, 1.0)
    wave.add(0, 1.0)
    wave.add(1, 1.0)
    wave.add(0, 1.0)
    assert wave.starts == [0.0, 2.0, 3.0] and wave.end == 4.0
    assert wave.next_fall(0.0) == 0.0 and wave.next_fall(0.5) == 3.0 and wave.next_fall(3.5) is None
    assert wave.next_mark(0.5) == 2.0 and wave.next_mark(3.5) == 4.0
    low = Waveform(idle=0)
    low.add(1, 1.0)
    assert low.next_fall(0.0) == 1.0 and low.next_mark(2.0) is None
