"""An RS-485 bus as a pseudo-terminal pair: the agent opens the device path, the devices answer.

One thread per bus reads the pty's server side, frames requests with each protocol's frame reader
(a silence of t3.5 / 500 ms drops a partial frame), hands each frame to the devices it addresses and
writes their replies back at line speed, after the protocol's turnaround. Only the addressed device
answers; a broadcast is obeyed by all and answered by none.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
from typing import Any

from simulator.clock import Clock
from simulator.device import Device
from simulator.faults import FaultSet
from simulator.line import Line
from simulator.pty import open_pty
from simulator.servers import reader_for, reader_key


class Bus:
    """One simulated RS-485 line with its devices."""

    def __init__(self, name: str, line: Line, devices: list[Device], clock: Clock, seed: int = 0,
                 link: str | None = None) -> None:
        self.name = name
        self.line = line
        self.devices = devices
        self.clock = clock
        self.link = link
        self.faults = FaultSet(seed, bus_level=True)
        self.readers: dict[str, Any] = {}
        for d in devices:
            key = reader_key(d.protocol)
            if key not in self.readers:
                self.readers[key] = reader_for(d.protocol)
        self.counts = {"frames": 0, "bad_frames": 0, "unaddressed": 0, "replies": 0}
        self.path = ""
        self.tcp_port: int | None = None  # serve the bus's Modbus devices over TCP too (0: any port)
        self.tcp_address: tuple[str, int] | None = None  # where the TCP server listens, once started
        self._server_fd = -1
        self._client_fd = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._made_link = False

    # ---------------------------------------------------------------- life cycle
    def open(self) -> str:
        """Create the pty pair; returns the device path a client opens."""
        server_fd, client_fd, _path = open_pty()  # a number no stray process holds
        _raw_lines(client_fd)
        _park_speed(client_fd)
        os.set_blocking(server_fd, False)
        self._server_fd, self._client_fd = server_fd, client_fd
        self.path = os.ttyname(client_fd)
        if self.link:
            if os.path.islink(self.link):
                os.unlink(self.link)  # a stale link from an earlier run
            os.symlink(self.path, self.link)
            self._made_link = True
        return self.path

    def start(self) -> None:
        if self._server_fd < 0:
            self.open()
        self._thread = threading.Thread(target=self._run, name="bus-%s" % self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close both pty ends (and remove the link this bus made)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for fd in (self._server_fd, self._client_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._server_fd = self._client_fd = -1
        if self._made_link and self.link and os.path.islink(self.link):
            os.unlink(self.link)
            self._made_link = False

    @property
    def device_path(self) -> str:
        """The path to give a client: the stable link when there is one, else the pty itself."""
        return self.link or self.path

    def describe(self) -> dict:
        return {
            "name": self.name, "path": self.device_path, "pty": self.path, "baud": self.line.baud,
            "framing": self.line.framing, "bytesize": self.line.bytesize, "parity": self.line.parity,
            "stopbits": self.line.stopbits, "instant": self.line.instant,
            "devices": [d.describe() for d in self.devices],
        }

    # ---------------------------------------------------------------- the loop
    def _run(self) -> None:
        fd = self._server_fd
        burst_start = 0.0
        burst_bytes = 0
        last_rx = 0.0
        dirty = False
        gap = max(self.line.frame_gap(k) for k in self.readers) if self.readers else 0.5
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            if not ready:
                _park_speed(self._client_fd)
                if dirty and now - last_rx > gap:
                    dirty = False
                    for key, reader in self.readers.items():
                        frames = reader.reset() or []
                        self._count_errors(reader)
                        for frame in frames:
                            self._dispatch(key, frame, now)
                continue
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                time.sleep(0.05)  # no client side open (EIO): wait for one
                continue
            if not chunk:
                continue
            if burst_bytes == 0 or now - last_rx > self.line.silence_gap():
                burst_start, burst_bytes = now, 0
            burst_bytes += len(chunk)
            last_rx = now
            dirty = True
            found = [(key, reader.feed(chunk)) for key, reader in self.readers.items()]
            for key, frames in found:
                if frames and len(self.readers) > 1:
                    self._resync_others(key)
            for key, frames in found:
                self._count_errors(self.readers[key])
                for frame in frames:
                    end = max(time.monotonic(), burst_start + self.line.wire_time(burst_bytes))
                    burst_bytes = 0
                    self._dispatch(key, frame, end)

    def _resync_others(self, key: str) -> None:
        """A frame of one protocol was found: what the other readers hold was that frame, not theirs."""
        for other, reader in self.readers.items():
            if other != key:
                reader.reset()
                reader.take_errors()

    def _count_errors(self, reader: object) -> None:
        errors = reader.take_errors()  # type: ignore[attr-defined]
        self.counts["bad_frames"] += len(errors)

    def _dispatch(self, key: str, frame: object, request_end: float) -> None:
        """Give one request to the devices it addresses and send their replies."""
        self.counts["frames"] += 1
        sim_t = self.clock.sim(time.time() + (request_end - time.monotonic()))
        targets = [d for d in self.devices if reader_key(d.protocol) == key and d.server.accepts(frame)]
        if not targets:
            self.counts["unaddressed"] += 1
            return
        for device in targets:
            device.counts["requests"] += 1
            if device.down(sim_t):
                device.counts["silent"] += 1
                continue
            reply = device.server.handle(frame, sim_t)
            if reply is None:
                continue
            checksum_at = device.server.checksum_at
            reply, delay, noise = device.faults.apply_wire(reply, checksum_at)
            reply, delay2, noise2 = self.faults.apply_wire(reply, checksum_at)
            if reply is None:
                device.counts["silent"] += 1
                continue
            start = request_end + self.line.reply_gap(device.protocol) + delay + delay2
            self.line.send(self._server_fd, noise + noise2 + reply, start, self._stop)
            device.counts["answered"] += 1
            self.counts["replies"] += 1
            request_end = time.monotonic()
        _park_speed(self._client_fd)


def _raw_lines(fd: int) -> None:
    """No echo, no line editing, no byte translation; the character format (cflag) is left alone.

    (Changing cflag here, as tty.setraw does, makes some kernels refuse a client's later PARENB.)
    """
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON
                  | termios.INLCR | termios.IGNCR)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG | termios.ECHONL)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _park_speed(fd: int) -> None:
    """Keep the pty's nominal speed at 50 baud between clients (it means nothing on a pty).

    Some kernels refuse (EINVAL) a tcsetattr that turns on even parity without also changing the
    speed, so a second client opening the same pty at 2400 8E1 would fail; a parked speed makes
    every client's open a speed change. pyserial re-applies its own settings when it sees them
    changed, so a connected client is not disturbed.
    """
    try:
        attrs = termios.tcgetattr(fd)
        if attrs[4] != termios.B50 or attrs[5] != termios.B50:
            attrs[4] = attrs[5] = termios.B50
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (termios.error, OSError):
        pass
