"""COSE_Mac0 (RFC 9052 section 6.2) with HMAC 256/256 (RFC 9053 section 3.1, alg 5): sign and verify.

A signed command is the CBOR tag 17 around ``[protected, unprotected, payload, tag]``:

* ``protected``: a byte string holding the CBOR map of the protected header; it must carry
  ``alg`` (label 1) = 5. ``kid`` (label 4, a byte string) may sit here or in ``unprotected``;
* ``unprotected``: a map (``kid`` only, for us);
* ``payload``: the byte string that was MACed (never detached here);
* ``tag``: HMAC-SHA256(key, CBOR ``["MAC0", protected, external_aad, payload]``), 32 bytes.

Verification compares the whole tag in constant time (every byte before deciding). HMAC is written on
top of ``hashlib.sha256`` because MicroPython has no ``hmac`` module. Sans-I/O, shared dialect: the
agent and the firmware run these same lines.

``CoseError.reason`` says what failed, for the refusal text: ``"malformed"``, ``"algorithm"``,
``"kid"`` or ``"tag"``.
"""

import hashlib

from protocols import cbor
from protocols.errors import ProtocolError

TAG_MAC0 = 17
ALG = 1  # header label
KID = 4  # header label
CRIT = 2  # header label
HMAC_256_256 = 5
TAG_SIZE = 32
_BLOCK = 64  # SHA-256 block size


class CoseError(ProtocolError):
    """A COSE_Mac0 that does not verify; `reason` is malformed, algorithm, kid or tag."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        ProtocolError.__init__(self, message)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of `message` under `key`."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    inner = bytearray(_BLOCK)
    outer = bytearray(_BLOCK)
    for i in range(_BLOCK):
        k = key[i] if i < len(key) else 0
        inner[i] = k ^ 0x36
        outer[i] = k ^ 0x5C
    h = hashlib.sha256(bytes(inner))
    h.update(message)
    digest = h.digest()
    h = hashlib.sha256(bytes(outer))
    h.update(digest)
    return h.digest()


def same_bytes(a: bytes, b: bytes) -> bool:
    """True when `a` equals `b`, looking at every byte before deciding (no early exit on content)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def mac_input(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes that are MACed: CBOR ``["MAC0", protected, external_aad, payload]``."""
    return cbor.dumps(["MAC0", protected, external_aad, payload])


def sign(payload: bytes, key: bytes, kid: bytes, kid_protected: bool = True) -> bytes:
    """A tagged COSE_Mac0 of `payload` with HMAC 256/256 under `key`, `kid` in the protected header
    (or the unprotected one)."""
    header: dict = {ALG: HMAC_256_256}
    unprotected: dict = {}
    if kid_protected:
        header[KID] = kid
    else:
        unprotected[KID] = kid
    protected = cbor.dumps(header)
    tag = hmac_sha256(key, mac_input(protected, payload))
    return cbor.dumps(cbor.Tag(TAG_MAC0, [protected, unprotected, payload, tag]))


def is_mac0(data: bytes) -> bool:
    """True when `data` starts as a tag 17 item (a COSE_Mac0), before any decoding."""
    return len(data) > 0 and data[0] == 0xD1


class Mac0:
    """A decoded (not yet verified) COSE_Mac0: its parts and the header fields we use."""

    def __init__(self, protected: bytes, alg: object, kid: object, payload: bytes, tag: bytes) -> None:
        self.protected = protected
        self.alg = alg
        self.kid = kid
        self.payload = payload
        self.tag = tag


def decode(data: bytes) -> Mac0:
    """The parts of a tagged COSE_Mac0; CoseError("malformed" or "algorithm") when it is not one we take.

    Rules: tag 17 around an array of 4; protected a byte string holding a map (empty bytes: no
    header); unprotected a map; no label in both; payload and tag byte strings; ``crit`` is refused
    (we understand no critical header); ``alg`` must be in the protected header and be 5."""
    try:
        item = cbor.loads(data)
    except ProtocolError as exc:
        raise CoseError("malformed", "not CBOR: %s" % exc) from None
    if not isinstance(item, cbor.Tag) or item.tag != TAG_MAC0:
        raise CoseError("malformed", "expected CBOR tag 17 (COSE_Mac0)")
    parts = item.value
    if type(parts) is not list or len(parts) != 4:
        raise CoseError("malformed", "expected an array of 4 (protected, unprotected, payload, tag)")
    protected, unprotected, payload, tag = parts
    if type(protected) is not bytes:
        raise CoseError("malformed", "the protected header must be a byte string")
    header: object = {}
    if protected:
        try:
            header = cbor.loads(protected)
        except ProtocolError as exc:
            raise CoseError("malformed", "the protected header is not CBOR: %s" % exc) from None
    if type(header) is not dict or type(unprotected) is not dict:
        raise CoseError("malformed", "the headers must be maps")
    for label in header:
        if label in unprotected:
            raise CoseError("malformed", "header label %r is both protected and unprotected" % (label,))
    if CRIT in header or CRIT in unprotected:
        raise CoseError("malformed", "critical headers (crit) are not supported")
    if type(payload) is not bytes:
        raise CoseError("malformed", "the payload must be a byte string (not detached)")
    if type(tag) is not bytes:
        raise CoseError("malformed", "the tag must be a byte string")
    if ALG in unprotected:
        raise CoseError("algorithm", "alg must be in the protected header")
    alg = header.get(ALG)
    if alg != HMAC_256_256 or type(alg) is not int:
        raise CoseError("algorithm", "algorithm %r; expected 5 (HMAC 256/256)" % (alg,))
    kid = header.get(KID, unprotected.get(KID))
    return Mac0(protected, alg, kid, payload, tag)


def verify(data: bytes, keys: list, kid: bytes) -> bytes:
    """The payload of a COSE_Mac0 whose kid is `kid` and whose tag verifies with one of `keys`.

    CoseError: "malformed" or "algorithm" (see `decode`), "kid" (missing or another one), "tag" (no
    key gives this tag). Every key is tried in full, so the time does not say which one matched."""
    msg = decode(data)
    if type(msg.kid) is not bytes or not same_bytes(msg.kid, kid):
        raise CoseError("kid", "kid %r is not %r" % (msg.kid, kid))
    if len(msg.tag) != TAG_SIZE:
        raise CoseError("tag", "tag of %d bytes; HMAC 256/256 has %d" % (len(msg.tag), TAG_SIZE))
    signed = mac_input(msg.protected, msg.payload)
    ok = False
    for key in keys:
        if same_bytes(hmac_sha256(key, signed), msg.tag):
            ok = True
    if not ok:
        raise CoseError("tag", "the tag does not verify")
    return msg.payload


__all__ = ["ALG", "HMAC_256_256", "KID", "TAG_MAC0", "CoseError", "Mac0", "decode", "hmac_sha256",
           "is_mac0", "mac_input", "same_bytes", "sign", "verify"]
