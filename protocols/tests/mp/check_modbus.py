"""Modbus vectors for CPython and MicroPython: one deterministic line per case, FAIL on a mismatch."""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import modbus as mb
from protocols.errors import ExceptionResponse, ProtocolError
from protocols.modbus import device as mbdev
from protocols.tests.mp.vectors import check, done


def hx(data):
    return binascii.hexlify(bytes(data)).decode()


def un(text):
    return binascii.unhexlify(text)




def error_name(fn, *args):
    try:
        fn(*args)
    except ExceptionResponse as e:
        return "ExceptionResponse:%02x:%02x" % (e.function, e.code)
    except ProtocolError as e:
        return type(e).__name__
    return "ok"


check("crc 123456789", "%04x" % mb.crc16(b"123456789"), "4b37")

FRAMES = (
    ("03006b0003", "1103006b00037687"),
    ("0306ae4156524340", "110306ae415652434049ad"),
    ("030000000a", "01030000000ac5cd"),
    ("0314000100020003000400050006000700080009000a",
     "010314000100020003000400050006000700080009000a8f16"),
    ("8302", "018302c0f1"),
    ("100001000204000a0102", "01100001000204000a01029230"),
    ("1000010002", "011000010002" + "1008"),
    ("0600010003", "010600010003980b"),
)
for pdu, adu in FRAMES:
    unit = int(adu[:2], 16)
    check("rtu %s" % pdu, hx(mb.rtu_frame(unit, un(pdu))), adu)
    got = mb.rtu_parse(un(adu))
    check("rtu_parse %s" % adu, "%d %s" % (got[0], hx(got[1])), "%d %s" % (unit, pdu))

check("build read03", hx(mb.read_request(3, 0x6B, 3)), "03006b0003")
check("build write16", hx(mb.write_registers_request(1, [10, 258])), "100001000204000a0102")
check("build write06", hx(mb.write_register_request(1, 3)), "0600010003")
check("build write05", hx(mb.write_coil_request(0xAC, True)), "0500acff00")
check("build write15", hx(mb.write_coils_request(19, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0])), "0f0013000a02cd01")
check("build read01rsp", hx(mb.read_response(1, [True, False, True, True, False, False, True, True, True])),
      "0102cd01")
check("build read03rsp", hx(mb.read_response(3, [0xAE41, 0x5652, 0x4340])), "0306ae4156524340")
check("build exc", hx(mb.exception_response(3, 2)), "8302")
check("build echo16", hx(mb.write_response(mb.parse_request(un("100001000204000a0102")))), "1000010002")

regs = mb.parse_response(un("03006b0003"), un("0306ae4156524340"))
check("resp03", ",".join(["%04x" % r for r in regs]), "ae41,5652,4340")
bits = mb.parse_response(un("0100130009"), un("0102cd01"))
check("resp01", "".join(["1" if b else "0" for b in bits]), "101100111")
check("resp16", "%r" % (mb.parse_response(un("100001000204000a0102"), un("1000010002")),), "(1, 2)")
check("resp06", "%r" % (mb.parse_response(un("0600010003"), un("0600010003")),), "(1, 3)")
check("resp exc", error_name(mb.parse_response, un("030000000a"), un("8302")), "ExceptionResponse:03:02")
check("resp wrong fc", error_name(mb.parse_response, un("030000000a"), un("0402ffff")), "FrameError")

req = mb.parse_request(un("100001000204000a0102"))
check("req16", "%d %d %d %r" % (req.function, req.address, req.count, req.values), "16 1 2 [10, 258]")
req = mb.parse_request(un("0f0013000a02cd01"))
check("req15", "%d %d %d" % (req.function, req.address, req.count), "15 19 10")
check("req bad count", error_name(mb.parse_request, un("030000007e")), "ExceptionResponse:03:03")
check("req bad span", error_name(mb.parse_request, un("03ffff0002")), "ExceptionResponse:03:02")
check("req bad fc", error_name(mb.parse_request, un("2b0e01")), "ExceptionResponse:2b:01")
check("req short", error_name(mb.parse_request, un("0300")), "FrameError")

for fc, count in ((1, 2000), (1, 2001), (3, 125), (3, 126), (4, 0)):
    check("limit read %d %d" % (fc, count), error_name(mb.read_request, fc, 0, count),
          "ok" if 1 <= count <= (2000 if fc <= 2 else 125) else "EncodingError")
check("limit write16 123", error_name(mb.write_registers_request, 0, [0] * 123), "ok")
check("limit write16 124", error_name(mb.write_registers_request, 0, [0] * 124), "EncodingError")
check("limit write15 1968", error_name(mb.write_coils_request, 0, [True] * 1968), "ok")
check("limit write15 1969", error_name(mb.write_coils_request, 0, [True] * 1969), "EncodingError")
check("limit address", error_name(mb.read_request, 3, 65536, 1), "EncodingError")
check("limit span", error_name(mb.read_request, 3, 65535, 2), "EncodingError")
check("limit unit 248", error_name(mb.rtu_frame, 248, b"\x03"), "EncodingError")
check("limit value", error_name(mb.write_register_request, 0, 65536), "EncodingError")
check("crc bad", error_name(mb.rtu_parse, un("1103006b00037688")), "CrcError")
check("rtu short", error_name(mb.rtu_parse, un("110376")), "FrameError")

