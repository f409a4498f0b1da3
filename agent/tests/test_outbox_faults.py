"""The outbox under faults: disk full, read-only, I/O errors (injected at the SQLite layer), damaged pages
(real bytes overwritten in a real file), a deleted or replaced file, a second process, file modes.

The at-the-wire versions (a real full tmpfs, a read-only mount, `fieldlink run` with a real Mosquitto) are
in hil_tests/test_agent_outbox.py.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

import agent.outbox as outbox_module
from agent.outbox import Outbox, OutboxInUse, fault_kind
from protocols import cbor


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "outbox.sqlite")


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch):
    """Retry a failing disk at once, so tests need no sleeps."""
    monkeypatch.setattr(outbox_module, "_RETRY_FIRST", 0.0)
    monkeypatch.setattr(outbox_module, "_RETRY_MAX", 0.0)
    monkeypatch.setattr(outbox_module, "_READ_SPACING", 0.0)


def payload(i: int, size: int = 100) -> bytes:
    """A CBOR pack (as the batcher makes them) of about `size` bytes, numbered `i`."""
    return cbor.dumps([{"n": "dev/p", "v": i, "vs": "x" * max(0, size - 20)}])


def sqlite_error(code: int, text: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


FULL = (13, "database or disk is full")
READ_ONLY = (8, "attempt to write a readonly database")
IO_ERROR = (778, "disk I/O error")  # SQLITE_IOERR_WRITE
MALFORMED = (11, "database disk image is malformed")


class FaultyConnection:
    """A real SQLite connection whose writes (or reads) fail while `disk.fault` is set."""

    WRITES = ("INSERT", "DELETE", "COMMIT", "UPDATE")

    def __init__(self, db: sqlite3.Connection, disk: FaultyDisk) -> None:
        self.db = db
        self.disk = disk

    def _check(self, sql: str) -> None:
        verb = sql.split(None, 1)[0].upper()
        if self.disk.write_fault and verb in self.WRITES:
            self.disk.failed += 1
            fault = self.disk.write_fault
            if self.disk.times is not None:
                self.disk.times -= 1
                if self.disk.times <= 0:
                    self.disk.write_fault, self.disk.times = None, None
            raise sqlite_error(*fault)
        if self.disk.read_fault and verb == "SELECT":
            self.disk.failed += 1
            fault = self.disk.read_fault
            if self.disk.read_times is not None:
                self.disk.read_times -= 1
                if self.disk.read_times <= 0:
                    self.disk.read_fault, self.disk.read_times = None, None
            raise sqlite_error(*fault)

    def execute(self, sql, *args):
        self._check(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql, rows):
        self._check(sql)
        return self.db.executemany(sql, rows)

    def executescript(self, sql):
        return self.db.executescript(sql)

    @property
    def in_transaction(self):
        return self.db.in_transaction

    def close(self):
        self.db.close()


class FaultyDisk:
    """Patches sqlite3.connect in agent.outbox; `write_fault`/`read_fault`/`open_fault` = (code, text)."""

    def __init__(self, monkeypatch) -> None:
        self.write_fault: tuple[int, str] | None = None
        self.read_fault: tuple[int, str] | None = None
        self.open_fault: tuple[int, str] | None = None
        self.times: int | None = None  # write faults left (None: until cleared)
        self.read_times: int | None = None
        self.failed = 0
        real = sqlite3.connect

        def connect(*args, **kwargs):
            if self.open_fault:
                raise sqlite_error(*self.open_fault)
            return FaultyConnection(real(*args, **kwargs), self)

        monkeypatch.setattr(outbox_module.sqlite3, "connect", connect)


@pytest.fixture
def disk(monkeypatch) -> FaultyDisk:
    return FaultyDisk(monkeypatch)


def stored(path: str) -> list[tuple[int, bytes]]:
    """(id, payload) of every row in the file, read with plain sqlite3 (not through the outbox)."""
    db = sqlite3.connect(path)
    try:
        return [(int(i), bytes(p)) for i, p in db.execute("SELECT id, payload FROM outbox ORDER BY id")]
    finally:
        db.close()


def inserted(path: str) -> int:
    """The highest id ever inserted into the file (its AUTOINCREMENT counter), read with plain sqlite3:
    0 when none was."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


# ------------------------------------------------------------------------ disk full, read-only, EIO
@pytest.mark.parametrize(("fault", "state"), [(FULL, "disk_full"), (READ_ONLY, "read_only"),
                                              (IO_ERROR, "io_error")])
