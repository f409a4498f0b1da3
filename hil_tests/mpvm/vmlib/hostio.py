"""MicroPython side of the mpvm host bridge (runs only inside hil_tests/mpvm/runner.mjs).

Wraps the runner's `js.host_*` functions: Python bytes in and out, failures as OSError(errno), the
same shapes the firmware's real transports have (a UART-like `HostFd`, a stream-like `TcpStream`).
"""

import js  # type: ignore[import-not-found]

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


class HostFd:
    """A host file descriptor (pty, FIFO) with machine.UART-like non-blocking read and write."""

    def __init__(self, path, mode="rw"):
        self.fd = _check(js.host_open(path, mode))

    def read(self, n=256):
        """Up to n bytes that are ready, or None when nothing is (like UART.read)."""
        result = js.host_read(self.fd, n)
        if isinstance(result, int):
            if result == -EAGAIN:
                return None
            raise OSError(-result)
        return bytes(result) if result.length else None

    async def read_wait(self, n=256, timeout_ms=1000):
        """Up to n bytes once some are readable; b"" after timeout_ms."""
        return bytes(await _wait(js.host_read_wait(self.fd, n, timeout_ms)))

    def write(self, data):
        return _check(js.host_write(self.fd, js.Uint8Array.new(data)))

    def close(self):
        if self.fd is not None:
            js.host_close(self.fd)
            self.fd = None


class TcpStream:
    """A TCP client connection made by the host (node:net)."""

    def __init__(self, handle):
        self.handle = handle

    @classmethod
    async def connect(cls, host, port, timeout_ms=5000):
        return cls(await _wait(js.host_tcp_connect(host, port, timeout_ms)))

    async def send(self, data):
        return await _wait(js.host_tcp_send(self.handle, js.Uint8Array.new(data)))

    async def recv(self, n=512, timeout_ms=5000):
        """1..n bytes; b"" at end of stream; OSError(ETIMEDOUT) after timeout_ms."""
        return bytes(await _wait(js.host_tcp_recv(self.handle, n, timeout_ms)))

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
