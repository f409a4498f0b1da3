"""What every incremental frame reader of the 0x68-framed meter protocols shares.

A reader is fed bytes as a UART delivers them; it keeps a partial frame, counts line noise, and
records what it discarded in ``errors`` (taken by the caller with ``take_errors()``). Subclasses
implement ``feed`` only.
"""

from protocols.errors import FrameError


class MeterFrameReader:
    """Base of the DL/T 645 and CJ/T 188 readers: buffer, noise counting and error bookkeeping."""

    name = "meter"

    def __init__(self) -> None:
        self._buf = bytearray()
        self._noise = 0
        self.errors = []  # type: list

    def _keep(self, buf: bytearray, pos: int) -> None:
        """Keep the unparsed tail from ``pos``; report noise once nothing is pending."""
        self._buf = bytearray(buf[pos:])
        if not self._buf:
            self._flush_noise()

    def _flush_noise(self) -> None:
        if self._noise:
            self.errors.append(FrameError("%s: discarded %d bytes of line noise" % (self.name, self._noise)))
            self._noise = 0

    def take_errors(self) -> list:
        """Errors since the last call, oldest first."""
        errors = self.errors
        self.errors = []
        return errors

    def reset(self) -> None:
        """Drop a partial frame (after a silence); it is recorded as an error."""
        if self._buf:
            self.errors.append(
                FrameError("%s: dropped %d bytes of a partial frame" % (self.name, len(self._buf)))
            )
        self._buf = bytearray()
        self._noise = 0
