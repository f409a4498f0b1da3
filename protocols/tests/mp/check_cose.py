"""COSE_Mac0 and the command rules in the shared dialect: one line per case, identical on CPython and
MicroPython. Run from the repository root: ``python protocols/tests/mp/check_cose.py``. A mismatch
prints ``FAIL``."""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import cbor, commands, cose
from protocols.commands import IdMemory, Refused, open_command
from protocols.tests.mp.vectors import check, done


def h(text):
    return binascii.unhexlify(text)


KEY = bytes(range(32))
PAYLOAD = h("a462696463632d31636578701a6b49d20066616374696f6e6a72656c61795f74726970666465766963"
            "656e666c61742d3130312d706f776572")
MESSAGE = h("d18443a10105a104436777315839") + PAYLOAD + \
    h("5820ce96af5b57a89c2f33b6ce262cd13dcf8aaf8a7efe76af4f6cfe84fe9b0ebda3")
NOW = 1800000000

# RFC 4231 test case 2 (HMAC-SHA256, key "Jefe")
check("hmac-rfc4231-2", binascii.hexlify(cose.hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
      b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
check("hmac-long-key", binascii.hexlify(cose.hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size "
                                                         b"Key - Hash Key First")),
      b"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
check("vector-sign", cose.sign(PAYLOAD, KEY, b"gw1", False) == MESSAGE, True)
check("vector-verify", cose.verify(MESSAGE, [KEY], b"gw1") == PAYLOAD, True)


def reason(data, keys, kid):
    try:
        cose.verify(data, keys, kid)
    except cose.CoseError as exc:
        return exc.reason
    return "verified"


check("wrong-kid", reason(MESSAGE, [KEY], b"gw2"), "kid")
check("wrong-key", reason(MESSAGE, [bytes(32)], b"gw1"), "tag")
check("second-key", reason(MESSAGE, [bytes(32), KEY], b"gw1"), "verified")
flips: dict = {}
for i in range(len(MESSAGE)):
    m = bytearray(MESSAGE)
    m[i] ^= 0x01
    r = reason(bytes(m), [KEY], b"gw1")
    flips[r] = flips.get(r, 0) + 1
check("every-flip-fails", "verified" in flips, False)
check("flip-reasons", sorted(flips.items()), [("algorithm", 2), ("kid", 4), ("malformed", 10), ("tag", 89)])

# the command rules
trip = {"id": "c9", "device": "m1", "action": "relay_trip", "exp": NOW + 60}
signed = cose.sign(cbor.dumps(trip), KEY, b"gw1")
cmd = open_command(signed, [KEY], "gw1")
check("open-signed", (cmd.id, cmd.signed, cmd.exp, cmd.what), ("c9", True, NOW + 60, "relay_trip on m1"))
commands.check_policy(cmd, "switching", True, NOW, 86400)
check("policy-ok", True, True)


def refusal(fn, *args):
    try:
        fn(*args)
    except Refused as exc:
        return exc.reason, exc.cmd_id, exc.text
    return None


unsigned = open_command(cbor.dumps({"id": "u1", "device": "wm", "point": "valve", "value": "closed"}), [KEY],
                        "gw1")
check("unsigned-switching", refusal(commands.check_policy, unsigned, "switching", True, NOW, 86400),
      ("unsigned", "u1", "write valve of wm is refused unsigned: this gateway wants switching commands "
       "signed (COSE_Mac0)"))
check("expired", refusal(commands.check_policy, cmd, "switching", True, NOW + 61, 86400)[0], "expired")
check("no-clock", refusal(commands.check_policy, cmd, "switching", True, 86400, 86400)[2],
      "command has an expiry but this gateway's clock is not set (it reads 86400)")
forged = cose.sign(cbor.dumps({"id": "f"}), bytes(32), b"gw1")
check("forged", refusal(open_command, forged, [KEY], "gw1")[:2], ("bad_tag", "f"))
check("retained-text", commands.refusal("retained"), "retained commands are not executed")

memory = IdMemory(4)
memory.begin(cmd, NOW + 60)
check("running", memory.check(cmd), commands.RUNNING)
memory.finish("c9", commands.ack_bytes("c9", True))
check("repeat", cbor.loads(memory.check(open_command(signed, [KEY], "gw1"))),
      {"id": "c9", "ok": True, "error": None, "value": None})
close = {"id": "c9", "device": "m1", "action": "relay_close", "exp": NOW}
other = open_command(cose.sign(cbor.dumps(close), KEY, b"gw1"), [KEY], "gw1")
check("duplicate", refusal(memory.check, other)[0], "duplicate_id")
restored = IdMemory(4)
check("load", restored.load(memory.rows(), NOW), 0)
check("restored-repeat", restored.check(cmd) == commands.ack_bytes("c9", True), True)
check("expire", len(restored.expire(NOW + 61)), 1)

done()
