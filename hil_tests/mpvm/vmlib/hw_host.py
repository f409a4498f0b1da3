"""Host adapters for the WebAssembly VM: the same interface as hw.Board, on the mpvm host bridge.

`hostio` is the Python side of hil_tests/mpvm's host (runner.mjs): a pty for each UART, a node:net
socket for MQTT, DE pins and a watchdog the host counts and reports back to the test. Bytes cross
by the address of the firmware's own buffers, so the adapters allocate nothing per call.
"""

import hostio  # type: ignore[import-not-found]

from firmware_py import ring, rt


class Uart:
    def __init__(self, spec: dict) -> None:
        self.port = hostio.HostFd(spec["port"])
        self.de = hostio.Pin(spec["de"]) if spec.get("de") is not None else None
        self.char_ms = 11000 // spec.get("baud", 9600) + 1

    async def write(self, frame) -> None:
        if self.de is not None:
            self.de.value(1)
        self.port.write(frame)
        await rt.sleep_ms(self.char_ms)
        if self.de is not None:
            self.de.value(0)

    def readinto(self, buf) -> int:
        return self.port.readinto(buf) or 0


class Socket:
    def __init__(self) -> None:
        self.s = None

    async def connect(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        self.s = await hostio.TcpStream.connect(host, port, timeout_ms)

    def write(self, buf) -> int:
        if self.s is None:
            raise OSError(107)
        return self.s.write(buf)

    def readinto(self, buf) -> int:
        if self.s is None:
            return -1
        try:
            n = self.s.readinto(buf)
        except OSError:
            return -1
        if n is None:
            return 0
        return n if n > 0 else -1

    def close(self) -> None:
        if self.s is not None:
            self.s.close()
            self.s = None


class Host:
    def uart(self, spec: dict) -> Uart:
        return Uart(spec)

    def socket(self) -> Socket:
        return Socket()

    def wdt(self, timeout_ms: int):
        return hostio.WDT(timeout_ms)

    def open_ring(self, path: str, slots: int, slot_size: int):
        return ring.create(path, slots, slot_size)

    def pin_low(self, n: int) -> bool:
        return hostio.Pin(n).value() == 0
