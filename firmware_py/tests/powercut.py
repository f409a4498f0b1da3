"""Power-cut harness for the flash ring, plain enough to run under CPython and MicroPython.

`Flash` is a file double over a bytearray that can lose power after a byte budget: the write in
progress stops part way and, optionally, the rest of it is left as garbage (as NAND pages are).
`scenario()` replays operations until the cut, reboots the ring on the same image and checks the
two promises: no pack read back differs from what was written under its sequence number, and no
committed, unacknowledged, not-overwritten pack is lost.
"""

import random

from firmware_py.ring import Ring


class PowerCut(Exception):
    pass


class Flash:
    """seek/tell/readinto/write/flush over a bytearray, with an optional power-cut budget."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(b"\xff" * size)
        self.pos = 0
        self.budget = -1  # bytes that may still be written; -1 = no cut
        self.garbage = None  # a random.Random: torn remainders become random bytes

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else len(self.data) + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf) -> int:
        n = min(len(buf), len(self.data) - self.pos)
        for k in range(n):
            buf[k] = self.data[self.pos + k]
        self.pos += n
        return n

    def write(self, buf) -> int:
        n = len(buf)
        if self.budget >= 0 and n > self.budget:
            keep = self.budget
            for k in range(keep):
                self.data[self.pos + k] = buf[k]
            if self.garbage is not None:
                for k in range(keep, keep + self.garbage.randrange(n - keep + 1)):
                    self.data[self.pos + k] = self.garbage.randrange(256)
            self.budget = 0
            raise PowerCut()
        for k in range(n):
            self.data[self.pos + k] = buf[k]
        self.pos += n
        if self.budget >= 0:
            self.budget -= n
        return n

    def flush(self) -> None:
        pass


def payload_for(seq: int, size: int) -> bytes:
    return bytes([(seq * 31 + k * 7) & 0xFF for k in range(size)])


def scenario(ops: list, cut: int, slots: int = 4, slot_size: int = 64, garbage: int = -1) -> dict:
    """Run `ops` ("a", size) append / ("k",) ack oldest / ("r",) reboot with the power cut after
    `cut` written bytes (-1: never), reboot, check, then keep using the ring. Returns counters."""
    flash = Flash(slots * slot_size)
    ring = Ring(flash, slots, slot_size)
    flash.budget = cut
    if garbage >= 0:
        flash.garbage = random.Random(garbage) if hasattr(random, "Random") else None
    attempted = {}  # seq -> size of every append started (committed or torn)
    committed = {}  # seq -> size for appends that returned
    acked = {}
    gone = {}  # seqs whose slot an append started to overwrite
    drops_committed = 0
    cut_happened = False
    try:
        for op in ops:
            if op[0] == "a":
                size = min(op[1], ring.max_payload)
                seq = ring.next_seq
                victim = ring.head
                if ring.state[victim] != 0:
                    gone[ring.seqs[victim]] = True
                attempted[seq] = size
                ring.append(payload_for(seq, size))
                committed[seq] = size
                drops_committed = ring.dropped
            elif op[0] == "k":
                seq = ring.next_pending()
                if seq:
                    acked[seq] = "maybe"
                    ring.ack(seq)
                    acked[seq] = True
            else:
                ring = Ring(flash, slots, slot_size)
    except PowerCut:
        cut_happened = True
    flash.budget = -1
    ring = Ring(flash, slots, slot_size)
    buf = bytearray(ring.max_payload)
    seen = {}
    seq = ring.next_pending()
    while seq:
        view = ring.read(seq, buf)
        assert seq in attempted, "recovered a pack %d that was never written" % seq
        if view is not None:
            assert bytes(view) == payload_for(seq, attempted[seq]), "pack %d corrupted" % seq
            seen[seq] = True
        seq = ring.next_pending(seq)
    for seq in committed:
        if seq in gone or acked.get(seq) is not None:
            continue
        assert seq in seen, "committed pack %d lost (cut at %d)" % (seq, cut)
    assert ring.dropped >= drops_committed, "drop counter went back"
    for seq in seen:
        assert acked.get(seq) is not True, "acked pack %d came back" % seq
    # the ring keeps working after the reboot
    top = ring.next_seq
    for k in range(slots + 1):
        s = ring.append(payload_for(top + k, 5))
        assert s == top + k
    seq = ring.next_pending()
    while seq:
        view = ring.read(seq, buf)
        if seq >= top:
            assert view is not None and bytes(view) == payload_for(seq, 5)
        ring.ack(seq)
        seq = ring.next_pending(seq)
    assert ring.pending() == 0
    return {"cut": cut_happened, "committed": len(committed), "recovered": len(seen)}


def random_ops(rng, n: int) -> list:
    ops = []
    for _ in range(n):
        r = rng.randrange(10)
        if r < 6:
            ops.append(("a", rng.randrange(60)))
        elif r < 9:
            ops.append(("k",))
        else:
            ops.append(("r",))
    return ops


def run_many(seed: int, count: int) -> dict:
    """`count` random scenarios with random cut points; the MicroPython subset uses this."""
    rng = random.Random(seed) if hasattr(random, "Random") else None
    if rng is None:
        random.seed(seed)
        rng = random
    cuts = 0
    packs = 0
    for _ in range(count):
        ops = random_ops(rng, rng.randrange(1, 25))
        result = scenario(ops, rng.randrange(-1, 400), 4, 64, rng.randrange(-1, 1000))
        cuts += 1 if result["cut"] else 0
        packs += result["committed"]
    return {"scenarios": count, "cuts": cuts, "committed": packs}
