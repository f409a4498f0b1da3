"""Serial links through pyserial's `serial_for_url`: a device path or a URL (`socket://`, `rfc2217://`,
`loop://`), with 8E1-style framing from the bus config.

A port that disappears (USB adapter unplugged) raises LinkClosed; the link closes itself and
`ensure_open` reopens it with a backoff once the device node is back.

A device file (not a URL) is opened and configured by pyserial, then read and written on its file
descriptor directly: one `poll` with a deadline per wait, `os.read` / `os.write`, no per-call
objects; a read that must not wait (the check for stale input before a request, the read of a reply
whose time has come) is the non-blocking `os.read` alone. The silence before a request (t3.5, or the
turnaround) is that same kind of timed read on the line: bytes that arrive during it are dropped and
counted, and the silence starts again after them (bounded by the response timeout), so a request never
goes out over a late reply.
"""

from __future__ import annotations

import errno
import os
import select
import termios
import time
from typing import Any

import serial

from agent.link.base import Link, LinkClosed

__all__ = ["SerialLink", "char_bits", "inter_frame_silence"]

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_NO_DATA = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)  # a non-blocking read that found nothing yet


def is_pty(path: str) -> bool:
    """True for a Unix98 pseudo-terminal slave (/dev/pts/N: major 136..143), e.g. the simulator's buses."""
    try:
        return 136 <= os.major(os.stat(path).st_rdev) <= 143
    except (OSError, ValueError):
        return False


