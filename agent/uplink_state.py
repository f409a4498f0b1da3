"""A small JSON file beside the outbox that says how the uplink is connected, for `fieldlink status`.

    <outbox.path>.uplink.json   (0600, replaced atomically; written when the connection changes)

    {"pid": 812, "updated": 1796563994.2, "connected": true, "endpoint": "mqtts://b.example:8883",
     "address": "10.0.0.6:8883", "protocol": "3.1.1", "since": 1796563990.0, "session": 17,
     "session_present": true, "failovers": 1, "last_error": null,
     "endpoints": {"mqtts://a.example:8883": {"state": "down", ...}, "mqtts://b.example:8883": {...}}}

The same facts are in `…/health` under `mqtt` (docs/store-and-forward.md, "Health"). A reader that
finds `pid` no longer running knows the file is from a stopped agent. Writing never raises: a disk
fault is logged once and the next change tries again.
"""

from __future__ import annotations

import logging

from agent.private import write_state

log = logging.getLogger(__name__)


def state_path(outbox_path: str) -> str | None:
    """Where the state file of an outbox lives (None for an outbox in memory)."""
    if outbox_path == ":memory:":
        return None
    return outbox_path + ".uplink.json"


class StateFile:
    """Writes the uplink state (see module docstring); `write` is cheap to call often: it skips a
    state equal to the last one written."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._last: dict | None = None
        self._failed = False

    def write(self, state: dict) -> None:
        if self.path is None or state == self._last:
            return
        try:
            write_state(self.path, state)
        except OSError as exc:
            if not self._failed:
                log.warning("uplink state %s cannot be written: %s", self.path, exc)
            self._failed = True
            return
        self._failed = False
        self._last = dict(state)


__all__ = ["StateFile", "state_path"]
