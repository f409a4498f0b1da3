"""Host adapters for the WebAssembly VM: the same interface as hw.Board, bridged to Node.js.

`fwhost` is the JS module hil_tests/mpvm/firmware_host.mjs registers: a pty for each UART, a
node:net socket for MQTT, a watchdog and pin log the host checks. Bytes cross as hex text both
ways: a str is copied, never proxied, so no Python object waits for the JS garbage collector.
"""

import binascii

import fwhost  # type: ignore[import-not-found]

from firmware_py import ring, rt


def _take(text, buf) -> int:
    if text is None:
        return -1
    n = len(text) // 2
    if n:
        buf[0:n] = binascii.unhexlify(text)
    return n


class Pin:
    def __init__(self, n: int) -> None:
        self.n = n

    def value(self, v: int) -> None:
        fwhost.pin(self.n, v)


class Uart:
    def __init__(self, spec: dict) -> None:
        self.id = fwhost.uart_open(spec["port"])
        self.de = Pin(spec["de"]) if spec.get("de") is not None else None
        self.char_ms = 11000 // spec.get("baud", 9600) + 1

    async def write(self, frame) -> None:
        if self.de is not None:
            self.de.value(1)
        fwhost.uart_write(self.id, binascii.hexlify(frame).decode())
        await rt.sleep_ms(self.char_ms)
        if self.de is not None:
            self.de.value(0)

    def readinto(self, buf) -> int:
        return max(0, _take(fwhost.uart_read(self.id, len(buf)), buf))


class Socket:
    def __init__(self) -> None:
        self.id = -1

    async def connect(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        self.id = fwhost.tcp_connect(host, port)
        deadline = rt.ticks_add(rt.ticks_ms(), timeout_ms)
        while True:
            state = fwhost.tcp_state(self.id)
            if state == 1:
                return
            if state < 0:
                raise OSError(111)
            if rt.ticks_diff(deadline, rt.ticks_ms()) < 0:
                raise OSError(110)
            await rt.sleep_ms(5)

    def write(self, buf) -> int:
        if fwhost.tcp_state(self.id) != 1:
            raise OSError(104)
        fwhost.tcp_write(self.id, binascii.hexlify(buf).decode())
        return len(buf)

    def readinto(self, buf) -> int:
        return _take(fwhost.tcp_read(self.id, len(buf)), buf)

    def close(self) -> None:
        if self.id >= 0:
            fwhost.tcp_close(self.id)
            self.id = -1


class Wdt:
    def __init__(self, timeout_ms: int) -> None:
        fwhost.wdt_start(timeout_ms)

    def feed(self) -> None:
        fwhost.wdt_feed()


class Host:
    def uart(self, spec: dict) -> Uart:
        return Uart(spec)

    def socket(self) -> Socket:
        return Socket()

    def wdt(self, timeout_ms: int) -> Wdt:
        return Wdt(timeout_ms)

    def open_ring(self, path: str, slots: int, slot_size: int):
        return ring.create(path, slots, slot_size)

    def pin_low(self, n: int) -> bool:
        return bool(fwhost.pin_low(n))
