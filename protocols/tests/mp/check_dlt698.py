"""DL/T 698.45 and A-XDR vectors (docs/protocols/dlt698.md), CPython and MicroPython: one line per case,
FAIL on mismatch. Published frames are built and parsed byte for byte; values are printed with fixed
decimals so both interpreters print the same text."""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import axdr
from protocols import dlt698 as d
from protocols.errors import ProtocolError
from protocols.tests.meter_cases import missing_each_byte
from protocols.tests.mp.vectors import check, done


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


H3_REQ = "681700434 5aaaaaaaaaaaa005b4f0501254001020000 0a9216".replace(" ", "")
H3_RSP = "68210 0c30533092039000000 4a55850125400102000109060000392009330000b2d816".replace(" ", "")
LIST = ("683500c305043300000000105740850200010010020001010506000002bb06000000c606000000cb06000000ae"
        "060000007c00005543 16").replace(" ", "")

check("crc check value", "%04x" % d.crc16(b"123456789"), "906e")
check("build h3 request", hx(d.read_address_request(0x25)), H3_REQ)
check("build h3 request fe", hx(d.read_address_request(0x25, 0, 2)), "fefe" + H3_REQ)
req = d.parse_frame(un(H3_REQ))
text = "%s %d %02x %r" % (req.address, req.address_type, req.control, d.parse_request(req))
check("parse h3 request", text, "AAAAAAAAAAAA 1 43 (37, ['40010200'], False)")
rsp = d.parse_frame(un(H3_RSP))
check("parse h3 address", d.parse_read_address_response(rsp, 0x25), "000039200933")
octets = (axdr.OCTET_STRING, un("000039200933"))
check("build h3 response", hx(d.read_response("000039200933", 0x25, [d.Result("40010200", octets)])), H3_RSP)

lst = d.parse_frame(un(LIST))
results = d.parse_read_response(lst, ["00100200"], 0, "000000003304")
energy = d.scaled("00100200", results[0].value())
check("list energy", " ".join("%.2f" % v for v in energy), "6.99 1.98 2.03 1.74 1.24")
check("list rebuild", hx(d.read_response("000000003304", 0, results, True, 0x10)), LIST)

# a NormalList with a DAR, built and read back
oads = ["20000200", "20010200", "20040200", "200A0200", "200F0200", "F1000200"]
data = [
    axdr.array([(axdr.LONG_UNSIGNED, 2305), (axdr.LONG_UNSIGNED, 2291), (axdr.LONG_UNSIGNED, 2310)]),
    axdr.array([(axdr.DOUBLE_LONG, 5123), (axdr.DOUBLE_LONG, -250), (axdr.DOUBLE_LONG, 0)]),
    axdr.array([(axdr.DOUBLE_LONG, 11806), (axdr.DOUBLE_LONG, 5000), (axdr.DOUBLE_LONG, 3406),
                (axdr.DOUBLE_LONG, 3400)]),
    axdr.array([(axdr.LONG, 987), (axdr.LONG, 990), (axdr.LONG, -985), (axdr.LONG, 1000)]),
    (axdr.LONG_UNSIGNED, 5003),
]
sent = [d.Result(o, v) for o, v in zip(oads, data)] + [d.Result(oads[5], dar=4)]
request = d.read_request("000000000161", oads, 9, 0, d.ADDRESS_SINGLE, 0, 4)
check("list request head", hx(request[:12]), "fefefefe682c004305610100")  # L = 44
piid, asked, is_list = d.parse_request(d.parse_frame(request))
check("list request parsed", "%d %s %s" % (piid, " ".join(asked), is_list),
      "9 20000200 20010200 20040200 200A0200 200F0200 F1000200 True")
reply = d.parse_frame(d.read_response("000000000161", piid, sent, True))
got = d.parse_read_response(reply, oads, 9, "AAAAAAAA0161")
for oad, r in zip(oads[:5], got):
    value = d.scaled(oad, r.value())
    text = " ".join("%.3f" % v for v in value) if isinstance(value, list) else "%.3f" % value
    check("scaled " + oad, text, {
        "20000200": "230.500 229.100 231.000", "20010200": "5.123 -0.250 0.000",
        "20040200": "1180.600 500.000 340.600 340.000", "200A0200": "0.987 0.990 -0.985 1.000",
        "200F0200": "50.030"}[oad])
