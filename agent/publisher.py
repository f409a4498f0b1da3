"""The MQTT publisher: drains the outbox over QoS 1, in order, deleting a pack only on its PUBACK.

One network thread owns everything paho does; nothing else touches the client. Each connection
attempt uses a **fresh paho client**: paho keeps unacknowledged QoS 1 messages inside a client object
and re-sends them itself after a reconnect, which would duplicate the replay from our outbox and could
reorder it. With a fresh client the outbox is the only queue for what we publish, also with a
persistent session (the broker keeps our subscriptions and the commands queued *for* us; what *we*
publish at QoS 1 it never keeps for us):

* at most ``inflight`` packs are published-but-unacknowledged at once (the window);
* PUBACK for a mid -> ``outbox.ack(id)``; nothing else deletes a pack (except the byte bound);
* on a new session the window is empty and publishing restarts from the oldest pack in the outbox,
  so packs reach the broker in commit order and at most ``inflight`` packs are sent twice (a resent
  pack is byte for byte the one sent before: docs/payload.md, "Deduplication");
* a pack is sent again only on a new session: when a PUBACK has not come within
  ``broker.puback_timeout`` seconds the session is ended (logged once) and a new one resends the
  window. Nothing the outbox does (a full or failing disk) ends a session: ``outbox.ack`` never raises
  into paho's callback, so a disk fault cannot turn into reconnects and resends.

Endpoints (agent/endpoints.py): ``[broker] endpoints`` or ``host``/``port``; the next attempt goes
where the failover schedule says, and the endpoint in use is logged, in ``…/health`` (``mqtt.endpoint``)
and in the state file beside the outbox (agent/uplink_state.py). MQTT 5 is tried first where
``broker.mqtt_version = "auto"``; a broker that answers "unsupported protocol version" (NATS) is spoken
to in 3.1.1 from then on, in the same attempt.

Every connect, in this order: CONNECT with the will (the retained ``…/status`` map "offline" with this
connection's ``session`` number); when the broker has no session of ours (or not our subscriptions),
SUBSCRIBE ``…/cmd`` and ``…/status`` and wait for the SUBACK, so no command is missed; the status map
"online" (retained); the inventory (retained ``…/inventory``) only when this broker does not hold the
current one (agent/broker_memory.py); then the backlog. Health (retained ``…/health``, so a fleet
report learns every gateway's latest at subscribe time) goes out every ``health_interval`` seconds,
on its own schedule across reconnects. A `…/cmd` delivery goes to the command gate
(agent/command_gate.py) with its retain flag; the gate never blocks and publishes acks through
`send_ack`: directly (QoS 1), not through the outbox, since an ack is only useful while the requester
waits. A stale will of an older connection arriving on ``…/status`` while we are online (a cluster
that took the session over) is answered with our "online" status again.

A connection attempt that does not reach an accepted CONNACK counts in ``connect_failures`` and is
logged once per distinct cause in words a technician can act on (agent/broker_errors.py). Nothing
leaves the outbox meanwhile.

The network thread sleeps until there is something to do: it waits on the broker's socket (readable, or
writable while paho has bytes to send) and on a wake-up socket (``wake``: a pack committed to the outbox,
a message to send directly, stop), with the time until the next thing that falls due as the timeout:
the next health message, the oldest PUBACK or the SUBACK reaching ``puback_timeout``, the CONNACK
timeout, the idle uplink's open pack (``before_pump``: the uplink closes it and this thread publishes
it in the same turn), and at most ``IDLE_WAIT`` seconds (paho's keep-alive ping, a generation change of
the outbox). An idle connected gateway's network thread so wakes about once a second, not twenty times.
While readings stream in, the PUBACK of the pack just published is read at the turn of the next pack
(at most ``READ_LATER_MAX`` later) rather than waking the thread on its own, as long as nothing else
waits for the socket (`_reads_can_wait`); a `…/cmd` delivery then waits as long.
"""

from __future__ import annotations

