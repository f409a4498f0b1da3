"""Board adapters: UART with RS-485 direction pin, pins, watchdog, flash file, TCP socket.

The main loop talks only to an object with `uart(spec)`, `socket()`, `wdt(ms)`, `open_ring(...)`
and `pin_low(n)`. This module is the board implementation (machine, socket, select); hw_host.py
is the one the WebAssembly VM uses, bridged to hil_tests/mpvm/runner.mjs through `hostio`.
"""

import select
import socket
import time

import machine  # type: ignore[import-not-found]

from firmware_py import ring, rt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EAGAIN = 11
EINPROGRESS = 115


class Uart:
    """machine.UART with the DE/RE pin high only while transmitting (or auto-direction: no pin)."""

    def __init__(self, spec: dict) -> None:
        baud = spec.get("baud", 9600)
        parity = {"N": None, "E": 0, "O": 1}[spec.get("parity", "N")]
        kw = {"baudrate": baud, "bits": spec.get("bytesize", 8), "parity": parity,
              "stop": spec.get("stopbits", 1), "timeout": 0, "rxbuf": 512}
        if spec.get("tx") is not None:
            kw["tx"] = machine.Pin(spec["tx"])
            kw["rx"] = machine.Pin(spec["rx"])
        self.uart = machine.UART(spec.get("uart", 1), **kw)
        de = spec.get("de")
        self.de = machine.Pin(de, machine.Pin.OUT, value=0) if de is not None else None
        bits = 1 + spec.get("bytesize", 8) + (0 if parity is None else 1) + spec.get("stopbits", 1)
        self.char_us = bits * 1000000 // baud + 1

    async def write(self, frame) -> None:
        de = self.de
        if de is not None:
            de.value(1)
        self.uart.write(frame)
        self.uart.flush()  # returns when the last byte left the FIFO (MicroPython >= 1.20)
        time.sleep_us(self.char_us)  # type: ignore[attr-defined]  # ...and the shift register
        if de is not None:
            de.value(0)

    def readinto(self, buf) -> int:
        if not self.uart.any():
            return 0
        n = self.uart.readinto(buf)
        return n or 0


class Socket:
    """Non-blocking TCP client socket."""

    def __init__(self) -> None:
        self.s: Any = None

    async def connect(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
        s = socket.socket()
        self.s = s
        s.setblocking(False)
        try:
            s.connect(addr)
        except OSError as exc:
            if exc.args[0] not in (EINPROGRESS, EAGAIN, 119):
                raise
        p = select.poll()
        p.register(s, select.POLLOUT | select.POLLERR | select.POLLHUP)
        deadline = rt.ticks_add(rt.ticks_ms(), timeout_ms)
        while True:
            ev = p.poll(0)
            if ev:
                if ev[0][1] & (select.POLLERR | select.POLLHUP):
                    raise OSError(111)
                return
            if rt.ticks_diff(deadline, rt.ticks_ms()) < 0:
                raise OSError(110)
            await rt.sleep_ms(10)

    def write(self, buf) -> int:
        try:
            n = self.s.write(buf)
        except OSError as exc:
            if exc.args[0] == EAGAIN:
                return 0
            raise
        return n or 0

    def readinto(self, buf) -> int:
        try:
            n = self.s.readinto(buf)
        except OSError as exc:
            if exc.args[0] == EAGAIN:
                return 0
            raise
        if n is None:
            return 0
        return n if n > 0 else -1

    def close(self) -> None:
        if self.s is not None:
            self.s.close()
            self.s = None


class Board:
    """The hardware of a real board."""

    def uart(self, spec: dict) -> Uart:
        return Uart(spec)

    def socket(self) -> Socket:
        return Socket()

    def wdt(self, timeout_ms: int):
        return machine.WDT(timeout=timeout_ms)

    def open_ring(self, path: str, slots: int, slot_size: int):
        return ring.create(path, slots, slot_size)

    def pin_low(self, n: int) -> bool:
        return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
