"""The MQTT publisher: drains the outbox over QoS 1, in order, deleting a pack only on its PUBACK.

One network thread owns everything paho does; nothing else touches the client. Each connection
attempt uses a **fresh paho client** with ``clean_session=True``: paho keeps unacknowledged QoS 1
messages inside a client object and re-sends them itself after a reconnect, which would duplicate the
replay from our outbox and could reorder it. With a fresh client the outbox is the only queue:

* at most ``inflight`` packs are published-but-unacknowledged at once (the window);
* PUBACK for a mid -> ``outbox.ack(id)``; nothing else deletes a pack (except the byte bound);
* on a new session the window is empty and publishing restarts from the oldest pack in the outbox,
  so packs reach the broker in commit order and at most ``inflight`` packs are sent twice;
* a pack is sent again only on a new session: when a PUBACK has not come within
  ``broker.puback_timeout`` seconds the session is ended (logged once) and a new one resends the
  window. Nothing the outbox does (a full or failing disk) ends a session: ``outbox.ack`` never raises
  into paho's callback, so a disk fault cannot turn into reconnects and resends.

Every connect: subscribe ``…/cmd`` (QoS 1), publish the birth on ``…/status`` (retained, QoS 1),
then the backlog; the last will (registered at CONNECT) is the retained "offline" status. Reconnects
wait ``uniform(d/2, d)`` with ``d = min(reconnect_max, reconnect_min * 2**failures)``.
A `…/cmd` delivery goes to the command gate (agent/command_gate.py) with its retain flag; the gate
never blocks (commands wait on their bus owner, not here) and publishes acks through `send_ack`:
directly (QoS 1), not through the outbox, since an ack is only useful while the requester waits.

A connection attempt that does not reach an accepted CONNACK counts in ``connect_failures`` and is logged
once per distinct cause in words a technician can act on: the broker's host:port, the refusal reason
(bad credentials, not authorised), the TLS problem (which file, the certificate check that failed).
Nothing leaves the outbox meanwhile.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
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

log = logging.getLogger(__name__)

ACK_BACKLOG = 1000  # refusal acks waiting for the network loop; beyond that they are dropped and counted

_CONNACK_TIMEOUT = 10.0
_LOOP_TIMEOUT = 0.05
# paho 2 reports an MQTT 3.1.1 CONNACK code as an MQTT 5 reason code; the 3.1.1 numbers for the log
_CONNACK_V311 = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}
_CONNACK_TEXT = {1: "unacceptable protocol version", 2: "client identifier rejected", 3: "broker unavailable",
                 4: "bad user name or password", 5: "not authorised"}


class TlsSetupError(ValueError):
    """The TLS files of the broker config cannot be used (the message names the file and why)."""


def tls_context(broker: Any) -> ssl.SSLContext:
    """The client TLS context of a `BrokerConfig`: the broker's certificate is checked against
    `ca_file` (else the system CAs) and its name against `host`; `cert_file`/`key_file` is our identity.
    Raises TlsSetupError naming the file that is missing or unusable."""
    ca = broker.ca_file
    if ca is not None and not os.path.isfile(ca):
        raise TlsSetupError("broker.ca_file %s does not exist" % ca)
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError("broker.ca_file %s is not a PEM CA certificate: %s" % (ca, exc)) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.cert_file is not None:
        for key in ("cert_file", "key_file"):
            path = getattr(broker, key)
            if path is not None and not os.path.isfile(path):
                raise TlsSetupError("broker.%s %s does not exist" % (key, path))
        try:
            context.load_cert_chain(broker.cert_file, broker.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(
                "client certificate broker.cert_file %s / broker.key_file %s cannot be used: %s (both PEM, "
                "the key unencrypted and belonging to the certificate)"
                % (broker.cert_file, broker.key_file or "(in the cert file)", exc)) from None
    return context


def describe_refusal(code: int, broker: Any, config_path: str) -> str:
    """Why the broker refused our CONNECT (MQTT 3.1.1 CONNACK `code`) and what to check."""
    where = "broker %s:%d refused the connection: %s (CONNACK %d)" % (
        broker.host, broker.port, _CONNACK_TEXT.get(code, "unknown reason"), code)
    if code in (4, 5):
        if broker.username is not None:
            hint = ("check broker.username (%r) and broker.password in %s against the broker's password file"
                    % (broker.username, config_path))
        elif broker.cert_file is not None:
            hint = ("the broker does not accept the identity of broker.cert_file %s (with "
                    "use_identity_as_username its CN is the user name): check the broker's users and ACL"
                    % broker.cert_file)
        else:
            hint = "the broker wants credentials: set broker.username and broker.password in %s" % config_path
        return "%s; %s" % (where, hint)
    if code == 2:
        return "%s; set another broker.client_id in %s" % (where, config_path)
    if code == 1:
        return "%s; this agent speaks MQTT 3.1.1" % where
    return where


def describe_connect_error(exc: BaseException, broker: Any) -> str:
    """A failed TCP connect or TLS handshake, with the likely fix."""
    where = "%s:%d" % (broker.host, broker.port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or str(exc)).rstrip(".")
        text = "TLS: the certificate of broker %s was not accepted: %s" % (where, reason)
        if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH
            return "%s; broker.host %r must be a name (or IP) in the broker's certificate" % (
                text, broker.host)
        if exc.verify_code in (9, 10):  # not yet valid / expired
            return "%s; check the certificate's dates and this gateway's clock" % text
        if broker.ca_file is not None:
            return "%s; is broker.ca_file %s the CA that signed the broker's certificate?" % (
                text, broker.ca_file)
        return "%s; set broker.ca_file to the CA that signed the broker's certificate" % text
    if isinstance(exc, ssl.SSLError):
        text = "TLS handshake with broker %s failed: %s" % (where, exc)
        if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
            return "%s; is %d a TLS port (MQTT over TLS is usually 8883, plain 1883)?" % (text, broker.port)
        return text
    if isinstance(exc, socket.gaierror):
        return "cannot resolve broker.host %r: %s" % (broker.host, exc)
    if isinstance(exc, ConnectionRefusedError):
        return "cannot connect to broker %s: connection refused (is the broker running on that port?)" % where
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "cannot connect to broker %s: no answer (timeout)" % where
    if isinstance(exc, ConnectionResetError) and broker.tls:
        return ("cannot connect to broker %s: connection reset during the TLS handshake (%s; is it a TLS "
                "port, and does it want a client certificate?)" % (where, exc))
    return "cannot connect to broker %s: %s" % (where, exc)


def describe_lost_before_connack(broker: Any, detail: str) -> str:
    """The connection closed before the broker answered CONNECT."""
    text = "broker %s:%d closed the connection before answering CONNECT" % (broker.host, broker.port)
    if detail:
        text += ": " + detail
    low = detail.lower()
    if not broker.tls:
        return text
    if "certificate required" in low:
        return "%s; the broker requires a client certificate: set broker.cert_file and broker.key_file" % text
    if broker.cert_file is not None and ("certificate" in low or "alert" in low or "eof" in low):
        return ("%s; the broker did not accept our client certificate %s (is it signed by the CA the broker "
                "trusts, and still valid?)" % (text, broker.cert_file))
    if broker.cert_file is None and ("ssl" in low or "eof" in low):
        return ("%s; the broker ended the TLS session: if it requires client certificates, set "
                "broker.cert_file and broker.key_file" % text)
    return text


def backoff_delay(failures: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform(d/2, d), d = min(high, low * 2**failures)."""
    d = min(high, low * (2 ** min(failures, 30)))
    return (rng or random).uniform(d / 2, d)


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
    ) -> None:
        self.config = config
        self.outbox = outbox
        self._birth = birth
        self._will = will
        self._offline = offline or (lambda: will)
        self._health = health
        self.commands: Any = None  # the command gate (agent/command_gate.py): take(payload, retained)
        self.topic_status = config.topic("status")
        self.topic_data = config.topic("data")
        self.topic_alarm = config.topic("alarm")
        self.topic_event = config.topic("event")
        self.topic_health = config.topic("health")
        self.topic_cmd = config.topic("cmd")
        self.topic_ack = config.topic("ack")
        self.window = max(1, int(config.outbox.inflight))
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._offline_wait = 2.0
        self._thread: threading.Thread | None = None
        self._direct: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        self._rng = random.Random()
        # session state (network thread only)
        self._client: mqtt.Client | None = None
        self._connack: int | None = None
        self._paho_error = ""  # paho's last error log line of the current session (e.g. a TLS alert)
        # mid -> (outbox id, records, sent at, outbox generation when it was read)
        self._inflight: dict[int, tuple[int, int, float, int]] = {}
        self._last_sent = 0
        self._generation = outbox.generation
        self.connected = False
        self._state_lock = threading.Lock()
        self._counters = {
            "connects": 0, "disconnects": 0, "connect_failures": 0,
            "packs_published": 0, "records_published": 0, "bytes_published": 0, "packs_resent": 0,
            "acks": 0, "acks_dropped": 0, "puback_timeouts": 0,
        }
        self.last_error = ""  # the latest connection problem (also in health as mqtt.last_error)
        self._logged_errors: set[str] = set()  # causes logged since the last connect (retries are quiet)

    # -- public --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the network thread (connects in the background)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="fieldlink-mqtt", daemon=True)
        self._thread.start()

    def stop(self, drain: float = 0.0, timeout: float = 5.0) -> None:
        """Stop: publish for up to `drain` seconds more while connected, then the offline status (waiting
        up to `timeout` s for its PUBACK) and DISCONNECT; returns within about drain + timeout seconds."""
        now = time.monotonic()
        self._drain_until = now + drain
        self._offline_wait = min(2.0, timeout)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(drain + timeout + 0.5)
        self._thread = None

    def publish_alarm(self, alarm: dict) -> int:
        """Commit an alarm map to the outbox (QoS 1, in order with the data) and return its id."""
        return self.outbox.put(self.topic_alarm, cbor.dumps(alarm), 1, 0)

    def publish_event(self, event: dict) -> int:
        """Commit an event map to the outbox for `…/event` (QoS 1, in order with the data); its id."""
        return self.outbox.put(self.topic_event, cbor.dumps(event), 1, 0)

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
        out["last_error"] = self.last_error or None
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
            client.tls_set_context(tls_context(b))  # TlsSetupError names the unusable file
        client.will_set(self.topic_status, self._will, qos=1, retain=True)
        client.on_log = self._on_log
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if client is self._client:
            code = int(reason.value) if hasattr(reason, "value") else int(reason)
            self._connack = _CONNACK_V311.get(code, code)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level in (mqtt.MQTT_LOG_ERR, mqtt.MQTT_LOG_WARNING) and client is self._client:
            self._paho_error = text

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if client is not self._client:
            return  # a late callback of an abandoned session
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # birth, ack, health: not in the outbox
        pack_id, records, _, generation = entry
        try:
            self.outbox.ack(pack_id, generation)
        except Exception:  # never into paho: an exception here would end the session and resend all
            log.exception("outbox: recording the PUBACK of pack %d failed", pack_id)
        with self._state_lock:
            self._counters["packs_published"] += 1
            self._counters["records_published"] += records

    def _session(self) -> bool:
        """One connection, from CONNECT to its end. True if the broker accepted it."""
        b = self.config.broker
        try:
            client = self._make_client()
        except TlsSetupError as exc:
            self._note_error("cannot connect to broker %s:%d: %s" % (b.host, b.port, exc), logging.ERROR)
            self._count("connect_failures")
            return False
        self._client = client
        self._connack = None
        self._paho_error = ""
        self._inflight.clear()
        self._last_sent = 0
        up = False
        try:
            try:
                client.connect(b.host, b.port, keepalive=b.keepalive)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._note_error(describe_connect_error(exc, b),
                                 logging.ERROR if isinstance(exc, ssl.SSLError) else logging.WARNING)
                return False
            started = time.monotonic()
            next_health = 0.0
            while True:
                rc = client.loop(_LOOP_TIMEOUT)
                if self._connack is not None and self._connack != 0:
                    # paho ends the loop with MQTT_ERR_CONN_REFUSED right after the refusing CONNACK
                    self._note_error(describe_refusal(self._connack, b, self.config.path), logging.ERROR)
                    break
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if not up:
                        self._note_error(describe_lost_before_connack(b, self._paho_error),
                                         logging.ERROR if b.tls and self._paho_error else logging.WARNING)
                    else:
                        self._note_error("connection to broker %s:%d lost: %s" % (
                            b.host, b.port, self._paho_error or mqtt.error_string(rc)))
                    break
                if self._connack is None:
                    if self._stopping.is_set():
                        break
                    if time.monotonic() - started > _CONNACK_TIMEOUT:
                        self._note_error("no CONNACK from broker %s:%d within %g s"
                                         % (b.host, b.port, _CONNACK_TIMEOUT))
                        break
                    continue
                if not up:
                    up = True
                    self._on_up(client)
                    next_health = time.monotonic()
                if self._stopping.is_set():
                    self._finish(client)
                    return True
                late = self._puback_overdue()
                if late:
                    self._count("puback_timeouts")
                    self._note_error(late)
                    break
                self._pump(client)
                self._send_direct(client)
                if self._health is not None and time.monotonic() >= next_health:
                    next_health = time.monotonic() + self.config.gateway.health_interval
                    client.publish(self.topic_health, self._health(), qos=1)
            return up
        finally:
            if up:
                self._count("disconnects")
            else:
                self._count("connect_failures")  # no accepted CONNACK: refused, TLS, timeout, closed
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
        log.info("mqtt: connected to %s:%d%s; %d packs waiting in the outbox", b.host, b.port,
                 " (TLS)" if b.tls else "", len(self.outbox))
        self._logged_errors.clear()  # the next problem is news again
        self.connected = True
        self._count("connects")
        client.subscribe(self.topic_cmd, qos=1)
        client.publish(self.topic_status, self._birth(), qos=1, retain=True)

    def _puback_overdue(self) -> str:
        """Why the session must end when the oldest pack in flight waited longer than puback_timeout."""
        if not self._inflight:
            return ""
        oldest = min(entry[2] for entry in self._inflight.values())
        waited = time.monotonic() - oldest
        if waited < self.config.broker.puback_timeout:
            return ""
        b = self.config.broker
        return ("no PUBACK from broker %s:%d for %.0f s (broker.puback_timeout); reconnecting to send the %d "
                "packs in flight again" % (b.host, b.port, waited, len(self._inflight)))

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
        free = self.window - len(self._inflight)
        if free <= 0:
            return
        try:
            packs = self.outbox.peek(free, after=self._last_sent)
        except Exception:
            log.exception("outbox: reading packs to publish failed")
            return
        for pack in packs:
            info = client.publish(pack.topic, pack.payload, qos=pack.qos)
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
            self._pump(client)
            self._send_direct(client)
            if self._is_idle() and self._direct.empty():
                break
            if client.loop(_LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        info = client.publish(self.topic_status, self._offline(), qos=1, retain=True)
        deadline = time.monotonic() + self._offline_wait
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(_LOOP_TIMEOUT) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        client.disconnect()
        client.loop(_LOOP_TIMEOUT)
        log.info("mqtt: disconnected (offline status published)")

    def _note_error(self, text: str, level: int = logging.WARNING) -> None:
        """Log a connection problem once per distinct text until the next connect (retries repeat it)."""
        if text not in self._logged_errors:
            if len(self._logged_errors) >= 32:
                self._logged_errors.clear()
            self._logged_errors.add(text)
            log.log(level, "mqtt: %s", text)
        self.last_error = text

    # -- commands ------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.topic_cmd:
            return
        gate = self.commands
        if gate is None:
            return
        try:
            gate.take(msg.payload, bool(msg.retain))
        except Exception:  # a bug must not end the session; the command is not run
            log.exception("mqtt: command on %s could not be handled", self.topic_cmd)

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
           "describe_refusal", "tls_context"]
