"""The MQTT publisher: drains the outbox over QoS 1, in order, deleting a pack only on its PUBACK.

One network thread owns everything paho does; nothing else touches the client. Each connection
attempt uses a **fresh paho client** with ``clean_session=True``: paho keeps unacknowledged QoS 1
messages inside a client object and re-sends them itself after a reconnect, which would duplicate the
replay from our outbox and could reorder it. With a fresh client the outbox is the only queue:

* at most ``inflight`` packs are published-but-unacknowledged at once (the window);
* PUBACK for a mid -> ``outbox.ack(id)``; nothing else deletes a pack (except the byte bound);
* on a new session the window is empty and publishing restarts from the oldest pack in the outbox,
  so packs reach the broker in commit order and at most ``inflight`` packs are sent twice.

Every connect: subscribe ``…/cmd`` (QoS 1), publish the birth on ``…/status`` (retained, QoS 1),
then the backlog; the last will (registered at CONNECT) is the retained "offline" status. Reconnects
wait ``uniform(d/2, d)`` with ``d = min(reconnect_max, reconnect_min * 2**failures)``.
Commands are decoded here and run on a worker thread (a command may wait for a bus); their acks are
published directly (QoS 1), not through the outbox: an ack is only useful while the requester waits.
"""

from __future__ import annotations

import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.config_model import Config
from agent.outbox import Outbox
from protocols import cbor
from protocols.errors import CborError

log = logging.getLogger(__name__)

CommandHandler = Callable[[dict], dict]

_CONNACK_TIMEOUT = 10.0
_LOOP_TIMEOUT = 0.05
_ID_PREFIX = b"\x62id"  # text "id": the first key of a deterministically encoded command map


