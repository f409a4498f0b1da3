"""The shared command rules (protocols/commands.py): opening, the signing policy, expiry, the id memory."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import commands, cose
from protocols.commands import CLOCK_SET_AFTER, IdMemory, Refused, open_command

KEY = bytes(range(32))
NOW = 1_800_000_000


def plain(**fields):
    return cbor2.dumps(fields, canonical=True)


def signed(key=KEY, kid=b"gw1", **fields):
    return cose.sign(plain(**fields), key, kid)


def refused(fn, *args):
    with pytest.raises(Refused) as info:
        fn(*args)
    return info.value


def test_open_plain_and_signed():
    cmd = open_command(plain(id="c1", device="lamp-1", point="dim", value=0.5), [KEY], "gw1")
    assert (cmd.id, cmd.device, cmd.point, cmd.signed, cmd.exp) == ("c1", "lamp-1", "dim", False, None)
    cmd = open_command(signed(id=7, device="m1", action="relay_trip", exp=NOW), [KEY], "gw1")
    assert (cmd.id, cmd.action, cmd.signed, cmd.exp, cmd.what) == (7, "relay_trip", True, NOW,
                                                                   "relay_trip on m1")


@pytest.mark.parametrize("data, reason, cmd_id", [
    (b"\xff\x00", "not_cbor", None),
    (plain(id="t", device="x", point="p", value=1)[:12], "not_cbor", "t"),
    (cbor2.dumps([1, 2]), "not_command", None),
    (plain(device="x", point="p"), "no_id", None),
    (plain(id=True, device="x", point="p"), "no_id", None),
    (plain(id="a", point="p"), "no_device", "a"),
    (plain(id="a", device="x", value=1), "no_target", "a"),
    (plain(id="a", device="x", point="p", exp=1.5), "bad_exp", "a"),
    (signed(id="s", device="x", action="relay_trip", exp=NOW, kid=b"gw2"), "wrong_kid", "s"),
    (signed(id="s", device="x", action="relay_trip", exp=NOW, key=bytes(32)), "bad_tag", "s"),
    (cbor2.dumps(cbor2.CBORTag(17, [b"", {}, plain(id="s2"), b""])), "bad_alg", "s2"),
    (cbor2.dumps(cbor2.CBORTag(17, [1, 2])), "bad_cose", None),
])
def test_open_refuses_with_the_reason_and_the_id(data, reason, cmd_id):
    exc = refused(open_command, data, [KEY], "gw1")
    assert (exc.reason, exc.cmd_id) == (reason, cmd_id), exc.text
    assert exc.text.split("%")[0]  # a text, never a key
    assert KEY.hex() not in exc.text


def test_no_key_refuses_every_signed_command():
    exc = refused(open_command, signed(id="s", device="x", action="relay_trip", exp=NOW), [], "gw1")
    assert exc.reason == "no_key" and exc.cmd_id == "s"


def test_wrong_kid_names_both():
    exc = refused(open_command, signed(id="s", device="x", action="relay_trip", exp=NOW, kid=b"gw-9"),
                  [KEY], "gw1")
    assert exc.text == 'signed command is for key id "gw-9", not for this gateway (gw1)'


@pytest.mark.parametrize("mode, switching, is_signed, ok", [
    ("switching", True, False, False), ("switching", False, False, True), ("switching", True, True, True),
    ("all", False, False, False), ("all", False, True, True), ("none", True, False, True),
])
def test_policy(mode, switching, is_signed, ok):
    fields = {"id": "p", "device": "d", "action": "relay_trip", "exp": NOW + 60}
    cmd = open_command(signed(**fields) if is_signed else plain(**fields), [KEY], "gw1")
    if ok:
        commands.check_policy(cmd, mode, switching, NOW, 86400)
    else:
        exc = refused(commands.check_policy, cmd, mode, switching, NOW, 86400)
        assert exc.reason == "unsigned" and "relay_trip on d" in exc.text


def test_expiry_rules():
    def reason(exp, now, is_signed=True):
        fields = {"id": "e", "device": "d", "point": "p", "value": 1}
        if exp is not None:
            fields["exp"] = exp
        cmd = open_command(signed(**fields) if is_signed else plain(**fields), [KEY], "gw1")
        try:
            commands.check_policy(cmd, "switching", False, now, 3600)
        except Refused as exc:
            return exc.reason, exc.text
        return None

    assert reason(NOW + 10, NOW) is None
    assert reason(NOW, NOW) is None  # exp is the last second it may run
    assert reason(NOW - 5, NOW) == ("expired", "command expired at %d, 5 s ago by this gateway's clock"
                                    % (NOW - 5))
    assert reason(None, NOW)[0] == "no_exp"
    assert reason(None, NOW, is_signed=False) is None
    assert reason(NOW + 10, 1000)[0] == "no_clock"  # a board whose clock was never set
    assert reason(NOW + 10, CLOCK_SET_AFTER - 1, is_signed=False)[0] == "no_clock"
    assert reason(NOW + 3601, NOW)[0] == "too_far"


def test_is_switching():
    assert commands.is_switching("relay_trip", False) and commands.is_switching("relay_close", False)
    assert commands.is_switching(None, True) and commands.is_switching("write", True)
    assert not commands.is_switching("read", True) and not commands.is_switching(None, False)


def test_id_memory_repeat_duplicate_and_expiry():
    memory = IdMemory(limit=3)
    first = open_command(plain(id="a", device="d", point="p", value=1), [], "gw1")
    assert memory.check(first) is None
    memory.begin(first, NOW + 10)
    assert memory.check(first) == commands.RUNNING
    ack = commands.ack_bytes("a", True, None, 1)
    memory.finish("a", ack)
    again = open_command(plain(id="a", device="d", point="p", value=1), [], "gw1")
    assert memory.check(again) == ack
    other = open_command(plain(id="a", device="d", point="p", value=2), [], "gw1")
    assert refused(memory.check, other).reason == "duplicate_id"
    # 5 and "5" are different ids
    assert memory.check(open_command(plain(id=5, device="d", point="p", value=1), [], "gw1")) is None
    assert memory.expire(NOW + 11) == [IdMemory.key("a")]
    assert memory.check(other) is None


def test_id_memory_is_bounded_and_forgets_what_expires_first():
    memory = IdMemory(limit=2)
    for i, until in enumerate((NOW + 30, NOW + 10, NOW + 20)):
        memory.begin(open_command(plain(id=i, device="d", point="p"), [], "gw1"), until)
    assert sorted(cbor2.loads(k) for k in memory.entries) == [0, 2] and memory.evicted == 1


def test_id_memory_rows_survive_a_restart_and_running_ones_are_interrupted():
    memory = IdMemory()
    done = open_command(plain(id="d", device="x", point="p"), [], "gw1")
    running = open_command(plain(id="r", device="x", point="p"), [], "gw1")
    old = open_command(plain(id="o", device="x", point="p"), [], "gw1")
    for cmd, until in ((done, NOW + 100), (running, NOW + 100), (old, NOW - 1)):
        memory.begin(cmd, until)
    memory.finish("d", commands.ack_bytes("d", True))
    restarted = IdMemory()
    assert restarted.load(memory.rows(), NOW) == 1
    assert restarted.check(done) == commands.ack_bytes("d", True)
    assert cbor2.loads(restarted.check(running)) == {
        "id": "r", "ok": False, "value": None,
        "error": "the gateway stopped while this command was running; its outcome is unknown"}
    assert restarted.check(old) is None  # expired: forgotten


@given(st.binary(max_size=80))
def test_open_command_never_raises_anything_but_refused(data):
    try:
        open_command(data, [KEY], "gw1")
    except Refused:
        pass
    commands.peek_id(data)


def test_recover_id():
    good = cbor2.dumps({"id": 42, "device": "lamp-1", "point": "dim", "value": 0.5}, canonical=True)
    assert commands.recover_id(good[:12]) == 42
    assert commands.recover_id(cbor2.dumps({"id": "abc", "device": "x"}, canonical=True)[:9]) == "abc"
    assert commands.recover_id(b"\xff\x00garbage") is None
    assert commands.recover_id(b"") is None


def test_every_refusal_text_takes_its_arguments():
    samples = {"too_large": (5000, 4096), "not_cbor": ("x",), "bad_cose": ("x",), "bad_alg": ("x",),
               "wrong_kid": ('"a"', "b"), "bad_tag": ("gw1",), "bad_exp": ("1.5",),
               "unsigned": ("relay_trip on m", "switching"), "no_clock": (5,), "expired": (1, 2),
               "too_far": (1, 2), "duplicate_id": ('"a"',), "unknown_device": ("'x'",), "busy": ("b", 32),
               "no_store": ("disk full",)}
    for reason, text in commands.REFUSALS.items():
        assert "%" not in commands.refusal(reason, *samples.get(reason, ())), reason
        assert text == text.strip() and not text.endswith(".")
