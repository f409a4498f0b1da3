"""The cable between one client's UART and the devices' UARTs on a bus, with what can be wrong on it.

A client (the pty, an RFC 2217 or raw TCP connection) has its own UART settings; the devices have the
bus's. When they are equal and the line is healthy, bytes pass unchanged. Otherwise every transmission
goes through the bit-level model of simulator/uart.py:

* towards the devices: the devices' UARTs assemble characters at the bus's settings; a character with
  a parity or framing error, or a break, is dropped by the device (`uart_errors = "drop"`, the default:
  firmware that checks its UART's error flags) or kept as assembled (`"keep"`);
* towards the client: its UART assembles characters at the client's settings and gets them as Linux
  with pyserial delivers them: data bits as sampled whatever the parity or framing error (pyserial
  clears INPCK and PARMRK), a break as one 0x00 byte (BRKINT is off by default).

Physical faults of the bus (simulator/faults.py, layer `line`) act on every transmission between the
client side and the devices: `ab_swapped` inverts every level, idle included; `unterminated` flips bits
at a rate from `bit_error_rate`, else from the cable length and the sender's baud (`reflection_ber`).
"""

from __future__ import annotations

import random
import threading

from simulator.uart import Char, Framing, Receiver, transfer

UART_ERRORS = ("drop", "keep")
SIGNAL_SPEED = 2.0e8  # m/s in twisted pair (velocity factor about 0.66)
DRIVER_REFLECTION = 0.6  # |reflection coefficient| at the driver end of an open line
DIRECTIONS = ("to_devices", "to_client")
COUNTS = ("bytes", "chars", "framing_errors", "parity_errors", "breaks", "dropped", "bit_errors")


def reflection_ber(baud: float, cable_length: float) -> float:
    """Bit error rate of an unterminated line of `cable_length` metres at `baud` (a rule of thumb).

    Each edge rings on an open line: the wave reflects at the open far end and again at the driver,
    losing about 40 % per round trip (DRIVER_REFLECTION). The receiver samples in the middle of a bit;
    what is left of the ringing then, r = 0.6 ** (bit time / 2 / round trip), decides: the rate is
    0.5 * r ** 3 (at most 0.5). 1000 m: 2400 baud 7e-15 (works), 9600 baud 1.7e-4 (steady CRC
    errors), 38400 baud 0.07 (unusable); 100 m at 115200 baud 6.5e-4. Not a transmission-line model.
    """
    if cable_length <= 0 or baud <= 0:
        return 0.0
    round_trip = 2.0 * cable_length / SIGNAL_SPEED
    trips = (0.5 / baud) / round_trip
    residual = DRIVER_REFLECTION ** trips
    return min(0.5, 0.5 * residual ** 3)


def new_counts() -> dict[str, dict[str, int]]:
    return {d: dict.fromkeys(COUNTS, 0) for d in DIRECTIONS}


class LineFaults:
    """The physical faults in force on a bus (what `Wire` asks before each transmission)."""

    def __init__(self, swapped: bool = False, unterminated: dict | None = None, echo: bool = False) -> None:
        self.swapped = swapped
        self.unterminated = unterminated  # {"cable_length": m, "bit_error_rate": optional}
        self.echo = echo

    def bit_error_rate(self, baud: int) -> float:
        if not self.unterminated:
            return 0.0
        rate = self.unterminated.get("bit_error_rate")
        if rate is not None:
            return float(rate)
        return reflection_ber(baud, float(self.unterminated.get("cable_length", 0.0)))

    @property
    def healthy(self) -> bool:
        return not self.swapped and not self.unterminated


