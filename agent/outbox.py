"""The durable outbox: every pack is committed here before it is published, and leaves only on PUBACK.

SQLite in WAL mode, one row per pack, oldest first by a monotonically increasing id. The outbox is
bounded by the sum of payload sizes; when a new pack would exceed the bound, the oldest packs are
dropped first and counted (packs, bytes, readings) in a small `meta` table that survives restarts.

fsync policy (`OutboxConfig.fsync`), see docs/store-and-forward.md:

* ``full``   -- ``PRAGMA synchronous=FULL``: the WAL is fsynced at every commit. A pack `put()` has
  returned for survives a process crash, a kernel panic and a power cut.
* ``normal`` -- ``PRAGMA synchronous=NORMAL`` (the WAL default): a commit is written to the WAL but
  fsynced only at checkpoints. It survives a process crash (SIGKILL, OOM kill: the bytes are in the
  OS page cache); a power cut may lose the commits since the last checkpoint, never the consistency
  of the database.

A file that is not a readable database (or fails ``PRAGMA quick_check``) is moved aside as
``<path>.corrupt-<unix time>`` with an error in the log and a fresh outbox is started; the count of
such resets is kept (``corrupt_resets``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import NamedTuple

log = logging.getLogger(__name__)

FSYNC_POLICIES = {"full": "FULL", "normal": "NORMAL"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_DROP_LOG_INTERVAL = 60.0  # seconds between "outbox full" warnings
_UPSERT_META = (
    "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)

_COUNTERS = ("dropped_packs", "dropped_bytes", "dropped_records", "corrupt_resets")


class Pack(NamedTuple):
    """One stored pack, as `peek()` returns it."""

    id: int
    topic: str
    payload: bytes
    qos: int
    records: int


class OutboxError(Exception):
    """The outbox could not store a pack (disk full, read-only file system, ...)."""


class Outbox:
    """A bounded, durable FIFO of MQTT packs. Thread-safe: one connection behind one lock."""

    def __init__(self, path: str, max_bytes: int = 64 * 1024 * 1024, fsync: str = "normal") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError("outbox fsync must be one of %s, not %r" % (sorted(FSYNC_POLICIES), fsync))
        if max_bytes <= 0:
            raise ValueError("outbox max_bytes must be positive, not %r" % max_bytes)
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._bytes = 0
        self._count = 0
        self._records = 0
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._last_drop_log = -_DROP_LOG_INTERVAL
        self._open()

    # -- opening, checking, moving a corrupt file aside ------------------------------------------

    def _open(self) -> None:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            self._move_aside(str(exc))
            self._connect()
            self._bump("corrupt_resets", 1)

    def _connect(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=%s" % FSYNC_POLICIES[self.fsync])
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError("quick_check: %s" % (row[0] if row else "no answer"))
            db.executescript(_SCHEMA)
            counters = dict.fromkeys(_COUNTERS, 0)
            for key, value in db.execute("SELECT key, value FROM meta"):
                if key in counters:
                    counters[key] = int(value)
            count, size, records = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(SUM(records), 0) FROM outbox"
            ).fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        self._db = db
        self._counters = counters
        self._count, self._bytes, self._records = int(count), int(size), int(records)

    def _move_aside(self, reason: str) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        if self.path == ":memory:":
            return
        aside = "%s.corrupt-%d" % (self.path, int(time.time()))
        log.error(
            "outbox %s is corrupt (%s): moved aside to %s, starting a fresh outbox; "
            "the packs in it are not published", self.path, reason, aside,
        )
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)

    def _reset_after_corruption(self, exc: sqlite3.DatabaseError) -> None:
        self._move_aside(str(exc))
        self._connect()
        self._bump("corrupt_resets", 1)

    def _bump(self, key: str, n: int) -> None:
        """Add to a persistent counter (inside the caller's transaction, if any)."""
        assert self._db is not None
        self._counters[key] += n
        self._db.execute(_UPSERT_META, (key, self._counters[key]))

    # -- the FIFO ---------------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1, records: int = 0) -> int:
        """Commit one pack (durably, per the fsync policy) and return its id.

        If the outbox would exceed `max_bytes`, the oldest packs are dropped first, in the same
        transaction, and counted. A single payload larger than `max_bytes` is itself dropped and
        counted (returns 0).
        """
        payload = bytes(payload)
        with self._lock:
            try:
                return self._put(topic, payload, qos, records)
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise OutboxError("outbox %s: cannot store a pack: %s" % (self.path, exc)) from exc
                self._reset_after_corruption(exc)
                return self._put(topic, payload, qos, records)

    def _put(self, topic: str, payload: bytes, qos: int, records: int) -> int:
        db = self._db
        assert db is not None
        size = len(payload)
        db.execute("BEGIN IMMEDIATE")
        try:
            if size > self.max_bytes:
                log.warning("outbox: a pack of %d bytes exceeds max_bytes=%d: dropped", size, self.max_bytes)
                self._bump("dropped_packs", 1)
                self._bump("dropped_bytes", size)
                self._bump("dropped_records", records)
                db.execute("COMMIT")
                return 0
            need = self._bytes + size - self.max_bytes
            freed = dropped = dropped_records = 0
            if need > 0:
                cursor = db.execute("SELECT id, LENGTH(payload), records FROM outbox ORDER BY id")
                last = 0
                for row_id, length, n in cursor:
                    if freed >= need:
                        break
                    last = row_id
                    freed += length
                    dropped += 1
                    dropped_records += n
                cursor.close()
                db.execute("DELETE FROM outbox WHERE id <= ?", (last,))
                self._bump("dropped_packs", dropped)
                self._bump("dropped_bytes", freed)
                self._bump("dropped_records", dropped_records)
            cur = db.execute(
                "INSERT INTO outbox(topic, payload, qos, records, created) VALUES(?, ?, ?, ?, ?)",
                (topic, payload, qos, records, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if dropped and time.monotonic() - self._last_drop_log >= _DROP_LOG_INTERVAL:
            self._last_drop_log = time.monotonic()
            c = self._counters
            log.warning("outbox full (%d bytes): dropping the oldest packs; %d packs (%d readings) dropped "
                        "so far", self.max_bytes, c["dropped_packs"], c["dropped_records"])
        self._bytes += size - freed
        self._count += 1 - dropped
        self._records += records - dropped_records
        return int(cur.lastrowid or 0)

    def peek(self, n: int, after: int = 0) -> list[Pack]:
        """Up to `n` packs, oldest first, with an id greater than `after`."""
        with self._lock:
            assert self._db is not None
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos, records FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after, n),
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                self._reset_after_corruption(exc)
                return []
        return [Pack(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), int(r[4])) for r in rows]

    def ack(self, pack_id: int) -> bool:
        """Delete a pack the broker acknowledged; False if it was already gone (dropped, acked)."""
        with self._lock:
            assert self._db is not None
            try:
                row = self._db.execute(
                    "SELECT LENGTH(payload), records FROM outbox WHERE id = ?", (pack_id,)
                ).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM outbox WHERE id = ?", (pack_id,))
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                self._reset_after_corruption(exc)
                return False
            if row is None:
                return False
            self._bytes -= int(row[0])
            self._records -= int(row[1])
            self._count -= 1
            return True

    # -- small persistent settings (the birth sequence number) -----------------------------------

    def get_meta(self, key: str, default: int = 0) -> int:
        """A persistent integer stored next to the packs (not one of the drop counters)."""
        with self._lock:
            assert self._db is not None
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", ("x." + key,)).fetchone()
        return default if row is None else int(row[0])

    def set_meta(self, key: str, value: int) -> None:
        """Store a persistent integer (committed before returning)."""
        with self._lock:
            assert self._db is not None
            self._db.execute(_UPSERT_META, ("x." + key, int(value)))

    # -- what health reports ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """Bytes of payload currently stored."""
        return self._bytes

    def stats(self) -> dict:
        """Counters for the health message: packs, bytes, buffered readings, what was dropped."""
        with self._lock:
            out = {"packs": self._count, "bytes": self._bytes, "records": self._records,
                   "max_bytes": self.max_bytes, "fsync": self.fsync}
            out.update(self._counters)
        return out

    def close(self) -> None:
        """Checkpoint and close; safe to call twice."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


__all__ = ["FSYNC_POLICIES", "Outbox", "OutboxError", "Pack"]
