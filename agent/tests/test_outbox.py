"""The durable outbox: FIFO, bound with counted drops, fsync policy, crash and corruption recovery."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.outbox import Outbox


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "outbox.sqlite")


def test_put_peek_ack_in_order(path):
    ob = Outbox(path)
    ids = [ob.put("t/data", b"p%d" % i, 1, records=2) for i in range(5)]
    assert ids == sorted(ids)
    assert [p.payload for p in ob.peek(3)] == [b"p0", b"p1", b"p2"]
    assert [p.payload for p in ob.peek(10, after=ids[2])] == [b"p3", b"p4"]
    assert ob.ack(ids[1]) and not ob.ack(ids[1])
    assert [p.id for p in ob.peek(10)] == [ids[0], ids[2], ids[3], ids[4]]
    assert len(ob) == 4 and ob.size == 8 and ob.stats()["records"] == 8
    ob.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["put", "ack", "peek", "reopen"]), st.integers(0, 12),
                          st.integers(1, 6)), max_size=40))
def test_peek_gives_the_oldest_live_packs_after_any_id(tmp_path, ops):
    """Against a model FIFO: `peek(n, after)` for every `after` (below, at and past the newest id, where
    it answers without reading the file), across puts, acks and reopening the file."""
    path = str(tmp_path / ("h%d.sqlite" % next(_files)))
    ob = Outbox(path)
    live: list[int] = []  # the model: ids not acknowledged, oldest first
    newest = 0
    try:
        for op, k, n in ops:
            if op == "put":
                newest = ob.put("t/data", b"p%d" % k, 1, records=1)
                live.append(newest)
            elif op == "ack" and live:
                pack_id = live.pop(k % len(live))
                assert ob.ack(pack_id)
            elif op == "reopen":
                ob.close()
                ob = Outbox(path)
            after = max(0, newest - 3) + k % 6  # around the newest id: before it, at it, past it
            got = ob.peek(n, after=after)
            assert [p.id for p in got] == [i for i in live if i > after][:n]
            assert [p.id for p in ob.peek(n)] == live[:n]
            assert len(ob) == len(live) == ob.stats()["packs"]
    finally:
        ob.close()


_files = itertools.count()


def test_survives_reopen(path):
    ob = Outbox(path)
    ids = [ob.put("t", b"x" * 10, 1, 1) for _ in range(3)]
    ob.ack(ids[2])  # even the newest id is never reused after a reopen
    ob.close()
    again = Outbox(path)
    assert len(again) == 2 and again.size == 20 and again.stats()["records"] == 2
    assert again.put("t", b"y", 1) > ids[2]
    again.close()


def test_bound_drops_oldest_first_and_counts_persistently(path):
    ob = Outbox(path, max_bytes=1000)
    ids = [ob.put("t", bytes([i]) * 100, 1, records=10) for i in range(15)]
    assert len(ob) == 10 and ob.size == 1000
    assert [p.id for p in ob.peek(100)] == ids[5:]
    s = ob.stats()
    assert (s["dropped_packs"], s["dropped_bytes"], s["dropped_records"]) == (5, 500, 50)
    ob.close()
    again = Outbox(path, max_bytes=1000)
    assert again.stats()["dropped_packs"] == 5 and again.stats()["dropped_records"] == 50
    again.close()


def test_oversized_pack_is_dropped_and_counted(path):
    ob = Outbox(path, max_bytes=100)
    keep = ob.put("t", b"a" * 50, 1, 1)
    assert ob.put("t", b"b" * 101, 1, 7) == 0
    assert [p.id for p in ob.peek(5)] == [keep]
    assert ob.stats()["dropped_records"] == 7
    ob.close()


@pytest.mark.parametrize(("policy", "level"), [("full", 2), ("normal", 1)])
def test_fsync_policy_sets_wal_and_synchronous(path, policy, level):
    ob = Outbox(path, fsync=policy)
    assert ob._db is not None
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == level
    ob.close()


def test_bad_settings_are_refused(path):
    with pytest.raises(ValueError, match="fsync"):
        Outbox(path, fsync="sometimes")
    with pytest.raises(ValueError, match="max_bytes"):
        Outbox(path, max_bytes=0)


def test_corrupt_file_is_moved_aside_and_counted(path, caplog):
    with open(path, "wb") as f:
        f.write(b"this is not an sqlite database at all" * 200)
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        ob = Outbox(path)
    assert "corrupt" in caplog.text and "moved aside" in caplog.text
    assert ob.stats()["corrupt_resets"] == 1 and len(ob) == 0
    aside = [n for n in os.listdir(os.path.dirname(path)) if ".corrupt-" in n]
    assert aside, "the corrupt file is kept for inspection"
    ob.put("t", b"fresh", 1)
    ob.close()
    assert len(Outbox(path)) == 1


def test_concurrent_puts_keep_every_pack(path):
    ob = Outbox(path)

    def writer(k: int) -> None:
        for i in range(100):
            ob.put("t", b"%d:%d" % (k, i), 1, 1)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    packs = ob.peek(1000)
    assert len(packs) == 400
    for k in range(4):  # each writer's packs are in its own order
        mine = [int(p.payload.split(b":")[1]) for p in packs if p.payload.startswith(b"%d:" % k)]
        assert mine == list(range(100))
    ob.close()


_WRITER = """
import sys
from agent.outbox import Outbox
ob = Outbox(sys.argv[1], fsync=sys.argv[2])
i = 0
while True:
    ob.put("t", b"pack %d" % i, 1, 1)
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("policy", ["normal", "full"])
def test_sigkill_loses_nothing_committed(path, policy):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, path, policy], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = -1
    for text in proc.stdout:
        last = int(text)
        if last >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    ob = Outbox(path, fsync=policy)
    payloads = [p.payload for p in ob.peek(100000)]
    assert payloads[: last + 1] == [b"pack %d" % i for i in range(last + 1)]
    assert ob.stats()["corrupt_resets"] == 0
    ob.close()


