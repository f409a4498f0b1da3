"""agent/endpoints.py: broker URLs, the failover schedule (a fake clock, no sleeping), DNS addresses."""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from agent.config_model import BrokerConfig, Endpoint
from agent.endpoints import REFUSED, UNREACHABLE, Failover, addresses, connect_any, parse_url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def eps(*urls: str) -> list[Endpoint]:
    out = []
    for i, url in enumerate(urls):
        tls, host, port = parse_url(url)
        out.append(Endpoint(url=url, host=host, port=port, tls=tls, where="broker.endpoints[%d]" % i))
    return out


def failover(endpoints: list[Endpoint], seed: int = 1, **broker: Any) -> tuple[Failover, Clock]:
    clock = Clock()
    return Failover(endpoints, BrokerConfig(**broker), rng=random.Random(seed), clock=clock), clock


@pytest.mark.parametrize("url,expected", [
    ("mqtt://broker.example", (False, "broker.example", 1883)),
    ("mqtts://broker.example", (True, "broker.example", 8883)),
    ("MQTTS://10.0.0.5:9883", (True, "10.0.0.5", 9883)),
    ("mqtt://[::1]:1884", (False, "::1", 1884)),
    ("mqtt://b.example:1883/", (False, "b.example", 1883)),
])
def test_parse_url(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url,why", [
    ("broker.example:1883", "scheme"), ("http://x", "scheme 'http'"), ("mqtt://", "no host"),
    ("mqtt://x:99999", "port"), ("mqtt://x:0", "port"), ("mqtt://x/path", "no path"),
    ("mqtt://x?a=1", "query"),
    ("mqtt://user:secret@x", "user name or password"), (17, "URL string"), ("", "URL string"),
])
def test_parse_url_refuses(url, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_url(url)
    assert "secret" not in str(info.value)


def test_first_attempt_goes_to_the_first_endpoint_at_once():
    f, _ = failover(eps("mqtt://a", "mqtt://b", "mqtt://c"))
    ep, wait = f.pick()
    assert ep.url == "mqtt://a" and wait == 0


def test_a_lost_node_hands_over_to_the_next_within_reconnect_min():
    a, b, c = eps("mqtt://a", "mqtt://b", "mqtt://c")
    f, clock = failover([a, b, c], reconnect_min=1.0)
    f.up(a)
    f.ended(a)
    ep, wait = f.pick()
    assert 0 <= wait <= 1.0  # every endpoint waits uniform(0, reconnect_min): the street does not stampede
    clock.now += wait
    # a is tried first if its turn comes first (known good); it refuses at once (a dead node)
    if ep is a:
        f.failed(a, UNREACHABLE, "refused")
        ep, wait = f.pick()
        clock.now += wait
    assert ep is b, "the next endpoint in order after the lost one"
    f.up(b)
    assert f.failovers == 1 and f.current is f.state(b)
    report = f.report()
    assert report["mqtt://b"]["state"] == "in use" and report["mqtt://c"]["state"] == "untried"


def test_delays_spread_over_reconnect_min_across_a_street_of_gateways():
    waits = []
    for seed in range(200):
        (a,) = eps("mqtt://a")
        f, _ = failover([a], seed=seed, reconnect_min=1.0)
        f.up(a)
        f.ended(a)
        waits.append(f.pick()[1])
    assert 0 <= min(waits) < 0.1 and 0.9 < max(waits) <= 1.0
    assert len({round(w, 3) for w in waits}) > 150


def test_a_known_good_broker_that_is_down_is_probed_every_probe_interval_then_backs_off():
    (a,) = eps("mqtt://a")
    f, clock = failover([a], reconnect_min=1.0, reconnect_max=60.0, probe_interval=1.5, probe_window=300.0)
    f.up(a)
    f.ended(a)
    delays = []
    while clock.now < 1000.0 + 600:
        ep, wait = f.pick()
        clock.now += wait
        delays.append((clock.now - 1000.0, f.failed(ep, UNREACHABLE, "connection refused")))
    in_window = [d for t, d in delays if t < 300]
    after = [d for t, d in delays if t > 300 + 120]
    assert all(0.75 <= d <= 1.5 for d in in_window), "back within probe_interval while probing"
    assert len(in_window) > 150
    assert max(after) > 30 and all(d <= 60 for _, d in delays), "then it grows, capped at reconnect_max"


def test_a_broker_that_refuses_us_is_not_hammered():
    (a,) = eps("mqtt://a")
    f, clock = failover([a], reconnect_min=1.0, reconnect_max=60.0)
    f.up(a)
    f.ended(a)
    caps = []
    for _ in range(10):
        ep, wait = f.pick()
        clock.now += wait
        caps.append(f.failed(ep, REFUSED, "not authorised"))
    for n, d in enumerate(caps):
        cap = min(60.0, 2.0 ** n)
        assert cap / 2 <= d <= cap


def test_an_endpoint_that_never_worked_backs_off_while_the_good_one_is_used():
    bad, good = eps("mqtts://bad", "mqtt://good")
    f, clock = failover([bad, good], reconnect_min=1.0, reconnect_max=60.0)
    ep, _ = f.pick()
    assert ep is bad
    f.failed(bad, UNREACHABLE, "no route")  # never good: exponential, not probed
    ep, wait = f.pick()
    assert ep is good and wait == 0
    f.up(good)
    for _ in range(6):  # the good one keeps dropping; the bad one is tried only when its turn comes
        f.ended(good)
        ep, wait = f.pick()
        clock.now += wait
        if ep is bad:
            f.failed(bad, UNREACHABLE, "no route")
            ep, wait = f.pick()
            clock.now += wait
        assert ep is good
        f.up(good)
    assert f.state(bad).connect_failures <= 3


def test_known_good_first_on_a_tie():
    a, b = eps("mqtt://a", "mqtt://b")
    f, clock = failover([a, b])
    f.failed(a, UNREACHABLE, "x")
    ep, _ = f.pick()
    assert ep is b
    f.up(b)
    f.ended(b)
    clock.now += 100  # both are due: b worked before, a never did
    assert f.pick()[0] is b


def test_addresses_of_a_name_in_order_with_the_last_good_one_first():
    def resolve(host, port, family, kind):
        assert host == "cluster.example" and port == 1883 and kind == socket.SOCK_STREAM
        return [(socket.AF_INET, kind, 6, "", ("10.0.0.1", port)),
                (socket.AF_INET, kind, 6, "", ("10.0.0.2", port)),
                (socket.AF_INET, kind, 6, "", ("10.0.0.2", port)),  # a resolver repeats itself
                (socket.AF_INET6, kind, 6, "", ("fd00::3", port, 0, 0))]

    (ep,) = eps("mqtt://cluster.example")
    got = addresses(ep, None, resolve)
    assert [a[1][0] for a in got] == ["10.0.0.1", "10.0.0.2", "fd00::3"]
    got = addresses(ep, ("10.0.0.2", 1883), resolve)
    assert [a[1][0] for a in got] == ["10.0.0.2", "10.0.0.1", "fd00::3"]


def test_connect_any_tries_address_by_address():
    tried = []

    def connect(family, sockaddr, timeout):
        tried.append(sockaddr[0])
        if sockaddr[0] != "10.0.0.3":
            raise ConnectionRefusedError(111, "refused")
        return "socket"

    sock, addr = connect_any([(2, ("10.0.0.1", 1)), (2, ("10.0.0.3", 1)), (2, ("10.0.0.4", 1))], 1.0, connect)
    assert sock == "socket" and addr == ("10.0.0.3", 1) and tried == ["10.0.0.1", "10.0.0.3"]
    with pytest.raises(ConnectionRefusedError):
        connect_any([(2, ("10.0.0.1", 1))], 1.0, connect)