check("dar", error_name(got[5].value), "DarError")
try:
    got[5].value("000000000161")
except d.DarError as e:
    check("dar text", str(e), "meter 000000000161 OAD F1000200: DAR 4: object undefined")

# A-XDR types, both ways
VALUES = [
    ((axdr.NULL, None), "00"),
    ((axdr.BOOL, True), "0301"),
    ((axdr.BIT_STRING, (12, un("abc0"))), "040cabc0"),
    ((axdr.DOUBLE_LONG, -2), "05fffffffe"),
    ((axdr.DOUBLE_LONG_UNSIGNED, 4000000000), "06ee6b2800"),
    ((axdr.INTEGER, -128), "0f80"),
    ((axdr.LONG64, -5), "14fffffffffffffffb"),
    ((axdr.LONG64_UNSIGNED, 12345678), "1500000000 00bc614e".replace(" ", "")),
    ((axdr.ENUM, 3), "1603"),
    ((axdr.VISIBLE_STRING, "FL-1"), "0a04464c2d31"),
    ((axdr.DATE_TIME_S, (2024, 6, 1, 8, 0, 30)), "1c07e8060108001e"),
    ((axdr.SCALER_UNIT, (-2, 33)), "59fe21"),
    ((axdr.OAD, "00100201"), "5100100201"),
    ((axdr.TI, (1, 15)), "5401000f"),
    (axdr.structure([(axdr.UNSIGNED, 1), axdr.array([])]), "02021101 0100".replace(" ", "")),
    ((axdr.OCTET_STRING, b"\x00" * 130), "09 81 82".replace(" ", "") + "00" * 130),
]
for value, wire in VALUES:
    check("axdr encode %s" % axdr.name(value[0]), hx(axdr.encode(value)), wire)
    check("axdr decode %s" % axdr.name(value[0]), axdr.decode_all(un(wire)) == value, True)
check("axdr plain", str(axdr.plain(axdr.structure([(axdr.UNSIGNED, 1), axdr.array([(axdr.BOOL, False)])]))),
      "[1, [False]]")

# errors: every failure a ProtocolError subclass
check("bad fcs", error_name(d.parse_frame, un(H3_REQ[:-6] + "0b9216")), "CrcError")
check("bad hcs", error_name(d.parse_frame, un(H3_REQ[:24] + "5c" + H3_REQ[26:])), "CrcError")
check("bad end", error_name(d.parse_frame, un(H3_REQ[:-2] + "17")), "FrameError")
check("short", error_name(d.parse_frame, un("6817")), "FrameError")
check("axdr deep", error_name(axdr.decode, b"\x01\x01" * 9 + b"\x00"), "EncodingError")
check("axdr long", error_name(axdr.decode, un("0982ffff00")), "EncodingError")
check("axdr rsd", error_name(axdr.decode, un("5a00")), "EncodingError")
check("bad oad", error_name(d.get_request, "0010020G"), "EncodingError")
check("wrong oad echo", error_name(d.parse_read_response, lst, ["00200200"]), "FrameError")

# the reader: noise, FE, a stray 68 with a huge length, two frames split in 6-byte chunks
stray = b"\x00\x68\xa0\x0f\x43\x05" + b"\x11" * 9
stream = stray + b"\xfe\xfe" + un(H3_RSP) + b"\x55" + un(LIST) + un(H3_RSP)[:7]
reader = d.Dlt698FrameReader()
frames = []
for i in range(0, len(stream), 6):
    frames.extend(reader.feed(stream[i:i + 6]))
reader.reset()
check("reader frames", " ".join(f.address for f in frames), "000039200933 000000003304")
check("reader errors", str(all(isinstance(e, ProtocolError) for e in reader.take_errors())), "True")
check("reader missing", missing_each_byte(d.Dlt698FrameReader(), b"\xfe\xfe" + un(H3_RSP)),
      "12 12 11 10 9 8 12 11 10 9 8 7 6 5 4 21 20 19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0")
done()