def _ids_in_file(path: str) -> list[int]:
    """What another process would find in the file now (committed rows only)."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [int(r[0]) for r in db.execute("SELECT id FROM outbox ORDER BY id")]
    finally:
        db.close()


def test_the_delete_that_empties_the_outbox_is_written_with_the_next_write(path, monkeypatch):
    """An idle uplink's pack: its PUBACK empties the outbox, and its delete rides with the next pack's
    commit (one transaction per pack instead of two); a PUBACK that leaves a backlog is written at once;
    `maintain` writes a delete left alone for DELETE_DELAY s, and `close` writes it."""
    from agent import outbox as outbox_mod

    ob = Outbox(path)
    first = ob.put("t/data", b"a", 1, records=1)
    assert ob.ack(first) and len(ob) == 0 and ob.stats()["unsaved_deletes"] == 1
    assert _ids_in_file(path) == [first]  # a crash now sends this one pack again, nothing else
    second = ob.put("t/data", b"b", 1, records=1)
    assert _ids_in_file(path) == [second] and ob.stats()["unsaved_deletes"] == 0  # one transaction
    third = ob.put("t/data", b"c", 1, records=1)
    assert ob.ack(second) and _ids_in_file(path) == [third]  # a backlog: written at once
    assert ob.ack(third) and _ids_in_file(path) == [third]
    ob.maintain()
    assert _ids_in_file(path) == [third]  # not yet DELETE_DELAY old
    monkeypatch.setattr(outbox_mod, "DELETE_DELAY", 0.0)
    ob.maintain()
    assert _ids_in_file(path) == [] and ob.stats()["unsaved_deletes"] == 0
    fourth = ob.put("t/data", b"d", 1, records=1)
    assert ob.ack(fourth) and _ids_in_file(path) == [fourth]
    ob.close()
    assert _ids_in_file(path) == []
    again = Outbox(path)
    assert len(again) == 0 and again.peek(5) == []
    again.close()
