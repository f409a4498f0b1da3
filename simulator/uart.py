"""A UART on a wire, bit by bit: what a receiver at its own settings makes of another UART's bytes.

The sender turns each byte into line levels at its own baud: idle is mark (1); a start bit (0), the data
bits least significant first, the parity bit, the stop bits (1); the bytes of one transmission go out
back to back. The receiver runs on its own clock, as a 16550-class UART does:

* it waits for a falling edge (seen up to 1/16 bit late: it samples the line at 16 times its baud);
* it checks the middle of the start bit (still 1: a glitch, it goes back to waiting);
* it samples each data bit, the parity bit and every stop bit it expects at the middle of its own
  bit times;
* a stop bit read as 0 is a framing error; when the start, data, parity and stop samples are all 0 the
  line was held at space for a whole character: a break (value 0), after which it waits for the line
  to return to mark;
* after a framing error it takes the 0 it just read as the start bit of the next character (the
  16550 resynchronisation);
* the parity bit is checked as set (even, odd, mark, space): a mismatch is a parity error.

Samples after the end of a transmission read the idle level. A wire with A and B swapped inverts
every level, idle included (a receiver on it sees a break whenever the line rests). Bit errors flip
single bit cells of the sender's signal. All randomness comes from the `random.Random` passed in.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

PARITIES = ("N", "E", "O", "M", "S")  # none, even, odd, mark (always 1), space (always 0)
STOP_BITS = (1.0, 1.5, 2.0)


class FramingError(ValueError):
    """Settings a UART cannot have (data bits outside 5..8, an unknown parity...)."""


@dataclass(frozen=True)
class Framing:
    """A UART's character format: baud, data bits, parity (N E O M S), stop bits (1, 1.5, 2)."""

    baud: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1.0

    def __post_init__(self) -> None:
        if not 50 <= self.baud <= 4000000:
            raise FramingError("baud %r is outside 50..4000000" % (self.baud,))
        if self.bytesize not in (5, 6, 7, 8):
            raise FramingError("data bits %r: must be 5, 6, 7 or 8" % (self.bytesize,))
        if self.parity not in PARITIES:
            raise FramingError("parity %r: must be one of %s" % (self.parity, " ".join(PARITIES)))
        if float(self.stopbits) not in STOP_BITS:
            raise FramingError("stop bits %r: must be 1, 1.5 or 2" % (self.stopbits,))

    @property
    def bit_time(self) -> float:
        return 1.0 / self.baud

    @property
    def char_bits(self) -> float:
        """Bits of one character on the line: start + data + parity + stop."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + float(self.stopbits)

    @property
    def char_time(self) -> float:
        return self.char_bits / self.baud

    def __str__(self) -> str:
        stop = "%g" % self.stopbits
        return "%d %d%s%s" % (self.baud, self.bytesize, self.parity, stop)


def parity_bit(value: int, parity: str) -> int:
    """The parity bit a sender adds to `value` (N has none: 0)."""
    ones = bin(value).count("1") & 1
    return {"E": ones, "O": ones ^ 1, "M": 1, "S": 0}.get(parity, 0)


class Waveform:
    """Line levels of one transmission from t = 0 to `end` (seconds); before and after: `idle`."""

    def __init__(self, idle: int = 1) -> None:
        self.idle = idle
        self.starts: list[float] = []  # where each run of one level begins
        self.levels: list[int] = []
        self.end = 0.0

    def add(self, level: int, duration: float) -> None:
        if self.levels and self.levels[-1] == level:
            self.end += duration
            return
        self.starts.append(self.end)
        self.levels.append(level)
        self.end += duration

    def level(self, t: float) -> int:
        if t < 0.0 or t >= self.end or not self.starts:
            return self.idle
        return self.levels[bisect.bisect_right(self.starts, t) - 1]

    def next_fall(self, t: float) -> float | None:
        """The first time >= t at which the line goes from 1 to 0, or None."""
        i = bisect.bisect_left(self.starts, t)
        while i < len(self.starts):
            before = self.levels[i - 1] if i > 0 else self.idle
            if before == 1 and self.levels[i] == 0:
                return self.starts[i]
            i += 1
        if self.levels and self.levels[-1] == 1 and self.idle == 0 and self.end >= t:
            return self.end
        return None

    def next_mark(self, t: float) -> float | None:
        """The first time >= t at which the line is at 1, or None (it stays at 0)."""
        if self.level(t) == 1:
            return t
        i = bisect.bisect_right(self.starts, t)
        while i < len(self.starts):
            if self.levels[i] == 1:
                return self.starts[i]
            i += 1
        return self.end if self.idle == 1 and self.end >= t else None


def serialise(data: bytes, framing: Framing, invert: bool = False, bit_error_rate: float = 0.0,
              rng: random.Random | None = None) -> tuple[Waveform, int]:
    """The sender's line levels for `data` sent back to back; (waveform, bits flipped by errors)."""
    flip = 1 if invert else 0
    wave = Waveform(idle=1 ^ flip)
    bit = framing.bit_time
    mask = (1 << framing.bytesize) - 1
    flips = 0
    noisy = bit_error_rate > 0.0 and rng is not None
    for byte in data:
        value = byte & mask
        cells = [0] + [(value >> k) & 1 for k in range(framing.bytesize)]
        if framing.parity != "N":
            cells.append(parity_bit(value, framing.parity))
        for level in cells:
            if noisy and rng.random() < bit_error_rate:  # type: ignore[union-attr]
                level ^= 1
                flips += 1
            wave.add(level ^ flip, bit)
        stop = 1
        if noisy and rng.random() < bit_error_rate:  # type: ignore[union-attr]
            stop = 0
            flips += 1
        wave.add(stop ^ flip, bit * float(framing.stopbits))
    return wave, flips


