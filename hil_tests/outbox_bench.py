"""`python -m hil_tests.outbox_bench [PACKS]`: what the outbox costs, and what salvaging a damaged one takes.

Prints the time per committed pack (`put`) and per PUBACK (`ack`), then overwrites one leaf page and one
interior page of the file (as bad SD card sectors would) and times the salvage at the next open, with
the packs kept and the packs lost (counted from the file's own totals). Sizes, not pass/fail: the
numbers go into docs/store-and-forward.md. `hil_tests/test_outbox_bench.py` keeps it runnable.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import tempfile
import time

from agent.outbox import Outbox
from protocols import cbor


def pages(path: str, kind: str) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [int(p) for (p,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = ? ORDER BY pageno", (kind,))]
    finally:
        db.close()


def run(count: int, folder: str) -> dict:
    path = os.path.join(folder, "outbox.sqlite")
    ob = Outbox(path)
    began = time.perf_counter()
    for i in range(count):
        ob.put("fieldlink/s/gw/data", cbor.dumps([{"n": "dev/p", "v": i, "vs": "x" * 150}]), 1, 3)
    put_us = (time.perf_counter() - began) / count * 1e6
    acked = [p.id for p in ob.peek(max(1, count // 50))]
    began = time.perf_counter()
    for pack_id in acked:
        ob.ack(pack_id)
    ack_us = (time.perf_counter() - began) / len(acked) * 1e6
    held = len(ob)
    ob.close()
    leaves, interior = pages(path, "leaf"), pages(path, "internal")
    with open(path, "r+b") as f:
        for group in (leaves, interior):
            if group:
                f.seek((group[len(group) // 2] - 1) * 4096)
                f.write(b"\0" * 4096)
    began = time.perf_counter()
    ob = Outbox(path)
    salvage_s = time.perf_counter() - began
    stats = ob.stats()
    ob.close()
    return {"packs": held, "put_us": put_us, "ack_us": ack_us, "size_mb": os.path.getsize(path) / 1e6,
            "leaves": len(leaves), "interior": len(interior), "salvage_s": salvage_s,
            "kept": stats["packs"], "lost": stats["lost_packs"]}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 100_000
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as folder:
        r = run(count, folder)
    print("outbox: %d packs committed at %.0f us each, PUBACKs at %.0f us each" % (count, r["put_us"],
                                                                                   r["ack_us"]))
    print("damaged file (%d packs, %.1f MB, %d leaf and %d interior pages; one of each overwritten): "
          "salvaged in %.2f s, %d packs kept, %d lost and counted"
          % (r["packs"], r["size_mb"], r["leaves"], r["interior"], r["salvage_s"], r["kept"], r["lost"]))
    return 0 if r["kept"] + r["lost"] == r["packs"] else 1


if __name__ == "__main__":
    sys.exit(main())
