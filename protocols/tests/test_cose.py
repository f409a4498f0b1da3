"""COSE_Mac0 (protocols/cose.py): the published vector, pycose both ways, and any mutation fails."""

from __future__ import annotations

import hashlib
import hmac

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil_tests import pycose_env
from protocols import cose

KEY = bytes(range(32))
# shared/protocol-facts.md section 9
PAYLOAD = bytes.fromhex("a462696463632d31636578701a6b49d20066616374696f6e6a72656c61795f74726970666465766963"
                        "656e666c61742d3130312d706f776572")
MESSAGE = bytes.fromhex("d18443a10105a104436777315839" + PAYLOAD.hex() +
                        "5820ce96af5b57a89c2f33b6ce262cd13dcf8aaf8a7efe76af4f6cfe84fe9b0ebda3")


def test_the_published_vector():
    assert cbor2.loads(PAYLOAD) == {"id": "c-1", "exp": 1800000000, "action": "relay_trip",
                                    "device": "flat-101-power"}
    assert cose.sign(PAYLOAD, KEY, b"gw1", kid_protected=False) == MESSAGE
    assert cose.mac_input(b"\xa1\x01\x05", PAYLOAD) == bytes.fromhex("84644d41433043a10105405839") + PAYLOAD
    assert cose.verify(MESSAGE, [KEY], b"gw1") == PAYLOAD


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_the_standard_library(key, message):
    assert cose.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


def test_refusals_say_what_failed():
    def reason(data, keys=(KEY,), kid=b"gw1"):
        with pytest.raises(cose.CoseError) as info:
            cose.verify(data, list(keys), kid)
        return info.value.reason

    assert reason(MESSAGE, kid=b"gw2") == "kid"
    assert reason(MESSAGE, keys=[bytes(32)]) == "tag"
    assert reason(MESSAGE, keys=[]) == "tag"
    parts = cbor2.loads(MESSAGE).value
    unprotected_alg = cbor2.dumps(cbor2.CBORTag(17, [b"", {1: 5, 4: b"gw1"}, parts[2], parts[3]]))
    assert reason(unprotected_alg) == "algorithm"
    hmac64 = cbor2.dumps(cbor2.CBORTag(17, [cbor2.dumps({1: 4}), {4: b"gw1"}, parts[2], parts[3][:8]]))
    assert reason(hmac64) == "algorithm"
    both = cbor2.dumps(cbor2.CBORTag(17, [cbor2.dumps({1: 5, 4: b"gw1"}), {4: b"gw1"}, parts[2], parts[3]]))
    assert reason(both) == "malformed"
    crit = cbor2.dumps(cbor2.CBORTag(17, [cbor2.dumps({1: 5, 2: [99], 99: 0}), {4: b"gw1"}, parts[2],
                                          parts[3]]))
    assert reason(crit) == "malformed"
    detached = cbor2.dumps(cbor2.CBORTag(17, [parts[0], parts[1], None, parts[3]]))
    assert reason(detached) == "malformed"
    assert reason(cbor2.dumps(cbor2.CBORTag(18, parts))) == "malformed"  # COSE_Sign1, not Mac0
    assert reason(cbor2.dumps(parts)) == "malformed"  # untagged
    assert reason(b"\xd1") == "malformed"


def test_a_second_key_verifies_too_for_rotation():
    new = bytes(range(100, 132))
    signed_new = cose.sign(PAYLOAD, new, b"gw1")
    assert cose.verify(signed_new, [KEY, new], b"gw1") == PAYLOAD
    assert cose.verify(MESSAGE, [KEY, new], b"gw1") == PAYLOAD
    with pytest.raises(cose.CoseError):
        cose.verify(signed_new, [KEY], b"gw1")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_mutation_of_a_signed_message_fails(data):
    """Flip, insert or delete bytes anywhere: the message never verifies (or stops being one)."""
    payload = data.draw(st.binary(min_size=1, max_size=120))
    kid_protected = data.draw(st.booleans())
    message = bytearray(cose.sign(payload, KEY, b"gw1", kid_protected))
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    at = data.draw(st.integers(0, len(message) - 1))
    if kind == "flip":
        message[at] ^= data.draw(st.integers(1, 255))
    elif kind == "insert":
        message[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    elif kind == "delete":
        del message[at:at + data.draw(st.integers(1, 4))]
    else:
        del message[at:]
    mutated = bytes(message)
    try:
        got = cose.verify(mutated, [KEY], b"gw1")
    except cose.CoseError:
        return
    # the only mutations that may still verify are the ones that leave the MACed content and kid
    # alone: a non-canonical re-encoding of the same structure (e.g. a longer length argument)
    assert got == payload and cbor2.loads(mutated).value[2] == payload, mutated.hex()
    decoded = cbor2.loads(mutated).value
    assert decoded[0] == cbor2.loads(cose.sign(payload, KEY, b"gw1", kid_protected)).value[0]


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.binary(min_size=1, max_size=60))
def test_another_payload_with_the_same_tag_fails(payload, other):
    parts = cbor2.loads(cose.sign(payload, KEY, b"gw1")).value
    forged = cbor2.dumps(cbor2.CBORTag(17, [parts[0], parts[1], other, parts[3]]))
    if other == payload:
        assert cose.verify(forged, [KEY], b"gw1") == payload
    else:
        with pytest.raises(cose.CoseError):
            cose.verify(forged, [KEY], b"gw1")


@pytest.mark.slow  # pycose runs in its own venv, in a subprocess (hil_tests/pycose_env.py)
@pytest.mark.parametrize("kid_protected", [True, False])
def test_pycose_verifies_ours_and_we_verify_pycose(kid_protected):
    payload = cbor2.dumps({"id": "x-9", "exp": 1900000000, "device": "flat-101-water", "point": "valve",
                           "value": "closed"}, canonical=True)
    ours = cose.sign(payload, KEY, b"gw-07", kid_protected)
    assert pycose_env.verify(ours, KEY) == payload
    assert pycose_env.verify(ours, bytes(32)) is None  # pycose refuses it under another key
    theirs = pycose_env.sign(payload, KEY, b"gw-07", kid_protected)
    assert cose.verify(theirs, [KEY], b"gw-07") == payload
    if not kid_protected:
        assert theirs == ours  # the same deterministic encoding, byte for byte
    with pytest.raises(cose.CoseError):
        cose.verify(theirs, [bytes(32)], b"gw-07")
