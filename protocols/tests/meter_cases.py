"""What the meter checks (mp/check_dlt645.py, check_cjt188.py, check_dlt698.py) share, on CPython and
MicroPython (a `*_cases.py` module: hil_tests/mpvm/test_mpy_cross.py ships it with the checks)."""


def missing_each_byte(reader, data):
    """What the reader says is still to come after each byte fed (the link's wait on a slow line)."""
    out = []
    for i in range(len(data)):
        reader.feed(data[i:i + 1])
        out.append(str(reader.missing()))
    return " ".join(out)


def frames_each_byte(reader, data):
    """At which byte of ``data``, fed one at a time, the reader gave a frame, and whose (its address)."""
    out = []
    for i in range(len(data)):
        for frame in reader.feed(data[i:i + 1]):
            out.append("%d:%s" % (i, frame.address))
    return " ".join(out)
