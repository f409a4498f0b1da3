"""The offline buffer: an append-only ring of packs in one fixed-size file on flash.

The file is `slots` slots of `slot_size` bytes. A slot holds one pack:

    0  magic  b"FR"                      2
    2  seq    u32 little-endian           4   (monotonic; the order of the ring)
    6  len    u16                         2
    8  crc    u32 CRC-32 of seq, len, dropped and the payload
   12  dropped u32                        4   (packs dropped so far, survives reset)
   16  payload                            len
   +0  ack    0x00 pending, 0xA5 acked    1
   +1  commit b"\\x5a\\xc3"                2

Appending writes header + payload + ack byte, flushes, then writes the commit marker and flushes:
a record is committed when `append()` returns. A power cut at any byte leaves a slot whose
commit marker or CRC does not check, and recovery skips it. Acknowledging rewrites one byte in
place. When the ring is full the oldest pending pack is overwritten and counted in `dropped`.
Reads check the CRC again, so a pack that rotted on flash is skipped, never sent.

The file object needs only seek/write/readinto/flush: a MicroPython or CPython binary file, or a
test double that cuts the power at a chosen byte.

On the board the ring is one file per slot (`SlotFiles`, made by `create`): `<path>.0` to
`<path>.<slots-1>`, used through one handle at a time as if they were the one file above. littlefs
(MicroPython's file system on ESP32 and RP2040 flash) rewrites a file from a changed byte to its end
at each flush, so one 48-slot file cost about 15 erased flash blocks and 52 KB written per pack (the
append's two flushes and the ack's one); a slot's own file costs about 2 blocks and 2 KB
(docs/flashing.md, "Offline buffer"). A ring kept in one file by an earlier version is moved into the
slot files when it is opened. A connected board's data pack is not written at all unless its PUBACK is
late (`append` with `defer`, `write_fresh`; firmware_py/packs.py).
"""

import binascii
import os
import struct

from protocols.compat import const

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER = const(16)
TRAILER = const(3)
OVERHEAD = const(19)
MAGIC = b"FR"
COMMIT = b"\x5a\xc3"
ACKED = const(0xA5)
EMPTY = const(0)  # slot state: nothing valid
PENDING = const(1)
DONE = const(2)
_FMT = "<2sIHII"


