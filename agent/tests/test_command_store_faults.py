"""The command-id store on a disk that cannot take it at start: the agent keeps polling, a command whose id
cannot be recorded is refused (at most once holds), and the store opens by itself when the disk allows."""

from __future__ import annotations

import os

import pytest

from agent.command_store import PendingIdStore
from protocols.commands import Command


def command(cmd_id: str) -> Command:
    return Command({"id": cmd_id, "device": "lamp-01", "point": "dim", "value": 0.5}, False, b"\x01" * 8)


def test_pending_store_refuses_until_the_file_can_be_opened(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")  # makedirs fails like a read-only disk
    path = str(blocker / "command-ids.sqlite")
    store = PendingIdStore(path, "not opened yet")
    assert store.check(command("c-1")) is None
    with pytest.raises(OSError, match=r"command-id store .* cannot be opened"):
        store.begin(command("c-1"), 2_000_000_000)
    assert "id_store_error" in store.stats()
    os.unlink(blocker)
    store.begin(command("c-2"), 2_000_000_000)  # the disk is back: recorded, committed
    assert store.check(command("c-2")) == b""  # running: a repeat is not run again
    assert store.stats()["ids"] == 1 and "id_store_error" not in store.stats()
    store.close()
