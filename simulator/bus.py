"""An RS-485 bus: its devices, the pseudo-terminal a client opens, and every other way in.

Clients reach a bus through accesses (simulator/access.py): the pty, whose thread lives here, and the
RFC 2217 and raw TCP connections of simulator/serial_server.py. Each access frames its client's
requests with each protocol's frame reader (a silence of t3.5 / 500 ms drops a partial frame) and hands
each frame to `handle`: the devices it addresses answer after the protocol's turnaround, and their
replies go out at line speed to every access, each through its own wire (simulator/wire.py). Only the
addressed device answers; a broadcast is obeyed by all and answered by none. One request is handled at
a time on a bus (the bus lock): two clients take turns, they never collide.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
from typing import Any

from simulator.access import Access
from simulator.clock import Clock
from simulator.device import Device
from simulator.faults import FaultSet
from simulator.line import Line, write_all
from simulator.pty import open_pty
from simulator.servers import reader_key
from simulator.wire import UART_ERRORS, LineFaults, new_counts


class Bus:
    """One simulated RS-485 line with its devices."""

    def __init__(self, name: str, line: Line, devices: list[Device], clock: Clock, seed: int = 0,
                 link: str | None = None, uart_errors: str = "drop", pty: bool = True) -> None:
        if uart_errors not in UART_ERRORS:
            raise ValueError("uart_errors must be one of %s, not %r" % (", ".join(UART_ERRORS), uart_errors))
        self.name = name
        self.line = line
        self.devices = devices
        self.clock = clock
        self.link = link
        self.seed = seed
        self.uart_errors = uart_errors
        self.has_pty = pty  # False: reached only through its serial device servers
        self.faults = FaultSet(seed, bus_level=True)
        self.counts = {"frames": 0, "bad_frames": 0, "unaddressed": 0, "replies": 0}
        self.path = ""
        self.tcp_port: int | None = None  # serve the bus's Modbus devices over TCP too (0: any port)
        self.tcp_address: tuple[str, int] | None = None  # where the TCP server listens, once started
        self.rfc2217_port = 0  # RFC 2217 server on 127.0.0.1 (0: any free port)
        self.socket_port = 0  # raw TCP server on 127.0.0.1 (0: any free port)
        self.rfc2217_address: tuple[str, int] | None = None
        self.socket_address: tuple[str, int] | None = None
        self.servers: dict[str, Any] = {}  # "rfc2217" / "socket": the SerialServer, once started
        #: scenario key address_clash: devices sharing an address answer at once and their replies
        #: collide; the line carries the bitwise AND of them (a driver sending 0 wins, as on a real line
        #: where two transceivers fight: a rule of thumb, not an analogue model)
        self.collide = False
        self.lock = threading.RLock()  # one request at a time on the line
        self._accesses: list[Access] = []
        self._closed_counts = new_counts()  # wire counts of accesses that have gone
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
        if not self.has_pty:
            return
        if self._server_fd < 0:
            self.open()
        fd, stop = self._server_fd, self._stop
        pty = Access(self, "pty", lambda data: write_all(fd, data, stop), seed=self.seed,
                     write_now=lambda data: write_all(fd, data, stop, patience=0.0))
        self.attach(pty)
        self._thread = threading.Thread(target=self._run, args=(pty,), name="bus-%s" % self.name, daemon=True)
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
        return (self.link or self.path) if self.has_pty else ""

    def describe(self) -> dict:
        return {
            "name": self.name, "path": self.device_path or None, "pty": self.path or None,
            "baud": self.line.baud, "framing": self.line.framing, "bytesize": self.line.bytesize,
            "parity": self.line.parity, "stopbits": self.line.stopbits, "instant": self.line.instant,
            "rfc2217": "rfc2217://%s:%d" % self.rfc2217_address if self.rfc2217_address else None,
            "socket": "socket://%s:%d" % self.socket_address if self.socket_address else None,
            "devices": [d.describe() for d in self.devices],
        }

    # ---------------------------------------------------------------- accesses
    def attach(self, access: Access) -> None:
        with self.lock:
            self._accesses.append(access)
            access.rest(self.faults.line())

    def set_fault(self, kind: str, params: dict | None = None) -> dict:
        """Switch a wire or line fault on for the whole bus; returns the parameters in force."""
        with self.lock:
            checked = self.faults.set(kind, params)
            self._line_changed()
            return checked

    def clear_fault(self, kind: str | None = None) -> None:
        with self.lock:
            self.faults.clear(kind)
            self._line_changed()

    def _line_changed(self) -> None:
        faults = self.faults.line()
        for access in self._accesses:
            access.rest(faults)

    def detach(self, access: Access) -> None:
        with self.lock:
            if access in self._accesses:
                self._accesses.remove(access)
                for direction, counts in access.wire.snapshot()["counts"].items():
                    for key, n in counts.items():
                        self._closed_counts[direction][key] += n

    def accesses(self) -> list[Access]:
        with self.lock:
            return list(self._accesses)

    def wire_counts(self) -> dict:
        """The wire counts of this bus: every access, present and gone, summed."""
        with self.lock:
            total = {d: dict(c) for d, c in self._closed_counts.items()}
            for access in self._accesses:
                for direction, counts in access.wire.snapshot()["counts"].items():
                    for key, n in counts.items():
                        total[direction][key] += n
            return total

    def line_state(self) -> dict:
        """The line as a technician would want to know it: settings, faults, clients, wire counts."""
        faults = self.faults.line()
        return {"bus": self.name, "line": str(self.line.settings), "uart_errors": self.uart_errors,
                "faults": self.faults.listing(), "bit_error_rate": faults.bit_error_rate(self.line.baud),
                "servers": {k: s.describe() for k, s in self.servers.items()},
                "clients": [a.describe() for a in self.accesses()], "counts": self.wire_counts()}

    # ---------------------------------------------------------------- the pty
    def _run(self, pty: Access) -> None:
        fd = self._server_fd
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            if not ready:
                _park_speed(self._client_fd)
                pty.idle(now)
                continue
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                time.sleep(0.05)  # no client side open (EIO): wait for one
                continue
            if chunk:
                pty.receive(chunk, now)

    # ---------------------------------------------------------------- requests and replies
    def count_errors(self, reader: object) -> None:
        errors = reader.take_errors()  # type: ignore[attr-defined]
        self.counts["bad_frames"] += len(errors)

    def overhear(self, source: Access, data: bytes, faults: LineFaults) -> None:
        """A client's transmission reaches the other clients (and itself, with the `echo` fault)."""
        for access in self.accesses():
            if access is source and not faults.echo:
                continue
            write, out, _offsets = access.hear(data, faults, source.wire.client, across=False,
                                               asked=access is source)
            if out:
                write(out)

    def transmit(self, data: bytes, start: float, asker: Access | None = None, apart: bool = False) -> None:
        """A device's transmission, from `start` at line rate, as every client's UART receives it (the
        line's faults applied now, under the caller's lock). `apart`: sent from a thread of its own, so the
        bus answers the requests that come meanwhile (a late reply: the master has moved on by then, and on
        a real line the other devices answer at once instead of queueing behind it)."""
        faults = self.faults.line()
        targets = [a.hear(data, faults, asked=a is asker) for a in self.accesses()]
        if apart:
            threading.Thread(target=self.line.deliver, args=(targets, start, self._stop),
                             name="late-reply", daemon=True).start()
        else:
            self.line.deliver(targets, start, self._stop)

    def handle(self, access: Access, key: str, frame: object, request_end: float) -> None:
        """Give one request to the devices it addresses and send their replies."""
        with self.lock:
            self.counts["frames"] += 1
            sim_t = self.clock.sim(time.time() + (request_end - time.monotonic()))
            targets = [d for d in self.devices if reader_key(d.protocol) == key and d.server.accepts(frame)]
            if not targets:
                self.counts["unaddressed"] += 1
                return
            answers: list[tuple[float, bool, bytes]] = []  # colliding replies: (start, late, bytes)
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
                device.counts["answered"] += 1
                self.counts["replies"] += 1
                sent = noise + noise2 + reply
                late = delay + delay2 > 0  # the `late` fault: the reply must not hold the bus's other devices
                if self.collide and len(targets) > 1:
                    answers.append((start, late, sent))
                    continue
                self.transmit(sent, start, access, apart=late)
                if not late:
                    request_end = time.monotonic()
            if answers:
                self.counts["collisions"] = self.counts.get("collisions", 0) + (len(answers) > 1)
                start, late, _ = min(answers)  # the line carries them from the first one's start
                self.transmit(collision([a for _, _, a in answers]), start, access, apart=late)
            if self._client_fd >= 0:
                _park_speed(self._client_fd)


def collision(replies: list[bytes]) -> bytes:
    """What the line carries when several devices send at once from the same moment: each bit the AND of
    theirs (0, the driven state, wins), as long as the longest of them."""
    size = max(len(r) for r in replies)
    out = bytearray(b"\xff" * size)
    for r in replies:
        for i, b in enumerate(r):
            out[i] &= b
    return bytes(out)


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
