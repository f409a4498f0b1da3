"""docs/commands.md stays true: its refusal table is protocols/commands.REFUSALS, row for row, and its
signed example is what protocols/cose.py makes."""

from __future__ import annotations

import os
import re

import cbor2

from protocols import cose
from protocols.commands import REFUSALS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def doc() -> str:
    with open(os.path.join(ROOT, "docs", "commands.md")) as f:
        return f.read()


def test_every_refusal_is_in_the_table_and_nothing_else():
    rows = re.findall(r"^\| `([a-z_]+)` \| (.*) \|$", doc(), re.M)
    assert rows == list(REFUSALS.items())


def test_the_signed_example_is_what_we_make():
    text = doc()
    block = text.split("(108 bytes; payload 58 bytes):")[1].split("```")[1]
    message = bytes.fromhex("".join(block.split()))
    payload = cbor2.dumps({"id": "c-17", "device": "flat-101-power", "action": "relay_trip",
                           "exp": 1800000000}, canonical=True)
    assert len(message) == 108 and len(payload) == 58
    assert cose.sign(payload, bytes(range(32)), b"gw-07") == message
    assert cose.verify(message, [bytes(range(32))], b"gw-07") == payload


def test_linked_from_the_readme_and_the_config_reference():
    for name in ("README.md", os.path.join("docs", "config.md"), os.path.join("docs", "payload.md")):
        with open(os.path.join(ROOT, name)) as f:
            assert "commands.md" in f.read(), name
