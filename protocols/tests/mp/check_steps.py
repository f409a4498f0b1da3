"""The shared device steps and rules (registry, steps of every protocol, poll backoff, quality,
scaling, alarm map) on CPython and MicroPython: one line per case, FAIL on a mismatch.

Each step runs against a meter in memory built from the codecs' server side, the way the agent's
driver and the board's bus run it over a wire. Run from the repository root:
``python protocols/tests/mp/check_steps.py``.
"""

import sys

sys.path.insert(0, ".")

from protocols import alarms, axdr, cjt188, dlt645, dlt698, modbus, poll, quality, registry
from protocols.errors import NoReply, WriteRefused, error_kind
from protocols.scaling import scaled
from protocols.tests.mp.vectors import check, done


def run(step, answer, reader):
    """Drive a step: each yielded frame goes to `answer(frame bytes)`, whose reply bytes are parsed by
    a fresh `reader` and sent back (None: NoReply thrown in). Returns (value, frames sent)."""
    sent = []
    try:
        out = step.send(None)
        while True:
            frame, accept = out
            sent.append(bytes(frame))
            reply = answer(bytes(frame))
            got = None
            if reply is not None:
                for f in reader().feed(reply):
                    if accept(f):
                        got = f
                        break
            if got is None:
                out = step.throw(NoReply("no reply"))
            else:
                out = step.send(got)
    except StopIteration as stop:
        return stop.value, sent


def collect():
    out = []
    return out, lambda i, v, bad: out.append((i, v, bad))


# -- registry ------------------------------------------------------------------------------------------
check("names", registry.names(), ["modbus", "dlt645", "dlt645_1997", "cjt188", "dlt698"])
check("folder", registry.folder("dlt645_1997"), "dlt645")
try:
    registry.device("dlt999")
    check("unknown", "no error", "UnknownProtocol")
except ValueError as exc:
    check("unknown", str(exc), "protocol 'dlt999' is not one of modbus, dlt645, dlt645_1997, cjt188, dlt698")

# -- Modbus: a unit with holding registers 0..3 --------------------------------------------------------
REGS = [2301, 512, 0xFF38, 7]
steps = registry.device("modbus")


def unit7(frame):
    unit, pdu = modbus.rtu_parse(frame)
    req = modbus.parse_request(pdu)
    if req.function == 3:
        return modbus.rtu_frame(unit, modbus.read_response(3, REGS[req.address:req.address + req.count]))
    if req.function == 6:
        REGS[req.address] = (req.values or [REGS[req.address]])[0]
        return modbus.rtu_frame(unit, modbus.write_response(req))
    return modbus.rtu_frame(unit, modbus.exception_response(req.function, 1))


specs = [[0, 0, "u16", "ABCD", 0.1, 0], [1, 1, "u16", "ABCD", 0.01, 0], [2, 2, "s16", "ABCD", 1, 0]]
got, emit = collect()
frame = modbus.rtu_frame(7, modbus.read_request(3, 0, 3))
_, sent = run(steps.read("m", "7", None, frame, specs, 1, emit), unit7, steps.reader(None).__class__)
check("modbus read", got, [(0, 230.1, None), (1, 5.12, None), (2, -200, None)])
check("modbus wire", [s == frame for s in sent], [True])
try:
    run(steps.read("m", "7", None, frame, specs, 1, emit), lambda f: None, steps.reader(None).__class__)
except NoReply as exc:
    check("modbus silent", error_kind(exc), "timeout")
try:
    run(steps.write("m", "7", None, "x", ["input", 0, "u16", "ABCD", 1, 0], 1, 1), unit7,
        steps.reader(None).__class__)
except WriteRefused as exc:
    check("modbus refused", str(exc), "point x is in the input table, which cannot be written")

# -- DL/T 645: a block DI answered in a B1 reply and two follow-ups ------------------------------------
A = "000000000161"
BLOCK = "0001FF00"
VALUE = b"".join([dlt645.encode_value(v, "XXXXXX.XX") for v in (100.0, 10.0, 20.0, 30.0, 40.0)])
frames = dlt645.read_reply_frames(A, BLOCK, VALUE, 8, 1, True, 0)


def meter645(frame):
    f = dlt645.parse_frame(frame)
    if f.control == 0x12:
        return frames[dlt645.parse_followup_request(f)[1]]
    if f.control == 0x1C:
        return dlt645.relay_reply(A)
    return frames[0]


steps = registry.device("dlt645")
opts = steps.options({"protocol": "dlt645", "followup": [16, 1, 1, 2], "credentials": ["02123456", None]})
check("dlt645 options", opts, (16, 1, True, 2, 2007, "02123456", None))
specs = [[0, BLOCK, 4 * k, 4, "XXXXXX.XX", False, 3600000, 0] for k in range(5)]
specs.append([5, BLOCK, 24, 4, "XXXXXX.XX", False, 1, 0])  # beyond the block: a bad point on its own
got, emit = collect()
_, sent = run(steps.read("e", A, opts, dlt645.read_request(A, BLOCK, 2007, 2), specs, 1, emit), meter645,
              dlt645.Dlt645FrameReader)
check("dlt645 block", [(i, v) for i, v, bad in got if bad is None],
      [(0, 360000000), (1, 36000000), (2, 72000000), (3, 108000000), (4, 144000000)])