def test_a_failing_disk_holds_packs_in_memory_and_recovers_by_itself(path, disk, caplog, fault, state):
    ob = Outbox(path)
    first = [ob.put("t/data", payload(i), 1, records=3) for i in range(5)]
    disk.write_fault = fault
    with caplog.at_level(logging.WARNING, logger="agent.outbox"):
        held = [ob.put("t/data", payload(i), 1, records=3) for i in range(5, 25)]  # never raises
        s = ob.stats()
        assert (s["state"], s["held_packs"], s["held_records"]) == (state, 20, 60)
        assert s["packs"] == 25 and s["records"] == 75 and fault[1] in s["error"]
        # everything can still be published, oldest first: the file's packs, then the held ones
        assert [p.id for p in ob.peek(100)] == first + held
        assert ob.ack(first[0]) and ob.ack(held[0])  # PUBACKs during the fault: never an exception
        assert [p.id for p in ob.peek(2)] == [first[1], first[2]]
        disk.write_fault = None
        ob.maintain()
    assert ob.state == "ok" and ob.stats()["held_packs"] == 0 and len(ob) == 23
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "held in memory" in errors[0].getMessage()  # once per change of state
    recovered = [r for r in caplog.records if "writable again" in r.getMessage()]
    assert len(recovered) == 1
    ob.close()
    assert [i for i, _ in stored(path)] == first[1:] + held[1:]  # the delete written late, the held stored


def test_fault_kinds_from_sqlite_codes_and_errno():
    assert fault_kind(sqlite_error(*FULL)) == "disk_full"
    assert fault_kind(sqlite_error(*READ_ONLY)) == "read_only"
    assert fault_kind(sqlite_error(*IO_ERROR)) == "io_error"
    assert fault_kind(sqlite_error(*MALFORMED)) == "corrupt"
    assert fault_kind(sqlite_error(26, "file is not a database")) == "corrupt"
    assert fault_kind(sqlite_error(1032, "attempt to write a readonly database")) == "moved"
    assert fault_kind(OSError(28, "No space left on device")) == "disk_full"
    assert fault_kind(OSError(30, "Read-only file system")) == "read_only"
    assert fault_kind(OSError(5, "Input/output error")) == "io_error"


def test_memory_hold_is_bounded_and_what_it_drops_is_counted_persistently(path, disk):
    ob = Outbox(path, memory_bytes=1000)
    disk.write_fault = FULL
    ids = [ob.put("t/data", payload(i, 100), 1, records=2) for i in range(30)]
    s = ob.stats()
    assert s["held_bytes"] <= 1000 and s["held_packs"] == len(ob.peek(100))
    dropped = 30 - s["held_packs"]
    assert dropped > 0 and s["memory_dropped_packs"] == dropped and s["memory_dropped_records"] == 2 * dropped
    assert [p.id for p in ob.peek(100)] == ids[dropped:]  # the newest are kept
    disk.write_fault = None
    ob.maintain()
    ob.close()
    again = Outbox(path)
    assert again.stats()["memory_dropped_records"] == 2 * dropped
    assert [i for i, _ in stored(path)] == ids[dropped:]
    again.close()


def test_cannot_open_at_start_then_the_file_appears(path, disk):
    disk.open_fault = (14, "unable to open database file")
    ob = Outbox(path)
    assert ob.state == "cannot_open"
    ids = [ob.put("t/data", payload(i), 1, 1) for i in range(3)]
    assert [p.id for p in ob.peek(10)] == ids
    disk.open_fault = None
    generation = ob.generation
    ob.maintain()
    assert ob.state == "ok" and ob.generation == generation + 1
    ob.close()
    assert [i for i, _ in stored(path)] == ids


def test_a_file_opened_late_keeps_its_packs_first_and_stale_acks_delete_nothing(path, disk):
    ob = Outbox(path)
    old = [ob.put("t/data", payload(i), 1, 1) for i in range(5)]  # a backlog from the last run
    ob.close()
    disk.open_fault = (14, "unable to open database file")
    ob = Outbox(path)
    held = [ob.put("t/data", payload(10 + i), 1, 1) for i in range(3)]
    assert held == [1, 2, 3], "with no file, ids start at 1 and collide with the file's"
    before = ob.generation
    disk.open_fault = None
    ob.maintain()
    assert ob.state == "ok" and ob.generation == before + 1
    assert not ob.ack(1, generation=before), "a PUBACK for held pack 1 must not delete the file's pack 1"
    packs = ob.peek(10)
    assert [p.id for p in packs][:5] == old, "the older packs of the file come first"
    assert [p.payload for p in packs[5:]] == [payload(10 + i) for i in range(3)]
    ob.close()
    assert len(stored(path)) == 8


