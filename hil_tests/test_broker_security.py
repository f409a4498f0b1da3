"""Transport security at the wire: a real Mosquitto with a password file and a TLS listener (test
certificates made now with the openssl command), the gateway polling a fake DL/T 645 meter, a platform
subscriber on the broker's plain listener decoding with cbor2.

(a) username/password: wrong -> an ERROR naming the broker, the refusal (not authorised) and the keys to
    check; readings stay in the outbox; connect failures counted in health; restarted with the right
    password -> everything delivered;
(b) TLS with a CA file (plus username/password, the docs/config.md example): a CA that did not sign the
    broker's certificate -> an ERROR naming the file and the failed check, nothing lost; the right CA ->
    delivered over TLS; `fieldlink monitor --ca-file` reads it back over TLS;
    A broker certificate that does not name the host -> an ERROR saying so.
(c) client certificates (require_certificate, use_identity_as_username): none -> a clear ERROR; with
    `fieldlink run` and the docs/config.md client-certificate example -> delivered as user = certificate CN.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest

from agent.commands import monitor
from agent.config import load_config
from agent.gateway import Gateway
from agent.tests.fakes import FakeMeter645
from agent.uplink import Uplink
from hil_tests.broker import Subscriber, TlsFiles, broker_or_skip, certs_or_skip
from hil_tests.buses import PtyBus
from protocols import dlt645

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS = {"gw1": "gw1-secret", "platform": "platform-secret"}
NAME = "gw1:m1/voltage"


@pytest.fixture
def meter() -> Iterator[PtyBus]:
    bus = PtyBus("dlt645")
    bus.devices["m1"] = FakeMeter645("000000000001", {"02010100": dlt645.encode_value(230.1, "XXX.X")})
    yield bus
    bus.close()


@pytest.fixture
def certs(tmp_path) -> TlsFiles:
    return certs_or_skip(str(tmp_path / "made"))


def write_config(directory: str, bus_path: str, broker: str) -> str:
    """The gateway config: one meter polled every 0.2 s; `broker` is the body of [broker]."""
    path = os.path.join(directory, "site.toml")
    with open(path, "w") as f:
        f.write(textwrap.dedent("""
            format = 1

            [gateway]
            site = "sec"
            id = "gw1"
            health_interval = 1

            [broker]
            %s
            reconnect_min = 0.2
            reconnect_max = 0.4

            [outbox]
            path = "outbox.sqlite"

            [batch]
            max_age = 0.2

            [[buses]]
            name = "line1"
            port = "%s"
            baud = 115200
            parity = "E"
            timeout_ms = 150

            [[devices]]
            id = "m1"
            bus = "line1"
            profile = "dlt645-1p"
            address = "000000000001"
            interval = 0.2
            points = ["voltage"]
            """) % (textwrap.dedent(broker).strip().replace("\n", "\n            "), bus_path))
    return path


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "agent.publisher" and r.levelno >= logging.ERROR]


def refused_run(path: str, caplog: pytest.LogCaptureFixture, expect: str) -> tuple[int, dict]:
    """Run the gateway while the broker will not have it: the ERROR line, the outbox, health, stop.
    Returns (readings made, health snapshot)."""
    gateway = Gateway(load_config(path))
    gateway.start()
    try:
        uplink = cast(Uplink, gateway.uplink)  # this test looks inside the real uplink
        assert wait_for(lambda: uplink.publisher.stats()["connect_failures"] >= 3 and len(uplink.outbox) >= 2,
                        10), uplink.counters["mqtt"]
        health = uplink.counters
    finally:
        gateway.stop()
    logged = errors(caplog)
    assert any(expect in m for m in logged), logged
    assert len(logged) == len(set(logged)), "one ERROR line per cause, not one per retry: %s" % logged
    assert health["connected"] is False and health["mqtt"]["connects"] == 0
    assert health["mqtt"]["connect_failures"] >= 3 and expect in health["mqtt"]["last_error"]
    assert health["readings"]["buffered"] >= 2 and health["readings"]["dropped"] == 0
    made = uplink.batcher.counters["readings"]  # final: polling stopped, open pack flushed
    return made, health


def delivered_run(path: str, sub: Subscriber, made_before: int, stopped_at: float) -> dict:
    """Restart on the same outbox with a config that works: every reading of the refused run arrives."""
    gateway = Gateway(load_config(path))
    gateway.start()
    try:
        def old() -> int:
            return len({t for n, _, t in sub.readings() if n == NAME and t <= stopped_at})

        uplink = cast(Uplink, gateway.uplink)
        assert wait_for(lambda: old() >= made_before and uplink.connected, 10), (old(), made_before)
        assert wait_for(lambda: any(t > stopped_at for n, _, t in sub.readings() if n == NAME), 5)
        assert wait_for(lambda: sub.decoded("health"), 5)
        health = sub.decoded("health")[-1]
    finally:
        gateway.stop()
    assert old() == made_before, "the refused run's readings, each exactly once after dedup"
    assert all(v == 230.1 for n, v, _ in sub.readings() if n == NAME)
    return health


def test_username_password_wrong_then_fixed(tmp_path, meter, caplog):
    caplog.set_level(logging.INFO, logger="agent.publisher")
    broker = broker_or_skip(users=USERS)
    sub = None
    try:
        sub = Subscriber(broker, client_id="platform", username="platform", password=USERS["platform"])
        creds = 'host = "127.0.0.1"\nport = %d\nusername = "gw1"\npassword = "%s"' % (broker.port, "%s")
        path = write_config(str(tmp_path), meter.path, creds % "not-the-password")
        made, _ = refused_run(path, caplog, "refused the connection: not authorised (CONNACK 5)")
        stopped_at = time.time()
        (message,) = [m for m in errors(caplog) if "not authorised" in m]
        assert message == ("mqtt: broker 127.0.0.1:%d refused the connection: not authorised (CONNACK 5); "
                           "check broker.username ('gw1') and broker.password in %s against the broker's "
                           "password file" % (broker.port, path))
        assert not sub.on("data"), "nothing may reach the broker without credentials"

        path = write_config(str(tmp_path), meter.path, creds % USERS["gw1"])
        health = delivered_run(path, sub, made, stopped_at)
        assert health["mqtt"]["connects"] == 1 and health["connected"] is True
        print("\n(a) wrong password: %d readings kept in the outbox, delivered after the fix" % made)
    finally:
        if sub is not None:
            sub.close()
        broker.close()


def test_tls_with_the_wrong_ca_then_the_right_one(tmp_path, meter, certs, caplog):
    caplog.set_level(logging.INFO, logger="agent.publisher")
    broker = broker_or_skip(users=USERS, tls=certs)
    sub = None
    stop_monitor = threading.Event()
    watcher = None
    try:
        assert broker.tls_port is not None
        sub = Subscriber(broker, client_id="platform", username="platform", password=USERS["platform"])
        os.makedirs(tmp_path / "certs")
        shutil.copy(certs.other_ca, tmp_path / "certs" / "ca.crt")  # a CA that did not sign the broker
        # the docs/config.md example, with this broker's address and the test user
        example = """
            host = "127.0.0.1"
            port = %d
            tls = true
            ca_file = "certs/ca.crt"          # relative to this file
            username = "gw1"
            password = "%s"
            """ % (broker.tls_port, USERS["gw1"])
        path = write_config(str(tmp_path), meter.path, example)
        made, _ = refused_run(path, caplog, "was not accepted")
        stopped_at = time.time()
        (message,) = [m for m in errors(caplog) if "was not accepted" in m]
        ca_path = os.path.join(str(tmp_path), "certs", "ca.crt")
        assert message.startswith("mqtt: TLS: the certificate of broker 127.0.0.1:%d was not accepted: "
                                  % broker.tls_port), message
        assert message.endswith("is broker.ca_file %s the CA that signed the broker's certificate?" % ca_path)

        shutil.copy(certs.ca, tmp_path / "certs" / "ca.crt")  # the technician installs the right CA
        health = delivered_run(path, sub, made, stopped_at)
        assert health["mqtt"]["connects"] == 1
        assert "on port %d" % broker.tls_port in broker.read_log(), "the gateway came in on the TLS listener"
        assert any(("mqtt: connected to mqtts://127.0.0.1:%d (" % broker.tls_port) in r.getMessage()
                   and ", TLS" in r.getMessage()
                   for r in caplog.records)

        # the monitor reads the broker over TLS with the same CA
        parser = argparse.ArgumentParser()
        monitor.add_arguments(parser)
        args = parser.parse_args(["--broker", "127.0.0.1:%d" % broker.tls_port, "--ca-file", certs.ca,
                                  "--username", "platform", "--password", USERS["platform"],
                                  "--site", "sec", "--timeout", "10"])
        out = io.StringIO()
        watcher = threading.Thread(target=monitor.run, args=(args, out, stop_monitor), daemon=True)
        watcher.start()
        assert wait_for(lambda: "* sec/gw1" in out.getvalue(), 5), out.getvalue()  # the retained status
        print("\n(b) wrong CA: %d readings kept, delivered over TLS with the right CA" % made)
    finally:
        stop_monitor.set()
        if watcher is not None:
            watcher.join(5)
        if sub is not None:
            sub.close()
        broker.close()


def test_broker_certificate_for_another_name(tmp_path, meter, caplog):
    """The broker's certificate is signed by our CA but does not name the host we connect to."""
    caplog.set_level(logging.INFO, logger="agent.publisher")
    certs = certs_or_skip(str(tmp_path / "made"), broker_names="DNS:mqtt.elsewhere.example")
    broker = broker_or_skip(tls=certs)
    try:
        assert broker.tls_port is not None
        broker_keys = 'host = "127.0.0.1"\nport = %d\ntls = true\nca_file = "%s"' % (
            broker.tls_port, certs.ca)
        path = write_config(str(tmp_path), meter.path, broker_keys)
        refused_run(path, caplog, "must be a name (or IP) in the broker's certificate")
        (message,) = errors(caplog)
        assert message == ("mqtt: TLS: the certificate of broker 127.0.0.1:%d was not accepted: IP address "
                           "mismatch, certificate is not valid for '127.0.0.1'; broker.host '127.0.0.1' must "
                           "be a name (or IP) in the broker's certificate" % broker.tls_port)
    finally:
        broker.close()


