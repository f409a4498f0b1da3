"""The board's flash ring on littlefs itself: erased blocks and bytes written per pack.

MicroPython keeps files on ESP32 and RP2040 flash in littlefs 2. This runs `firmware_py/ring.py` (its
`create` and `Ring`, as the board does) on the littlefs C library through the `littlefs-python` package,
on a RAM block device that counts erases and programs, configured as MicroPython configures an ESP32's
flash: 4096-byte blocks, read and program size 32, a 128-byte cache (4 × the larger of the two),
lookahead 32, `block_cycles` 100 (extmod/vfs_lfsx.c). Not part of `make bench`: `littlefs-python` is not
a dependency of the project. Run it from its own venv (docs/flashing.md, "Offline buffer"):

    python3 -m venv .peers/lfs && .peers/lfs/bin/pip install littlefs-python
    .peers/lfs/bin/python -m hil_tests.bench.flash_wear
"""

from __future__ import annotations

import sys
import types
from typing import Any

import littlefs  # type: ignore[import-not-found]
from littlefs import context  # type: ignore[import-not-found]

from firmware_py import ring as ringmod
from firmware_py.ring import Ring

BLOCK = 4096


class CountingFlash(context.UserContext):  # type: ignore[misc]
    """A RAM block device that counts erased blocks and programmed bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(buffsize=size)
        self.erases = 0
        self.programmed = 0

    def erase(self, cfg: Any, block: int) -> int:
        self.erases += 1
        return int(super().erase(cfg, block))

    def prog(self, cfg: Any, block: int, off: int, data: bytes) -> int:
        self.programmed += len(data)
        return int(super().prog(cfg, block, off, data))


def measure(slots: int, slot_size: int, packs: int, payload_len: int, blocks: int = 384,
            defer: bool = False) -> tuple[float, float]:
    """(erased blocks, KB written) per pack: `packs` packs of `payload_len` bytes, each appended and
    acknowledged, on a ring made by `firmware_py.ring.create` in a fresh file system of `blocks` blocks.
    With `defer` each is appended as a connected board appends a data pack (kept in RAM until its
    PUBACK, which comes before the next pack)."""
    flash = CountingFlash(BLOCK * blocks)
    fs = littlefs.LittleFS(context=flash, block_size=BLOCK, block_count=blocks, read_size=32, prog_size=32,
                           cache_size=128, lookahead_size=32, block_cycles=100)

    def lfs_open(name: str, mode: str = "r") -> Any:
        try:
            return fs.open(name, mode)
        except littlefs.LittleFSError as exc:
            raise OSError(2, str(exc)) from None

    def stat(name: str) -> tuple:
        try:
            return (0, 0, 0, 0, 0, 0, fs.stat(name).size)
        except littlefs.LittleFSError as exc:
            raise OSError(2, str(exc)) from None

    # the ring's files are littlefs's (a ring.py of an earlier version, one file, imports no os)
    saved = {name: ringmod.__dict__.get(name) for name in ("open", "os")}
    ringmod.open = lfs_open  # type: ignore[attr-defined]
    ringmod.os = types.SimpleNamespace(stat=stat, remove=fs.remove)  # type: ignore[assignment]
    try:
        files = ringmod.create("outbox.ring", slots, slot_size)
        ring = Ring(files, slots, slot_size)
        payload = bytes(k & 0xFF for k in range(payload_len))
        erases, programmed = flash.erases, flash.programmed
        for _ in range(packs):
            if defer:
                ring.append(payload, True)
            else:  # (also what a ring.py from before `defer` takes)
                ring.append(payload)
            ring.ack(ring.next_pending())
        per_pack = ((flash.erases - erases) / packs, (flash.programmed - programmed) / packs / 1024)
        files.close()
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(ringmod, name)
            else:
                setattr(ringmod, name, value)
        fs.unmount()
    return per_pack


def main() -> int:
    print("firmware_py/ring.py on littlefs %s (littlefs-python %s), ESP32-like configuration, 1.5 MB"
          % (".".join(str(v) for v in littlefs.__LFS_VERSION__), littlefs.__version__))
    for slots, slot_size, packs, size in ((48, 1024, 960, 900), (12, 4096, 240, 4000)):
        erases, kb = measure(slots, slot_size, packs, size)
        print("  ring %d x %d B, %d packs of %d B, each appended and acknowledged: %.2f erased blocks, "
              "%.1f KB written per pack" % (slots, slot_size, packs, size, erases, kb))
    if "defer" in ringmod.Ring.append.__code__.co_varnames:  # (a ring.py that keeps packs in RAM)
        erases, kb = measure(48, 1024, 960, 900, defer=True)
        print("  the same, appended as a connected board appends a data pack (kept in RAM, acknowledged "
              "before the next): %.2f erased blocks, %.1f KB written per pack" % (erases, kb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
