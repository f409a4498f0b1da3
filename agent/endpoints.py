"""Which broker to connect to next, and when: endpoints, failover, capped and jittered backoff.

    failover = Failover(broker_config.endpoint_list(), broker_config)
    endpoint, wait = failover.pick()          # sleep `wait` seconds, then try `endpoint`
    failover.failed(endpoint, UNREACHABLE)    # or REFUSED; or:
    failover.up(endpoint) ... failover.ended(endpoint)

The rules (docs/broker.md, "Endpoints and failover"):

* Every endpoint keeps its own schedule (`next_try`). The next attempt goes to the endpoint whose turn
  comes first; on a tie, one that had a session before (known good) goes first, then the configured
  order, starting after the endpoint used last, so a lost node hands over to the next one.
* A session that ends (the node died, the network dropped): every endpoint may be tried after one
  draw of `uniform(0, reconnect_min)`: a street of gateways that lost the same node spreads its
  reconnects over that second instead of arriving in one burst. The node is retried first (known
  good; it refuses at once if it is gone), then the next endpoint in order.
* An endpoint that cannot be reached (connection refused, no route, timeout, a name that does not
  resolve) costs the broker nothing but a TCP SYN, so a known-good one is *probed* every
  `uniform(probe_interval / 2, probe_interval)` seconds for `probe_window` seconds of outage: when the
  broker comes back the gateway is publishing again within about `probe_interval` seconds. After
  `probe_window` seconds the delay doubles up to `reconnect_max`, so an outage that lasts does not
  keep a city of gateways knocking once a second.
* Any other failure (refused by the broker, TLS, no CONNACK, closed before CONNACK), and any failure of
  an endpoint that never accepted us: exponential backoff per endpoint, `uniform(d/2, d)` with
  `d = min(reconnect_max, reconnect_min * 2**(failures - 1))`. A broker that accepts TCP but not
  clients is not hammered.

DNS names with several addresses are tried address by address within one attempt (`addresses`), the
address that worked last first. The clock and the random generator are parameters, so the rules are
unit-tested without sleeping.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.config_model import Endpoint

UNREACHABLE = "unreachable"  # no TCP connection: refused, timeout, no route, DNS
REFUSED = "refused"  # TCP was accepted but the broker did not take us (CONNACK refusal, TLS, no CONNACK)

SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}


def parse_url(text: object) -> tuple[bool, str, int]:
    """(tls, host, port) of `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (IPv6 in brackets);
    ValueError saying what is wrong (never echoing credentials)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an endpoint is a URL string")
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError("unknown scheme %r" % parts.scheme if parts.scheme else "no scheme")
    if "@" in parts.netloc:
        raise ValueError("a user name or password in the URL is not accepted (it would show in logs and "
                         "health); set username and password instead")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker URL has no path, query or fragment")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number 1..65535") from None
    tls, default = SCHEMES[scheme]
    if port == 0:
        raise ValueError("the port must be a number 1..65535")
    return tls, host, port or default


def canonical_url(tls: bool, host: str, port: int) -> str:
    """The URL an endpoint is shown as: scheme, host (IPv6 in brackets) and port, always."""
    return "%s://%s:%d" % ("mqtts" if tls else "mqtt", "[%s]" % host if ":" in host else host, port)


@dataclass
class EndpointState:
    """What the gateway knows of one endpoint in this process (shown in health)."""

    endpoint: Endpoint
    index: int
    good: bool = False  # a session was accepted here (since this process started)
    failures: int = 0  # consecutive failed attempts (reset by an accepted session)
    next_try: float = 0.0  # monotonic time of its next turn
    down_since: float | None = None  # when it stopped answering (start of the probe window)
    connects: int = 0
    connect_failures: int = 0
    last_error: str = ""
    last_address: tuple | None = None  # the sockaddr that connected last
    protocol: str | None = None  # the MQTT version it speaks, once known ("5" or "3.1.1")
    late: int = 0  # failed probes after the probe window (the backoff doubles with each)

    def report(self, now: float, current: bool) -> dict:
        state = "in use" if current else ("untried" if not self.connects and not self.connect_failures
                                          else "down" if self.failures else "ok")
        return {"state": state, "connects": self.connects, "connect_failures": self.connect_failures,
                "failures_in_a_row": self.failures, "known_good": self.good,
                "next_try_in": round(max(0.0, self.next_try - now), 1) if not current else None,
                "protocol": self.protocol, "last_error": self.last_error or None,
                "address": show_address(self.last_address) if self.last_address else None}


def show_address(sockaddr: tuple) -> str:
    """`host:port` of a socket address ([v6]:port for IPv6)."""
    host, port = sockaddr[0], sockaddr[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class Failover:
    """The schedule of connection attempts over the endpoints (module docstring)."""

    def __init__(self, endpoints: list[Endpoint], broker: Any, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not endpoints:
            raise ValueError("no broker endpoint configured")
        self.states = [EndpointState(e, i) for i, e in enumerate(endpoints)]
        self.reconnect_min = float(broker.reconnect_min)
        self.reconnect_max = float(broker.reconnect_max)
        self.probe_interval = float(broker.probe_interval)
        self.probe_window = float(broker.probe_window)
        self.rng = rng or random.Random()
        self.clock = clock
        self.last: EndpointState | None = None  # the endpoint tried (or used) last
        self.current: EndpointState | None = None  # the endpoint of the session that is up
        self.last_up: EndpointState | None = None  # the endpoint of the latest session
        self.failovers = 0  # sessions that came up on another endpoint than the one before

    def state(self, endpoint: Endpoint) -> EndpointState:
        for s in self.states:
            if s.endpoint is endpoint:
                return s
        raise KeyError(endpoint.url)

    def pick(self) -> tuple[Endpoint, float]:
        """The endpoint to try next and the seconds to wait before trying it."""
        now = self.clock()
        start = self.last.index + 1 if self.last is not None else 0
        n = len(self.states)

        def rank(s: EndpointState) -> tuple:
            return (max(s.next_try, now), not s.good, (s.index - start) % n)

        best = min(self.states, key=rank)
        return best.endpoint, max(0.0, best.next_try - now)

    def up(self, endpoint: Endpoint) -> None:
        """The broker accepted a session on `endpoint`."""
        s = self.state(endpoint)
        if self.last_up is not None and self.last_up is not s:
            self.failovers += 1
        s.good = True
        s.failures = 0
        s.late = 0
        s.down_since = None
        s.connects += 1
        self.current = s
        self.last_up = s
        self.last = s

    def ended(self, endpoint: Endpoint) -> None:
        """The session on `endpoint` ended (lost or closed). Every endpoint may be tried after
        uniform(0, reconnect_min): the node is retried soon (a restart), the others are there at once."""
        now = self.clock()
        s = self.state(endpoint)
        self.current = None
        s.down_since = now
        gate = now + self.rng.uniform(0, self.reconnect_min)  # one draw: the order below still holds
        for other in self.states:
            other.next_try = max(other.next_try, gate)

    def failed(self, endpoint: Endpoint, kind: str, error: str = "") -> float:
        """An attempt on `endpoint` did not reach an accepted session; returns its delay (seconds)."""
        now = self.clock()
        s = self.state(endpoint)
        self.last = s
        s.connect_failures += 1
        s.last_error = error
        if s.down_since is None:
            s.down_since = now
        s.failures += 1
        if s.good and kind == UNREACHABLE:
            if now - s.down_since < self.probe_window:
                d = self.probe_interval  # a cheap probe of a broker that worked: back within d
            else:  # the outage lasts: from the probe interval, doubling up to reconnect_max
                s.late += 1
                d = min(self.reconnect_max, self.probe_interval * 2 ** min(s.late, 30))
        else:
            d = min(self.reconnect_max, self.reconnect_min * 2 ** min(s.failures - 1, 30))
        delay = self.rng.uniform(d / 2, d)
        s.next_try = now + delay
        return delay

    def report(self) -> dict:
        """Per endpoint URL: its state for health and the state file."""
        now = self.clock()
        return {s.endpoint.url: s.report(now, s is self.current) for s in self.states}


Resolver = Callable[..., list]


def addresses(endpoint: Endpoint, last: tuple | None, resolve: Resolver = socket.getaddrinfo) -> list[tuple]:
    """The (family, sockaddr) pairs of an endpoint's host, in the resolver's order with the address
    that connected last first; OSError (socket.gaierror) when the name does not resolve."""
    found = resolve(endpoint.host, endpoint.port, 0, socket.SOCK_STREAM)
    out: list[tuple] = []
    for family, _type, _proto, _name, sockaddr in found:
        item = (family, tuple(sockaddr))
        if item not in out:
            out.append(item)
    if last is not None:
        out.sort(key=lambda item: item[1] != last)  # stable: the rest keep the resolver's order
    return out


Connector = Callable[[int, tuple, float], socket.socket]


def connect_any(candidates: list[tuple], timeout: float,
                connect: Connector | None = None) -> tuple[socket.socket, tuple]:
    """A TCP connection to the first of `candidates` that answers, each tried with `timeout`; returns
    (socket, sockaddr). Raises the last address's OSError when none answers."""
    connect = connect or _connect
    error: OSError | None = None
    for family, sockaddr in candidates:
        try:
            return connect(family, sockaddr, timeout), sockaddr
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


def _connect(family: int, sockaddr: tuple, timeout: float) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["REFUSED", "UNREACHABLE", "EndpointState", "Failover", "addresses", "canonical_url",
           "connect_any", "parse_url", "show_address"]