def char_bits(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Bits of one character on the line: start + data + parity + stop."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def inter_frame_silence(baud: int, bits: int) -> float:
    """Modbus t3.5 in seconds (3.5 characters, fixed 1.75 ms above 19200 baud)."""
    return 0.00175 if baud > 19200 else 3.5 * bits / baud


def _open_failure(port: str, exc: Exception) -> str:
    """Why a port did not open, without pyserial's repetition of the port name, with what to check."""
    text = str(exc)
    prefix = "Could not open port %s: " % port
    if text.startswith(prefix):
        text = text[len(prefix):]
    if "://" not in port:
        return text
    host = port.split("://", 1)[1].split("?", 1)[0]
    if "does not seem to support RFC2217" in text:
        return ("the server at %s does not speak RFC 2217 (a raw TCP port? then use socket://%s)"
                % (host, host))
    return "%s (is the serial device server at %s on, and is its TCP port right?)" % (text, host)


def _io_failure(exc: Exception) -> str:
    """pyserial's words for a lost network port, in a technician's."""
    text = str(exc)
    if "reader thread died" in text or "socket error" in text or "Broken pipe" in text:
        return "the serial device server closed the connection (%s)" % text
    return text


class SerialLink(Link):
    """RS-485 through a pyserial port."""

    def __init__(self, name: str, port: str, baud: int = 9600, parity: str = "N", bytesize: int = 8,
                 stopbits: int = 1, timeout: float = 0.5, turnaround: float = 0.0,
                 pause: float = 0.0) -> None:
        bits = char_bits(bytesize, parity, stopbits)
        Link.__init__(self, name, port, timeout=timeout, silence=inter_frame_silence(baud, bits),
                      turnaround=turnaround, pause=pause, char_time=bits / baud)
        self.baud = baud
        self.parity = parity
        self.bytesize = bytesize
        self.stopbits = stopbits
        self._serial: Any = None
        self._fd_mode = True
        self._fd = -1  # the device file's descriptor in fd mode
        self._poller: Any = None  # select.poll() watching it for input

    @classmethod
    def from_bus(cls, bus: Any) -> SerialLink:
        """Build from a BusConfig (times in milliseconds there)."""
        return cls(bus.name, bus.port, baud=bus.baud, parity=bus.parity, bytesize=bus.bytesize,
                   stopbits=bus.stopbits, timeout=bus.timeout_ms / 1000.0,
                   turnaround=bus.turnaround_ms / 1000.0, pause=bus.pause_ms / 1000.0)

    def _open(self) -> None:
        port = serial.serial_for_url(self.port, do_not_open=True)
        port.baudrate = self.baud
        port.bytesize = self.bytesize
        # A pty has no parity: Linux refuses PARENB on it, and a tcsetattr whose only change is
        # PARENB fails with EINVAL (POSIX: success only if some change was made) — so reopening a
        # pty at 8E1 would fail. The line timing is unchanged (char_time keeps the parity bit).
        pty = "://" not in self.port and is_pty(self.port)
        port.parity = serial.PARITY_NONE if pty else _PARITY[self.parity]
        port.stopbits = self.stopbits
        # Timeouts never change after opening (changing one re-runs tcsetattr, which some drivers and
        # ptys refuse): device files are read non-blocking behind select(); URL handlers with a
        # short fixed timeout, polled until the deadline.
        self._fd_mode = "://" not in self.port
        if self._fd_mode:
            # one owner per port: a second process (another agent, a stray test) gets a clear "could not
            # exclusively lock port" instead of stealing half the replies
            port.exclusive = True
        port.timeout = 0 if self._fd_mode else 0.01
        if not self.port.startswith("rfc2217://"):  # pyserial's RFC 2217 client refuses a write timeout
            port.write_timeout = max(2.0, self.timeout * 4)  # (its socket has its own 5 s timeout)
        try:
            port.open()
        except (serial.SerialException, OSError) as exc:
            reason = _open_failure(self.port, exc)
            raise LinkClosed("%s: cannot open %s: %s" % (self.name, self.port, reason)) from None
        self._serial = port
        if self._fd_mode:
            self._fd = port.fileno()
            os.set_blocking(self._fd, False)  # (pyserial opens it so; `_read` and `_write_fd` rely on it)
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)

    def reconfigure(self, baud: int, parity: str, stopbits: int = 1, bytesize: int = 8) -> None:
        """Change the line settings; on an open port they are applied in place (through RFC 2217 the
        serial device server's UART changes; `fieldlink scan --auto` steps through settings this way)."""
        bits = char_bits(bytesize, parity, stopbits)
        self.baud, self.parity, self.stopbits, self.bytesize = baud, parity, stopbits, bytesize
        self.silence = inter_frame_silence(baud, bits)
        self.char_time = bits / baud
        port = self._serial
        if port is None:
            return
        pty = "://" not in self.port and is_pty(self.port)
        try:
            port.apply_settings({"baudrate": baud, "bytesize": bytesize, "stopbits": stopbits,
                                 "parity": serial.PARITY_NONE if pty else _PARITY[parity]})
        except (serial.SerialException, OSError, termios.error, ValueError) as exc:
            raise self.lost("cannot set %d %d%s%d on %s: %s" % (baud, bytesize, parity, stopbits, self.port,
                                                                 exc)) from None

    def _close(self) -> None:
        port, self._serial = self._serial, None
        self._poller = None
        self._fd = -1
        if port is not None:
            port.close()

    def _write(self, data: bytes) -> None:
        try:
            if self._poller is not None:
                self._write_fd(data)
            else:
                self._serial.write(data)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise self.lost("write failed on %s: %s" % (self.port, _io_failure(exc))) from None

    def _write_fd(self, data: bytes) -> None:
        """All of `data` to the device file (non-blocking): the kernel takes a request at once unless
        its transmit buffer is full; then wait for room, up to the write timeout."""
        fd = self._fd
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        end = time.monotonic() + max(2.0, self.timeout * 4)
        while sent < len(data):
            left = end - time.monotonic()
            if left <= 0:
                raise serial.SerialTimeoutException("write timeout: %d of %d bytes sent" % (sent, len(data)))
            if poller.poll(left * 1000):
                try:
                    sent += os.write(fd, view[sent:])
                except BlockingIOError:
                    pass

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        poller = self._poller
        if poller is not None:  # a device file: one timed poll, one read (no wait: the read alone)
            waited = timeout > 0
            try:
                if waited and not poller.poll(timeout * 1000):
                    return b""
                # non-blocking, and a terminal with VMIN = VTIME = 0: nothing there reads as 0 bytes (or
                # EAGAIN), so a read that must not wait says nothing of a hang-up; the next timed read
                # (poll reports the hang-up as readable) or the next write does
                data = os.read(self._fd, max_bytes)
            except OSError as exc:
                if exc.errno in _NO_DATA:
                    return b""
                raise self.lost("read failed on %s: %s" % (self.port, _io_failure(exc))) from None
            if not data and waited and self._hung_up(self._fd):  # readable but empty: the node went away
                raise self.lost("read failed on %s: device disconnected" % self.port)
            return data  # empty: the bytes went elsewhere (a flush, another reader): no data yet
        port = self._serial
        if port is None:
            raise LinkClosed("%s: port %s is closed" % (self.name, self.port))
        try:
            end = time.monotonic() + timeout
            while True:
                first = port.read(1)
                if first or time.monotonic() >= end:
                    break
            if not first:
                return b""
            waiting = port.in_waiting
            if waiting and max_bytes > 1:
                return first + port.read(min(waiting, max_bytes - 1))
            return bytes(first)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise self.lost("read failed on %s: %s" % (self.port, _io_failure(exc))) from None

    def _hung_up(self, fd: int) -> bool:
        """True when the port is gone: a hang-up or error on its fd, or its device node removed."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        for _fd, events in poller.poll(0):
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return True
        return not os.path.exists(self.port)

    def _quiet(self, until: float) -> int:
        """Wait for the line to be silent until `until`, with timed reads on the device file: bytes
        that arrive meanwhile (a late reply, noise) are dropped, and the silence is counted again from
        the last of them, for at most the response timeout more. Other ports: sleep, then flush."""
        if self._poller is None:
            return Link._quiet(self, until)
        clock = self.clock
        read = self._read
        now = clock()
        latest = max(now, until) + self.timeout  # a line that never falls silent does not stop the bus
        dropped = 0
        while True:
            data = read(4096, until - now if until > now else 0)
            now = clock()
            if data:
                dropped += len(data)
                if now >= latest:
                    return dropped
                # the silence counts again from these bytes; a hold (after a broadcast) still ends no earlier
                until = max(until, min(latest, now + max(self.silence, self.turnaround) + self.pause))
            elif now >= until:
                return dropped

    def _discard_input(self) -> int:
        port = self._serial
        try:
            waiting = port.in_waiting
            if self.port.startswith("rfc2217://"):
                # Only what has arrived: pyserial's reset_input_buffer sends a PURGE-DATA and polls for
                # its answer every 50 ms (50 ms more per request), 3 s when the server is gone.
                if waiting:
                    port.read(waiting)
            else:
                port.reset_input_buffer()
        except (serial.SerialException, OSError, termios.error) as exc:
            raise self.lost("port %s failed: %s" % (self.port, _io_failure(exc))) from None
        return int(waiting or 0)
