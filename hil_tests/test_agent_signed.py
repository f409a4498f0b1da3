"""Signed commands at the wire, tried as an attacker would: the simulator, a real Mosquitto and
`fieldlink run` with a key file (`[commands] key_file`, default `signed = "switching"`).

Unsigned, forged (another key), wrong-kid, expired, replayed (also after an agent restart), duplicate-id and
retained switching commands (DL/T 645 relay actions, the CJ/T 188 valve, a lamp's on/off) must leave the
simulated relays, valve and lamp untouched -- the simulator's C=1C request counters and write counters are
the ground truth -- and each gets a refusing ack naming the reason. A relay_trip / relay_close signed with
**pycose** (an independent COSE implementation, hil_tests/pycose_env.py) works, and so does `fieldlink send`
with the key file. Run with `-rA` or `-s` to see what each test measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest

from hil_tests import pycose_env
from hil_tests.link import ROOT, SIM_ONLY, Target, start_agent, wait_until
from hil_tests.test_agent_commands import Platform, writes
from hil_tests.test_agent_faults import Bench, start_bench

pytestmark = pytest.mark.slow

PASSWORD, OPERATOR = "02123456", "00000007"
METER, WATER, LAMP = "flat-201-power", "flat-101-water", "lamp-01"
KEY = bytes.fromhex("5f0e1d2c3b4a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0")
GATEWAY = "gw1"

SCENARIO = """\
[site]
name = "hilsigned"
seed = 909
speed = 1.0
utc_offset = 8

[[bus]]
name = "street"
line = "9600 8N1"

[[bus.device]]
id = "lamp-01"
profile = "generic-lamp"
address = 1

[[bus]]
name = "meters"
line = "19200 8E1"

[[bus.device]]
id = "flat-201-power"
profile = "dlt645-1p"
address = "000000000201"
params = { password = "%s", operator = "%s", mean_power = 3000 }

[[bus.device]]
id = "flat-101-water"
profile = "cjt188-water"
address = "00000000000101"
""" % (PASSWORD, OPERATOR)


def key_file(workdir: str, keys: tuple[bytes, ...] = (KEY,)) -> str:
    """The gateway's key file, 0600 in a 0700 folder."""
    folder = os.path.join(workdir, "keys")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, "%s.key" % GATEWAY)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# command key of %s\n" % GATEWAY + "".join(k.hex() + "\n" for k in keys))
    return path


def configure(workdir: str):
    def edit(text: str) -> str:
        out = []
        for line in text.splitlines():
            out.append(line)
            if line.strip() == 'id = "%s"' % METER:
                out.append('options = { password = "%s", operator = "%s" }' % (PASSWORD, OPERATOR))
        out += ["", "[commands]", 'key_file = "%s"' % key_file(workdir)]
        return "\n".join(out) + "\n"

    return edit


