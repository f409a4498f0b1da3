"""What a broker already holds of this gateway, so a reconnect sends only what it lacks.

With a persistent session (clean session off, or MQTT 5 clean start off with a session expiry) the
broker keeps our subscriptions and queues our commands while we are away, and CONNACK says whether it
still has that session (`session present`). Retained messages (the inventory) live beside the sessions
in the broker's store. So, per endpoint, the gateway records (in the outbox file, beside the packs):

* the digest of the subscriptions it made there (`…/cmd` and `…/status`, with their options), set when
  the SUBACK came;
* the digest of the inventory the broker acknowledged there (PUBACK of the retained `…/inventory`).

At CONNACK (`begin`): no session present means the broker has nothing of ours (a new broker, one that
lost its store, a node of a pair without shared state, an expired session): subscribe and publish the
inventory again. Session present: trust the endpoint's records. A session present on an endpoint this
gateway never used means the endpoint shares its store with one it did use (a cluster's nodes): the
records of the endpoint used most recently stand for it. The records survive restarts, so a restart
with nothing changed costs no inventory either. Without persistent sessions nothing is trusted.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from agent.config_model import Endpoint


@dataclass(frozen=True)
class Held:
    """What the broker holds of ours at the start of a session (0: nothing known)."""

    subscriptions: int
    inventory: int


def digest(data: bytes) -> int:
    """A 32-bit digest of encoded subscriptions or of an inventory (never 0, which means "none")."""
    return zlib.crc32(data) or 1


class BrokerMemory:
    """Per-endpoint records of subscriptions and inventory, kept in the outbox's meta table."""

    def __init__(self, outbox: Any, persistent: bool) -> None:
        self.outbox = outbox
        self.persistent = persistent

    def _key(self, ep: Endpoint, what: str) -> str:
        return "ep.%08x.%s" % (zlib.crc32(ep.url.encode()), what)

    def _get(self, ep: Endpoint, what: str) -> int:
        return int(self.outbox.get_meta(self._key(ep, what), 0))

    def begin(self, ep: Endpoint, session_present: bool, endpoints: list[Endpoint]) -> Held:
        """At an accepted CONNACK: what the broker holds already, and this endpoint is used now."""
        order = int(self.outbox.get_meta("ep_order", 0)) + 1
        self.outbox.set_meta("ep_order", order)
        known = self._get(ep, "used") > 0
        if not (self.persistent and session_present):
            held = Held(0, 0)
        elif known:
            held = Held(self._get(ep, "sub"), self._get(ep, "inv"))
        else:  # a node of a cluster we reach for the first time: its store is the one we used last
            used = [(self._get(e, "used"), e) for e in endpoints if e is not ep]
            order_used, last = max(used, key=lambda pair: pair[0], default=(0, ep))
            held = Held(self._get(last, "sub"), self._get(last, "inv")) if order_used else Held(0, 0)
        self.outbox.set_meta(self._key(ep, "used"), order)
        self.outbox.set_meta(self._key(ep, "sub"), held.subscriptions)
        self.outbox.set_meta(self._key(ep, "inv"), held.inventory)
        return held

    def subscribed(self, ep: Endpoint, value: int) -> None:
        """The broker granted our subscriptions (their digest) on `ep`."""
        self.outbox.set_meta(self._key(ep, "sub"), value)

    def inventory_acked(self, ep: Endpoint, value: int) -> None:
        """The broker acknowledged our retained inventory (its digest) on `ep`."""
        self.outbox.set_meta(self._key(ep, "inv"), value)


__all__ = ["BrokerMemory", "Held", "digest"]
