"""MicroPython side of the mpvm host bridge (runs only inside hil_tests/mpvm/runner.mjs).

Wraps the runner's `js.host_*` functions in the shapes a board's own objects have: a UART-like
`HostFd`, a non-blocking socket `TcpStream`, `Pin` and `WDT` as in `machine`. Bytes cross as the
address and length of a Python buffer (`uctypes.addressof`): the host copies straight from or into
it, so no call makes garbage or leaves an object for the JS garbage collector. Failures are
OSError(errno).
"""

import js  # type: ignore[import-not-found]
from uctypes import addressof  # type: ignore[import-not-found]

EAGAIN = 11


def _check(result):
    """Sync bridge calls return a value or a negative errno; they never throw."""
    if isinstance(result, int) and result < 0:
        raise OSError(-result)
    return result


async def _wait(promise):
    """Await a host promise; a rejection carrying an errno becomes OSError(errno)."""
    try:
        return await promise
    except OSError:
        raise
    except Exception as e:  # JsException: args are (error proxy, name, message)
        errno = getattr(e.args[0], "errno", None) if e.args else None
        if isinstance(errno, int):
            raise OSError(errno) from None
        raise


def _into(call, handle, buf):
    """Host read into buf: the count, 0 at end of stream, None when nothing is there yet."""
    if not len(buf):
        return None
    n = call(handle, addressof(buf), len(buf))
    if n == -EAGAIN:
        return None
    return _check(n)


def _take(stream, n):
    buf = bytearray(n)
    got = stream.readinto(buf)
    return None if got is None else bytes(buf[:got])


def emit(text):
    """A result line for the test that started the VM (`@@ text` on stdout)."""
    print("@@ " + text)


def js_gc():
    """Run the JS garbage collector: Python objects handed to JS are released in its finalizers,
    which run as later JS tasks (yield before measuring the heap). True when it ran."""
    return bool(js.host_js_gc())


def tcp_drop_all():
    """Cut every TCP connection the host holds for this VM, as a lost link does; returns how many."""
    return js.host_tcp_drop_all()


class HostFd:
    """A host file descriptor (pty, FIFO) with machine.UART-like non-blocking read and write."""

    def __init__(self, path, mode="rw"):
        self.fd = _check(js.host_open(path, mode))

    def readinto(self, buf):
        """Bytes that are ready into buf: the count, or None when nothing is (like UART.readinto)."""
        return _into(js.host_read, self.fd, buf) or None

    def read(self, n=256):
        """Up to n bytes that are ready, or None when nothing is (like UART.read)."""
        return _take(self, n)

    async def read_wait(self, n=256, timeout_ms=1000):
        """Up to n bytes once some are readable; b"" after timeout_ms."""
        if not await _wait(js.host_read_wait(self.fd, timeout_ms)):
            return b""
        return self.read(n) or b""

    def write(self, data):
        return _check(js.host_write(self.fd, addressof(data), len(data)))

    def close(self):
        if self.fd is not None:
            js.host_close(self.fd)
            self.fd = None


class TcpStream:
    """A TCP client connection made by the host (node:net): non-blocking write/readinto as a socket
    has them, and awaitable send/recv."""

    def __init__(self, handle):
        self.handle = handle

    @classmethod
    async def connect(cls, host, port, timeout_ms=5000):
        """OSError(ECONNREFUSED), OSError(ETIMEDOUT) after timeout_ms, ..."""
        return cls(await _wait(js.host_tcp_connect(host, port, timeout_ms)))

    def write(self, data):
        """Queue all of data at once; its length. OSError(EPIPE) once the connection is closed."""
        return _check(js.host_tcp_write(self.handle, addressof(data), len(data)))

    def readinto(self, buf):
        """Received bytes into buf: the count, 0 at end of stream, None when none are there yet."""
        return _into(js.host_tcp_read, self.handle, buf)

    async def send(self, data):
        return self.write(data)

    async def recv(self, n=512, timeout_ms=5000):
        """1..n bytes; b"" at end of stream; OSError(ETIMEDOUT) after timeout_ms."""
        if not await _wait(js.host_tcp_wait(self.handle, timeout_ms)):
            return b""
        return _take(self, n) or b""

    async def recv_exactly(self, n, timeout_ms=5000):
        out = b""
        while len(out) < n:
            chunk = await self.recv(n - len(out), timeout_ms)
            if not chunk:
                raise OSError(104)  # ECONNRESET: closed mid-message
            out += chunk
        return out

    def close(self):
        if self.handle is not None:
            js.host_tcp_close(self.handle)
            self.handle = None


class Pin:
    """machine.Pin-like: writes are counted by the host (the run's report), reads give the level the
    runner was told (--pin-low N: 0, else 1)."""

    def __init__(self, n):
        self.n = n

    def value(self, v=None):
        if v is None:
            return js.host_pin_get(self.n)
        js.host_pin_set(self.n, 1 if v else 0)
        return None


class WDT:
    """machine.WDT-like: the host records the timeout, the feeds and the longest gap between them."""

    def __init__(self, timeout=5000):
        js.host_wdt_start(timeout)

    def feed(self):
        js.host_wdt_feed()
