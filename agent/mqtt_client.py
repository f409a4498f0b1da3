"""paho's client as the publisher uses it: one per connection attempt, MQTT 5 or 3.1.1, our socket.

* `Client` connects to the addresses the publisher chose (a DNS name's addresses in turn, the one that
  worked last first; agent/endpoints.py) while TLS still checks the endpoint's *name*. paho 2.1 (pinned
  exactly) opens its socket in `_create_socket_connection`; that one method is replaced.
* `make_client` sets the protocol version, the persistent session (MQTT 3.1.1 clean session off; MQTT 5
  clean start off with a session expiry, given to `connect`), the window, credentials and TLS.
* `subscriptions` are the topics we subscribe with their options: on MQTT 5 "retain as published", so a
  retained command published while we are subscribed still arrives marked retained and is refused
  (docs/commands.md); `No Local` is not set, so our own status comes back to us (the publisher
  re-asserts "online" when a stale will overwrote it).
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.broker_errors import tls_context
from agent.config_model import Endpoint
from agent.endpoints import connect_any
from protocols import cbor

V5 = "5"
V311 = "3.1.1"
LOGGED = (mqtt.MQTT_LOG_ERR, mqtt.MQTT_LOG_WARNING)  # paho's levels passed on to `on_log`


class Client(mqtt.Client):
    """paho's Client connecting through `candidates` [(family, sockaddr)], each tried with `timeout`."""

    def __init__(self, *args: Any, candidates: list[tuple], timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.candidates = candidates
        self.tcp_timeout = timeout
        self.address: tuple | None = None  # the sockaddr connected to

    def _create_socket_connection(self) -> socket.socket:
        sock, self.address = connect_any(self.candidates, self.tcp_timeout)
        return sock

    def _easy_log(self, level: Any, fmt: str, *args: Any) -> None:
        """paho's log line, formatted only for the levels `on_log` is given (errors and warnings).

        paho formats every packet's debug line (PUBLISH with its properties, every PUBACK) whenever
        `on_log` is set, which the publisher sets to learn paho's last error; those lines were a tenth
        of the network thread's CPU and nothing reads them. No paho logger is attached (we never call
        `enable_logger`), so nothing else is lost."""
        if level in LOGGED:
            super()._easy_log(level, fmt, *args)


def make_client(ep: Endpoint, version: str, client_id: str, persistent: bool, window: int,
                candidates: list[tuple], timeout: float) -> Client:
    """A fresh client for one connection attempt (TlsSetupError when the TLS files cannot be used)."""
    if version == V5:
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        candidates=candidates, timeout=timeout)
    else:
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent,
                        protocol=mqtt.MQTTv311, candidates=candidates, timeout=timeout)
    client.max_inflight_messages = window + 16  # room for status, inventory, acks, health
    client.max_queued_messages = 0
    if ep.username is not None:
        client.username_pw_set(ep.username, ep.password)
    if ep.tls:
        client.tls_set_context(tls_context(ep))
    return client


def connect_options(version: str, persistent: bool, session_expiry: int) -> dict:
    """Keyword arguments of `Client.connect` for the session we want."""
    if version != V5:
        return {}
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry if persistent else 0
    return {"clean_start": not persistent, "properties": props}


def subscriptions(version: str, topics: list[str]) -> list[tuple]:
    """(topic, options) for `Client.subscribe`: QoS 1; on MQTT 5 also retain as published."""
    if version == V5:
        return [(t, SubscribeOptions(qos=1, retainAsPublished=True)) for t in topics]
    return [(t, 1) for t in topics]


def subscriptions_digest_input(version: str, topics: list[str]) -> bytes:
    """What the subscriptions are, as bytes to digest (a change means subscribing again)."""
    return cbor.dumps([version, 1, [str(t) for t in topics]])


class _Shared(Properties):
    """PUBLISH properties made once and shared by every publish, so packed once too (paho packs them
    on each publish: about 6 us). A property set after the first publish would not be sent: these
    are never changed."""

    def pack(self) -> bytes:
        packed = self.__dict__.get("packed_once")
        if packed is None:
            packed = super().pack()
            object.__setattr__(self, "packed_once", packed)  # Properties allows only its own names
        return packed


def content_type(value: str) -> Properties:
    """PUBLISH properties with an MQTT 5 Content Type: one object per content type, shared by every
    publish (paho only packs it; building it each time was about 8 us per pack). Do not change it."""
    props = _content_types.get(value)
    if props is None:
        props = _Shared(PacketTypes.PUBLISH)
        props.ContentType = value
        if len(_content_types) < 16:  # a handful exist (agent/publisher.py CONTENT_TYPES, CBOR)
            _content_types[value] = props
    return props


_content_types: dict[str, Properties] = {}


__all__ = ["LOGGED", "V5", "V311", "Client", "connect_options", "content_type", "make_client",
           "subscriptions", "subscriptions_digest_input"]