tcp = mb.tcp_frame(77, 9, mb.read_request(3, 1, 2))
check("tcp", hx(tcp), "004d000000060903" + "00010002")
got = mb.tcp_parse(tcp)
check("tcp_parse", "%d %d %s" % (got[0], got[1], hx(got[2])), "77 9 0300010002")
check("tcp bad proto", error_name(mb.tcp_parse, un("004d000100060903" + "00010002")), "FrameError")

check("t35 9600", "%.6g" % (mb.t35(9600, 11) * 1000), "4.01042")
check("t35 19200", "%.6g" % (mb.t35(19200, 11) * 1000), "2.00521")
check("t35 115200", "%.6g" % (mb.t35(115200, 11) * 1000), "1.75")
check("frame 33 9600", "%.6g" % (mb.frame_time(33, 9600, 11) * 1000), "37.8125")

STREAM = "ff" + "110306ae415652434049ad" + "f8f9" + "018302c0f1"
STREAM += "110306ae415652434049ae" + "0110000100021008"


def show(frames):
    return " ".join(["%d:%s" % (u, hx(p)) for u, p in frames])


WANT = "17:0306ae4156524340 1:8302 1:1000010002"
for size in (1, 2, 3, 7, 64):
    reader = mb.RtuFrameReader("response")
    data = un(STREAM)
    frames = []
    for i in range(0, len(data), size):
        frames += reader.feed(data[i:i + size])
    frames += reader.reset()
    names = [type(e).__name__ for e in reader.take_errors()]
    check("reader chunk %d" % size, show(frames), WANT)
    check("reader errors %d" % size, "%d crc=%d" % (len(names), names.count("CrcError")), "14 crc=2")

reader = mb.RtuFrameReader("request")
frames = reader.feed(un("fa" + "01100001000204000a01029230" + "0106000100"))
frames += reader.reset()
check("reader request", show(frames), "1:100001000204000a0102")
errs = reader.take_errors()
check("reader request errors", "%d %s" % (len(errs), " ".join([type(e).__name__ for e in errs])),
      "2 FrameError FrameError")

reader = mb.RtuFrameReader("response")
adu = un("110306ae415652434049ad")
counts = []
for i in range(len(adu)):
    reader.feed(adu[i:i + 1])
    counts.append(reader.missing())
check("reader missing", " ".join(["%d" % n for n in counts]), "4 3 8 7 6 5 4 3 2 1 0")

# a prepared read (device.prepare / decode_prepared: the scale of each field decided once) gives what the
# general path (parse_response + decode + scaled) gives, for every scale rule, on both interpreters


def general(frame, reply, specs):
    want = [None] * len(specs)

    def emit(i, value, why):
        want[i] = value

    mbdev.decode(frame[1:-2], mb.parse_response(frame[1:-2], reply), specs, emit)
    return want


same = 0
for scale, offset in ((0.1, 0), (3600, 0), (10, -5), (0.01, 1.5), (2, 0.5), (1.0, 0.0), (1e-9, 0)):
    for typ in ("u16", "s16", "u32", "s32", "f32", "f64"):
        n = 4 if typ == "f64" else 2 if typ in ("u32", "s32", "f32") else 1
        frame = mb.rtu_frame(1, mb.read_request(3, 0, n + 1))
        for regs in ([0] * n, [0xFFFF] * n, [0x4148, 0x1234, 0, 7][:n], [0x3DCC, 0xCCCD, 0x3FB9, 0x999A][:n]):
            data = list(regs)
            data.append(9)
            reply = mb.read_response(3, data)
            for extra in ([], [["bit", n, "bit3", "ABCD", 1, 0]]):  # the whole reply / field by field
                specs = [["a", 0, typ, "ABCD", scale, offset]]
                specs.extend(extra)
                values = mbdev.decode_prepared(mbdev.prepare(1, None, frame, specs), reply, None)
                want = general(frame, reply, specs)
                if repr(values) == repr(want):
                    same += 1
                else:
                    print("FAIL prepared %r %r %s %s got %r want %r"
                          % (scale, offset, typ, regs, values, want))
check("prepared reads as the general path", same, 336)

# the size of a good reply to a request (RtuFrameReader.expect_reply), as agent/tests asserts on CPython
sizer = mb.RtuFrameReader()
sizes = []
for fc, n in ((1, 1), (1, 9), (2, 16), (3, 10), (4, 125), (3, 1)):
    sizer.expect_reply(mb.rtu_frame(1, mb.read_request(fc, 0, n)))
    sizes.append(sizer.reply_size)
for pdu in (un("0600010002"), un("10000000020400010002"), un("2b0e0100")):
    sizer.expect_reply(mb.rtu_frame(1, pdu))
    sizes.append(sizer.reply_size)
check("reply sizes", ",".join(["%d" % n for n in sizes]), "6,7,7,25,255,7,8,8,0")
done()
