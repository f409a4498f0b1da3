"""Runs in .venv-pycose (pycose 1.1.0, cbor2 5.9.0); imports nothing of FieldLink.

    python pycose_tool.py sign PAYLOAD_HEX KEY_HEX KID_HEX protected|unprotected  -> message hex
    python pycose_tool.py verify MESSAGE_HEX KEY_HEX                              -> payload hex or FAIL ...
"""

import sys

from pycose.algorithms import HMAC256
from pycose.headers import KID, Algorithm
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message


def main(argv):
    if argv[0] == "sign":
        payload, key, kid = (bytes.fromhex(a) for a in argv[1:4])
        if argv[4] == "protected":
            msg = Mac0Message(phdr={Algorithm: HMAC256, KID: kid}, payload=payload)
        else:
            msg = Mac0Message(phdr={Algorithm: HMAC256}, uhdr={KID: kid}, payload=payload)
        msg.key = SymmetricKey(k=key)
        print(msg.encode(tag=True).hex())
        return 0
    if argv[0] == "verify":
        data, key = bytes.fromhex(argv[1]), bytes.fromhex(argv[2])
        try:
            msg = Mac0Message.decode(data)
            msg.key = SymmetricKey(k=key)
            ok = msg.verify_tag()
        except Exception as exc:
            print("FAIL %s: %s" % (type(exc).__name__, exc))
            return 0
        print(msg.payload.hex() if ok else "FAIL tag")
        return 0
    print("usage: sign|verify ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
