"""An idle uplink's pack is written only if its PUBACK does not come soon (agent/outbox.py, `put` with
`defer`): a connected gateway then writes and fsyncs nothing per pack, and still loses nothing the broker
has not acknowledged to a lost connection, a stalled broker or a clean stop; what a power cut may cost
stays the last `sync_every` s. What is in the file is read with plain sqlite3, beside the outbox."""

from __future__ import annotations

import time

from agent.outbox import Outbox
from agent.tests.test_outbox_faults import FULL, FaultyDisk, inserted, stored
from agent.tests.test_outbox_sync import synced  # noqa: F401  (the fixture)

WITHIN = 0.3


def wait_past(moment: float) -> None:
    """Sleep until time.monotonic() is past `moment` (at least that long, however busy the machine)."""
    while time.monotonic() <= moment:
        time.sleep(max(0.005, moment - time.monotonic()))


def test_a_pack_acknowledged_at_once_is_never_written(tmp_path, synced) -> None:  # noqa: F811
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, sync_every=WITHIN)
    try:
        assert ob.write_within == WITHIN
        ids = []
        for i in range(5):  # a stream: each pack published and acknowledged before the next one
            pack_id = ob.put("t/data", b"p%d" % i, 1, records=3, defer=True)
            assert len(ob) == 1 and ob.stats()["unwritten_packs"] == 1 and ob.stats()["records"] == 3
            assert [(p.id, p.payload) for p in ob.peek(10)] == [(pack_id, b"p%d" % i)]
            assert ob.ack(pack_id) and not ob.ack(pack_id)
            assert len(ob) == 0
            ids.append(pack_id)
        assert ids == sorted(ids) and len(set(ids)) == 5
        first = ob.due()
        assert first is not None  # a look at the unwritten packs, in case one had stayed
        wait_past(first)
        ob.maintain()
        again = ob.due()  # packs came since the look was set: one more look
        assert again is not None and again > first
        wait_past(again)
        ob.maintain()
        assert ob.due() is None  # then none while no pack comes
        assert inserted(path) == 0 and stored(path) == []
        assert synced == []  # nothing written, nothing fsynced
    finally:
        ob.close()
    assert stored(path) == []


def test_an_unacknowledged_pack_is_written_and_fsynced_within_write_within(tmp_path, synced) -> None:  # noqa: F811
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, sync_every=WITHIN)
    try:
        put_at = time.monotonic()
        pack_id = ob.put("t/data", b"stalled", 1, records=2, defer=True)
        due = ob.due()
        assert due is not None and put_at <= due - WITHIN <= time.monotonic()
        ob.maintain()
        if time.monotonic() < due:  # (a busy machine may already be past it)
            assert stored(path) == []
        wait_past(due)
        ob.maintain()
        assert stored(path) == [(pack_id, b"stalled")]
        assert ob.stats()["unwritten_packs"] == 0 and len(ob) == 1
        assert [f for f, _ in synced] == [path + "-wal"] and synced[0][1] - put_at >= WITHIN
        assert ob.ack(pack_id)  # its PUBACK after all: deleted from the file like any pack
    finally:
        ob.close()
    assert stored(path) == []


def test_the_next_write_takes_the_unwritten_packs_first(tmp_path) -> None:
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, sync_every=WITHIN)
    try:
        first = ob.put("t/data", b"a", 1, records=1, defer=True)
        assert stored(path) == []
        second = ob.put("t/data", b"b", 1, records=1)  # a backlog: written at once, the unwritten one first
        assert stored(path) == [(first, b"a"), (second, b"b")]
        third = ob.put("t/data", b"c", 1, records=1, defer=True)  # the outbox is not empty: written
        assert stored(path) == [(first, b"a"), (second, b"b"), (third, b"c")]
        assert [p.id for p in ob.peek(10)] == [first, second, third]
        for pack_id in (first, second, third):
            assert ob.ack(pack_id)
        fourth = ob.put("t/alarm", b"d", 1, defer=True)
        ob.set_meta("n", 7)  # any write (a counter here) takes it along
        assert stored(path) == [(fourth, b"d")]
        assert ob.ack(fourth)
        fifth = ob.put("t/data", b"e", 1, defer=True)  # nothing waits: kept unwritten
        assert stored(path) == [(fourth, b"d")] and ob.stats()["unwritten_packs"] == 1
        sixth = ob.put("t/data", b"f", 1, defer=True)  # one is unwritten already: both written, in order
        assert stored(path) == [(fifth, b"e"), (sixth, b"f")] and ob.stats()["unwritten_packs"] == 0
    finally:
        ob.close()


def test_a_clean_stop_writes_what_waits_for_its_puback(tmp_path) -> None:
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, sync_every=WITHIN)
    pack_id = ob.put("t/data", b"in flight", 1, records=4, defer=True)
    ob.close()
    ob = Outbox(path, sync_every=WITHIN)
    try:
        assert [(p.id, p.payload, p.records) for p in ob.peek(10)] == [(pack_id, b"in flight", 4)]
        assert ob.put("t/data", b"next", 1) > pack_id  # its id is not given again
    finally:
        ob.close()


def test_fsync_full_writes_every_pack_before_it_is_published(tmp_path) -> None:
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, fsync="full")
    try:
        assert ob.write_within == 0
        pack_id = ob.put("t/data", b"billed", 1, records=1, defer=True)
        assert stored(path) == [(pack_id, b"billed")] and ob.due() is None
    finally:
        ob.close()


def test_a_failing_disk_holds_the_unwritten_pack_before_newer_ones(tmp_path, monkeypatch) -> None:
    disk = FaultyDisk(monkeypatch)
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, sync_every=WITHIN)
    try:
        first = ob.put("t/data", b"a", 1, records=1, defer=True)
        disk.write_fault = FULL
        second = ob.put("t/data", b"b", 1, records=1)  # cannot be written: both held, in order
        s = ob.stats()
        assert (s["state"], s["held_packs"], s["unwritten_packs"], s["packs"]) == ("disk_full", 2, 0, 2)
        assert [p.id for p in ob.peek(10)] == [first, second]
        disk.write_fault = None
        wait_past(time.monotonic() + 1.1)  # the first retry of the disk
        ob.maintain()
        assert ob.state == "ok" and stored(path) == [(first, b"a"), (second, b"b")]
    finally:
        ob.close()
