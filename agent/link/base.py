"""The Link base class: framing, timeouts, inter-frame silence and reopening live here.

Implementations override only the raw byte I/O (`_open`, `_close`, `_write(data)`,
`_read(max_bytes, timeout)`), the way python-can backends implement only `_recv_internal`.
A frame reader is any object with `feed(chunk) -> list`, `take_errors() -> list` and `reset()`
(the codecs' `RtuFrameReader`, `Dlt645FrameReader`, `Cjt188FrameReader`, or the MBAP reader in
`agent.link.tcp_link`).

A link is owned by one thread (the bus owner in agent/scheduler.py); it is not thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from protocols.errors import ProtocolError

__all__ = ["FrameReader", "Link", "LinkClosed", "LinkError", "LinkTimeout"]


class LinkError(Exception):
    """Root of transport errors: names the bus and what happened."""


class LinkTimeout(LinkError):
    """No complete reply within the response timeout. `received` counts the bytes that did arrive
    (0: the line stayed silent; more: a torn or garbled reply), `echoed` is True when the first of them
    were our own request (an adapter that hears itself: DE/RE)."""

    received = 0
    echoed = False


class LinkClosed(LinkError):
    """The port or connection is not open (gone, refused, or waiting to be retried)."""


class FrameReader(Protocol):
    def feed(self, chunk: bytes) -> list: ...

    def take_errors(self) -> list: ...

    def reset(self) -> Any: ...


class Link:
    """A byte transport to one bus, with the protocol framing and timing on top.

    `timeout` is the response timeout (seconds, counted from the end of the request on the line);
    `silence` the minimum idle line time between frames (Modbus t3.5); `turnaround` the wait after
    a reply before the next request; `pause` extra idle time between requests. `char_time` is
    the time of one character on the line (0 for TCP), used to count transmit time.
    """

    #: how long to keep listening after a bad frame in case a good one follows (seconds)
    error_quiet = 0.03
    #: on a line whose replies come at line rate, every this many timed first reads one reply is read as
    #: its bytes come again, to notice a line that changed (see `read_frame`)
    relearn_every = 32
    #: reopen backoff bounds (seconds)
    reopen_min = 0.5
    reopen_max = 30.0

    def __init__(self, name: str, port: str, timeout: float = 0.5, silence: float = 0.0,
                 turnaround: float = 0.0, pause: float = 0.0, char_time: float = 0.0) -> None:
        self.name = name
        self.port = port
        self.timeout = timeout
        self.silence = silence
        self.turnaround = turnaround
        self.pause = pause
        self.char_time = char_time
        self.is_open = False
        self.last_error = ""
        #: called with ("tx" | "rx", bytes) for every write and read (fieldlink read --verbose)
        self.trace: Callable[[str, bytes], None] | None = None
        self.counters = {"tx_bytes": 0, "rx_bytes": 0, "opens": 0, "open_failures": 0,
                         "closes": 0, "skipped_frames": 0, "discarded_bytes": 0, "line_errors": 0,
                         "echoes": 0}
        #: True when the last reply read began with our own request (the adapter echoes what it sends)
        self.echoed = False
        self._sent = b""
        self._idle_from = 0.0  # monotonic time the line became idle
        self._paced = False  # the last reply read as it came arrived in pieces (line rate)
        self._timed_left = 0  # timed first reads before the next reply is read as it comes
        self._on_time = False  # the last reply read as it came ended when a prompt device's would
        #: the clock and the sleep of every timeout and silence; a virtual link injects its own
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self._retry_at = 0.0
        self._retry_delay = self.reopen_min

    # ------------------------------------------------------------------ hooks
    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        """Return at least one byte, or b"" after `timeout` seconds; LinkClosed when gone."""
        raise NotImplementedError

    def _discard_input(self) -> int:
        """Drop whatever is waiting in the receive buffer; return how many bytes."""
        dropped = 0
        while True:
            chunk = self._read(4096, 0)
            if not chunk:
                return dropped
            dropped += len(chunk)

    def _quiet(self, until: float) -> int:
        """Wait until `until` (on `clock`) and drop what arrived meanwhile; return how many bytes.

        A link that can watch its input overrides this with one timed read that also restarts the
        silence when stale bytes arrive (agent/link/serial_link.py); this one sleeps, then drops."""
        wait = until - self.clock()
        if wait > 0:
            self.sleep(wait)
        return self._discard_input()

    # ------------------------------------------------------------------ open / close
    def open(self) -> None:
        """Open now; LinkClosed (with the reason) when the port cannot be opened."""
        if self.is_open:
            return
        try:
            self._open()
        except LinkError as exc:
            self.counters["open_failures"] += 1
            self.last_error = str(exc)
            raise
        except Exception as exc:  # pyserial raises SerialException, sockets OSError
            self.counters["open_failures"] += 1
            self.last_error = "%s: cannot open %s: %s" % (self.name, self.port, exc)
            raise LinkClosed(self.last_error) from None
        self.is_open = True
        self.counters["opens"] += 1
        self._retry_delay = self.reopen_min
        self._idle_from = self.clock()

    def ensure_open(self) -> None:
        """Open if closed, with exponential backoff between attempts; LinkClosed while waiting."""
        if self.is_open:
            return
        now = self.clock()
        if now < self._retry_at:
            raise LinkClosed("%s: port %s unavailable (%s), next try in %.1f s"
                             % (self.name, self.port, self.last_error or "closed", self._retry_at - now))
        try:
            self.open()
        except LinkClosed:
            self._retry_at = self.clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.reopen_max)
            raise

    def retry_in(self) -> float:
        """Seconds until the next reopen attempt (0 when open or due)."""
        if self.is_open:
            return 0.0
        return max(0.0, self._retry_at - self.clock())

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self.counters["closes"] += 1
            try:
                self._close()
            except Exception:  # closing a vanished port may fail; it is closed either way
                pass

    def lost(self, reason: str) -> LinkClosed:
        """Close after the port vanished; the next `ensure_open` retries after a backoff."""
        self.last_error = reason
        self.close()
        self._retry_at = self.clock() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.reopen_max)
        return LinkClosed("%s: %s" % (self.name, reason))

    def __enter__(self) -> Link:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frames
    def send(self, data: bytes) -> None:
        """Send one request after the required line silence (t3.5, or the turnaround, plus the pause
        since the line went idle), dropping stale input first."""
        if not self.is_open:
            self.ensure_open()
        dropped = self._quiet(self._idle_from + max(self.silence, self.turnaround) + self.pause)
        counters = self.counters
        if dropped:
            counters["discarded_bytes"] += dropped
        if type(data) is not bytes:
            data = bytes(data)
        if self.trace is not None:
            self.trace("tx", data)
        self._write(data)
        self._sent = data
        counters["tx_bytes"] += len(data)
        # the request is on the line for len(data) characters from now
        self._idle_from = self.clock() + len(data) * self.char_time

    def hold(self, seconds: float) -> None:
        """Keep the line idle for `seconds` more before the next request (after a Modbus broadcast the
        devices act on it without replying; the client must give them time before the next frame)."""
        self._idle_from = max(self._idle_from, self.clock() + max(0.0, seconds))

    def read_frame(self, reader: FrameReader, timeout: float | None = None,
                   accept: Callable[[Any], bool] | None = None) -> Any:
        """Read bytes into `reader` until it completes a frame `accept` takes, or time runs out.

        Frames `accept` refuses (our own echo, another unit's reply) are skipped. Raises
        LinkTimeout when nothing (or only a fragment) arrived, the codec's ProtocolError (CRC,
        frame) when only bad frames arrived, LinkClosed when the port went away. The response
        timeout counts from the end of the request on the line.
        """
        timeout = self.timeout if timeout is None else timeout
        clock = self.clock
        read = self._read
        counters = self.counters
        now = clock()
        deadline = (now if now > self._idle_from else self._idle_from) + timeout
        limit = deadline  # after a bad frame: a short quiet time in case a good one follows
        first_error: ProtocolError | None = None
        received = 0
        head = b""  # the first bytes received, to recognise our own request coming back
        sent, self._sent = self._sent, b""
        self.echoed = False
        # a reader that knows how many bytes its frame still lacks (RtuFrameReader.missing): on a serial
        # line the rest takes that many character times, so the link sleeps once for all of it and
        # reads it in one go, rather than waking for every byte or two the port hands on
        missing = getattr(reader, "missing", None) if self.char_time > 0 else None
        size = getattr(reader, "reply_size", 0) if missing is not None else 0
        learn = False  # this read shows whether the line's replies come in pieces (`_paced`)
        read_after_silence = False  # the timed read sleeps on through the silence after the reply
        idle = 0.0  # when the line fell idle, if known better than "now" (see below)
        at_once = False  # the next read takes what is there without waiting
        if size:
            # a prompt device's reply is on hand by then: it starts once it has seen the request end (t3.5
            # of silence, or its length), and a port hands the last byte on a character or so after its
            # stop bit
            whole_at = self._idle_from + self.silence + (size + 2) * self.char_time
            if self._paced and self._timed_left > 0:
                # a reader that knows the size of a good reply (RtuFrameReader.expect_reply), on a line
                # whose replies come at line rate: the link sleeps until the whole reply can be there and
                # reads it in one go, rather than waking for its first byte and again for the rest (a
                # quicker device's reply is read at most t3.5 + 2 characters late). On a line whose
                # devices have answered that promptly, it sleeps on through the silence the next request
                # must leave after the reply, so one wake-up serves the reply and that silence: the next
                # request goes out when it would have anyway, without a second sleep before it
                self._timed_left -= 1
                until = whole_at
                if self._on_time:
                    until += max(self.silence, self.turnaround) + self.pause
                wait = min(limit, until) - now
                if wait > 0:
                    self.sleep(wait)
                    now = clock()
                read_after_silence = self._on_time
                at_once = True  # the reply is whole by now: its first read does not wait (nor `poll`)
            else:
                # read as the bytes come, and learn from it: a reply read in one piece (a simulator
                # without line timing, a serial server that sends whole frames) is best read at once
                learn = True
        chunks = 0
        try:
            while now < limit:
                if missing is not None and received:
                    rest = missing()
                    if rest:
                        wait = min(limit, now + rest * self.char_time) - now
                        if wait > 0:
                            self.sleep(wait)
                            now = clock()
                            at_once = True
                chunk = read(512, 0 if at_once or limit <= now else limit - now)
                at_once = False
                if chunk:
                    chunks += 1
                    received += len(chunk)
                    if sent:
                        if len(head) < len(sent):
                            head += chunk[:len(sent) - len(head)]
                            if not sent.startswith(head):
                                sent = b""  # what came is not our request coming back: stop comparing
                        # our request came back, and more followed it (a Modbus write's reply alone is the
                        # request's copy by design; an echo with nothing after it is told at the timeout)
                        if sent and not self.echoed and head == sent and received > len(sent):
                            self._echo()
                    if self.trace is not None:
                        self.trace("rx", chunk)
                    counters["rx_bytes"] += len(chunk)
                    frames = reader.feed(chunk)
                    errors = reader.take_errors()
                    if errors:
                        counters["line_errors"] += len(errors)  # noise, bad CRC, torn frames: all counted
                    for frame in frames:
                        if accept is None or accept(frame):
                            if learn:
                                self._paced = chunks > 1
                                self._timed_left = self.relearn_every if self._paced else 0
                                # its last byte came no later than a prompt device's would have
                                self._on_time = clock() <= whole_at
                            elif read_after_silence and chunks == 1:
                                idle = whole_at  # whole at the first read: idle since a prompt reply's end
                            return frame
                        counters["skipped_frames"] += 1
                    if errors and first_error is None:
                        first_error = errors[0]
                    if first_error is not None:
                        limit = min(deadline, clock() + self.error_quiet)
                now = clock()
        finally:
            self._idle_from = idle or clock()
        leftover = reader.reset() or []
        errors = reader.take_errors()
        counters["line_errors"] += len(errors)
        for frame in leftover:
            if accept is None or accept(frame):
                return frame
        if sent and head == sent and received == len(sent):  # only our own request came back
            self._echo()
            exc = LinkTimeout("%s: only our own request came back (echo), no reply within %d ms"
                              % (self.name, round(timeout * 1000)))
            exc.received = received
            exc.echoed = True
            raise exc
        if first_error is not None:
            raise first_error
        if received:
            if errors:
                raise errors[0]
            exc = LinkTimeout("%s: incomplete reply (%d bytes) within %d ms"
                              % (self.name, received, round(timeout * 1000)))
            exc.received = received
            exc.echoed = self.echoed
            raise exc
        raise LinkTimeout("%s: no reply within %d ms" % (self.name, round(timeout * 1000)))

    def _echo(self) -> None:
        self.echoed = True
        self.counters["echoes"] += 1

    def transact(self, request: bytes, reader: FrameReader, timeout: float | None = None,
                 accept: Callable[[Any], bool] | None = None) -> Any:
        """Send `request` and return the reply frame (see `read_frame`)."""
        expect_reply = getattr(reader, "expect_reply", None)
        if expect_reply is not None:
            expect_reply(request)
        self.send(request)
        return self.read_frame(reader, timeout, accept)

    def __repr__(self) -> str:
        return "%s(%r, %r)" % (type(self).__name__, self.name, self.port)