class Wire:
    """One client's side of a bus: its UART settings, both receivers, the seeded RNG and the counts."""

    def __init__(self, bus_framing: Framing, client_framing: Framing | None = None, seed: int = 0,
                 uart_errors: str = "drop") -> None:
        if uart_errors not in UART_ERRORS:
            raise ValueError("uart_errors must be one of %s, not %r" % (", ".join(UART_ERRORS), uart_errors))
        self.bus = bus_framing
        self.client = client_framing or bus_framing
        self.uart_errors = uart_errors
        self.rng = random.Random(seed)
        self.device_rx = Receiver(self.bus)
        self.client_rx = Receiver(self.client)
        self.counts = new_counts()
        self.lock = threading.Lock()
        self._errors: set[str] = set()  # "parity", "framing", "break" seen by the client since asked

    def set_client(self, framing: Framing) -> None:
        """The client changed its UART settings (RFC 2217 SET-BAUDRATE, SET-PARITY...)."""
        with self.lock:
            if framing != self.client:
                self.client = framing
                self.client_rx = Receiver(framing)

    @property
    def matched(self) -> bool:
        return self.client == self.bus

    def to_devices(self, data: bytes, faults: LineFaults) -> bytes:
        """The bytes the devices' UARTs take from what the client sent."""
        with self.lock:
            counts = self.counts["to_devices"]
            counts["bytes"] += len(data)
            if self._clean(self.client, self.bus, faults):
                counts["chars"] += len(data)
                return data
            chars, flips = transfer(data, self.client, self.device_rx, self.rng, faults.swapped,
                                    faults.bit_error_rate(self.client.baud))
            self._count(counts, chars, flips)
            if self.uart_errors == "keep":  # every character but a break, as assembled
                kept = bytes(c.value for c in chars if not c.brk)
            else:
                kept = bytes(c.value for c in chars if not c.bad)
            counts["dropped"] += len(chars) - len(kept)
            return kept

    def to_client(self, data: bytes, faults: LineFaults, sender: Framing | None = None,
                  across: bool = True) -> tuple[bytes, list[float] | None]:
        """What the client's UART delivers from `data` sent at `sender`'s settings (the bus's by default):
        (bytes, seconds after the start of the transmission each is complete, or None when the bytes
        pass unchanged). `across` is False for another client's transmission (same side of a swap)."""
        sender = sender or self.bus
        with self.lock:
            counts = self.counts["to_client"]
            counts["bytes"] += len(data)
            swapped = faults.swapped and across
            ber = faults.bit_error_rate(sender.baud)
            if sender == self.client and self.client.bytesize == 8 and not swapped and not ber:
                counts["chars"] += len(data)
                return data, None
            chars, flips = transfer(data, sender, self.client_rx, self.rng, swapped, ber)
            self._count(counts, chars, flips)
            for c in chars:
                if c.brk:
                    self._errors.add("break")
                elif c.framing_error:
                    self._errors.add("framing")
                if c.parity_error:
                    self._errors.add("parity")
            return bytes(c.value for c in chars), [c.at for c in chars]

    def rest(self, faults: LineFaults) -> bytes:
        """The line is resting with `faults` in force (they changed, or the client just came): on
        swapped wires it rests at space, so each UART that was waiting sees one break (the client
        gets a 0x00, the devices drop theirs); on a healthy line both wait for a start bit."""
        with self.lock:
            if not faults.swapped:
                self.device_rx.in_break = self.client_rx.in_break = False
                return b""
            out = b""
            if not self.device_rx.in_break:
                self.device_rx.in_break = True
                for key in ("chars", "breaks", "dropped"):
                    self.counts["to_devices"][key] += 1
            if not self.client_rx.in_break:
                self.client_rx.in_break = True
                self.counts["to_client"]["chars"] += 1
                self.counts["to_client"]["breaks"] += 1
                self._errors.add("break")
                out = b"\x00"
            return out

    def take_errors(self) -> set[str]:
        """The kinds of receive error ("parity", "framing", "break") the client's UART saw since the
        last call (for RFC 2217 NOTIFY-LINESTATE)."""
        with self.lock:
            errors, self._errors = self._errors, set()
            return errors

    def client_break(self) -> None:
        """The client holds its line at space (RFC 2217 SET-CONTROL break on): the devices' UARTs see
        a break and throw it away."""
        with self.lock:
            self.counts["to_devices"]["breaks"] += 1
            self.counts["to_devices"]["dropped"] += 1

    @staticmethod
    def _clean(sender: Framing, receiver: Framing, faults: LineFaults) -> bool:
        return sender == receiver and sender.bytesize == 8 and faults.healthy

    @staticmethod
    def _count(counts: dict[str, int], chars: list[Char], flips: int) -> None:
        counts["chars"] += len(chars)
        counts["bit_errors"] += flips
        for c in chars:
            counts["framing_errors"] += c.framing_error and not c.brk
            counts["parity_errors"] += c.parity_error
            counts["breaks"] += c.brk

    def snapshot(self) -> dict:
        with self.lock:
            return {"client": str(self.client), "bus": str(self.bus),
                    "counts": {d: dict(c) for d, c in self.counts.items()}}
