"""The command key file: the per-gateway HMAC keys that signed commands are checked with.

The file holds one key per line, each 32 random bytes written as 64 hex characters; blank lines and
lines starting with `#` are ignored. A second line is how a key is rotated without a gap (both keys
verify while the platform switches over; docs/commands.md). Make one with

    umask 077; python3 -c "import secrets; print(secrets.token_hex(32))" > /etc/fieldlink/gw-07.key

`read_keys` refuses a file that group or others may read (agent/private.check_secret_file). No message
ever contains a key or any part of one.
"""

from __future__ import annotations

from agent.private import PrivateFileError, check_secret_file

__all__ = ["MAX_KEYS", "KeyFileError", "read_keys"]

MAX_KEYS = 4
KEY_BYTES = 32


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and line, never a key."""


def read_keys(path: str) -> list[bytes]:
    """The keys in `path`, in file order; KeyFileError saying what is wrong."""
    try:
        check_secret_file(path, "[commands] key_file")
    except PrivateFileError as exc:
        raise KeyFileError(str(exc)) from None
    try:
        with open(path, "rb") as f:
            raw = f.read(64 * 1024)
    except OSError as exc:
        raise KeyFileError("key file %s cannot be read: %s" % (path, exc.strerror)) from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError("key file %s is not text; expected 64 hex characters per line" % path) from None
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) != 2 * KEY_BYTES or any(c not in "0123456789abcdefABCDEF" for c in line):
            raise KeyFileError("key file %s line %d: expected 64 hex characters (32 random bytes), got %d "
                               "characters (the key is not shown)" % (path, number, len(line)))
        keys.append(bytes.fromhex(line))
    if not keys:
        raise KeyFileError("key file %s holds no key; expected a line of 64 hex characters" % path)
    if len(keys) > MAX_KEYS:
        raise KeyFileError("key file %s holds %d keys; at most %d (the current one and the next)"
                           % (path, len(keys), MAX_KEYS))
    if len(set(keys)) != len(keys):
        raise KeyFileError("key file %s holds the same key twice" % path)
    return keys