@pytest.fixture(scope="module")
def bench(hil_link: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not hil_link.is_sim:
        pytest.skip("%s (--hil-link=%s)" % (SIM_ONLY, hil_link.spec))
    pycose_env.pycose_python()  # made before the clock of any test starts
    workdir = str(tmp_path_factory.mktemp("signed"))
    yield from start_bench(workdir, SCENARIO, name="signed", edit=configure(workdir))


@pytest.fixture
def platform(bench: Bench) -> Iterator[Platform]:
    bench.clear_all()
    bench.settle()
    p = Platform(bench)
    try:
        yield p
    finally:
        p.close()


_N = iter(range(1, 10**6))


def fresh_id(what: str) -> str:
    return "sig-%s-%d-%d" % (what, int(time.time()), next(_N))


def command(cmd_id: str, exp: int | None = None, **fields: Any) -> bytes:
    """The canonical CBOR command map (cbor2, not our codec)."""
    body = dict(fields, id=cmd_id)
    if exp is not None:
        body["exp"] = exp
    return cbor2.dumps(body, canonical=True)


def pycose_signed(cmd_id: str, key: bytes = KEY, kid: bytes = GATEWAY.encode(), ttl: int = 60,
                  **fields: Any) -> bytes:
    return pycose_env.sign(command(cmd_id, int(time.time()) + ttl, **fields), key, kid)


def relay_requests(bench: Bench) -> dict[str, int]:
    return {d: c["relay_requests"] for d, c in bench.client.counters()["devices"].items()
            if "relay_requests" in c}


def ground(bench: Bench) -> dict[str, Any]:
    """What an attacker would like to change: the relay, the valve, the lamp, and the request counters."""
    return {"relay": bench.client.quantity(METER, "relay"), "valve": bench.client.truth(WATER, "valve"),
            "lamp_on": bench.client.truth(LAMP, "on"), "relay_requests": relay_requests(bench),
            "writes": writes(bench)}


def acks_of(bench: Bench, cmd_id: str) -> list[dict]:
    return [a for a in bench.feed.messages("ack") if isinstance(a, dict) and a.get("id") == cmd_id]


def call(platform: Platform, payload: bytes, cmd_id: str, timeout: float = 5.0) -> dict:
    """Publish `payload` and return the next ack for `cmd_id` (one that arrived after the publish)."""
    bench = platform.bench
    seen = len(acks_of(bench, cmd_id))
    platform.client.publish(platform.topic, payload, qos=1).wait_for_publish(5)
    assert wait_until(lambda: len(acks_of(bench, cmd_id)) > seen, timeout), \
        "no ack for %s:\n%s" % (cmd_id, bench.agent.log()[-3000:])
    ack = acks_of(bench, cmd_id)[seen]
    assert set(ack) == {"id", "ok", "error", "value"}, ack
    return ack


def test_attacks_are_refused_and_touch_nothing(bench: Bench, platform: Platform) -> None:
    before = ground(bench)
    now = int(time.time())
    attacks = []
    i = fresh_id("unsigned")
    attacks.append(("unsigned relay_trip", i, command(i, now + 60, device=METER, action="relay_trip"),
                    "relay_trip on %s is refused unsigned" % METER))
    i = fresh_id("unsigned-valve")
    attacks.append(("unsigned valve", i, command(i, device=WATER, point="valve", value="closed"),
                    "write valve of %s is refused unsigned" % WATER))
    i = fresh_id("unsigned-lamp")
    attacks.append(("unsigned lamp off", i, command(i, device=LAMP, point="on", value=0), "refused unsigned"))
    i = fresh_id("forged")
    attacks.append(("forged (another key)", i,
                    pycose_signed(i, key=bytes(32), device=METER, action="relay_trip"),
                    "does not verify with the key of gateway gw1"))
    i = fresh_id("kid")
    attacks.append(("wrong kid", i, pycose_signed(i, kid=b"gw2", device=METER, action="relay_trip"),
                    'signed command is for key id "gw2", not for this gateway (gw1)'))
    i = fresh_id("expired")
    attacks.append(("expired", i, pycose_signed(i, ttl=-30, device=METER, action="relay_trip"),
                    "command expired at"))
    i = fresh_id("far")
    attacks.append(("exp a year ahead", i, pycose_signed(i, ttl=365 * 86400, device=WATER, point="valve",
                                                          value="closed"), "more than 86400 s ahead"))
    i = fresh_id("noexp")
    attacks.append(("signed without exp", i, pycose_env.sign(command(i, device=METER, action="relay_trip"),
                                                            KEY, GATEWAY.encode()), "has no exp"))
    seen = []
    for what, cmd_id, payload, words in attacks:
        ack = call(platform, payload, cmd_id)
        seen.append("%-22s -> %s" % (what, ack["error"]))
        assert ack["ok"] is False and ack["value"] is None, (what, ack)
        assert words in str(ack["error"]), (what, ack)
        assert KEY.hex() not in str(ack["error"])
    time.sleep(2 * bench.interval)  # anything sent to a device anyway would have reached it by now
    after = ground(bench)
    health = bench.feed.health(after=time.time())["commands"]
    print("\n" + "\n".join(seen) + "\nground truth before %s\n             after  %s\nhealth commands %s"
          % (before, after, health))
    assert after == before, "an attack reached a device"
    refused = health["refused_by"]
    assert refused.get("unsigned", 0) >= 3
    for reason in ("bad_tag", "wrong_kid", "expired", "too_far", "no_exp"):
        assert refused.get(reason, 0) >= 1, (reason, refused)
    assert KEY.hex() not in bench.agent.log()
    bench.assert_alive()


def test_pycose_signed_trip_and_close_work_once(bench: Bench, platform: Platform) -> None:
    r0 = relay_requests(bench)[METER]
    trip_id = fresh_id("trip")
    trip = pycose_signed(trip_id, device=METER, action="relay_trip")
    ack = call(platform, trip, trip_id)
    tripped = bench.client.quantity(METER, "relay")
    r1 = relay_requests(bench)[METER]
    assert ack == {"id": trip_id, "ok": True, "error": None, "value": None}, ack
    assert tripped == "open" and r1 == r0 + 1
    # replayed as captured: the original ack again, nothing sent to the meter
    replay_ack = call(platform, trip, trip_id)
    # another command under the same id (a relay_close, validly signed): refused
    dup = call(platform, pycose_signed(trip_id, device=METER, action="relay_close"), trip_id)
    time.sleep(2 * bench.interval)
    r2 = relay_requests(bench)[METER]
    still = bench.client.quantity(METER, "relay")
    close_id = fresh_id("close")
    closed = call(platform, pycose_signed(close_id, device=METER, action="relay_close"), close_id)
    print("\npycose relay_trip: %s; replayed: %s; same id, other command: %s; relay requests %d -> %d -> %d; "
          "relay %s, then close: %s -> relay %s" % (ack, replay_ack, dup["error"], r0, r1, r2, still, closed,
                                                   bench.client.quantity(METER, "relay")))
    assert replay_ack == ack
    assert dup["ok"] is False and "already used by another command" in dup["error"], dup
    assert r2 == r1 and still == "open"
    assert closed["ok"] is True and bench.client.quantity(METER, "relay") == "closed"
    assert relay_requests(bench)[METER] == r1 + 1


def test_fieldlink_send_with_the_key_file(bench: Bench, platform: Platform, tmp_path: Any) -> None:
    keys = os.path.join(os.path.dirname(bench.config), "keys", "%s.key" % GATEWAY)

    def send(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "agent.cli", "send", "--broker", bench.broker.url,
                "--site", "hilsigned", "--gateway", GATEWAY, *args]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)

    w0 = writes(bench)[WATER]
    done = send("--device", WATER, "--point", "valve", "--value", "closed", "--key-file", keys)
    closed = bench.client.truth(WATER, "valve")
    unsigned = send("--device", WATER, "--point", "valve", "--value", "open")
    still = bench.client.truth(WATER, "valve")
    reopened = send("--device", WATER, "--point", "valve", "--value", "open", "--key-file", keys,
                    "--id", "send-reopen-%d" % time.time())
    read = send("--device", LAMP, "--read", "dim")
    lax = os.path.join(str(tmp_path), "lax.key")
    with open(lax, "w") as f:
        f.write(KEY.hex() + "\n")
    os.chmod(lax, 0o644)
    bad_key = send("--device", METER, "--action", "relay_trip", "--key-file", lax)
    for d in (done, unsigned, reopened, read, bad_key):
        print("fieldlink send: exit %d: %s %s" % (d.returncode, d.stdout.strip(), d.stderr.strip()[-200:]))
    assert done.returncode == 0 and done.stdout.startswith("ack ") and ": ok, value \"closed\"" in done.stdout
    assert closed == "closed"
    assert unsigned.returncode == 1 and "refused unsigned" in unsigned.stdout and still == "closed"
    assert reopened.returncode == 0 and bench.client.truth(WATER, "valve") == "open"
    assert read.returncode == 0 and ": ok, value " in read.stdout  # reads may come unsigned
    assert float(read.stdout.split()[-1]) == pytest.approx(float(bench.client.truth(LAMP, "dim")))  # type: ignore[arg-type]
    assert bad_key.returncode == 2 and "may be read by other users" in bad_key.stderr
    assert KEY.hex() not in bad_key.stderr + bad_key.stdout
    assert writes(bench)[WATER] == w0 + 2


