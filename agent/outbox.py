"""The durable outbox: every pack is committed here before it is published (with ``fsync = normal``, one the
broker acknowledges at once excepted: below), and leaves only on PUBACK.

SQLite in WAL mode, one row per pack, oldest first by an increasing id the outbox assigns itself. The
outbox is bounded by the sum of payload sizes; when a new pack would exceed the bound, the oldest packs
are dropped first and counted (packs, bytes, readings) in a small `meta` table that survives restarts.

fsync policy (`fsync`), see docs/store-and-forward.md:

* ``full``   -- ``PRAGMA synchronous=FULL``: the WAL is fsynced at every commit. A pack `put()` has
  returned for survives a process crash, a kernel panic and a power cut.
* ``normal`` -- ``PRAGMA synchronous=NORMAL`` (the WAL default): a commit is written to the WAL but not
  fsynced; the outbox fsyncs the WAL itself within ``sync_every`` seconds of a commit (default 1 s, from
  `maintain()` on the uplink's batch thread, never holding the outbox's lock: one fsync a second at the
  most, none while nothing is written). It survives a process crash; a power cut may lose the commits of
  the last ``sync_every`` seconds, never the consistency of the database. ``sync_every = 0``: SQLite's
  own fsyncs at checkpoints only (a power cut may then lose every commit since the last checkpoint).

Faults never reach the caller (docs/store-and-forward.md, "Faults"):

* **Disk full, read-only, I/O error, cannot open**: new packs are *held in memory* (up to
  `memory_bytes`, oldest dropped and counted beyond it) and can still be published from there; deletes
  that could not be written are remembered. The state is logged once when it starts and once when it
  ends; a write is retried after 1 s, doubling up to 15 s (`maintain()`), and the held packs are stored
  as soon as one succeeds.
* **A damaged file** (not a database, `PRAGMA quick_check` fails at open, "malformed" at run time): the
  file is moved aside as ``<path>.corrupt-<unix time>``, every readable pack is salvaged into a fresh
  file (agent/outbox_salvage.py) and the packs that could not be read are counted (`lost_packs`,
  `lost_records`; the file's own `live_*` totals say how many there were).
* **A deleted or replaced file** is noticed at the next `put()` (every closed batch): the packs are
  read back through the connection that still holds the old file and written to a fresh file at the path
  (a replacing file is moved aside as ``<path>.replaced-<unix time>``); counted in `file_lost`.

**A PUBACK that empties the outbox** (an idle uplink's pack, the common case): its delete is not
committed on its own but with the next write, normally the next pack a `linger` later, else by
`maintain()` within `DELETE_DELAY` s, or at `close()`. This saves a transaction per pack; a crash in
between sends that one pack again after the restart (nothing else is in flight then: docs/payload.md,
"Deduplication"). A PUBACK that leaves packs in the outbox (a backlog) commits its delete at once.

**A pack the broker acknowledges at once is never written** (``fsync = normal`` only): a pack `put` with
``defer`` (the uplink's, connected and publishing it at once) into an otherwise empty outbox is
kept in memory, published from there like any other, and leaves on its PUBACK without touching the file.
It is written when the next write comes (a pack into a backlog, a delete, a counter: it goes first, so
the order holds) or when `maintain()` finds it still unacknowledged, within ``write_within`` s
(``sync_every``, or ``DELETE_DELAY`` when that is 0), or at `close()`. So a connected gateway writes and
fsyncs nothing per pack (an SD card's wear, and most of a pack's CPU); what a power cut may cost is
unchanged (the last ``sync_every`` s either way), and a crash of the process may now also cost the pack
that was waiting for its PUBACK (milliseconds, with a broker that answers), as a power cut already could.
``fsync = full`` writes every pack before it is published, as before.

One process per outbox: `<path>.lock` is locked at open (agent/lockfile.py); a second one gets
`OutboxInUse` ("outbox PATH is in use by pid N"). The folder is created 0700 and every file 0600
(agent/private.py); SQLite gives its `-wal` and `-shm` files the database file's mode.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from agent.lockfile import InUseError, OutboxLock
from agent.outbox_salvage import salvage
from agent.private import PrivateFileError, private_dir, private_file

log = logging.getLogger(__name__)

FSYNC_POLICIES = {"full": "FULL", "normal": "NORMAL"}
DELETE_DELAY = 1.0  # seconds `maintain()` leaves the delete of the PUBACK that emptied the outbox unwritten
SYNC_EVERY = 1.0  # fsync `normal`: the WAL is fsynced within this many seconds of a commit
OutboxInUse = InUseError

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
_RETRY_FIRST, _RETRY_MAX = 1.0, 15.0  # seconds between write attempts while the disk fails
_READ_FAILURES = 3  # failed reads, at least _READ_SPACING s apart, after which the file is salvaged
_READ_SPACING = 2.0
_UPSERT_META = (
    "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)

#: persistent counters (health `outbox.*`): the byte bound's drops, packs dropped from the memory hold,
#: packs a damaged or deleted file cost, corrupt files moved aside, deleted/replaced files noticed, failed
#: fsyncs of the WAL
COUNTERS = ("dropped_packs", "dropped_bytes", "dropped_records", "memory_dropped_packs",
            "memory_dropped_records", "lost_packs", "lost_records", "corrupt_resets", "file_lost",
            "sync_failures")

# SQLite primary result codes (sqlite3.h) and the extended code for a file moved or deleted under us
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 8, 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB, _SQLITE_READONLY_DBMOVED = 14, 26, 1032
FAULTS = {"disk_full": "the disk is full", "read_only": "the file system is read-only",
          "io_error": "I/O error", "cannot_open": "cannot open the file"}


class Pack(NamedTuple):
    """One stored pack, as `peek()` returns it."""

    id: int
    topic: str
    payload: bytes
    qos: int
    records: int


class OutboxError(Exception):
    """The outbox cannot be used at all (a programming error, never a disk fault)."""


def fault_kind(exc: BaseException) -> str:
    """"corrupt", "moved", one of FAULTS, or "other" for an SQLite or OS error."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc).lower()
    if isinstance(exc, OSError):
        return {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                errno.EIO: "io_error"}.get(exc.errno or 0, "cannot_open")
    if code == _SQLITE_READONLY_DBMOVED:
        return "moved"
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return "corrupt"
    if primary == _SQLITE_FULL or "disk is full" in text:
        return "disk_full"
    if primary == _SQLITE_READONLY or "readonly" in text:
        return "read_only"
    if primary == _SQLITE_IOERR or "i/o error" in text:
        return "io_error"
    if primary == _SQLITE_CANTOPEN or "unable to open" in text:
        return "cannot_open"
    return "other"


