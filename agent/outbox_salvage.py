"""Reading every pack that can still be read from a damaged outbox file.

A damaged page of an SQLite table makes every statement that touches it fail with "database disk image
is malformed", so one plain `SELECT` stops at the first bad page and everything behind it would be lost.
`salvage(db)` reads around the damage instead:

* it scans the packs in id order and keeps every row it gets;
* at a failure it looks for the next readable id: first one id at a time (a damaged leaf page holds a
  few dozen of our rows), then in doubling steps and a binary search back (a damaged interior page can
  hide a long run of ids);
* a row whose payload is not CBOR is not a pack we wrote (a page that is garbled without looking
  damaged) and is left out;
* the counters in `meta` are read separately: they are on their own page.

The caller knows from `meta` how many packs and readings the file held (`live_packs`, `live_records`);
the difference to what was salvaged is what the damage cost.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from protocols import cbor

__all__ = ["PACK_COLUMNS", "Salvaged", "salvage"]

PACK_COLUMNS = "id, topic, payload, qos, records, created"
_LINEAR = 64  # ids tried one by one past a failure before the search takes longer steps
_NO_END = 1 << 62


@dataclass
class Salvaged:
    """What could be read: packs as (id, topic, payload, qos, records, created), the meta table."""

    packs: list[tuple] = field(default_factory=list)
    meta: dict[str, int] | None = None  # None: the meta table itself is unreadable
    damaged: int = 0  # stretches of ids that could not be read
    undecodable: int = 0  # rows read whose payload is not CBOR


def salvage(db: sqlite3.Connection) -> Salvaged:
    """Every readable, decodable pack of `db` in id order, and its meta table if readable."""
    out = Salvaged()
    try:
        out.meta = {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
    except (sqlite3.DatabaseError, ValueError, TypeError):
        out.meta = None
    end = _last_id(db)
    after = 0
    while True:
        try:
            for row in db.execute("SELECT %s FROM outbox WHERE id > ? ORDER BY id" % PACK_COLUMNS, (after,)):
                after = int(row[0])
                _keep(out, row)
            break
        except sqlite3.DatabaseError:
            out.damaged += 1
            found = _next_readable(db, after, end)
            if found is None:
                break
            _keep(out, found)
            after = int(found[0])
    return out


def _keep(out: Salvaged, row: tuple) -> None:
    try:
        pack = (int(row[0]), str(row[1]), bytes(row[2]), int(row[3]), int(row[4]), float(row[5]))
        cbor.loads(pack[2])
    except Exception:  # a garbled row: whatever it holds, it is not a pack we can publish
        out.undecodable += 1
        return
    out.packs.append(pack)


def _last_id(db: sqlite3.Connection) -> int:
    """The highest id ever used, from whichever source is still readable."""
    for sql in ("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
                "SELECT id FROM outbox ORDER BY id DESC LIMIT 1",
                "SELECT value FROM meta WHERE key = 'next_id'"):
        try:
            row = db.execute(sql).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None and row[0] is not None:
            return int(row[0])
    return _NO_END


def _first_at(db: sqlite3.Connection, start: int) -> tuple | bool | None:
    """The first whole row with id >= start; None if there is none; False if reading it fails."""
    try:
        row = db.execute("SELECT %s FROM outbox WHERE id >= ? ORDER BY id LIMIT 1" % PACK_COLUMNS,
                         (start,)).fetchone()
    except sqlite3.DatabaseError:
        return False
    return tuple(row) if row is not None else None


def _next_readable(db: sqlite3.Connection, after: int, end: int) -> tuple | None:
    """The first readable row past a failure after id `after`, or None when nothing past it reads."""
    start = after + 1
    for _ in range(_LINEAR):
        if start > end:
            return None
        row = _first_at(db, start)
        if row is not False:
            return row if isinstance(row, tuple) else None
        start += 1
    # a long unreadable stretch: double the step until a probe reads, then search back for its start
    bad, step = start - 1, _LINEAR
    while True:
        probe = min(bad + step, end + 1)
        row = _first_at(db, probe)
        if row is not False:
            good = probe
            break
        if probe > end:
            return None
        bad, step = probe, step * 2
    while good - bad > 1:
        middle = (bad + good) // 2
        if _first_at(db, middle) is False:
            bad = middle
        else:
            good = middle
    row = _first_at(db, good)
    return row if isinstance(row, tuple) else None