import logging
import queue
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from agent import os_thread
from agent.broker_errors import (
    CONNACK_V311,
    TlsSetupError,
    describe_connect_error,
    describe_lost_before_connack,
    describe_refusal,
)
from agent.broker_memory import BrokerMemory, digest
from agent.config_model import Config, Endpoint
from agent.endpoints import REFUSED, UNREACHABLE, Failover, addresses, show_address
from agent.mqtt_client import (
    LOGGED,
    V5,
    V311,
    connect_options,
    content_type,
    make_client,
    subscriptions,
    subscriptions_digest_input,
)
from agent.outbox import Outbox
from agent.uplink_state import StateFile, state_path
from protocols import cbor

log = logging.getLogger(__name__)

ACK_BACKLOG = 1000  # refusal acks waiting for the network loop; beyond that they are dropped and counted

_CONNACK_TIMEOUT = 10.0  # seconds a broker may take to answer CONNECT
# ... when there are other endpoints to try: a node that accepts TCP but cannot answer (a cluster node
# just restarted, still setting up; one that lost its peers) is passed over for the next one
_CONNACK_TIMEOUT_SEVERAL = 4.0
_LOOP_TIMEOUT = 0.05  # the network loop's turns while stopping (draining, offline status, DISCONNECT)
IDLE_WAIT = 1.0  # the longest the network thread sleeps with nothing due (keep-alive is checked then)
READ_LATER_MAX = 0.5  # the longest a PUBACK (or a command) waits unread while readings stream in
_REASSERT_EVERY = 5.0  # seconds between two "online" statuses sent because a stale will came back
# a stale "offline" that arrives this long after our "online" replaced the retained status (a late will);
# sooner, it is a delivery queued in our session from before, and our "online" came after it
_STALE_AFTER = 2.0
UP = "up"
_WRONG_VERSION = "version"  # the broker does not speak the MQTT version we tried
CONTENT_TYPES = {"senml": "application/senml+cbor"}