class _Held(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    records: int
    created: float


class Outbox:
    """A bounded, durable FIFO of MQTT packs. Thread-safe: one connection behind one lock."""

    def __init__(self, path: str, max_bytes: int = 64 * 1024 * 1024, fsync: str = "normal",
                 memory_bytes: int = 8 * 1024 * 1024, sync_every: float = SYNC_EVERY) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError("outbox fsync must be one of %s, not %r" % (sorted(FSYNC_POLICIES), fsync))
        if max_bytes <= 0:
            raise ValueError("outbox max_bytes must be positive, not %r" % max_bytes)
        if memory_bytes < 0:
            raise ValueError("outbox memory_bytes must be >= 0, not %r" % memory_bytes)
        if not sync_every >= 0:
            raise ValueError("outbox sync_every must be >= 0, not %r" % sync_every)
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.memory_bytes = memory_bytes
        #: `normal` only: the WAL is fsynced within this many seconds of a commit (module docstring)
        self.sync_every = sync_every if fsync == "normal" and path != ":memory:" else 0.0
        #: when `maintain()` fsyncs the WAL next if something was committed by then (`_dirty`), else stops
        #: looking; None while nothing is written (the commit that ends the quiet calls `on_due`)
        self._sync_at: float | None = None
        self._dirty = False  # committed since the last fsync
        self._sync_failed = False
        #: called (under the outbox's lock, so cheap and non-blocking) when `due()` becomes earlier than the
        #: caller of `maintain()` can know: the first commit after a quiet stretch; the uplink wakes its
        #: batch thread with it
        self.on_due: Callable[[], None] | None = None
        self._lock = threading.RLock()
        self._file_lock = OutboxLock(path) if path != ":memory:" else None
        self._db: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we opened
        self._next_id = 1
        self._disk = [0, 0, 0]  # packs, bytes, readings in the file (acked ones included until deleted)
        # deleted but not yet on disk: id -> (bytes, readings), None when the row could not be read
        self._gone: dict[int, tuple[int, int] | None] = {}
        self._deferred_at: float | None = None  # when a delete was left for the next write (module doc)
        self._held: dict[int, _Held] = {}  # not on disk: stored when the disk works again
        #: `put` with `defer`: not written unless still unacknowledged by the next write or `maintain()`
        #: (module docstring); only while the outbox holds nothing else: one pack at most
        self._fresh: dict[int, _Held] = {}
        self._fresh_at: dict[int, float] = {}  # when (monotonic) each was kept unwritten
        #: `normal` only: how long an unwritten pack may wait for its PUBACK before it is written (0: never
        #: kept unwritten)
        self.write_within = (self.sync_every or DELETE_DELAY) if fsync == "normal" and path != ":memory:" \
            else 0.0
        self._fresh_look: float | None = None  # when `maintain()` writes the unwritten packs still there
        self._fresh_put = False  # a pack was kept unwritten since that look was set
        self._held_bytes = 0
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._meta: dict[str, int] = {}  # x.* keys (get_meta / set_meta)
        self._unsaved: set[str] = set()  # counters and meta keys changed since the last commit
        self._fault: tuple[str, str] | None = None  # (kind, text) while the disk fails
        self._fault_since = 0.0
        self._retry_at = 0.0
        self._retry_delay = _RETRY_FIRST
        self._read_failures = 0
        self._read_counted_at = -_READ_SPACING
        self._memory_full_logged = False
        self._last_drop_log = -_DROP_LOG_INTERVAL
        #: bumped when packs older than some already returned by `peek` may have appeared (a file that
        #: could only be opened late); a reader then peeks from the start again
        self.generation = 0
        self._open()

    # -- opening, checking, salvaging ------------------------------------------------------------

    def _open(self) -> None:
        """Lock, create the folder and file privately, connect; a damaged file is salvaged.

        InUseError and PrivateFileError (a folder others may write) propagate: the agent must not
        start. A disk fault leaves the outbox in memory until `maintain()` can open the file."""
        try:
            self._prepare()
            self._connect()
        except (InUseError, PrivateFileError):
            raise
        except (sqlite3.Error, OSError) as exc:
            kind = fault_kind(exc)
            if isinstance(exc, sqlite3.Error) and kind == "corrupt":
                self._recover_corrupt(str(exc), at_open=True)
            elif isinstance(exc, sqlite3.Error) or kind in FAULTS:
                self._set_fault(kind if kind in FAULTS else "cannot_open", str(exc))
            else:
                raise

    def _prepare(self) -> None:
        if self.path == ":memory:":
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        private_dir(folder)  # created 0700; PrivateFileError when others may write into it
        assert self._file_lock is not None
        if not self._file_lock.held:
            self._file_lock.acquire()
        elif not self._file_lock.still_ours():
            self._file_lock.renew()
        private_file(self.path)  # 0600 before SQLite opens it (an empty file is an empty database)

    def _connect(self) -> int:
        """Open the file at the path; returns the first id it has not used."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=%s" % FSYNC_POLICIES[self.fsync])
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                first = str(row[0]).splitlines()[0][:200] if row else "no answer"
                raise sqlite3.DatabaseError("database disk image is malformed (quick_check: %s)" % first)
            db.executescript(_SCHEMA)
            meta = {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
            count, size, records, top = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(SUM(records), 0), "
                "COALESCE(MAX(id), 0) FROM outbox").fetchone()
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        except BaseException:
            db.close()
            raise
        self._db = db
        self._ident = _identity(self.path) if self.path != ":memory:" else None
        self._disk = [int(count), int(size), int(records)]
        first_free = max(int(top) + 1, (int(seq[0]) + 1) if seq else 1)
        self._next_id = max(self._next_id, first_free)
        for key in COUNTERS:
            if key not in self._unsaved:
                self._counters[key] = max(self._counters[key], meta.get(key, 0))
        for key, value in meta.items():
            if key.startswith("x.") and key not in self._unsaved:
                self._meta[key] = value
        return first_free

    def _move_aside(self, suffix: str) -> str:
        aside = "%s.%s-%d" % (self.path, suffix, int(time.time()))
        for ext in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + ext, aside + ext)
            except FileNotFoundError:
                pass
        return aside

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _recover_corrupt(self, reason: str, at_open: bool = False) -> None:
        """Move a damaged file aside, salvage every readable pack into a fresh one, count the rest."""
        expected = None if at_open else (self._disk[0] - len(self._gone), self._disk[2] - sum(
            g[1] for g in self._gone.values() if g))
        self._close_db()
        if self.path == ":memory:":
            aside = ":memory:"
        else:
            aside = self._move_aside("corrupt")
        packs: list[tuple] = []
        meta: dict[str, int] | None = None
        damaged = 0
        if aside != ":memory:":
            try:
                src = sqlite3.connect(aside, isolation_level=None)
                try:
                    found = salvage(src)
                finally:
                    src.close()
                packs, meta, damaged = found.packs, found.meta, found.damaged + found.undecodable
            except sqlite3.Error:
                pass
        packs = [p for p in packs if p[0] not in self._gone]
        if meta is not None:
            for key in COUNTERS:
                self._counters[key] = max(self._counters[key], meta.get(key, 0))
            for key, value in meta.items():
                if key.startswith("x.") and key not in self._meta:
                    self._meta[key] = value
            if expected is None:
                expected = (meta.get("live_packs", len(packs)), meta.get("live_records", 0))
        lost_packs = lost_records = 0
        if expected is not None:
            lost_packs = max(0, expected[0] - len(packs))
            lost_records = max(0, expected[1] - sum(p[4] for p in packs))
        self._gone.clear()
        self._bump("corrupt_resets", 1)
        self._bump("lost_packs", lost_packs)
        self._bump("lost_records", lost_records)
        self._disk = [0, 0, 0]
        self._restore(packs)
        unknown = "" if expected is not None else (
            "; how many packs were lost is unknown: the outbox's own counters were damaged too (%d damaged "
            "stretches seen)" % damaged)
        log.error("outbox %s is corrupt (%s): moved aside to %s; %d packs (%d readings) salvaged into a "
                  "fresh outbox, %d packs (%d readings) could not be read and are lost%s", self.path, reason,
                  aside, len(packs), sum(p[4] for p in packs), lost_packs, lost_records, unknown)

    def _restore(self, packs: list[tuple]) -> None:
        """Open a fresh file at the path and write `packs` (ids kept) and the counters into it."""
        try:
            self._prepare()
            self._connect()
            self._commit([(p[0], _Held(p[1], p[2], p[3], p[4], p[5])) for p in packs], full=True)
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, InUseError):
                log.error("outbox %s: %s; keeping the packs in memory", self.path, exc)
            self._fresh_to_held()
            for p in packs:  # nowhere to write them: they wait in memory like any pack on a failing disk
                self._held[p[0]] = _Held(p[1], p[2], p[3], p[4], p[5])
                self._held_bytes += len(p[2])
            self._held = dict(sorted(self._held.items()))
            self._next_id = max([self._next_id, *(p[0] + 1 for p in packs)])
            kind = fault_kind(exc)
            self._set_fault(kind if kind in FAULTS else "cannot_open", str(exc))

    def _check_file(self) -> bool:
        """Notice a deleted or replaced outbox file and carry our packs over to a fresh one (True)."""
        if self._db is None or self.path == ":memory:":
            return False
        try:
            ident = _identity(self.path)
        except FileNotFoundError:
            how = "deleted"
        except OSError:
            return False  # cannot tell (an I/O error): the next write will say what is wrong
        else:
            if ident == self._ident:
                return False
            how = "replaced by another file"
        old = self._db
        found = salvage(old)  # the connection still holds the file we wrote
        self._close_db()
        aside = ""
        if how != "deleted":
            aside = self._move_aside("replaced")
        else:
            for ext in ("-wal", "-shm"):  # a stale WAL must never be applied to the new file
                try:
                    os.replace(self.path + ext, "%s.deleted-%d%s" % (self.path, int(time.time()), ext))
                except FileNotFoundError:
                    pass
        packs = [p for p in found.packs if p[0] not in self._gone]
        expected = self._disk[0] - len(self._gone)
        records = self._disk[2] - sum(g[1] for g in self._gone.values() if g)
        lost_packs = max(0, expected - len(packs))
        lost_records = max(0, records - sum(p[4] for p in packs))
        self._gone.clear()
        self._bump("file_lost", 1)
        self._bump("lost_packs", lost_packs)
        self._bump("lost_records", lost_records)
        self._disk = [0, 0, 0]
        log.error("outbox %s was %s while in use%s: %d packs (%d readings) carried over to a fresh file, %d "
                  "packs lost; is something cleaning up %s?", self.path, how,
                  " (the other file is kept as %s)" % aside if aside else "", len(packs),
                  sum(p[4] for p in packs), lost_packs, os.path.dirname(os.path.abspath(self.path)))
        self._restore(packs)
        return True

    # -- fault state -----------------------------------------------------------------------------

    def _set_fault(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if self._fault is None or self._fault[0] != kind:
            if self._fault is None:
                self._fault_since = now
                self._retry_delay = _RETRY_FIRST
                self._memory_full_logged = False
            log.error("outbox %s: %s (%s); new packs are held in memory (up to %d bytes) and the write is "
                      "retried; polling goes on", self.path, FAULTS.get(kind, kind), text, self.memory_bytes)
        self._fault = (kind, text)
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(_RETRY_MAX, self._retry_delay * 2)

    def _on_error(self, exc: sqlite3.Error, reading: bool = False) -> None:
        """Book a failed statement: salvage a damaged file, follow a moved one, else a disk fault."""
        kind = fault_kind(exc)
        if kind == "corrupt":
            self._recover_corrupt(str(exc))
            return
        if kind == "moved":
            if not self._check_file():
                self._set_fault("io_error", str(exc))  # SQLite says moved, the path says not: retry later
            return
        if reading and time.monotonic() - self._read_counted_at >= _READ_SPACING:
            self._read_counted_at = time.monotonic()
            self._read_failures += 1
            if self._read_failures >= _READ_FAILURES and self._db is not None:
                self._read_failures = 0
                found = salvage(self._db)
                if found.packs or self._disk[0] <= len(self._gone):  # damage, not a dead disk: salvage
                    self._recover_corrupt("reads keep failing: %s" % exc)
                    return
        self._set_fault(kind if kind in FAULTS else "io_error", str(exc))

    def _recovered(self) -> None:
        if self._fault is None:
            return
        kind = self._fault[0]
        c = self._counters
        log.warning("outbox %s: writable again after %.0f s (was: %s); %d packs held in memory are stored; "
                    "%d packs (%d readings) dropped from memory so far", self.path,
                    time.monotonic() - self._fault_since, FAULTS.get(kind, kind), len(self._held),
                    c["memory_dropped_packs"], c["memory_dropped_records"])
        self._fault = None
        self._read_failures = 0

    def maintain(self) -> None:
        """Retry a failing disk when its retry time has come; write a delete left for the next write
        once it waited `DELETE_DELAY` s; fsync the WAL once a commit waited `sync_every` s (the uplink's
        batch thread calls this when it wakes, and by `due()`)."""
        with self._lock:
            if self._fault is None:
                if self._deferred_at is not None and time.monotonic() - self._deferred_at >= DELETE_DELAY:
                    self._save_quietly()
            elif time.monotonic() >= self._retry_at:
                self._retry()
            now = time.monotonic()
            if self._fresh_look is not None and now >= self._fresh_look:
                if self._fresh and now - min(self._fresh_at.values()) >= self.write_within:
                    self._save_quietly()  # no PUBACK yet: written now (held in memory if the disk fails)
                    self._fresh_to_held()
                    if self._dirty:
                        self._sync_at = now  # and fsynced below: on disk `write_within` after its `put`
                # the oldest still unwritten is looked at when it is due; while packs keep coming and
                # leaving on their PUBACKs, one look every `write_within` serves them all
                if self._fresh:
                    self._fresh_look = min(self._fresh_at.values()) + self.write_within
                else:
                    self._fresh_look = now + self.write_within if self._fresh_put else None
                self._fresh_put = False
            if self._sync_at is None or now < self._sync_at:
                return
            if not self._dirty:
                self._sync_at = None  # a quiet stretch: the next commit says when
                return
            # commits from now on are fsynced at the next turn, `sync_every` from now: in a stream of
            # commits one wake-up and one fsync serve each period
            self._dirty = False
            self._sync_at = now + self.sync_every
        self._sync_wal()

    def due(self) -> float | None:
        """When (on time.monotonic()) `maintain()` has work: a delete left for the next write, a look at
        the unwritten packs or the WAL's fsync falls due; None when none waits (a failing disk is retried
        on the batch thread's tick)."""
        with self._lock:
            times = []
            if self._deferred_at is not None:
                times.append(self._deferred_at + DELETE_DELAY)
            if self._fresh_look is not None:
                times.append(self._fresh_look)
            if self._sync_at is not None:
                times.append(self._sync_at)
            return min(times) if times else None

    def _sync_wal(self) -> None:
        """fsync the WAL file (what SQLite's NORMAL leaves to its checkpoints): every commit written
        before this call is on disk after it. Outside the lock: a pack committed meanwhile is not held
        up by the disk, and is fsynced next time."""
        wal = self.path + "-wal"
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: every commit is in the database file already (checkpointed and fsynced)
        except OSError as exc:
            self._sync_trouble(wal, exc)
            return
        try:
            _datasync(fd)
        except OSError as exc:
            self._sync_trouble(wal, exc)
            return
        finally:
            os.close(fd)
        if self._sync_failed:
            self._sync_failed = False
            log.warning("outbox %s: the WAL is fsynced again", self.path)

    def _sync_trouble(self, wal: str, exc: OSError) -> None:
        with self._lock:
            self._bump("sync_failures", 1)
            self._dirty = True  # tried again at the next turn, `sync_every` on
        if not self._sync_failed:
            self._sync_failed = True
            log.warning("outbox %s: fsync of %s failed (%s): commits since then may not survive a power cut; "
                        "retried every %g s", self.path, wal, exc, self.sync_every)

    def _retry(self) -> None:
        if self._db is None:
            try:
                self._prepare()
                first_free = self._connect()
            except InUseError as exc:
                self._set_fault("cannot_open", str(exc))
                return
            except (sqlite3.Error, OSError) as exc:
                if isinstance(exc, sqlite3.Error) and fault_kind(exc) == "corrupt":
                    self._recover_corrupt(str(exc), at_open=True)
                    return
                kind = fault_kind(exc)
                self._set_fault(kind if kind in FAULTS else "cannot_open", str(exc))
                return
            if self._held and min(self._held) < first_free:  # ids the file already uses: renumber
                self._held = {first_free + i: p for i, p in enumerate(self._held.values())}
                self._next_id = max(self._next_id, first_free + len(self._held))
            self.generation += 1  # the file's packs are older than those held: read from the start again
        try:
            self._commit(list(self._held.items()), full=True)
        except sqlite3.Error as exc:
            self._on_error(exc)
            return
        self._recovered()
        self._held.clear()
        self._held_bytes = 0

    # -- writing -----------------------------------------------------------------------------------

    def _bump(self, key: str, n: int) -> None:
        if n:
            self._counters[key] += n
            self._unsaved.add(key)

    def _commit(self, packs: list[tuple[int, _Held]], full: bool = False) -> None:
        """One transaction: pending deletes, `packs`, changed counters and the live totals."""
        db = self._db
        if db is None:
            raise sqlite3.OperationalError("unable to open database file")
        if self._fresh:  # older than `packs`: written first, with them
            packs = [*self._fresh.items(), *packs]
        gone = dict(self._gone)
        known = all(v is not None for v in gone.values())
        packs_after = self._disk[0] - len(gone) + len(packs)
        records_after = (self._disk[2] - sum(v[1] for v in gone.values() if v)
                         + sum(p.records for _, p in packs))
        keys = set(COUNTERS) | set(self._meta) if full else set(self._unsaved)
        db.execute("BEGIN IMMEDIATE")
        try:
            if gone:
                db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in gone])
            if packs:
                db.executemany(
                    "INSERT INTO outbox(id, topic, payload, qos, records, created) VALUES(?, ?, ?, ?, ?, ?)",
                    [(i, p.topic, p.payload, p.qos, p.records, p.created) for i, p in packs])
            values = [(k, self._counters[k] if k in self._counters else self._meta[k]) for k in keys]
            values += [("live_packs", packs_after), ("live_records", records_after)]
            db.executemany(_UPSERT_META, values)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        self._unsaved.clear()
        self._fresh.clear()
        self._fresh_at.clear()
        self._read_failures = 0
        self._deferred_at = None
        if self.sync_every:
            self._dirty = True
            if self._sync_at is None:
                self._sync_at = time.monotonic() + self.sync_every
                if self.on_due is not None:
                    self.on_due()
        for i in gone:
            self._gone.pop(i, None)
        if known:
            self._disk = [packs_after, self._disk[1] - sum(v[0] for v in gone.values() if v)
                          + sum(len(p.payload) for _, p in packs), records_after]
        else:
            self._recount()
        if packs:
            self._next_id = max(self._next_id, max(i for i, _ in packs) + 1)

    def _recount(self) -> None:
        assert self._db is not None
        try:
            count, size, records = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(SUM(records), 0) FROM outbox"
            ).fetchone()
            self._disk = [int(count), int(size), int(records)]
        except sqlite3.Error:
            pass

    def _healthy(self) -> bool:
        return self._db is not None and self._fault is None

    # -- the FIFO ---------------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1, records: int = 0, defer: bool = False) -> int:
        """Commit one pack (durably, per the fsync policy) and return its id; never raises on a disk fault.

        If the outbox would exceed `max_bytes`, the oldest packs are dropped first and counted. A single
        payload larger than `max_bytes` is itself dropped and counted (returns 0). While the disk fails
        the pack is held in memory (see the module docstring). With `defer` (the caller publishes it at
        once) a pack into an otherwise empty outbox is written only if its PUBACK has not come by the next
        write or within `write_within` s (module docstring, `fsync = normal` only).
        """
        payload = bytes(payload)
        with self._lock:
            self._check_file()
            if self._fault is not None and time.monotonic() >= self._retry_at:
                self._retry()
            size = len(payload)
            if size > self.max_bytes:
                log.warning("outbox: a pack of %d bytes exceeds max_bytes=%d: dropped", size, self.max_bytes)
                self._bump("dropped_packs", 1)
                self._bump("dropped_bytes", size)
                self._bump("dropped_records", records)
                self._save_quietly()
                return 0
            pack_id = self._next_id
            self._next_id += 1
            pack = _Held(topic, payload, qos, records, time.time())
            self._make_room(size)
            # only into an empty outbox (nothing in the file, held or unwritten): one at a time
            if defer and self.write_within and self._healthy() and not self._held and not self._fresh \
                    and self._disk[0] == len(self._gone):
                self._fresh[pack_id] = pack
                self._fresh_at[pack_id] = time.monotonic()
                self._fresh_put = True
                if self._fresh_look is None:  # the first after a quiet stretch: the look is news
                    self._fresh_look = time.monotonic() + self.write_within
                    if self.on_due is not None:
                        self.on_due()
                return pack_id
            if self._healthy():
                try:
                    self._commit([(pack_id, pack)])
                    return pack_id
                except sqlite3.Error as exc:
                    self._on_error(exc)
                    if self._healthy():  # salvaged or moved: the fresh file takes it
                        try:
                            self._commit([(pack_id, pack)])
                            return pack_id
                        except sqlite3.Error as again:
                            self._on_error(again)
            self._hold(pack_id, pack)
            return pack_id

    def _save_quietly(self) -> None:
        if self._healthy():
            try:
                self._commit([])
            except sqlite3.Error as exc:
                self._on_error(exc)

    def _logical(self) -> tuple[int, int, int]:
        gone = [v for v in self._gone.values() if v]
        fresh = self._fresh.values()
        memory_bytes = self._held_bytes + sum(len(p.payload) for p in fresh)
        memory_records = sum(p.records for p in self._held.values()) + sum(p.records for p in fresh)
        return (self._disk[0] - len(self._gone) + len(self._held) + len(fresh),
                self._disk[1] - sum(v[0] for v in gone) + memory_bytes,
                self._disk[2] - sum(v[1] for v in gone) + memory_records)

    def _make_room(self, size: int) -> None:
        need = self._logical()[1] + size - self.max_bytes
        if need <= 0:
            return
        freed = dropped = dropped_records = 0
        if self._db is not None and self._disk[0] > len(self._gone):
            try:
                for row_id, length, n in self._db.execute(
                        "SELECT id, LENGTH(payload), records FROM outbox ORDER BY id").fetchall():
                    if freed >= need:
                        break
                    if row_id in self._gone:
                        continue
                    self._gone[int(row_id)] = (int(length), int(n))
                    freed += length
                    dropped += 1
                    dropped_records += n
            except sqlite3.Error:
                pass  # unreadable now: drop from memory instead
        for held_id in list(self._held):
            if freed >= need:
                break
            pack = self._held.pop(held_id)
            self._held_bytes -= len(pack.payload)
            freed += len(pack.payload)
            dropped += 1
            dropped_records += pack.records
        self._bump("dropped_packs", dropped)
        self._bump("dropped_bytes", freed)
        self._bump("dropped_records", dropped_records)
        if dropped and time.monotonic() - self._last_drop_log >= _DROP_LOG_INTERVAL:
            self._last_drop_log = time.monotonic()
            c = self._counters
            log.warning("outbox full (%d bytes): dropping the oldest packs; %d packs (%d readings) dropped "
                        "so far", self.max_bytes, c["dropped_packs"], c["dropped_records"])

    def _fresh_to_held(self) -> None:
        """The unwritten packs could not be written (the disk fails): held in memory like any pack then,
        before anything newer (they are older)."""
        for pack_id, pack in self._fresh.items():
            self._held[pack_id] = pack
            self._held_bytes += len(pack.payload)
        self._fresh.clear()
        self._fresh_at.clear()

    def _hold(self, pack_id: int, pack: _Held) -> None:
        self._fresh_to_held()
        self._held[pack_id] = pack
        self._held_bytes += len(pack.payload)
        while self._held_bytes > self.memory_bytes and self._held:
            oldest = next(iter(self._held))
            gone = self._held.pop(oldest)
            self._held_bytes -= len(gone.payload)
            self._bump("memory_dropped_packs", 1)
            self._bump("memory_dropped_records", gone.records)
            if not self._memory_full_logged:
                self._memory_full_logged = True
                log.error("outbox %s: the disk still fails and the memory hold (%d bytes) is full: dropping "
                          "the oldest held packs (counted in outbox.memory_dropped_records)", self.path,
                          self.memory_bytes)

    def peek(self, n: int, after: int = 0) -> list[Pack]:
        """Up to `n` packs, oldest first, with an id greater than `after` (file first, then memory)."""
        with self._lock:
            out: list[Pack] = []
            if after >= self._next_id - 1:
                # every id given so far is below _next_id (renumbered packs too): nothing newer, and no
                # SELECT. The publisher asks on every turn of its loop, mostly when nothing came.
                return out
            if self._db is not None and self._disk[0] > len(self._gone):
                limit = n + len(self._gone)
                try:
                    rows = self._db.execute(
                        "SELECT id, topic, payload, qos, records FROM outbox WHERE id > ? "
                        "ORDER BY id LIMIT ?",
                        (after, limit)).fetchall()
                except sqlite3.Error as exc:
                    self._on_error(exc, reading=True)
                    return []  # in order or not at all: the held packs are newer than the unread ones
                out = [Pack(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), int(r[4])) for r in rows
                       if int(r[0]) not in self._gone][:n]
                if len(rows) == limit:
                    return out
            for memory in (self._held, self._fresh):  # never both at once: held ones first all the same
                for pack_id, p in memory.items():
                    if len(out) >= n:
                        break
                    if pack_id > after:
                        out.append(Pack(pack_id, p.topic, p.payload, p.qos, p.records))
            return out

    def ack(self, pack_id: int, generation: int | None = None) -> bool:
        """Delete a pack the broker acknowledged; False if it was already gone. Never raises on a disk
        fault: a delete that cannot be written is remembered and written later. The delete of the pack
        that leaves the outbox empty is written with the next write (module docstring).

        With `generation` (the one the pack was peeked in), a PUBACK from before packs were renumbered
        is ignored: its id may name another pack now, which must not be deleted unsent."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return False
            if self._fresh.pop(pack_id, None) is not None:
                del self._fresh_at[pack_id]
                return True  # acknowledged before it was written: nothing to delete
            held = self._held.pop(pack_id, None)
            if held is not None:
                self._held_bytes -= len(held.payload)
                return True
            if pack_id in self._gone or self._db is None:
                return False
            try:
                row = self._db.execute("SELECT LENGTH(payload), records FROM outbox WHERE id = ?",
                                       (pack_id,)).fetchone()
            except sqlite3.Error:
                row = ()  # unreadable: delete it all the same, and count again afterwards
            if row is None:
                return False
            self._gone[pack_id] = (int(row[0]), int(row[1])) if row else None
            if self._fault is None and row and self._disk[0] == len(self._gone) and not self._held:
                self._deferred_at = time.monotonic()  # the outbox is empty: written with the next write
                return True
            if self._healthy():
                try:
                    self._commit([])
                except sqlite3.Error as exc:
                    self._on_error(exc)
            return True

    # -- small persistent settings (the birth sequence number) -----------------------------------

    def get_meta(self, key: str, default: int = 0) -> int:
        """A persistent integer stored next to the packs (not one of the counters)."""
        with self._lock:
            return self._meta.get("x." + key, default)

    def set_meta(self, key: str, value: int) -> None:
        """Store a persistent integer (committed before returning while the disk works)."""
        with self._lock:
            self._meta["x." + key] = int(value)
            self._unsaved.add("x." + key)
            self._save_quietly()

    # -- what health reports ----------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:  # `_logical()[0]` without its byte and reading sums (asked on every turn)
            return self._disk[0] - len(self._gone) + len(self._held) + len(self._fresh)

    @property
    def size(self) -> int:
        """Bytes of payload currently stored (in the file and held in memory)."""
        with self._lock:
            return self._logical()[1]

    @property
    def state(self) -> str:
        """"ok", or the fault the disk is in (one of FAULTS)."""
        return "ok" if self._fault is None else self._fault[0]

    def stats(self) -> dict:
        """Counters for the health message: packs, bytes, buffered readings, faults, what was dropped."""
        with self._lock:
            packs, size, records = self._logical()
            out = {"packs": packs, "bytes": size, "records": records, "max_bytes": self.max_bytes,
                   "fsync": self.fsync, "sync_every": self.sync_every, "state": self.state,
                   "error": None if self._fault is None else self._fault[1],
                   "held_packs": len(self._held), "held_bytes": self._held_bytes,
                   "held_records": sum(p.records for p in self._held.values()),
                   "memory_bytes": self.memory_bytes, "unsaved_deletes": len(self._gone),
                   "unwritten_packs": len(self._fresh), "write_within": self.write_within}
            out.update(self._counters)
        return out

    def close(self) -> None:
        """Store what is held if the disk allows, checkpoint, close, unlock; safe to call twice."""
        with self._lock:
            if self._fault is not None:
                self._retry()
            elif self._deferred_at is not None or self._unsaved or self._fresh:  # not written yet
                self._save_quietly()
            self._fresh_to_held()  # could not be written: counted with the held packs below
            if self._held:
                log.error("outbox %s: %d packs (%d readings) held in memory could not be stored (%s) and are "
                          "lost with this process", self.path, len(self._held),
                          sum(p.records for p in self._held.values()), self.state)
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
            self._close_db()
            if self._file_lock is not None:
                self._file_lock.release()


#: the WAL's data (and the size needed to read it back), as SQLite syncs it; fsync where there is no fdatasync
_datasync = getattr(os, "fdatasync", os.fsync)


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


__all__ = ["COUNTERS", "FAULTS", "FSYNC_POLICIES", "Outbox", "OutboxError", "OutboxInUse", "Pack",
           "fault_kind"]