def test_a_dead_disk_is_not_mistaken_for_damage(path, disk):
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 2) for i in range(4)]
    disk.read_fault = IO_ERROR  # every read fails: salvage would find nothing, so nothing is moved
    for _ in range(outbox_module._READ_FAILURES + 2):
        assert ob.peek(10) == []
    assert ob.stats()["corrupt_resets"] == 0 and ob.state == "io_error"
    disk.read_fault = None
    assert [p.id for p in ob.peek(10)] == ids
    ob.close()


def test_a_transient_read_error_returns_nothing_until_it_reads_again(path, disk):
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 1) for i in range(3)]
    disk.read_fault = IO_ERROR
    assert ob.peek(10) == []  # never the newer held packs before the unread older ones
    disk.read_fault = None
    assert [p.id for p in ob.peek(10)] == ids
    ob.close()


def test_reads_that_keep_failing_are_salvaged(path, disk, caplog):
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 2) for i in range(4)]
    disk.read_fault, disk.read_times = IO_ERROR, outbox_module._READ_FAILURES  # then reads work again
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        for _ in range(outbox_module._READ_FAILURES):
            assert ob.peek(10) == []
    assert ob.stats()["corrupt_resets"] == 1 and "salvaged" in caplog.text
    assert [p.id for p in ob.peek(10)] == ids and ob.stats()["lost_packs"] == 0
    ob.close()


# ------------------------------------------------------------------------------ a damaged file
def fill(path: str, n: int, size: int = 300, records: int = 3) -> dict[int, bytes]:
    ob = Outbox(path)
    packs = {}
    for i in range(n):
        data = payload(i, size)
        packs[ob.put("t/data", data, 1, records)] = data
    ob.close()
    return packs


def leaf_pages(path: str, table: str = "outbox") -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [int(p) for (p,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,))]
    finally:
        db.close()


def damage(path: str, page: int, fill_byte: int = 0x5A) -> None:
    """Overwrite one page of the file (4096 bytes) with garbage, as a bad SD card sector would."""
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(bytes([fill_byte]) * 4096)


def test_one_damaged_page_loses_only_its_packs_and_they_are_counted(path, caplog):
    packs = fill(path, 200, size=300, records=3)
    leaves = leaf_pages(path)
    assert len(leaves) > 10
    damage(path, leaves[len(leaves) // 2])
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        ob = Outbox(path)
    s = ob.stats()
    got = {p.id: p.payload for p in ob.peek(1000)}
    lost = sorted(set(packs) - set(got))
    assert 0 < len(lost) < 30, "one leaf page holds a few packs, not %d" % len(lost)
    assert lost == list(range(lost[0], lost[-1] + 1)), "a leaf page holds consecutive ids"
    assert all(got[i] == packs[i] for i in got), "salvaged packs are byte-identical"
    assert (s["corrupt_resets"], s["lost_packs"], s["lost_records"]) == (1, len(lost), 3 * len(lost))
    assert "corrupt" in caplog.text and "salvaged" in caplog.text and "moved aside" in caplog.text
    aside = [n for n in os.listdir(os.path.dirname(path)) if ".corrupt-" in n]
    assert aside, "the damaged file is kept for inspection"
    new_id = ob.put("t/data", payload(999), 1, 1)
    assert new_id > max(packs), "ids are never reused"
    ob.close()
    again = Outbox(path)  # the fresh file is sound and remembers the loss
    assert again.stats()["lost_packs"] == len(lost) and again.stats()["corrupt_resets"] == 1
    assert len(again) == len(got) + 1
    again.close()


def test_two_damaged_pages_and_a_damaged_first_leaf(path):
    packs = fill(path, 300, size=200, records=1)
    leaves = leaf_pages(path)
    for page in (leaves[0], leaves[len(leaves) // 3], leaves[2 * len(leaves) // 3]):
        damage(path, page, 0x00)
    ob = Outbox(path)
    got = {p.id for p in ob.peek(1000)}
    lost = set(packs) - got
    assert got and lost and ob.stats()["lost_packs"] == len(lost) and len(lost) < 60
    assert max(packs) in got and min(packs) in lost
    ob.close()


def test_a_page_that_is_garbled_but_looks_valid_gives_no_garbage_packs(path):
    packs = fill(path, 60, size=300)
    leaf = leaf_pages(path)[3]
    with open(path, "r+b") as f:  # keep the page header, garble the cell contents at the end of the page
        f.seek((leaf - 1) * 4096 + 2048)
        f.write(b"\xff" * 2048)
    ob = Outbox(path)
    for p in ob.peek(1000):
        assert p.payload == packs[p.id], "a garbled row was published"
    assert ob.stats()["lost_packs"] == len(packs) - len(ob)
    ob.close()


def test_corruption_found_at_run_time_is_salvaged(path, disk, caplog):
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 2) for i in range(5)]
    disk.write_fault, disk.times = MALFORMED, 1  # the next write meets "malformed", once
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        ids.append(ob.put("t/data", payload(5), 1, 2))
    s = ob.stats()
    assert (s["corrupt_resets"], s["lost_packs"], s["state"], s["held_packs"]) == (1, 0, "ok", 0)
    assert [p.id for p in ob.peek(10)] == ids and "salvaged" in caplog.text
    ob.close()
    assert [i for i, _ in stored(path)] == ids


def test_not_a_database_at_all(path, caplog):
    with open(path, "wb") as f:
        f.write(b"this is not an sqlite database at all" * 200)
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        ob = Outbox(path)
    assert ob.stats()["corrupt_resets"] == 1 and len(ob) == 0
    assert "unknown" in caplog.text  # nothing says how many packs it held
    ob.close()


# ---------------------------------------------------------------------- deleted or replaced file
def test_a_deleted_outbox_is_noticed_at_the_next_pack_and_nothing_is_lost(path, caplog):
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 2) for i in range(5)]
    ob.ack(ids[0])
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(path + ext):
            os.remove(path + ext)
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        ids.append(ob.put("t/data", payload(5), 1, 2))
    assert "was deleted while in use" in caplog.text
    assert os.path.exists(path)
    s = ob.stats()
    assert (s["file_lost"], s["lost_packs"], s["packs"]) == (1, 0, 5)
    ob.close()
    assert [i for i, _ in stored(path)] == ids[1:]


