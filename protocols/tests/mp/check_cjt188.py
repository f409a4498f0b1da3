"""CJ/T 188 vectors (protocol-facts §2.10), CPython and MicroPython: one line per case, FAIL on mismatch."""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import cjt188 as c
from protocols.errors import AbnormalReply, ProtocolError
from protocols.tests.meter_cases import frames_each_byte, missing_each_byte
from protocols.tests.mp.vectors import check, done

A = "00000000123456"
READ = "fefefefe68105634120000000001031f9001c816"
REPLY = "68105634120000000081161f9001452301002c000001002c302010150324200000d916"
ABNORMAL = "681056341200000000c103010700e016"


def hx(data):
    return binascii.hexlify(bytes(data)).decode()


def un(text):
    return binascii.unhexlify(text)




def error_name(fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        return type(e).__name__
    return "ok"


def show(fields):
    keys = sorted(fields)
    out = []
    for k in keys:
        v = fields[k]
        out.append("%s=%s" % (k, ("%.6g" % v) if isinstance(v, float) else str(v)))
    return " ".join(out)


check("build read 901F", hx(c.read_request(0x10, A, 0x901F, 1)), READ)
check(
    "build read hi_first",
    hx(c.read_request(0x10, A, 0x901F, 1, "hi_first")),
    "fefefefe6810563412000000000103901f01c816",
)
fields = {"flow_total": 123.45, "flow_settlement": 100.0, "time": (2024, 3, 15, 10, 20, 30)}
check("build reply 901F", hx(c.encode_901f_reply(0x10, A, fields, 1)), REPLY)
check("build abnormal", hx(c.abnormal_reply(0x10, A, 0x01, 1, 0x07)), ABNORMAL)

f = c.parse_frame(un(READ))
check(
    "parse read",
    "%02x %s %02x %s" % (f.meter_type, f.address, f.control, str(c.parse_request(f))),
    "10 00000000123456 01 (36895, 1, b'', 'lo_first')",
)
r = c.parse_901f(c.parse_frame(un(REPLY)), None, 1)
check(
    "parse reply",
    show(r),
    "battery_low=False flow_settlement=100 flow_settlement_unit=44 flow_total=123.45 "
    "flow_total_unit=44 quality=good st1=0 st2=0 time=(2024, 3, 15, 10, 20, 30) valve=open",
)
hi = c.parse_frame(c.encode_901f_reply(0x10, A, fields, 1, "hi_first"))
check("parse reply hi_first", "%.6g" % c.parse_901f(hi, None, 1)["flow_total"], "123.45")
try:
    c.parse_901f(c.parse_frame(un(ABNORMAL)))
    check("abnormal raises", "no", "AbnormalReply")
except AbnormalReply as e:
    check("abnormal meaning", "%02x %s" % (e.code, e.meaning), "07 valve abnormal, battery low (ST 07 00)")
check("ser mismatch", error_name(c.parse_901f, c.parse_frame(un(REPLY)), None, 2), "FrameError")
check("bad checksum", error_name(c.parse_frame, un(ABNORMAL[:-4] + "e116")), "CrcError")
check(
    "valve close", hx(c.valve_request(0x10, A, "close", 2)), hx(c.build_frame(0x10, A, 0x04, un("17a00299")))
)
check("read address", hx(c.read_address_request()), hx(c.build_frame(0xAA, "AA" * 7, 0x03, un("0a8100"))))
check("unit kWh", str(c.primary_value(2, 0x05)), "(7200000, 'J')")
check("unit m3", str(c.primary_value(5, 0x2C)), "(5, 'm3')")
heat = {"heat_total": 1234.56, "flow_rate": 1.2345, "supply_temp": 65.3, "working_hours": 8760}
hr = c.parse_901f(c.parse_frame(c.encode_901f_reply(0x20, A, heat)))
check(
    "heat",
    "%d %d %d %d %d"
    % (
        len(c.parse_frame(c.encode_901f_reply(0x20, A, heat)).data),
        round(hr["heat_total"] * 100),
        round(hr["flow_rate"] * 10000),
        round(hr["supply_temp"] * 100),
        hr["working_hours"],
    ),
    "46 123456 12345 6530 8760",
)
bad = bytearray(c.parse_frame(un(REPLY)).data)
bad[3] = 0xFA
q = c.parse_901f(c.Frame(0x10, A, 0x81, bytes(bad)))
check("quality", "%s %s %.6g" % (q["flow_total"], q["quality"], q["flow_settlement"]), "None bad_bcd 100")

stream = b"\x00\x12" + un(READ) + b"\x55" + un(REPLY) + un(ABNORMAL)[:7]
reader = c.Cjt188FrameReader()
got = []
for i in range(0, len(stream), 6):
    for fr in reader.feed(stream[i : i + 6]):
        got.append("%02x:%s:%02x" % (fr.meter_type, fr.address, fr.control))
reader.reset()
check("reader frames", " ".join(got), "10:00000000123456:01 10:00000000123456:81")
check("reader errors", str(len(reader.take_errors())), "3")
check("reader missing", missing_each_byte(c.Cjt188FrameReader(), b"\xfe" + un(REPLY)),
      "13 12 11 10 9 8 7 6 5 4 3 24 23 22 21 20 19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0")
# a 0x68 in noise right before a reply: its "length" (the reply's control byte, 0x81) claims 142 bytes;
# the reply behind it still comes whole at its last byte
check("reader behind a noise 68", frames_each_byte(c.Cjt188FrameReader(), b"\x68" + un(REPLY)),
      "35:00000000123456")
done()
