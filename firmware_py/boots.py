"""The board's boot count, kept in flash: numbers that must grow across reboots without a flash write
each time (connections and alarms are numbered boots * 65536 + a count since boot)."""

BOOTS_PATH = "/boots"


def count() -> int:
    """This boot's number: one more than the last (1 on a fresh board); one small write per boot."""
    try:
        with open(BOOTS_PATH) as f:
            boots = int(f.read() or "0") + 1
    except (OSError, ValueError):
        boots = 1
    try:
        with open(BOOTS_PATH, "w") as f:
            f.write("%d" % boots)
    except OSError:
        pass
    return boots