def test_a_replaced_outbox_is_moved_aside_and_ours_carried_over(path, tmp_path, caplog):
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 2) for i in range(4)]
    other = str(tmp_path / "other.sqlite")
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE stranger (x)")
    db.commit()
    db.close()
    os.replace(other, path)
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        ids.append(ob.put("t/data", payload(4), 1, 2))
    assert "replaced by another file" in caplog.text
    kept = [n for n in os.listdir(tmp_path) if ".replaced-" in n]
    assert kept, "the replacing file is kept"
    assert ob.stats()["file_lost"] == 1
    ob.close()
    assert [i for i, _ in stored(path)] == ids


def test_a_deleted_folder_is_made_again(tmp_path):
    folder = tmp_path / "state"
    path = str(folder / "outbox.sqlite")
    ob = Outbox(path)
    ids = [ob.put("t/data", payload(i), 1, 1) for i in range(3)]
    for name in os.listdir(folder):
        os.remove(folder / name)
    folder.rmdir()
    ids.append(ob.put("t/data", payload(3), 1, 1))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert ob.stats()["file_lost"] == 1
    ob.close()
    assert [i for i, _ in stored(path)] == ids


# ----------------------------------------------------------------------------- lock and modes
def test_a_second_outbox_on_the_same_file_is_refused_with_the_pid(path):
    ob = Outbox(path)
    with pytest.raises(OutboxInUse, match="outbox %s is in use by pid %d" % (path, os.getpid())):
        Outbox(path)
    ob.close()
    Outbox(path).close()  # released on close


def test_a_second_process_is_refused_and_the_lock_dies_with_its_holder(path):
    code = ("import sys, time; from agent.outbox import Outbox; o = Outbox(sys.argv[1]); "
            "print('ok', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(OutboxInUse, match="in use by pid %d" % holder.pid):
            Outbox(path)
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout:
            holder.stdout.close()
    Outbox(path).close()  # a killed holder's lock is gone with it


def test_outbox_files_are_0600_in_a_0700_folder(tmp_path):
    old = os.umask(0o022)
    try:
        path = str(tmp_path / "var" / "fieldlink" / "outbox.sqlite")
        ob = Outbox(path)
        ob.put("t/data", payload(1), 1, 1)
        folder = os.path.dirname(path)
        modes = {name: stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
                 for name in os.listdir(folder)}
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert set(modes) >= {"outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm", "outbox.sqlite.lock"}
        assert all(m == 0o600 for m in modes.values()), modes
        ob.close()
    finally:
        os.umask(old)


def test_an_existing_readable_outbox_is_tightened(path):
    Outbox(path).close()
    os.chmod(path, 0o644)
    Outbox(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