class Ring:
    """Bounded, power-cut safe FIFO of packs (bytes) with acknowledgements by sequence number."""

    def __init__(self, f, slots: int, slot_size: int) -> None:
        if slots < 2 or slot_size <= OVERHEAD or slot_size - OVERHEAD > 0xFFFF:
            raise ValueError("ring needs >= 2 slots of more than %d bytes" % OVERHEAD)
        self.f = f
        self.slots = slots
        self.slot_size = slot_size
        self.max_payload = slot_size - OVERHEAD
        self.seqs = [0] * slots
        self.lens = [0] * slots
        self.state = bytearray(slots)
        self.dropped = 0
        self.skipped = 0  # torn or corrupt slots seen by recovery and reads
        self.next_seq = 1
        self.head = 0  # slot the next append writes
        #: a pack kept in RAM (`append` with `defer`): its sequence number (0: none) and length; on flash
        #: only if `write_fresh` comes before its `ack`
        self.fresh_seq = 0
        self.fresh_len = 0
        self._fresh: Any = None  # its bytes: a buffer of max_payload, made at the first deferred append
        self.written = 0  # packs written to flash since start (health: outbox.written_packs)
        self._hdr = bytearray(HEADER)
        self._one = bytearray(1)
        self._two = bytearray(2)
        self._scratch = bytearray(64)
        self.recover()

    # -- recovery ---------------------------------------------------------------------------
    def recover(self) -> None:
        """Scan every slot; rebuild the state, the next sequence number and the drop counter."""
        newest = -1
        top = 0
        self.dropped = 0
        self.skipped = 0
        for i in range(self.slots):
            st = self._check(i)
            self.state[i] = st
            if st == EMPTY:
                continue
            if self.seqs[i] > top:
                top = self.seqs[i]
                newest = i
        self.next_seq = top + 1
        self.head = (newest + 1) % self.slots

    def _check(self, i: int) -> int:
        """Validate slot i (header, commit marker, CRC); EMPTY when torn, blank or corrupt."""
        f = self.f
        hdr = self._hdr
        f.seek(i * self.slot_size)
        if f.readinto(hdr) != HEADER or hdr[0] != 0x46 or hdr[1] != 0x52:  # b"FR"
            return EMPTY
        _magic, seq, length, crc, dropped = struct.unpack(_FMT, hdr)
        if length > self.max_payload:
            self.skipped += 1
            return EMPTY
        f.seek(i * self.slot_size + HEADER + length)
        one = self._one
        two = self._two
        if f.readinto(one) != 1 or f.readinto(two) != 2 or two != COMMIT:
            self.skipped += 1
            return EMPTY
        if self._crc_of_slot(i, length) != crc:
            self.skipped += 1
            return EMPTY
        self.seqs[i] = seq
        self.lens[i] = length
        if dropped > self.dropped:
            self.dropped = dropped
        return DONE if one[0] == ACKED else PENDING

    def _crc_of_slot(self, i: int, length: int) -> int:
        hdr = self._hdr
        crc = binascii.crc32(memoryview(hdr)[2:8])
        crc = binascii.crc32(memoryview(hdr)[12:16], crc)
        f = self.f
        f.seek(i * self.slot_size + HEADER)
        buf = self._scratch
        view = memoryview(buf)
        left = length
        while left > 0:  # through a small fixed buffer: recovery must not need a pack-sized one
            n = left if left < len(buf) else len(buf)
            f.readinto(view[:n])
            crc = binascii.crc32(view[:n], crc)
            left -= n
        return crc & 0xFFFFFFFF

    # -- writing ----------------------------------------------------------------------------
    def append(self, payload, defer: bool = False) -> int:
        """Store one pack durably; returns its sequence number. Drops the oldest when full.

        With `defer` (the uplink publishes it at once), a pack into a ring with nothing pending is kept in
        RAM instead: read, published and acknowledged from there, and written only by `write_fresh` (the
        caller's, when its PUBACK is late) or by the next append, before that one (so the order holds).
        A power cut before then loses it, as it loses a pack not committed yet."""
        length = len(payload)
        if length > self.max_payload:
            raise ValueError("pack of %d bytes exceeds the slot payload %d" % (length, self.max_payload))
        self.write_fresh()
        if defer and self.pending() == 0:
            if self._fresh is None:
                self._fresh = bytearray(self.max_payload)
            self._fresh[:length] = payload
            self.fresh_seq = self.next_seq
            self.fresh_len = length
            self.next_seq += 1
            return self.fresh_seq
        return self._append(payload, self.next_seq)

    def write_fresh(self) -> None:
        """Write the pack kept in RAM, if any, to flash under its own sequence number."""
        seq = self.fresh_seq
        if seq:
            self.fresh_seq = 0
            self._append(memoryview(self._fresh)[: self.fresh_len], seq)

    def _append(self, payload, seq: int) -> int:
        length = len(payload)
        i = self.head
        if self.state[i] == PENDING:
            self.dropped += 1
        self.state[i] = EMPTY
        hdr = self._hdr
        struct.pack_into(_FMT, hdr, 0, MAGIC, seq, length, 0, self.dropped)
        crc = binascii.crc32(memoryview(hdr)[2:8])
        crc = binascii.crc32(memoryview(hdr)[12:16], crc)
        crc = binascii.crc32(payload, crc) & 0xFFFFFFFF
        struct.pack_into("<I", hdr, 8, crc)
        f = self.f
        f.seek(i * self.slot_size)
        f.write(hdr)
        f.write(payload)
        self._one[0] = 0
        f.write(self._one)
        f.flush()
        f.write(COMMIT)
        f.flush()
        self.seqs[i] = seq
        self.lens[i] = length
        self.state[i] = PENDING
        self.written += 1
        if seq >= self.next_seq:
            self.next_seq = seq + 1
        self.head = (i + 1) % self.slots
        return seq

    def ack(self, seq: int) -> bool:
        """Mark the pack `seq` delivered (PUBACK). False when it is no longer in the ring."""
        if seq and seq == self.fresh_seq:
            self.fresh_seq = 0  # acknowledged before it was written: nothing to write
            return True
        i = self._slot_of(seq)
        if i < 0:
            return False
        self._one[0] = ACKED
        self.f.seek(i * self.slot_size + HEADER + self.lens[i])
        self.f.write(self._one)
        self.f.flush()
        self.state[i] = DONE
        return True

    # -- reading ----------------------------------------------------------------------------
    def _slot_of(self, seq: int) -> int:
        for i in range(self.slots):
            if self.state[i] == PENDING and self.seqs[i] == seq:
                return i
        return -1

    def next_pending(self, after: int = 0) -> int:
        """Sequence number of the oldest pending pack newer than `after`; 0 when none."""
        best = 0
        for i in range(self.slots):
            if self.state[i] == PENDING:
                s = self.seqs[i]
                if s > after and (best == 0 or s < best):
                    best = s
        s = self.fresh_seq  # the newest of all when there is one
        if s > after and best == 0:
            best = s
        return best

    def read(self, seq: int, buf):
        """Copy pack `seq` into `buf` (bytearray of >= max_payload); a memoryview of it, or None
        when it is gone or fails its CRC (then it is skipped for good)."""
        if seq and seq == self.fresh_seq:
            view = memoryview(buf)[: self.fresh_len]
            view[:] = memoryview(self._fresh)[: self.fresh_len]
            return view
        i = self._slot_of(seq)
        if i < 0:
            return None
        if self._check(i) != PENDING or self.seqs[i] != seq:
            self.state[i] = EMPTY
            return None
        length = self.lens[i]
        view = memoryview(buf)[:length]
        self.f.seek(i * self.slot_size + HEADER)
        self.f.readinto(view)
        hdr = self._hdr
        crc = binascii.crc32(memoryview(hdr)[2:8])
        crc = binascii.crc32(memoryview(hdr)[12:16], crc)
        if binascii.crc32(view, crc) & 0xFFFFFFFF != struct.unpack_from("<I", hdr, 8)[0]:
            self.skipped += 1
            self.state[i] = EMPTY
            return None
        return view

    def pending(self) -> int:
        """How many packs wait for a PUBACK."""
        n = 1 if self.fresh_seq else 0
        for st in self.state:
            if st == PENDING:
                n += 1
        return n

    def used_bytes(self) -> int:
        """Bytes of pending packs (for health: store size)."""
        n = self.fresh_len if self.fresh_seq else 0
        for i in range(self.slots):
            if self.state[i] == PENDING:
                n += self.lens[i]
        return n