@dataclass
class Char:
    """One character a receiver assembled: its data bits and what its UART flagged."""

    value: int
    at: float  # seconds after the start of the transmission: the receiver's last sample
    parity_error: bool = False
    framing_error: bool = False
    brk: bool = False

    @property
    def bad(self) -> bool:
        return self.parity_error or self.framing_error or self.brk


class Receiver:
    """A UART's receiver at its own settings; remembers, between transmissions, a break in progress."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.in_break = False

    def receive(self, wave: Waveform, rng: random.Random) -> list[Char]:
        """Every character this receiver assembles from `wave` (and the idle line after it)."""
        out = self._receive(wave, rng)
        if wave.idle == 1:
            self.in_break = False  # the line rests at mark after the transmission
        return out

    def _receive(self, wave: Waveform, rng: random.Random) -> list[Char]:
        fr = self.framing
        bit = fr.bit_time
        out: list[Char] = []
        t = 0.0
        mid: float | None = None  # middle of a start bit already found (resynchronisation)
        while True:
            if mid is None:
                if self.in_break:
                    mark = wave.next_mark(t)
                    if mark is None:
                        return out
                    self.in_break = False
                    t = mark
                fall = wave.next_fall(t)
                if fall is None:
                    return out
                mid = fall + rng.random() * bit / 16.0 + bit / 2.0
                if wave.level(mid) != 0:  # a glitch: no start bit after all
                    t, mid = mid, None
                    continue
            value = 0
            for k in range(fr.bytesize):
                value |= wave.level(mid + (k + 1) * bit) << k
            at = mid + (fr.bytesize + 1) * bit
            parity_sample = 0
            parity_error = False
            if fr.parity != "N":
                parity_sample = wave.level(at)
                parity_error = parity_sample != parity_bit(value, fr.parity)
                at += bit
            failed: float | None = None
            first_stop = wave.level(at)
            for j in range(2 if float(fr.stopbits) == 2.0 else 1):
                if wave.level(at + j * bit) == 0:
                    failed = at + j * bit
                    break
            at = failed if failed is not None else at + (1 if float(fr.stopbits) == 2.0 else 0) * bit
            if failed is None:
                out.append(Char(value, at, parity_error))
                t, mid = at, None
            elif value == 0 and parity_sample == 0 and first_stop == 0:
                out.append(Char(0, at, parity_error, True, True))
                self.in_break = True
                t, mid = at, None
            else:
                out.append(Char(value, at, parity_error, True))
                mid = failed  # the 0 just read is taken as the next start bit


def transfer(data: bytes, sender: Framing, receiver: Receiver, rng: random.Random, invert: bool = False,
             bit_error_rate: float = 0.0) -> tuple[list[Char], int]:
    """What `receiver` assembles from `data` sent at `sender`'s settings: (characters, bits flipped)."""
    wave, flips = serialise(data, sender, invert, bit_error_rate, rng)
    return receiver.receive(wave, rng), flips
