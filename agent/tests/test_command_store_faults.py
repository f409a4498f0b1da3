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


def test_an_id_outlives_a_clock_that_jumps_ahead(tmp_path):
    """A Pi boots with the time it last shut down, takes a command, then NTP moves its clock days
    ahead (or a forged NTP answer does): the id must still be there, in memory and on disk, so a replay
    of the command gets the original ack. Only a week after its time is it purged."""
    from agent.command_store import KEEP_AFTER, IdStore
    from protocols import cbor
    from protocols.commands import open_command

    clock = [1_790_000_000.0]
    path = str(tmp_path / "ids.sqlite")
    store = IdStore(path, clock=lambda: clock[0])
    cmd = open_command(cbor.dumps({"id": "c1", "device": "e1", "point": "p", "value": 1}), [], "gw")
    store.begin(cmd, int(clock[0]) + 60)
    store.finish("c1", b"\xa0")
    clock[0] += 5 * 86400  # NTP: five days ahead
    store._purged = float("-inf")  # the purge runs at the next check
    assert store.check(cmd) == b"\xa0"
    store.close()
    again = IdStore(path, clock=lambda: clock[0])
    assert again.check(cmd) == b"\xa0"
    clock[0] += KEEP_AFTER  # a week after its time: purged, in memory and on disk
    again._purged = float("-inf")
    assert again.check(cmd) is None
    again.close()
    assert IdStore(path, clock=lambda: clock[0]).loaded == 0
