"""The command-id store: protocols.commands.IdMemory kept in a small SQLite file beside the outbox.

One row per remembered id: (key = CBOR of the id, digest of the command's bytes, until = POSIX seconds,
ack = the CBOR ack it finished with, empty while it runs). A row is committed (synchronous = FULL)
*before* its command is handed to its bus, so a command that was running when the power went is
answered "interrupted" after the restart, never run again. The file is 0600 in a 0700 folder
(agent/private.py). Expired rows are deleted as they are met, at most once a minute.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable

from agent.private import private_dir, private_file
from protocols.commands import Command, IdMemory

__all__ = ["IdStore", "PendingIdStore"]

log = logging.getLogger("fieldlink.commands")

_SCHEMA = "CREATE TABLE IF NOT EXISTS ids (key BLOB PRIMARY KEY, digest BLOB, until INTEGER, ack BLOB)"
_PURGE_EVERY = 60.0
#: an id is kept this long after its time passed: a clock that jumps ahead (a Pi that booted with the
#: time it last shut down and then gets NTP, or a forged NTP answer) must not forget an id whose command
#: could then be replayed (the board keeps its 32 ids until they are evicted: firmware_py/commands.py)
KEEP_AFTER = 7 * 86400


class IdStore:
    """IdMemory with every change written to SQLite; thread-safe (network thread and bus owners)."""

    def __init__(self, path: str, limit: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.memory = IdMemory(limit)
        self._lock = threading.Lock()
        private_dir(os.path.dirname(os.path.abspath(path)))
        private_file(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        horizon = int(clock()) - KEEP_AFTER
        rows = self._db.execute("SELECT key, digest, until, ack FROM ids").fetchall()
        interrupted = self.memory.load([list(r) for r in rows], horizon)
        self._db.execute("DELETE FROM ids WHERE until < ?", (horizon,))
        if interrupted:
            self._write_all()
            log.warning("event=commands_interrupted count=%d: commands were running when the agent stopped; "
                        "a repeat of one is answered \"interrupted\"", interrupted)
        self._purged = time.monotonic()
        self.loaded = len(self.memory.entries)

    def check(self, cmd: Command) -> bytes | None:
        """See IdMemory.check (None: new id; bytes: the original ack, b"" while it runs)."""
        with self._lock:
            self._purge()
            result: bytes | None = self.memory.check(cmd)
            return result

    def begin(self, cmd: Command, until: int) -> None:
        """Remember `cmd` as running, committed to disk before this returns."""
        with self._lock:
            before = self.memory.evicted
            row = self.memory.begin(cmd, until)
            if self.memory.evicted != before:
                self._write_all()
            else:
                self._put(row)

    def finish(self, cmd_id: object, ack: bytes) -> None:
        with self._lock:
            row = self.memory.finish(cmd_id, ack)
            if row:
                self._put(row)

    def forget(self, cmd_id: object) -> None:
        with self._lock:
            key = self.memory.forget(cmd_id)
            self._db.execute("DELETE FROM ids WHERE key = ?", (key,))

    def stats(self) -> dict:
        with self._lock:
            return {"ids": len(self.memory.entries), "ids_evicted": self.memory.evicted}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals ------------------------------------------------------------------------------

    def _put(self, row: list) -> None:
        self._db.execute("INSERT OR REPLACE INTO ids (key, digest, until, ack) VALUES (?, ?, ?, ?)",
                         (row[0], row[1], row[2], row[3]))

    def _write_all(self) -> None:
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM ids")
        self._db.executemany("INSERT INTO ids (key, digest, until, ack) VALUES (?, ?, ?, ?)",
                             [tuple(r) for r in self.memory.rows()])
        self._db.execute("COMMIT")

    def _purge(self) -> None:
        if time.monotonic() - self._purged < _PURGE_EVERY:
            return
        self._purged = time.monotonic()
        gone = self.memory.expire(int(self.clock()) - KEEP_AFTER)
        if gone:
            self._db.executemany("DELETE FROM ids WHERE key = ?", [(k,) for k in gone])


class PendingIdStore:
    """The id store while its file cannot be opened (a read-only or full file system at start).

    Polling must not stop for it, and at most once must hold: a command whose id cannot be recorded is
    refused ("no_store": `begin` raises), and every such command tries to open the file again, so
    commands work again as soon as the disk does."""

    def __init__(self, path: str, error: str, **options: object) -> None:
        self.path = path
        self.error = error
        self._options = options
        self._store: IdStore | None = None
        self.loaded = 0

    def _open(self) -> IdStore | None:
        if self._store is None:
            try:
                self._store = IdStore(self.path, **self._options)  # type: ignore[arg-type]
            except (sqlite3.Error, OSError) as exc:
                self.error = str(exc)
            else:
                log.warning("event=command_store_open path=%s: commands are accepted again", self.path)
        return self._store

    def check(self, cmd: Command) -> bytes | None:
        store = self._open()
        return store.check(cmd) if store is not None else None

    def begin(self, cmd: Command, until: int) -> None:
        store = self._open()
        if store is None:
            raise OSError("the command-id store %s cannot be opened: %s" % (self.path, self.error))
        store.begin(cmd, until)

    def finish(self, cmd_id: object, ack: bytes) -> None:
        if self._store is not None:
            self._store.finish(cmd_id, ack)

    def forget(self, cmd_id: object) -> None:
        if self._store is not None:
            self._store.forget(cmd_id)

    def stats(self) -> dict:
        if self._store is not None:
            return self._store.stats()
        return {"ids": 0, "ids_evicted": 0, "id_store_error": self.error}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