class SlotFiles:
    """One file per slot (`<path>.<i>`, `slot_size` bytes each) seen as one file of `slots` × `slot_size`
    bytes: seek (from the start)/write/readinto/flush/close, as `Ring` uses a file. One slot file is open
    at a time; moving to another closes it (the ring has flushed what it wrote by then). A slot file that
    has gone missing is made again, blank."""

    def __init__(self, path: str, slots: int, slot_size: int) -> None:
        self.path = path
        self.slots = slots
        self.slot_size = slot_size
        self.pos = 0
        self._i = -1  # the slot whose file is open
        self._f: Any = None

    def _file(self, i: int):
        if i != self._i:
            self.close()
            name = slot_name(self.path, i)
            try:
                f = open(name, "r+b")
            except OSError:
                _blank(name, self.slot_size)
                f = open(name, "r+b")
            self._f = f
            self._i = i
        return self._f

    def seek(self, pos: int) -> int:
        self.pos = pos
        return pos

    def _piece(self, left: int):
        """The file of the slot at `pos`, sought to it, and how many of `left` bytes that slot holds from
        there; (None, 0) past the ring's end."""
        i = self.pos // self.slot_size
        if i >= self.slots:
            return None, 0
        at = self.pos - i * self.slot_size
        f = self._file(i)
        f.seek(at)
        return f, min(left, self.slot_size - at)

    def write(self, data) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            f, n = self._piece(len(view) - done)
            if f is None:
                raise OSError("write past the end of the ring")
            f.write(view[done:done + n])
            self.pos += n
            done += n
        return done

    def readinto(self, buf) -> int:
        view = memoryview(buf)
        done = 0
        while done < len(view):
            f, n = self._piece(len(view) - done)
            if f is None:
                break
            got = f.readinto(view[done:done + n]) or 0
            self.pos += got
            done += got
            if got < n:
                break
        return done

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        f, self._f, self._i = self._f, None, -1
        if f is not None:
            f.close()


def slot_name(path: str, i: int) -> str:
    return "%s.%d" % (path, i)


def _size(path: str) -> int:
    """The size of the file at `path`; -1 when there is none."""
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _blank(name: str, size: int) -> None:
    f = open(name, "wb")
    blank = b"\xff" * 256
    left = size
    while left > 0:
        f.write(blank[: min(256, left)])
        left -= 256
    f.close()


def create(path: str, slots: int, slot_size: int) -> SlotFiles:
    """Open the ring at `path`: its slot files, each made blank (0xFF) when missing or short. A ring an
    earlier version kept in the one file `path` is copied into the slot files first and then removed
    (a power cut meanwhile leaves `path` in place, and the next start copies it again). Slot files
    beyond `slots` (a bigger ring configured before) are removed: their packs were not kept before
    either, when the ring was one file that `slots` covered only in part."""
    legacy = _size(path)
    whole = legacy >= slots * slot_size  # the old file holds every slot: its packs are kept
    buf = bytearray(256)
    if whole:
        src = open(path, "rb")
        for i in range(slots):
            dst = open(slot_name(path, i), "wb")
            src.seek(i * slot_size)
            left = slot_size
            while left > 0:
                n = src.readinto(memoryview(buf)[: min(256, left)])
                if not n:
                    break
                dst.write(memoryview(buf)[:n])
                left -= n
            dst.close()
        src.close()
    else:
        for i in range(slots):
            name = slot_name(path, i)
            if _size(name) < slot_size:
                _blank(name, slot_size)
    if legacy >= 0:
        os.remove(path)
    i = slots
    while _size(slot_name(path, i)) >= 0:  # slots of a bigger ring configured before: their flash back
        os.remove(slot_name(path, i))
        i += 1
    return SlotFiles(path, slots, slot_size)
