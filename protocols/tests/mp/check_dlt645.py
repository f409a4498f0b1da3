"""DL/T 645 vectors (protocol-facts §1.7), CPython and MicroPython: one line per case, FAIL on mismatch."""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import dlt645 as d
from protocols.errors import AbnormalReply, ProtocolError
from protocols.tests.meter_cases import frames_each_byte, missing_each_byte
from protocols.tests.mp.vectors import check, done

A = "000000000161"


def hx(data):
    return binascii.hexlify(bytes(data)).decode()


def un(text):
    return binascii.unhexlify(text.replace(" ", ""))




def error_name(fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        return type(e).__name__
    return "ok"


BUILT = (
    ("read_00000000", "fefefefe68610100000000681104333333331316", lambda: d.read_request(A, "00000000")),
    ("read_02030000", "fefefefe68610100000000681104333336351816", lambda: d.read_request(A, "02030000")),
    ("read_0201FF00", "fefefefe68610100000000681104333234351516", lambda: d.read_request(A, "0201FF00")),
    (
        "read_abbreviated",
        "686101aaaaaaaa68110433333433bc16",
        lambda: d.read_request(d.abbreviated_address(A, 2), "00010000", 2007, 0),
    ),
    ("abnormal_02", "6861010000000068d101353916", lambda: d.abnormal_reply(A, 2)),
    ("address_reply", "686101000000006893069434333333335f16", lambda: d.read_address_reply(A)),
    (
        "time_sync",
        "fefefefe689999999999996808066353434836574216",
        lambda: d.time_sync_request((2024, 3, 15, 10, 20, 30)),
    ),
)
for case, want, build in BUILT:
    if build is not None:
        check("build " + case, hx(build()), want)

REPLIES = (
    ("12345.67kWh", "68610100000000689108333333339a7856343316", "00000000", "XXXXXX.XX", True, 1234567),
    ("-1.50kWh", "6861010000000068910833333333833433b33416", "00000000", "XXXXXX.XX", True, -150),
    ("230.5V", "686101000000006891063334343538562716", "02010100", "XXX.X", False, 2305),
    ("5.123A", "6861010000000068910733343535568433a816", "02020100", "XXX.XXX", True, 5123),
    ("-5.123A", "68610100000000689107333435355684b32816", "02020100", "XXX.XXX", True, -5123),
    ("1.1806kW", "6861010000000068910733333635394b345316", "02030000", "XX.XXXX", True, 11806),
)
for case, text, di, fmt, signed, mantissa in REPLIES:
    raw = d.parse_read_reply(d.parse_frame(un(text)), di, 2007, A)
    decimals = d.format_info(fmt)[1]
    check(
        "value " + case,
        "%d e-%d" % (d.decode_raw(raw, fmt, signed), decimals),
        "%d e-%d" % (mantissa, decimals),
    )
    check(
        "rebuild " + case, hx(d.read_reply(A, di, d.encode_value(mantissa / 10**decimals, fmt, signed))), text
    )

f = d.parse_frame(un("6861010000000068d101353916"))
try:
    d.parse_read_reply(f, "02010100")
    check("abnormal raises", "no", "AbnormalReply")
except AbnormalReply as e:
    check(
        "abnormal code", "%02x %s" % (e.code, e.meaning), "02 no requested data (DI unknown or not supported)"
    )

echo = d.parse_frame(d.read_reply(A, "02010200", un("0523")))
check("echo mismatch", error_name(d.parse_read_reply, echo, "02010100"), "FrameError")
check("bad checksum", error_name(d.parse_frame, un("686101000000006891063334343538562816")), "CrcError")
check("bad end", error_name(d.parse_frame, un("686101000000006891063334343538562717")), "FrameError")
check("short", error_name(d.parse_frame, un("fefe6861")), "FrameError")
check("time sync parse", str(d.parse_time_sync(d.parse_frame(un(BUILT[6][1])))), "(2024, 3, 15, 10, 20, 30)")
check(
    "time sync yy_first",
    hx(d.parse_frame(d.time_sync_request((2024, 3, 15, 10, 20, 30), "yy_first")).data),
    "240315102030",
)
check("address wildcard match", str(d.address_matches("AAAAAAAA0161", A)), "True")
check("address parse", hx(d.parse_address("161")), "610100000000")
check("quality ff", str(d.decode_reading(un("ffff"), "XXX.X")), "(None, 'not_available')")
check("quality bad", str(d.decode_reading(un("0a23"), "XXX.X")), "(None, 'bad_bcd')")
check("digits", d.decode_value(un("05150324"), "YYMMDDWW"), "24031505")
check("1997 request", hx(d.read_request(A, "B611", 1997, 0)), hx(d.build_frame(A, 0x01, un("11b6"), 0)))

stream = b"\x00\x12" + un(BUILT[6][1]) + b"\x55" + un(REPLIES[2][1]) + un(REPLIES[3][1])[:9]
reader = d.Dlt645FrameReader()
got = []
for i in range(0, len(stream), 5):
    for fr in reader.feed(stream[i : i + 5]):
        got.append("%s:%02x:%s" % (fr.address, fr.control, hx(fr.data)))
reader.reset()
check("reader frames", " ".join(got), "999999999999:08:302010150324 000000000161:91:000101020523")
check("reader errors", str(len(reader.take_errors())), "3")
check("reader missing", missing_each_byte(d.Dlt645FrameReader(), b"\xfe\xfe" + un(REPLIES[2][1])),
      "12 12 11 10 9 8 7 6 5 4 3 8 7 6 5 4 3 2 1 0")

# read follow-up (C=12 / 92 / B2) and a tariff block (0001FF00) spread over three frames
B = "0001FF00"
check("build followup_1", hx(d.read_followup_request(A, B, 1)), "fefefefe6861010000000068120533323433344916")
check("parse followup", str(d.parse_followup_request(d.parse_frame(d.read_followup_request(A, B, 2)))),
      "('0001FF00', 2)")
check("followup B2", hx(d.followup_reply(A, B, un("11223344"), 1, True)),
      "6861010000000068b20933323433445566773463" + "16")
last = d.parse_frame(d.followup_reply(A, B, b"", 2))
check("followup seq echo", error_name(d.parse_followup_reply, last, B, 3), "FrameError")
d2 = d.parse_frame(d.abnormal_reply(A, 2, control=0x12))
check("followup D2", error_name(d.parse_followup_reply, d2, B, 1), "Dlt645AbnormalReply")
# mantissas (0.01 kWh): total 12345.67 = 1234.56 + 4567.89 + 3456.78 + 3086.44
block = b"".join(d.encode_value(v, "XXXXXXXX") for v in (1234567, 123456, 456789, 345678, 308644))
frames = d.read_reply_frames(A, B, block, 8)
check("block frames", " ".join("%02x" % d.parse_frame(f).control for f in frames), "b1 b2 92")
asm = d.FollowupAssembler(A, B)
seqs = []
k = 0
req = asm.feed(d.parse_frame(frames[0]))
while req is not None:
    seqs.append(d.parse_followup_request(d.parse_frame(req))[1])
    k += 1
    req = asm.feed(d.parse_frame(frames[k]))
check("block seqs", str(seqs), "[1, 2]")
check("block values", " ".join("%d" % d.decode_raw(asm.value[i:i + 4], "XXXXXX.XX") for i in range(0, 20, 4)),
      "1234567 123456 456789 345678 308644")
loop = d.FollowupAssembler(A, B, max_followups=1)
loop.feed(d.parse_frame(d.read_reply(A, B, b"\x01", more=True)))
again = d.parse_frame(d.followup_reply(A, B, b"\x01", 1, True))
check("followup bound", error_name(loop.feed, again), "FrameError")
# a torn reply (a meter cut off mid-frame) and the whole reply after it: the torn one's length claims
# bytes of the next; the whole one still comes at its last byte
torn = un(REPLIES[2][1])
check("reader behind a torn frame", frames_each_byte(d.Dlt645FrameReader(), torn[:len(torn) // 2] + torn),
      "%d:000000000161" % (len(torn) // 2 + len(torn) - 1))
done()