def backoff_delay(failures: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform(d/2, d), d = min(high, low * 2**failures)."""
    d = min(high, low * (2 ** min(failures, 30)))
    return (rng or random).uniform(d / 2, d)


class Publisher:
    """Publishes the outbox over MQTT; see the module docstring for the guarantees.

    `status(session, online)` makes the status map (the will when `online` is false), `inventory()`
    returns the encoded inventory and its digest, `health()` the encoded health map."""

    def __init__(
        self,
        config: Config,
        outbox: Outbox,
        status: Callable[[int, bool], bytes],
        inventory: Callable[[], tuple[bytes, int]],
        health: Callable[[], bytes] | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self._status = status
        self._inventory = inventory
        self._health = health
        self.commands: Any = None  # the command gate (agent/command_gate.py): take(payload, retained)
        # called by the network thread on every turn of a session before it publishes from the outbox
        # (and once when the session ends): the uplink closes its open pack if it is due, so the pack goes
        # out in the same turn; returns when (monotonic) to look again, or None (agent/uplink.py)
        self.before_pump: Callable[[], float | None] | None = None
        self._look_at: float | None = None
        self.topic_status = config.topic("status")
        self.topic_inventory = config.topic("inventory")
        self.topic_data = config.topic("data")
        self.topic_alarm = config.topic("alarm")
        self.topic_event = config.topic("event")
        self.topic_health = config.topic("health")
        self.topic_cmd = config.topic("cmd")
        self.topic_ack = config.topic("ack")
        self.window = max(1, int(config.outbox.inflight))
        self._window_now = self.window  # the window of this connection (a broker may want fewer)
        b = config.broker
        self.failover = Failover(b.endpoint_list(), b)
        # how a host name becomes addresses (tests give their own)
        self.resolve: Callable[..., list] = socket.getaddrinfo
        self.memory = BrokerMemory(outbox, b.persistent_session)
        self.state_file = StateFile(state_path(config.outbox.path))
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._offline_wait = 2.0
        self._thread: threading.Thread | None = None
        self._thread_ident: int | None = None  # the network thread's, once it runs
        self._direct: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        # a byte written to _wake_w ends the network thread's wait (`wake`); made by `start`, closed when
        # the thread ends
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._rng = random.Random()
        # session state (network thread only)
        self._client: mqtt.Client | None = None
        self._endpoint: Endpoint | None = None
        self._version = V311
        self._connack: int | None = None
        self._connack_reason = ""
        self._session_present = False
        self._paho_error = ""  # paho's last error log line of the current session (e.g. a TLS alert)
        # mid -> (outbox id, records, sent at, outbox generation when it was read)
        self._inflight: dict[int, tuple[int, int, float, int]] = {}
        self._last_sent = 0
        self._generation = outbox.generation
        self._suback_mid: int | None = None  # the SUBSCRIBE the backlog waits for
        self._suback_sent = 0.0
        self._sub_digest = 0
        self._inventory_mid: tuple[int, int] | None = None  # (mid, digest) of the inventory in flight
        self._session_no = 0  # this connection's number, in the status and the will
        self._reasserted = 0.0
        self._next_health = 0.0
        self._since = 0.0  # wall time of the current connection's CONNACK
        self._up_at = 0.0  # monotonic time of the same
        self.connected = False
        self._state_lock = threading.Lock()
        self._counters = {
            "connects": 0, "disconnects": 0, "connect_failures": 0,
            "packs_published": 0, "records_published": 0, "bytes_published": 0, "packs_resent": 0,
            "acks": 0, "acks_dropped": 0, "puback_timeouts": 0, "inventories": 0, "subscribes": 0,
            "status_reasserted": 0,
        }
        self.last_error = ""  # the latest connection problem (also in health as mqtt.last_error)
        self._logged_errors: set[str] = set()  # causes logged since the last connect (retries are quiet)

    # -- public --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the network thread (connects in the background)."""
        if self._thread is not None:
            return
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = os_thread.thread(self._run, "fieldlink-mqtt")
        self._thread.start()

    def stop(self, drain: float = 0.0, timeout: float = 5.0) -> None:
        """Stop: publish for up to `drain` seconds more while connected, then the offline status (waiting
        up to `timeout` s for its PUBACK) and DISCONNECT; returns within about drain + timeout seconds."""
        now = time.monotonic()
        self._drain_until = now + drain
        self._offline_wait = min(2.0, timeout)
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(drain + timeout + 0.5)
        self._thread = None

    def wake(self) -> None:
        """End the network thread's wait now: a pack was committed to the outbox, a message waits, stop.
        Any thread may call it; it never blocks (a wake-up already pending is enough). The network
        thread itself needs none: it publishes from the outbox before it sleeps again."""
        w = self._wake_w
        if w is None or threading.get_ident() == self._thread_ident:
            return
        try:
            w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (the thread ended)
            pass

    def publish_alarm(self, alarm: dict) -> int:
        """Commit an alarm map to the outbox (QoS 1, in order with the data) and return its id."""
        pack_id = self.outbox.put(self.topic_alarm, cbor.dumps(alarm), 1, 0)
        self.wake()
        return pack_id

    def publish_event(self, event: dict) -> int:
        """Commit an event map to the outbox for `…/event` (QoS 1, in order with the data); its id."""
        pack_id = self.outbox.put(self.topic_event, cbor.dumps(event), 1, 0)
        self.wake()
        return pack_id

    def publish_direct(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish outside the outbox on the next network-loop turn (dropped while disconnected)."""
        self._direct.put((topic, payload, qos, retain))
        self.wake()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything in the outbox has been acknowledged (for tests and drivers)."""
        deadline = time.monotonic() + timeout
        while not self._is_idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _is_idle(self) -> bool:
        return self.connected and not self._inflight and len(self.outbox) == 0

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint of the session that is up, if any."""
        return self._endpoint if self.connected else None

    def stats(self) -> dict:
        with self._state_lock:
            out: dict[str, Any] = dict(self._counters)
        out["connected"] = self.connected
        out["inflight"] = len(self._inflight)
        out["last_error"] = self.last_error or None
        out.update(self._connection())
        out["endpoints"] = self.failover.report()
        return out

    def _connection(self) -> dict:
        """Where we are connected (health `mqtt.*` and the state file)."""
        ep = self.endpoint
        address = self._client.address if ep is not None and self._client is not None else None  # type: ignore[attr-defined]
        return {"endpoint": ep.url if ep is not None else None,
                "address": show_address(address) if address else None,
                "protocol": self._version if ep is not None else None,
                "session": self._session_no or None,
                "session_present": self._session_present if ep is not None else None,
                "since": round(self._since, 1) if ep is not None else None,
                "failovers": self.failover.failovers}

    def _save_state(self) -> None:
        self.state_file.write(dict(self._connection(), connected=self.connected,
                                   last_error=self.last_error or None, endpoints={
                                       url: {k: v for k, v in s.items() if k != "next_try_in"}
                                       for url, s in self.failover.report().items()}))

    # -- network thread ------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._state_lock:
            self._counters[key] += n

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        try:
            self._connect_loop()
        finally:
            for sock in (self._wake_w, self._wake_r):
                if sock is not None:
                    sock.close()
            self._wake_w = self._wake_r = None

    def _connect_loop(self) -> None:
        while not self._stopping.is_set():
            ep, wait = self.failover.pick()
            if wait > 0:
                log.log(logging.INFO if wait >= 5 else logging.DEBUG, "mqtt: next attempt on %s in %.1f s",
                        ep.url, wait)
                if self._stopping.wait(wait):
                    break
            try:
                outcome = self._attempt(ep)
            except Exception:  # a bug must not end publishing for good: log, back off, retry
                log.exception("mqtt: unexpected error in the network loop")
                outcome = REFUSED
            if outcome == UP:
                self.failover.ended(ep)
            else:
                self.failover.failed(ep, outcome, self.last_error)
            self._save_state()

    def _attempt(self, ep: Endpoint) -> str:
        """Connect to `ep` (MQTT 5 first where allowed and not known to fail, then 3.1.1)."""
        state = self.failover.state(ep)
        wanted = self.config.broker.mqtt_version
        versions = [wanted] if wanted != "auto" else [state.protocol] if state.protocol else [V5, V311]
        outcome = REFUSED
        for version in versions:
            outcome = self._session(ep, version)
            if outcome != _WRONG_VERSION:
                break
            log.info("mqtt: %s does not speak MQTT 5; MQTT 3.1.1 from now on", ep.url)
            state.protocol = V311
        return REFUSED if outcome == _WRONG_VERSION else outcome

    def _client_id(self) -> str:
        g = self.config.gateway
        return self.config.broker.client_id or "%s-%s-%s" % (g.prefix, g.site, g.id)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """TCP (and TLS) is up and CONNECT goes next: number this connection and register its will."""
        if client is not self._client:
            return
        self._session_no = int(self.outbox.get_meta("session", 0)) + 1
        self.outbox.set_meta("session", self._session_no)
        client.will_set(self.topic_status, self._status(self._session_no, False), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if client is self._client:
            code = int(reason.value) if hasattr(reason, "value") else int(reason)
            self._connack_reason = str(reason)
            self._session_present = bool(getattr(flags, "session_present", False))
            receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
            if receive_max:
                # MQTT 5: the broker takes at most this many QoS 1 publishes unacknowledged (HiveMQ's
                # default is 10); paho does not read it, so its limit (it queues beyond) and our window
                # follow it. paho 2.1 (pinned) allows no public change while connected.
                client._max_inflight_messages = int(receive_max)
                self._window_now = max(1, min(self.window, int(receive_max) - 4))
            self._connack = CONNACK_V311.get(code, code)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level in LOGGED and client is self._client:
            self._paho_error = text

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if client is not self._client or mid != self._suback_mid:
            return
        self._suback_mid = None
        refused = [i for i, c in enumerate(codes) if int(getattr(c, "value", c)) >= 0x80]
        ep = self._endpoint
        if refused:
            topics = [self.topic_cmd, self.topic_status]
            self._note_error("broker %s refused our subscription to %s: commands cannot arrive; check the "
                             "broker's ACL for this gateway (read %s)" % (
                                 ep.url if ep else "?", ", ".join(topics[i] for i in refused if i < 2),
                                 self.topic_cmd), logging.ERROR)
        elif ep is not None:
            self.memory.subscribed(ep, self._sub_digest)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if client is not self._client:
            return  # a late callback of an abandoned session
        if self._inventory_mid is not None and mid == self._inventory_mid[0]:
            if self._endpoint is not None:
                self.memory.inventory_acked(self._endpoint, self._inventory_mid[1])
            self._inventory_mid = None
            return
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # status, ack, health: not in the outbox
        pack_id, records, _, generation = entry
        try:
            self.outbox.ack(pack_id, generation)
        except Exception:  # never into paho: an exception here would end the session and resend all
            log.exception("outbox: recording the PUBACK of pack %d failed", pack_id)
        with self._state_lock:
            self._counters["packs_published"] += 1
            self._counters["records_published"] += records

    def _close_packs(self) -> None:
        """`before_pump`: the uplink closes its open pack if it is due (an idle uplink's latency)."""
        self._look_at = None
        if self.before_pump is not None:
            try:
                self._look_at = self.before_pump()
            except Exception:  # a bug there must not end the session
                log.exception("mqtt: closing the open pack failed")

    def _session(self, ep: Endpoint, version: str) -> str:
        """One connection to `ep`, from CONNECT to its end: UP if the broker accepted it, else why not."""
        state = self.failover.state(ep)
        try:
            candidates = addresses(ep, state.last_address, self.resolve)
        except OSError as exc:  # socket.gaierror: the name does not resolve (now)
            self._note_error(describe_connect_error(exc, ep))
            self._count("connect_failures")
            return UNREACHABLE
        try:
            client = make_client(ep, version, self._client_id(), self.config.broker.persistent_session,
                                 self.window, candidates, self.config.broker.connect_timeout)
        except TlsSetupError as exc:
            self._note_error("cannot connect to broker %s:%d: %s" % (ep.host, ep.port, exc), logging.ERROR)
            self._count("connect_failures")
            return REFUSED
        client.on_log = self._on_log
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._endpoint = ep
        self._version = version
        self._connack = None
        self._session_present = False
        self._paho_error = ""
        self._inflight.clear()
        self._suback_mid = None
        self._inventory_mid = None
        self._last_sent = 0
        self._window_now = self.window
        up = False
        wrong_version = False
        b = self.config.broker
        try:
            try:
                client.connect(ep.host, ep.port, keepalive=b.keepalive,
                               **connect_options(version, b.persistent_session, b.session_expiry))
            except (OSError, ssl.SSLError, ValueError) as exc:
                tls = isinstance(exc, ssl.SSLError)
                self._note_error(describe_connect_error(exc, ep), logging.ERROR if tls else logging.WARNING)
                return REFUSED if tls or isinstance(exc, (ValueError, ConnectionResetError)) else UNREACHABLE
            state.last_address = client.address
            started = time.monotonic()
            wait = 0.0
            later = False  # read the broker's socket at the next planned look, not at every packet
            while True:
                rc = self._turn(client, wait, later)
                if self._connack is not None and self._connack != 0:
                    if self._connack == 1 and version == V5 and b.mqtt_version == "auto":
                        wrong_version = True  # not a failure: the same attempt goes on in 3.1.1
                        return _WRONG_VERSION
                    # paho ends the loop with MQTT_ERR_CONN_REFUSED right after the refusing CONNACK
                    text = describe_refusal(self._connack, ep, self.config.path, self._connack_reason)
                    self._note_error(text, logging.ERROR)
                    break
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if not up:
                        self._note_error(describe_lost_before_connack(ep, self._paho_error),
                                         logging.ERROR if ep.tls and self._paho_error else logging.WARNING)
                    else:
                        self._note_error("connection to broker %s:%d lost: %s" % (
                            ep.host, ep.port, self._paho_error or mqtt.error_string(rc)))
                    break
                if self._connack is None:
                    if self._stopping.is_set():
                        break
                    limit = _CONNACK_TIMEOUT if len(self.failover.states) == 1 else _CONNACK_TIMEOUT_SEVERAL
                    if time.monotonic() - started > limit:
                        self._note_error("no CONNACK from broker %s:%d within %g s"
                                         % (ep.host, ep.port, limit))
                        break
                    # just past the deadline, so the check above then sees it passed
                    wait = min(IDLE_WAIT, started + limit - time.monotonic() + 0.01)
                    continue
                if not up:
                    up = True
                    state.protocol = version
                    self._on_up(client, ep)
                if self._stopping.is_set():
                    self._finish(client)
                    return UP
                late = self._puback_overdue()
                if late:
                    self._count("puback_timeouts")
                    self._note_error(late)
                    break
                self._close_packs()
                if self._suback_mid is None:
                    self._pump(client)
                self._send_direct(client)
                if self._health is not None and time.monotonic() >= self._next_health:
                    self._next_health = time.monotonic() + self.config.gateway.health_interval
                    # retained: a fleet report learns every gateway's latest health at subscribe time
                    client.publish(self.topic_health, self._health(), qos=1, retain=True)
                wait = self._idle_for()
                later = self._reads_can_wait(wait)
            return UP if up else REFUSED
        finally:
            if up:
                self._count("disconnects")
            elif not wrong_version:
                self._count("connect_failures")  # no accepted CONNACK: refused, TLS, timeout, closed
            self._count("packs_resent", len(self._inflight))  # sent again by the next session
            self._inflight.clear()
            self.connected = False
            self._close_packs()  # not idle now: readings gather (and need no wake-up) until the next session
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()  # abnormal end: no DISCONNECT, so the broker sends the will
                except OSError:
                    pass
            self._client = None

    def _idle_for(self) -> float:
        """How long the connected network thread may sleep: until the next health message, the oldest
        PUBACK or the SUBACK falls due, at most IDLE_WAIT; 0 while a direct message waits or stopping."""
        if not self._direct.empty() or self._stopping.is_set():
            return 0.0
        now = time.monotonic()
        wait = IDLE_WAIT
        if self._health is not None:
            wait = min(wait, self._next_health - now)
        limit = self.config.broker.puback_timeout
        if self._suback_mid is not None:
            wait = min(wait, self._suback_sent + limit - now)
        if self._inflight:
            oldest = min(entry[2] for entry in self._inflight.values())
            wait = min(wait, oldest + limit - now)
        if self._look_at is not None:
            wait = min(wait, self._look_at - now)
        return max(0.0, wait)

    def _reads_can_wait(self, wait: float) -> bool:
        """While readings stream in, the PUBACK of the pack just published need not wake the network
        thread: it looks again within `wait` s anyway (the next pack is due then), and reads it then, in
        the same wake-up that closes and publishes the next pack. Only while nothing else waits for the
        socket: no pack in the outbox beyond those in flight (a backlog needs its PUBACKs to move the
        window), no SUBACK awaited, and the look is at most READ_LATER_MAX away. A command on `…/cmd`
        and a broken connection are then noticed at that look."""
        return (self._look_at is not None and wait <= READ_LATER_MAX and self._suback_mid is None
                and not self._stopping.is_set() and len(self.outbox) <= len(self._inflight))

    def _turn(self, client: mqtt.Client, timeout: float, later: bool = False) -> MQTTErrorCode:
        """One turn of the network loop: sleep up to `timeout` s until the broker's socket has data (or
        room, while paho has bytes to write) or `wake` is called, then let paho read what came, write
        what it has queued and check the keep-alive. paho's external-loop calls (`loop_read`,
        `loop_write`, `loop_misc`) rather than `loop()`: one `select` per turn instead of two, and paho
        makes no wake-up socket of its own, so a `publish` from this thread writes at once instead of
        also writing and reading a byte through that socket. With `later` (`_reads_can_wait`) the sleep
        does not end for the broker's data; what came is read when it ends."""
        sock = client.socket()
        wake = self._wake_r
        if sock is None or wake is None:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted wait in the SSL object
        buffered = pending is not None and pending() > 0
        try:
            ready = select.select([wake] if later else [sock, wake], [sock] if client.want_write() else [],
                                  [], max(0.0, timeout) if later or not buffered else 0.0)[0]
        except (OSError, ValueError, TypeError):  # the socket just closed
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if wake in ready:
            try:
                wake.recv(4096)
            except OSError:
                pass
        if later or buffered or sock in ready:  # (nothing there: paho's read returns at once)
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
            if client.socket() is None:  # closed without an error code (a DISCONNECT from the broker)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if client.want_write():
            rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return client.loop_misc()

    def _on_up(self, client: mqtt.Client, ep: Endpoint) -> None:
        """CONNACK accepted: subscriptions (if the broker lacks them), status, inventory (if it lacks it)."""
        self._since = time.time()
        self._up_at = time.monotonic()
        self.failover.up(ep)
        held = self.memory.begin(ep, self._session_present, [s.endpoint for s in self.failover.states])
        topics = [self.topic_cmd, self.topic_status]
        self._sub_digest = digest(subscriptions_digest_input(self._version, topics))
        subscribe = held.subscriptions != self._sub_digest
        if subscribe:
            rc, mid = client.subscribe(subscriptions(self._version, topics))
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._suback_mid = mid  # the backlog waits for the SUBACK: no command is missed
                self._suback_sent = time.monotonic()
                self._count("subscribes")
        client.publish(self.topic_status, self._status(self._session_no, True), qos=1, retain=True)
        payload, inventory_digest = self._inventory()
        sent_inventory = held.inventory != inventory_digest
        if sent_inventory:
            info = client.publish(self.topic_inventory, payload, qos=1, retain=True)
            self._inventory_mid = (info.mid, inventory_digest)
            self._count("inventories")
        log.info("mqtt: connected to %s (%s, MQTT %s%s%s%s); %d packs waiting in the outbox", ep.url,
                 show_address(client.address) if client.address else "?", self._version,  # type: ignore[attr-defined]
                 ", TLS" if ep.tls else "", ", session present" if self._session_present else "",
                 "" if sent_inventory else ", inventory held", len(self.outbox))
        self._logged_errors.clear()  # the next problem is news again
        self.connected = True
        self._count("connects")
        self._save_state()

    def _puback_overdue(self) -> str:
        """Why the session must end: the oldest pack in flight (or our SUBSCRIBE) waited longer than
        puback_timeout."""
        b = self.config.broker
        if self._suback_mid is not None and time.monotonic() - self._suback_sent >= b.puback_timeout:
            return ("no SUBACK from broker %s for %.0f s (broker.puback_timeout); reconnecting" % (
                self._where(), time.monotonic() - self._suback_sent))
        if not self._inflight:
            return ""
        oldest = min(entry[2] for entry in self._inflight.values())
        waited = time.monotonic() - oldest
        if waited < b.puback_timeout:
            return ""
        return ("no PUBACK from broker %s for %.0f s (broker.puback_timeout); reconnecting to send the %d "
                "packs in flight again" % (self._where(), waited, len(self._inflight)))

    def _where(self) -> str:
        """host:port of the session's endpoint, for a message (only made when one is said: the check
        above runs on every turn of the network loop)."""
        ep = self._endpoint
        return "%s:%d" % (ep.host, ep.port) if ep is not None else "?"

    def _pump(self, client: mqtt.Client) -> None:
        """Fill the in-flight window from the outbox, oldest first."""
        generation = self.outbox.generation
        if generation != self._generation:
            # older packs appeared (a file that could only be opened late, held packs renumbered after
            # it): read from the start again; PUBACKs for what is in flight no longer delete anything,
            # so those packs are sent again (at most one window of duplicates)
            self._generation = generation
            self._last_sent = 0
            self._count("packs_resent", len(self._inflight))
            self._inflight.clear()
        free = self._window_now - len(self._inflight)
        if free <= 0:
            return
        try:
            packs = self.outbox.peek(free, after=self._last_sent)
        except Exception:
            log.exception("outbox: reading packs to publish failed")
            return
        senml = CONTENT_TYPES.get(self.config.gateway.payload)
        for pack in packs:
            props = None
            if self._version == V5:
                props = content_type(senml if senml and pack.topic == self.topic_data else "application/cbor")
            info = client.publish(pack.topic, pack.payload, qos=pack.qos, properties=props)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection is going away; the next session replays it
            self._last_sent = pack.id
            if pack.qos == 0:
                self.outbox.ack(pack.id, generation)
            else:
                self._inflight[info.mid] = (pack.id, pack.records, time.monotonic(), generation)
            self._count("bytes_published", len(pack.payload))

    def _send_direct(self, client: mqtt.Client) -> None:
        while True:
            try:
                topic, payload, qos, retain = self._direct.get_nowait()
            except queue.Empty:
                return
            client.publish(topic, payload, qos=qos, retain=retain)

    def _finish(self, client: mqtt.Client) -> None:
        """Graceful stop: drain for the allowed time, publish offline, DISCONNECT."""
        while time.monotonic() < self._drain_until:
            if self._suback_mid is None:
                self._pump(client)
            self._send_direct(client)
            if self._is_idle() and self._direct.empty():
                break
            if self._turn(client, _LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        info = client.publish(self.topic_status, self._status(self._session_no, False), qos=1, retain=True)
        deadline = time.monotonic() + self._offline_wait
        while not info.is_published() and time.monotonic() < deadline:
            if self._turn(client, _LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        client.disconnect()
        self._turn(client, _LOOP_TIMEOUT)
        log.info("mqtt: disconnected (offline status published)")

    def _note_error(self, text: str, level: int = logging.WARNING) -> None:
        """Log a connection problem once per distinct text until the next connect (retries repeat it)."""
        if text not in self._logged_errors:
            if len(self._logged_errors) >= 32:
                self._logged_errors.clear()
            self._logged_errors.add(text)
            log.log(level, "mqtt: %s", text)
        self.last_error = text

    # -- messages from the broker -------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topic_status:
            self._stale_status(client, msg.payload)
            return
        if msg.topic != self.topic_cmd:
            return
        gate = self.commands
        if gate is None:
            return
        try:
            gate.take(msg.payload, bool(msg.retain))
        except Exception:  # a bug must not end the session; the command is not run
            log.exception("mqtt: command on %s could not be handled", self.topic_cmd)

    def _stale_status(self, client: mqtt.Client, payload: bytes) -> None:
        """Our own status came back: if it says offline for another connection and came well after our
        "online" (a will the broker sent late, after we were online again elsewhere: a half-open
        connection to a node that noticed only at its keep-alive), say online again, at most every few
        seconds."""
        try:
            msg = cbor.loads(payload) if payload else None
        except Exception:
            return
        if not isinstance(msg, dict) or msg.get("online") is not False:
            return
        if msg.get("session") == self._session_no:
            return
        now = time.monotonic()
        if not self.connected or now - self._up_at < _STALE_AFTER or now - self._reasserted < _REASSERT_EVERY:
            return
        self._reasserted = time.monotonic()
        self._count("status_reasserted")
        log.info("mqtt: a stale offline status (connection %s) replaced ours; publishing online again",
                 msg.get("session"))
        client.publish(self.topic_status, self._status(self._session_no, True), qos=1, retain=True)

    def send_ack(self, payload: bytes, ran: bool = False) -> None:
        """Publish an ack (QoS 1) on the next loop turn; counted in acks_dropped while offline or, for a
        refusal, when `ACK_BACKLOG` messages already wait (a command flood must not grow memory). The ack of
        a command that ran (`ran`) is always queued: those are bounded by the bus queues."""
        if not self.connected or (not ran and self._direct.qsize() >= ACK_BACKLOG):
            self._count("acks_dropped")
            return
        self._count("acks")
        self.publish_direct(self.topic_ack, payload, qos=1)


__all__ = ["ACK_BACKLOG", "Publisher", "TlsSetupError", "backoff_delay", "describe_connect_error",
           "describe_refusal"]