check("dlt645 short member", [bad for i, v, bad in got if bad is not None],
      ["decode: block 0001FF00 has 20 bytes, member 6 needs 28"])
check("dlt645 frames", len(sent), 3)
until = (2026, 12, 6, 12, 5, 0)
value, sent = run(steps.action("e", A, opts, "relay_trip", until, 1), meter645, dlt645.Dlt645FrameReader)
check("dlt645 relay", (value, dlt645.parse_relay_request(dlt645.parse_frame(sent[0]))[0]), (None, 0x1A))
try:
    steps.check_action("e", steps.options({"protocol": "dlt645"}), "relay_trip")
except WriteRefused as exc:
    check("dlt645 no password", "needs the meter's password" in str(exc), True)

# -- CJ/T 188: a water meter whose flow arrives in litres ----------------------------------------------
W = "00000000012345"
steps = registry.device("cjt188")


def meter188(frame):
    f = cjt188.parse_frame(frame)
    _di, ser, _payload, order = cjt188.parse_request(f)
    return cjt188.encode_901f_reply(0x10, W, {"flow_total": 12345, "flow_total_unit": 0x29,
                                             "flow_settlement": 12.5, "valve": "open"}, ser, order)


opts = steps.options({"protocol": "cjt188", "options": {"meter_type": 16, "unit_code": {"flow_total": 0x2C}}})
got, emit = collect()
_, sent = run(steps.read("w", W, opts, cjt188.read_request(0x10, W), [[0, "flow_total", 1, 0],
                                                                       [1, "valve", 1, 0]], 9, emit),
              meter188, cjt188.Cjt188FrameReader)
check("cjt188 read", got, [(0, 12.345, None), (1, "open", None)])
check("cjt188 ser", cjt188.parse_request(cjt188.parse_frame(sent[0]))[1], 9)

# -- DL/T 698.45: a NormalList GET of energy (array, element picked), voltage and an OAD refused ------
M = "000000000201"
steps = registry.device("dlt698")


def meter698(frame):
    f = dlt698.parse_frame(frame)
    piid, oads, is_list = dlt698.parse_request(f)[:3]
    energy = (axdr.ARRAY, [(axdr.DOUBLE_LONG_UNSIGNED, 1234567), (axdr.DOUBLE_LONG_UNSIGNED, 234567)])
    volts = (axdr.ARRAY, [(axdr.LONG_UNSIGNED, 2301), (axdr.LONG_UNSIGNED, 2299), (axdr.LONG_UNSIGNED, 2310)])
    data = {"00100200": energy, "20000200": volts}
    results = [dlt698.Result(o, data[o]) if o in data else dlt698.Result(o, None, 4) for o in oads]
    return dlt698.read_response(M, piid, results, is_list)


opts = steps.options({"protocol": "dlt698", "options": {"client": 0, "preamble": 2}})
specs = [[0, "00100200", 1, 3600000, 0], [1, "00100200", 2, 3600000, 0], [2, "20000200", 3, 1, 0],
         [3, "200F0200", 0, 1, 0]]
frame = dlt698.read_request(M, ["00100200", "20000200", "200F0200"], 0, 0, preamble=2)
got, emit = collect()
run(steps.read("m", M, opts, frame, specs, 1, emit), meter698, dlt698.Dlt698FrameReader)
check("dlt698 read", got, [(0, 44444412000, None), (1, 8444412000, None), (2, 231.0, None),
                           (3, None, "dar: object undefined")])
try:
    run(steps.read("m", M, opts, dlt698.read_request(M, "200F0200", 0, 0), [[0, "200F0200", 0, 1, 0]], 1,
                   emit), meter698, dlt698.Dlt698FrameReader)
except dlt698.DarError as exc:
    check("dlt698 all refused", error_kind(exc), "abnormal")

# -- the shared rules ----------------------------------------------------------------------------------
check("scaled", [scaled(2301, 0.1, 0), scaled(5, 2, 1), scaled(True, 10, 0), scaled("x", 2, 0)],
      [230.1, 11, True, "x"])
check("backoff", [poll.retry_delay(n, 1.0, 0.5, 300) for n in (1, 2, 3, 10)], [5.0, 10.0, 20.0, 300])
check("backoff ms", [poll.retry_delay(n, 1000, 500, 300000) for n in (1, 2, 3, 10)],
      [5000, 10000, 20000, 300000])
check("due", [poll.next_due(10, 5, 12), poll.next_due(10, 5, 20)], [15, 20])
check("offline", [poll.offline_now(n) for n in (1, 2, 3)], [False, False, True])
check("reasons", [poll.online_reason(True), poll.offline_reason(3, "timeout")],
      ["answering with errors", "no reply to 3 polls (timeout)"])
check("quality codes", [quality.code(t) for t in (None, "not_available", "bad_bcd", "decode: x", "unit: y",
                                                  "missing")], [0, 1, 2, 3, 4, 5])
check("quality rule", [quality.change(False, "bad_bcd"), quality.change(True, "bad_bcd"),
                       quality.change(True, None), quality.change(False, None)],
      [quality.RAISED, quality.NO_CHANGE, quality.CLEARED, quality.NO_CHANGE])
check("alarm", sorted(alarms.alarm("e", None, "comms", "no reply", True, 1700000000.5).items()),
      sorted({"device": "e", "point": None, "kind": "comms", "value": "no reply", "state": "raised",
              "time": 1700000000}.items()))
done()