def backoff_delay(failures: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform(d/2, d), d = min(high, low * 2**failures)."""
    d = min(high, low * (2 ** min(failures, 30)))
    return (rng or random).uniform(d / 2, d)


def recover_command_id(data: bytes) -> Any:
    """Best effort: the `id` of a command whose CBOR is broken after its first entry, else None.

    A deterministically encoded map sorts the shortest key first, so "id" leads; a truncated or
    damaged command still tells us whom to refuse.
    """
    if len(data) < 5 or not (0xA1 <= data[0] <= 0xB7 or data[0] == 0xBF) or data[1:4] != _ID_PREFIX:
        return None
    for end in range(5, min(len(data), 4 + 66) + 1):
        try:
            value = cbor.loads(data[4:end])
        except (CborError, ValueError, TypeError, IndexError):
            continue
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return value
        return None
    return None


class Publisher:
    """Publishes the outbox over MQTT; see the module docstring for the guarantees."""

    def __init__(
        self,
        config: Config,
        outbox: Outbox,
        birth: Callable[[], bytes],
        will: bytes,
        offline: Callable[[], bytes] | None = None,
        health: Callable[[], bytes] | None = None,
        on_command: CommandHandler | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self._birth = birth
        self._will = will
        self._offline = offline or (lambda: will)
        self._health = health
        self.on_command = on_command
        self.topic_status = config.topic("status")
        self.topic_data = config.topic("data")
        self.topic_alarm = config.topic("alarm")
        self.topic_health = config.topic("health")
        self.topic_cmd = config.topic("cmd")
        self.topic_ack = config.topic("ack")
        self.window = max(1, int(config.outbox.inflight))
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self._cmd_thread: threading.Thread | None = None
        self._commands: queue.Queue[dict | None] = queue.Queue()
        self._direct: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        self._rng = random.Random()
        # session state (network thread only)
        self._client: mqtt.Client | None = None
        self._connack: int | None = None
        self._inflight: dict[int, tuple[int, int]] = {}  # mid -> (outbox id, records)
        self._last_sent = 0
        self.connected = False
        self._state_lock = threading.Lock()
        self._counters = {
            "connects": 0, "disconnects": 0, "connect_failures": 0,
            "packs_published": 0, "records_published": 0, "bytes_published": 0, "packs_resent": 0,
            "commands": 0, "commands_bad": 0, "acks": 0, "acks_dropped": 0,
        }
        self.last_error = ""

    # -- public --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the network thread (connects in the background) and the command worker."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="fieldlink-mqtt", daemon=True)
        self._cmd_thread = threading.Thread(target=self._command_worker, name="fieldlink-cmd", daemon=True)
        self._thread.start()
        self._cmd_thread.start()

    def stop(self, drain: float = 0.0, timeout: float = 5.0) -> None:
        """Stop: publish for up to `drain` seconds more while connected, then the offline status."""
        self._drain_until = time.monotonic() + drain
        self._stopping.set()
        self._commands.put(None)
        for thread in (self._thread, self._cmd_thread):
            if thread is not None:
                thread.join(drain + timeout)
        self._thread = self._cmd_thread = None

    def publish_alarm(self, alarm: dict) -> int:
        """Commit an alarm map to the outbox (QoS 1, in order with the data) and return its id."""
        return self.outbox.put(self.topic_alarm, cbor.dumps(alarm), 1, 0)

    def publish_direct(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish outside the outbox on the next network-loop turn (dropped while disconnected)."""
        self._direct.put((topic, payload, qos, retain))

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

    def stats(self) -> dict:
        with self._state_lock:
            out: dict[str, Any] = dict(self._counters)
        out["connected"] = self.connected
        out["inflight"] = len(self._inflight)
        return out

    # -- network thread ------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._state_lock:
            self._counters[key] += n

    def _run(self) -> None:
        failures = 0
        broker = self.config.broker
        while not self._stopping.is_set():
            try:
                was_up = self._session()
            except Exception:  # a bug must not end publishing for good: log, back off, retry
                log.exception("mqtt: unexpected error in the network loop")
                was_up = False
            if self._stopping.is_set():
                break
            failures = 0 if was_up else failures + 1
            delay = backoff_delay(failures, broker.reconnect_min, broker.reconnect_max, self._rng)
            log.info("mqtt: reconnecting to %s:%d in %.1f s", broker.host, broker.port, delay)
            self._stopping.wait(delay)

    def _make_client(self) -> mqtt.Client:
        b = self.config.broker
        g = self.config.gateway
        client_id = b.client_id or "%s-%s-%s" % (g.prefix, g.site, g.id)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages = self.window + 16  # room for birth, acks, health
        client.max_queued_messages = 0
        if b.username is not None:
            client.username_pw_set(b.username, b.password)
        if b.tls:
            client.tls_set(ca_certs=b.ca_file, certfile=b.cert_file, keyfile=b.key_file,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.topic_status, self._will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if client is self._client:
            self._connack = int(reason.value) if hasattr(reason, "value") else int(reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if client is not self._client:
            return  # a late callback of an abandoned session
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # birth, ack, health: not in the outbox
        pack_id, records = entry
        self.outbox.ack(pack_id)
        with self._state_lock:
            self._counters["packs_published"] += 1
            self._counters["records_published"] += records

    def _session(self) -> bool:
        """One connection, from CONNECT to its end. True if the broker accepted it."""
        b = self.config.broker
        client = self._make_client()
        self._client = client
        self._connack = None
        self._inflight.clear()
        self._last_sent = 0
        up = False
        try:
            try:
                client.connect(b.host, b.port, keepalive=b.keepalive)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._note_error("cannot connect to %s:%d: %s" % (b.host, b.port, exc))
                self._count("connect_failures")
                return False
            started = time.monotonic()
            next_health = 0.0
            while True:
                rc = client.loop(_LOOP_TIMEOUT)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._note_error("connection to %s:%d lost: %s" % (b.host, b.port, mqtt.error_string(rc)))
                    break
                if self._connack is None:
                    if time.monotonic() - started > _CONNACK_TIMEOUT or self._stopping.is_set():
                        self._note_error("no CONNACK from %s:%d" % (b.host, b.port))
                        break
                    continue
                if self._connack != 0:
                    self._note_error("broker %s:%d refused the connection: %s"
                                     % (b.host, b.port, mqtt.connack_string(self._connack)))
                    self._count("connect_failures")
                    break
                if not up:
                    up = True
                    self._on_up(client)
                    next_health = time.monotonic()
                if self._stopping.is_set():
                    self._finish(client)
                    return True
                self._pump(client)
                self._send_direct(client)
                if self._health is not None and time.monotonic() >= next_health:
                    next_health = time.monotonic() + self.config.gateway.health_interval
                    client.publish(self.topic_health, self._health(), qos=1)
            return up
        finally:
            if up:
                self._count("disconnects")
            self._count("packs_resent", len(self._inflight))  # sent again by the next session
            self._inflight.clear()
            self.connected = False
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()  # abnormal end: no DISCONNECT, so the broker sends the will
                except OSError:
                    pass
            self._client = None

    def _on_up(self, client: mqtt.Client) -> None:
        b = self.config.broker
        log.info("mqtt: connected to %s:%d; %d packs waiting in the outbox", b.host, b.port, len(self.outbox))
        self.connected = True
        self._count("connects")
        client.subscribe(self.topic_cmd, qos=1)
        client.publish(self.topic_status, self._birth(), qos=1, retain=True)

    def _pump(self, client: mqtt.Client) -> None:
        """Fill the in-flight window from the outbox, oldest first."""
        free = self.window - len(self._inflight)
        if free > 0:
            for pack in self.outbox.peek(free, after=self._last_sent):
                info = client.publish(pack.topic, pack.payload, qos=pack.qos)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return  # the connection is going away; the next session replays it
                self._last_sent = pack.id
                if pack.qos == 0:
                    self.outbox.ack(pack.id)
                else:
                    self._inflight[info.mid] = (pack.id, pack.records)
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
            self._pump(client)
            self._send_direct(client)
            if self._is_idle() and self._direct.empty():
                break
            if client.loop(_LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        info = client.publish(self.topic_status, self._offline(), qos=1, retain=True)
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(_LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        client.disconnect()
        client.loop(_LOOP_TIMEOUT)
        log.info("mqtt: disconnected (offline status published)")

    def _note_error(self, text: str) -> None:
        if text != self.last_error:
            log.warning("mqtt: %s", text)
        self.last_error = text

    # -- commands ------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.topic_cmd:
            return
        self._count("commands")
        data = bytes(msg.payload)
        try:
            cmd = cbor.loads(data)
        except (CborError, ValueError, TypeError, IndexError, RecursionError) as exc:
            cmd_id = recover_command_id(data)
            self._refuse(cmd_id, "command is not valid CBOR: %s" % exc)
            return
        if not isinstance(cmd, dict):
            self._refuse(None, "command is not a CBOR map")
            return
        cmd_id = cmd.get("id")
        if not isinstance(cmd_id, (int, str)) or isinstance(cmd_id, bool):
            self._refuse(None, "command has no id")
            return
        if not isinstance(cmd.get("device"), str):
            self._refuse(cmd_id, "command needs a device (text)")
            return
        if not isinstance(cmd.get("point"), str) and not isinstance(cmd.get("action"), str):
            self._refuse(cmd_id, "command needs a point or an action (text)")
            return
        self._commands.put(cmd)

    def _refuse(self, cmd_id: Any, error: str) -> None:
        self._count("commands_bad")
        log.warning("mqtt: bad command on %s: %s", self.topic_cmd, error)
        if cmd_id is not None:
            self._ack({"id": cmd_id, "ok": False, "error": error, "value": None})

    def _ack(self, ack: dict) -> None:
        if not self.connected:
            self._count("acks_dropped")
            return
        self._count("acks")
        self.publish_direct(self.topic_ack, cbor.dumps(ack), qos=1)

    def _command_worker(self) -> None:
        while True:
            cmd = self._commands.get()
            if cmd is None:
                return
            handler = self.on_command
            if handler is None:
                result: dict = {"ok": False, "error": "this gateway accepts no commands"}
            else:
                try:
                    result = handler(cmd) or {}
                except Exception as exc:
                    log.exception("command %r failed", cmd.get("id"))
                    result = {"ok": False, "error": "command failed: %s" % exc}
            ok = bool(result.get("ok", False))
            error = result.get("error")
            if not ok and not error:
                error = "refused"
            self._ack({"id": cmd["id"], "ok": ok, "error": None if ok else str(error),
                       "value": result.get("value")})


__all__ = ["CommandHandler", "Publisher", "backoff_delay", "recover_command_id"]