def test_client_certificate_identity(tmp_path, meter, certs, caplog):
    caplog.set_level(logging.INFO, logger="agent.publisher")
    broker = broker_or_skip(tls=certs, require_certificate=True, use_identity_as_username=True)
    sub = agent = None
    try:
        assert broker.tls_port is not None
        sub = Subscriber(broker, client_id="platform")
        os.makedirs(tmp_path / "certs")
        for src, name in ((certs.ca, "ca.crt"), (certs.client_cert, "gw-01.crt"),
                          (certs.client_key, "gw-01.key")):
            shutil.copy(src, tmp_path / "certs" / name)
        base = 'host = "127.0.0.1"\nport = %d\ntls = true\nca_file = "certs/ca.crt"' % broker.tls_port

        # no client certificate: the broker ends the handshake; the reason is logged
        path = write_config(str(tmp_path), meter.path, base)
        made, _ = refused_run(path, caplog, "client certificate")
        # the broker's alert ("certificate required") usually arrives; sometimes only the closed socket does
        for message in errors(caplog):
            assert message.startswith("mqtt: broker 127.0.0.1:%d closed the connection before answering "
                                      "CONNECT: " % broker.tls_port), message
            assert message.endswith("set broker.cert_file and broker.key_file"), message

        # the docs/config.md client-certificate example (with this broker's address), by `fieldlink run`
        example = base + '\ncert_file = "certs/gw-01.crt"\nkey_file = "certs/gw-01.key"'
        path = write_config(str(tmp_path), meter.path, example)
        started = time.time()
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", path], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert sub.wait_for(lambda: any(t > started for n, _, t in sub.readings() if n == NAME), 20), \
            broker.read_log()[-1500:]
        assert sub.wait_for(lambda: len({t for n, _, t in sub.readings() if n == NAME and t < started})
                            >= made, 10), "the readings kept while refused arrive too"
        agent.send_signal(signal.SIGTERM)
        _, log = agent.communicate(timeout=20)
        assert agent.returncode == 0, log[-2000:]
        assert "mqtt: connected to mqtts://127.0.0.1:%d (127.0.0.1:%d, MQTT 5, TLS" % (
            broker.tls_port, broker.tls_port) in log
        assert "u'%s'" % certs.client_cn in broker.read_log(), "user name = the certificate's CN"
        print("\n(c) client certificate: delivered as user %r" % certs.client_cn)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait(5)
        if sub is not None:
            sub.close()
        broker.close()


def test_monitor_with_wrong_password_says_so_and_exits_non_zero() -> None:
    broker = broker_or_skip(users=USERS)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli", "monitor", "--broker", "127.0.0.1:%d" % broker.port,
             "--username", "platform", "--password", "wrong", "--timeout", "2"],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        broker.close()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stderr.count("refused the connection") == 1, result.stderr  # once, not per retry
    assert "check --username/--password" in result.stderr