def test_replay_and_retained_after_a_restart(bench: Bench, platform: Platform) -> None:
    """A command executed before a restart is not executed again after it; a retained one never."""
    trip_id = fresh_id("before-restart")
    trip = pycose_signed(trip_id, ttl=600, device=METER, action="relay_trip")
    assert call(platform, trip, trip_id)["ok"] is True
    close_id = fresh_id("close")
    assert call(platform, pycose_signed(close_id, device=METER, action="relay_close"), close_id)["ok"] is True
    r0 = relay_requests(bench)[METER]
    rc = bench.agent.stop(timeout=20)
    assert rc == 0, bench.agent.log()[-3000:]
    # while the agent is away: a valid signed relay_trip left retained on the topic (the mistake of issue #10)
    retained_id = fresh_id("retained")
    left = pycose_signed(retained_id, ttl=600, device=METER, action="relay_trip")
    platform.client.publish(platform.topic, left, qos=1, retain=True).wait_for_publish(5)
    acks_before = len(bench.feed.messages("ack"))
    bench.agent = start_agent(bench.config, os.path.join(os.path.dirname(bench.config), "agent.log"))
    try:
        retained_ack = platform.ack(retained_id, timeout=20)
        assert retained_ack is not None, bench.agent.log()[-3000:]
        bench.settle()
        replay_ack = call(platform, trip, trip_id, timeout=10)
        time.sleep(2 * bench.interval)
    finally:
        platform.client.publish(platform.topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
    r1 = relay_requests(bench)[METER]
    print("\nafter a restart: retained relay_trip -> %s; replayed relay_trip -> %s; relay requests %d -> %d; "
          "relay %s; %d acks since the restart" % (retained_ack, replay_ack, r0, r1,
                                                   bench.client.quantity(METER, "relay"),
                                                   len(bench.feed.messages("ack")) - acks_before))
    assert retained_ack["ok"] is False and retained_ack["error"] == "retained commands are not executed"
    assert replay_ack == {"id": trip_id, "ok": True, "error": None, "value": None}  # the original ack
    assert r1 == r0 and bench.client.quantity(METER, "relay") == "closed"
    assert "commands were running" not in bench.agent.log()
