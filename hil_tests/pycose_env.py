"""pycose, the independent COSE implementation our signatures are cross-checked with, in a venv of its own.

pycose 1.1.0 decodes badly with cbor2 6 (it checks for `list`; cbor2 6 gives tuples: shared
protocol-facts section 9), and the project's venv pins cbor2 6. So pycose lives in `.venv-pycose` with
cbor2 5.9.0 (`make setup` creates it; `pycose_python()` creates it when missing), and is driven through
`hil_tests/pycose_tool.py`, which imports nothing of FieldLink:

    sign(payload, key, kid, kid_protected=True) -> bytes     # a COSE_Mac0 made by pycose
    verify(message, key) -> bytes | None                     # pycose's verdict on a message of ours
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-pycose")
PYTHON = os.path.join(VENV, "bin", "python")
TOOL = os.path.join(ROOT, "hil_tests", "pycose_tool.py")
PINS = ("pycose==1.1.0", "cbor2==5.9.0")

__all__ = ["PINS", "pycose_python", "sign", "verify"]


def _usable() -> bool:
    if not os.access(PYTHON, os.X_OK):
        return False
    done = subprocess.run([PYTHON, "-c", "import pycose, cbor2; assert cbor2.__version__.startswith('5.')"],
                          capture_output=True, timeout=60)
    return done.returncode == 0


def pycose_python() -> str:
    """The interpreter of `.venv-pycose`, created with the pinned pycose and cbor2 when missing; a
    pytest skip (a failure under CI) when it cannot be made."""
    if _usable():
        return PYTHON
    try:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, capture_output=True, timeout=120)
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", *PINS], check=True, capture_output=True,
                       timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        import pytest

        detail = getattr(exc, "stderr", b"") or b""
        text = "cannot make %s with %s: %s %s" % (VENV, " ".join(PINS), exc, detail.decode(errors="replace"))
        if os.environ.get("CI"):
            pytest.fail(text)
        pytest.skip(text)
    return PYTHON


def _tool(*args: str) -> str:
    done = subprocess.run([pycose_python(), TOOL, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError("pycose_tool %s failed: %s" % (args[0], done.stderr))
    return done.stdout.strip()


def sign(payload: bytes, key: bytes, kid: bytes, kid_protected: bool = True) -> bytes:
    """A tagged COSE_Mac0 (HMAC 256/256) of `payload`, made by pycose."""
    return bytes.fromhex(_tool("sign", payload.hex(), key.hex(), kid.hex(),
                               "protected" if kid_protected else "unprotected"))


def verify(message: bytes, key: bytes) -> bytes | None:
    """The payload when pycose decodes `message` and its tag verifies with `key`, else None."""
    out = _tool("verify", message.hex(), key.hex())
    return None if out.startswith("FAIL") else bytes.fromhex(out)
