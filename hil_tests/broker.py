"""A real Mosquitto for tests and the demo: own config, own loopback port, stopped by PID.

    with Mosquitto(persistence=True) as broker:
        broker.port           # 127.0.0.1:<free port>, kept across stop()/start()/kill()
        broker.stop()         # SIGTERM, wait (persistence is written on a clean stop)
        broker.kill()         # SIGKILL: what a power cut looks like to clients
        broker.start()        # same port, same persistence directory

The config raises Mosquitto's per-client queue far above its default of 1,000 messages (which drops
QoS 1 messages to a slow subscriber even though the publisher got its PUBACK) -- see docs/broker.md.

Security, for the TLS and credentials tests (docs/broker.md section 4):

    certs = certs_or_skip(tmp_dir)                     # a test CA, broker and client certificates (openssl)
    Mosquitto(users={"gw1": "secret"},                 # password file (mosquitto_passwd); no anonymous
              tls=certs, require_certificate=True,     # plus a TLS listener on broker.tls_port
              use_identity_as_username=True)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerError(RuntimeError):
    """Mosquitto did not start (the message carries its log)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made by `make_certs`: a test CA, the broker's certificate (for 127.0.0.1 and localhost),
    a client certificate whose CN is `client_cn`, and an unrelated CA (a wrong `ca_file`)."""

    ca: str
    broker_cert: str
    broker_key: str
    client_cert: str
    client_key: str
    client_cn: str
    other_ca: str


def _openssl(openssl: str, directory: str, *args: str) -> None:
    result = subprocess.run([openssl, *args], cwd=directory, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise BrokerError("openssl %s failed: %s" % (" ".join(args[:2]), result.stderr.strip()[-500:]))


def make_certs(directory: str, client_cn: str = "gw1", openssl: str | None = None,
               broker_names: str = "IP:127.0.0.1,DNS:localhost") -> TlsFiles:
    """Generate short-lived EC (P-256) test certificates in `directory` with the openssl command;
    `broker_names` is the subjectAltName of the broker's certificate."""
    tool = openssl or shutil.which("openssl")
    if tool is None:
        raise BrokerError("the openssl command is not installed (apt-get install openssl)")
    os.makedirs(directory, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_ext = ("-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name in ("ca", "other-ca"):
        _openssl(tool, directory, "req", "-x509", *ec, *ca_ext, "-keyout", name + ".key",
                 "-out", name + ".crt", "-days", "2", "-subj", "/CN=FieldLink test %s" % name)
    leaves = {"broker": ("localhost", "subjectAltName=%s\nextendedKeyUsage=serverAuth" % broker_names),
              "client": (client_cn, "extendedKeyUsage=clientAuth")}
    for name, (cn, ext) in leaves.items():
        with open(os.path.join(directory, name + ".ext"), "w") as f:
            f.write(ext + "\n")
        _openssl(tool, directory, "req", "-new", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + cn)
        _openssl(tool, directory, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext")
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    return TlsFiles(ca=path("ca.crt"), broker_cert=path("broker.crt"), broker_key=path("broker.key"),
                    client_cert=path("client.crt"), client_key=path("client.key"), client_cn=client_cn,
                    other_ca=path("other-ca.crt"))


def certs_or_skip(directory: str, **kwargs: Any) -> TlsFiles:
    """`make_certs`, or a pytest skip saying why not (a failure under CI, which must run these tests).

    Python's ssl module cannot create certificates; the `cryptography` package is not a dependency, so
    without the openssl command there is nothing to make them with."""
    import pytest

    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("the openssl command is not installed, but CI must run the TLS tests")
        pytest.skip("the openssl command is not installed here (apt-get install openssl): "
                    "no way to make test certificates")
    return make_certs(directory, **kwargs)


def password_file(path: str, users: dict[str, str]) -> str:
    """A Mosquitto password file with `users` (made with `mosquitto_passwd -c -b`, then `-b`)."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        raise BrokerError("mosquitto_passwd is not installed (it comes with mosquitto)")
    for i, (user, password) in enumerate(users.items()):
        flags = ["-c", "-b"] if i == 0 else ["-b"]
        result = subprocess.run([tool, *flags, path, user, password], capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise BrokerError("mosquitto_passwd failed: %s" % result.stderr.strip())
    return path


class Mosquitto:
    """One private Mosquitto process on a loopback port, with its config in a temp dir."""

    def __init__(
        self,
        port: int | None = None,
        persistence: bool = False,
        max_queued_messages: int = 1_000_000,
        max_inflight_messages: int = 100,
        extra: str = "",
        binary: str | None = None,
        users: dict[str, str] | None = None,
        allow_anonymous: bool | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        use_identity_as_username: bool = False,
    ) -> None:
        self.binary = binary or find_mosquitto()
        if self.binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.tls_port: int | None = None
        if tls is not None:
            tls_port = free_port()
            while tls_port == self.port:
                tls_port = free_port()
            self.tls_port = tls_port
        self.dir = tempfile.mkdtemp(prefix="fieldlink-mosquitto-")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous %s" % ("true" if (not users if allow_anonymous is None else allow_anonymous)
                                    else "false"),
            "persistence %s" % ("true" if persistence else "false"),
            "persistence_location %s/" % self.dir,
            "autosave_interval 1",
            "max_queued_messages %d" % max_queued_messages,
            "max_queued_bytes 0",
            "max_inflight_messages %d" % max_inflight_messages,
            "log_dest file %s" % self.log,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot write our temp dir
        if users:
            lines.append("password_file %s" % password_file(os.path.join(self.dir, "passwd"), users))
        tail = []
        if tls is not None:  # a second listener, last, so `extra` still applies to the plain one
            tail = ["listener %d 127.0.0.1" % tls_port, "cafile %s" % tls.ca,
                    "certfile %s" % tls.broker_cert, "keyfile %s" % tls.broker_key,
                    "require_certificate %s" % ("true" if require_certificate else "false"),
                    "use_identity_as_username %s" % ("true" if use_identity_as_username else "false")]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra + ("\n" + "\n".join(tail) + "\n" if tail else ""))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """`host:port`, as `fieldlink monitor --broker` takes it."""
        return "%s:%d" % (self.host, self.port)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start (or restart on the same port) and wait until the port accepts connections."""
        if self.running:
            return self
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.conf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(
                    "mosquitto exited with %s: %s %s" % (self.proc.returncode, err, self.read_log()))
            try:
                for port in (self.port, self.tls_port):
                    if port is not None:
                        with socket.create_connection((self.host, port), timeout=0.5):
                            pass
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise BrokerError(
            "mosquitto did not listen on %s within %.0f s: %s" % (self.url, timeout, self.read_log()))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (Mosquitto saves its persistence file on a clean stop)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: no persistence save, no will for anybody, sockets reset."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def _signal(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr:
            proc.stderr.close()
        self.proc = None
        # the port must be free again before a restart binds it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def read_log(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the broker and remove its temp dir."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a test that forgot close() must not leave a broker behind
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


class Subscriber:
    """A paho subscriber that records every message; `persistent` keeps its session across outages.

    Decoding uses cbor2, the test oracle (never our own codec): `readings()` resolves SenML packs by
    RFC 8428 alone (bn + n, bt + t) into (name, value, time) tuples in arrival order.
    """

    def __init__(self, broker: Mosquitto, topic: str = "fieldlink/#", client_id: str = "test-subscriber",
                 persistent: bool = True, delay: float = 0.0, username: str | None = None,
                 password: str | None = None) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.delay = delay
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent)
        self.client.max_inflight_messages = 20
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(1, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise BrokerError("test subscriber did not get its SUBACK")

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))  # type: ignore[attr-defined]

    def on(self, leaf: str) -> list[bytes]:
        """Payloads received on topics ending in `/leaf`, in order."""
        with self.lock:
            return [p for t, p, _ in self.messages if t.endswith("/" + leaf)]

    def decoded(self, leaf: str) -> list:
        import cbor2

        return [cbor2.loads(p) for p in self.on(leaf)]

    def readings(self) -> list[tuple[str, Any, float]]:
        """(name, value, time) of every record of every SenML pack on `…/data`, in arrival order."""
        out = []
        for pack in self.decoded("data"):
            bn, bt = "", 0
            for rec in pack:
                bn = rec.get(-2, bn)
                bt = rec.get(-3, bt)
                value = next((rec[k] for k in (2, 3, 4, 8) if k in rec), None)
                if isinstance(value, Decimal):  # a decimal fraction (tag 4) is a binary64 (RFC 8428 §6)
                    value = float(value)
                out.append((bn + rec.get(0, ""), value, bt + rec.get(6, 0)))
        return out

    def wait_for(self, predicate: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(0.05)
        return bool(predicate())  # type: ignore[operator]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def broker_or_skip(**kwargs: object) -> Mosquitto:
    """A started Mosquitto, or a pytest skip saying why there is none (CI installs it)."""
    import pytest

    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed, but CI must run the broker tests (.ci/run installs it)")
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto); CI installs it")
    return Mosquitto(**kwargs).start()  # type: ignore[arg-type]


__all__ = ["BrokerError", "Mosquitto", "Subscriber", "TlsFiles", "broker_or_skip", "certs_or_skip",
           "find_mosquitto", "free_port", "make_certs", "password_file"]
