"""The periodic ``…/health`` message: a CBOR map of counters (docs/store-and-forward.md, "Health").

    {"gateway": "gw-01", "site": "s1", "time": 1710498030, "uptime": 3600.0, "connected": true,
     "readings": {"made": n, "published": n, "buffered": n, "dropped": n, "rejected": n,
                  "dropped_by": {"outbox_full": n, "memory_full": n, "unreadable": n, "not_stored": n}},
     "outbox": {"packs": n, "bytes": n, "max_bytes": n, "records": n, "state": "ok", "held_packs": n,
                "dropped_records": n, "memory_dropped_records": n, "lost_records": n, ...},
     "mqtt": {"connects": n, "disconnects": n, "connect_failures": n, "packs_published": n, ...},
     <name>: <value>, ...}        # added by the acquisition side: "polls", "errors" {kind: n}, ...

``made``/``published`` count since the process started; ``dropped`` (the sum of ``dropped_by``)
persists in the outbox. A getter that raises is reported as ``{"error": text}`` under its name, never a crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from protocols import cbor

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """`value` with tuples as lists and non-CBOR leaves as text, so any counter can be encoded."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    return str(value)


class Health:
    """Collects counters from named getters into the health map."""

    def __init__(self, gateway: str, site: str, clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.site = site
        self.clock = clock
        self.started = time.monotonic()
        self._sources: dict[str, Callable[[], Any]] = {}

    def add(self, name: str, getter: Callable[[], Any]) -> None:
        """Merge `getter()` into every snapshot under `name` (a later add replaces an earlier one)."""
        self._sources[name] = getter

    def snapshot(self, names: tuple[str, ...] | None = None) -> dict:
        """The health map as a dict; with `names`, only those of its counters (and the header): a reader
        that needs a few of them (the status file, every 2 s) does not run every getter (the scheduler's
        whole map three times) and `plain` over it."""
        out: dict[str, Any] = {
            "gateway": self.gateway, "site": self.site, "time": int(self.clock()),
            "uptime": round(time.monotonic() - self.started, 1),
        }
        sources = list(self._sources.items())
        if names is not None:
            sources = [(name, getter) for name, getter in sources if name in names]
        for name, getter in sources:
            try:
                out[name] = plain(getter())
            except Exception as exc:
                log.warning("health: counters %r failed: %s", name, exc)
                out[name] = {"error": str(exc)}
        return out

    def encode(self) -> bytes:
        """The health map as deterministic CBOR."""
        return cbor.dumps(self.snapshot())


__all__ = ["Health", "plain"]
