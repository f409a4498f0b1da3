"""The server side of RFC 2217 (Telnet COM-PORT-OPTION), sans I/O: bytes from the client in, events out.

Telnet (RFC 854/855): IAC (0xFF) starts a command; IAC IAC is a data byte 0xFF, both ways. Options are
negotiated with WILL/WONT/DO/DONT; this server offers and accepts BINARY (RFC 856), SUPPRESS-GO-AHEAD
and COM-PORT-OPTION (44), refuses the rest (ECHO included: it never echoes). Data is always 8-bit.

COM-PORT-OPTION subnegotiations (IAC SB 44 <command> <value> IAC SE), each answered with command + 100:

| command | value | answer |
|---|---|---|
| 1 SET-BAUDRATE | 4 bytes, network order; 0 asks | the baud in force (the old one if refused) |
| 2 SET-DATASIZE | 5..8; 0 asks | the data bits in force |
| 3 SET-PARITY | 1 none, 2 odd, 3 even, 4 mark, 5 space; 0 asks | the parity in force |
| 4 SET-STOPSIZE | 1, 2, 3 (= 1.5); 0 asks | the stop bits in force |
| 5 SET-CONTROL | flow control 0-3, 13-19; break 4-6; DTR 7-9; RTS 10-12 | the state in force |
| 6 NOTIFY-LINESTATE | (a poll) | the line state |
| 7 NOTIFY-MODEMSTATE | (a poll) | CD, DSR, CTS on |
| 10 / 11 SET-LINESTATE-MASK / SET-MODEMSTATE-MASK | the mask | the mask |
| 12 PURGE-DATA | 1 receive, 2 transmit, 3 both | the same value |

FLOWCONTROL-SUSPEND/RESUME (8, 9) are taken note of and have no effect (the server never has a backlog
to hold back). Settings are checked as a UART would (simulator/uart.py) and refused by answering the
value in force. Line state errors (parity, framing, break) are notified when the client's line state
mask asks for them.
"""

from __future__ import annotations

import struct

from simulator.uart import Framing, FramingError

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
BINARY, ECHO, SGA, COM_PORT = 0, 1, 3, 44
OFFERED = (BINARY, SGA, COM_PORT)

SET_BAUDRATE, SET_DATASIZE, SET_PARITY, SET_STOPSIZE, SET_CONTROL = 1, 2, 3, 4, 5
NOTIFY_LINESTATE, NOTIFY_MODEMSTATE, FLOWCONTROL_SUSPEND, FLOWCONTROL_RESUME = 6, 7, 8, 9
SET_LINESTATE_MASK, SET_MODEMSTATE_MASK, PURGE_DATA = 10, 11, 12
SERVER = 100  # a server's answer is the command + 100

PARITY_CODES = {1: "N", 2: "O", 3: "E", 4: "M", 5: "S"}
STOP_CODES = {1: 1.0, 2: 2.0, 3: 1.5}
LINE_BITS = {"break": 0x10, "framing": 0x08, "parity": 0x04}
MODEM_READY = 0x80 | 0x20 | 0x10  # CD, DSR, CTS
MAX_SUBNEGOTIATION = 64  # longer ones are hostile: swallowed to their IAC SE and refused

# SET-CONTROL values: (group, state); a request value answers with the group's state
CONTROL_SET = {1: ("flow", 1), 2: ("flow", 2), 3: ("flow", 3), 17: ("flow", 17), 18: ("flow", 18),
               19: ("flow", 19), 5: ("break", 5), 6: ("break", 6), 8: ("dtr", 8), 9: ("dtr", 9),
               11: ("rts", 11), 12: ("rts", 12), 14: ("inflow", 14), 15: ("inflow", 15), 16: ("inflow", 16)}
CONTROL_ASK = {0: "flow", 4: "break", 7: "dtr", 10: "rts", 13: "inflow"}


def escape(data: bytes) -> bytes:
    """Data for the client: every 0xFF doubled."""
    return data.replace(b"\xff", b"\xff\xff")


class ComPort:
    """The Telnet and COM-PORT-OPTION state of one connection.

    `feed(data)` returns, in order, what the client's bytes mean: ("data", bytes) for the line,
    ("settings", Framing) when the client changed its UART, ("purge", 1|2|3), ("break", bool);
    what to send back accumulates in `take()`.
    """

    def __init__(self, framing: Framing) -> None:
        self.framing = framing  # the client's UART settings (the bus's until it sets its own)
        self.us: set[int] = set()  # options in force on our side
        self.them: set[int] = set()  # ... on the client's side
        self._asked_us: set[int] = set()
        self._asked_them: set[int] = set()
        self.control = {"flow": 1, "break": 6, "dtr": 8, "rts": 11, "inflow": 14}
        self.linestate_mask = 0
        self.modemstate_mask = 0xFF
        self.suspended = False
        self.counts = {"commands": 0, "refused": 0, "ignored": 0}
        self._out = bytearray()
        self._state = 0  # 0 data, 1 after IAC, 2 after WILL/WONT/DO/DONT
        self._verb = 0
        self._sub: bytearray | None = None
        self._sub_overflow = False
        self._events: list[tuple] = []
        self._data = bytearray()

    def greet(self) -> bytes:
        """What the server says first: binary both ways."""
        self._ask(DO, BINARY)
        self._ask(WILL, BINARY)
        return self.take()

    def take(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def linestate(self, errors: set[str]) -> None:
        """Tell the client about "parity" / "framing" / "break" errors, if its mask asks for them."""
        if not errors:
            return
        bits = sum(LINE_BITS[e] for e in errors) & self.linestate_mask
        if bits and COM_PORT in self.us:
            self._sub_reply(NOTIFY_LINESTATE, bytes([bits]))

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes) -> list[tuple]:
        for byte in data:
            if self._state == 0:
                if byte == IAC:
                    self._state = 1
                elif self._sub is not None:
                    self._sub_byte(byte)
                else:
                    self._data.append(byte)
            elif self._state == 1:
                self._state = 0
                if byte == IAC:
                    if self._sub is not None:
                        self._sub_byte(byte)
                    else:
                        self._data.append(byte)
                elif byte == SB:
                    self._flush()
                    self._sub = bytearray()
                elif byte == SE:
                    sub, self._sub = self._sub, None
                    if self._sub_overflow:
                        self._sub_overflow = False
                        self.counts["refused"] += 1
                    elif sub is not None:
                        self._subnegotiation(bytes(sub))
                elif byte in (WILL, WONT, DO, DONT):
                    self._verb, self._state = byte, 2
                else:
                    self.counts["ignored"] += 1  # NOP, BRK, AYT, ...: no meaning for a serial port
            else:
                self._state = 0
                self._negotiate(self._verb, byte)
        self._flush()
        events, self._events = self._events, []
        return events

    def _sub_byte(self, byte: int) -> None:
        assert self._sub is not None
        if len(self._sub) < MAX_SUBNEGOTIATION:
            self._sub.append(byte)
        else:
            self._sub_overflow = True  # hostile or broken: the rest is swallowed up to IAC SE

    def _flush(self) -> None:
        if self._data:
            self._events.append(("data", bytes(self._data)))
            self._data = bytearray()

    # ------------------------------------------------------------------ option negotiation
    def _send(self, verb: int, option: int) -> None:
        self._out += bytes([IAC, verb, option])

    def _ask(self, verb: int, option: int) -> None:
        (self._asked_them if verb == DO else self._asked_us).add(option)
        self._send(verb, option)

    def _negotiate(self, verb: int, option: int) -> None:
        self.counts["commands"] += 1
        if verb in (WILL, WONT):  # about the client's side
            asked = option in self._asked_them
            self._asked_them.discard(option)
            if verb == WILL and option in OFFERED:
                if option not in self.them:
                    self.them.add(option)
                    if not asked:
                        self._send(DO, option)
            elif verb == WILL:
                self.counts["refused"] += 1
                self._send(DONT, option)
            elif option in self.them:
                self.them.discard(option)
                self._send(DONT, option)
        else:  # DO / DONT: about our side
            asked = option in self._asked_us
            self._asked_us.discard(option)
            if verb == DO and option in OFFERED:
                if option not in self.us:
                    self.us.add(option)
                    if not asked:
                        self._send(WILL, option)
            elif verb == DO:
                self.counts["refused"] += 1
                self._send(WONT, option)
            elif option in self.us:
                self.us.discard(option)
                self._send(WONT, option)

    # ------------------------------------------------------------------ COM-PORT-OPTION
    def _sub_reply(self, command: int, value: bytes) -> None:
        self._out += bytes([IAC, SB, COM_PORT, command + SERVER]) + escape(value) + bytes([IAC, SE])

    def _subnegotiation(self, sub: bytes) -> None:
        if len(sub) < 2 or sub[0] != COM_PORT:
            self.counts["ignored"] += 1
            return
        self.counts["commands"] += 1
        command, value = sub[1], sub[2:]
        fr = self.framing
        if command == SET_BAUDRATE and len(value) == 4:
            baud = struct.unpack(">I", value)[0]
            if baud:
                self._set(baud=baud)
            self._sub_reply(command, struct.pack(">I", self.framing.baud))
        elif command == SET_DATASIZE and len(value) == 1:
            if value[0]:
                self._set(bytesize=value[0])
            self._sub_reply(command, bytes([self.framing.bytesize]))
        elif command == SET_PARITY and len(value) == 1:
            if value[0]:
                self._set(parity=PARITY_CODES.get(value[0], "?"))
            code = {v: k for k, v in PARITY_CODES.items()}[self.framing.parity]
            self._sub_reply(command, bytes([code]))
        elif command == SET_STOPSIZE and len(value) == 1:
            if value[0]:
                self._set(stopbits=STOP_CODES.get(value[0], 0.0))
            code = {v: k for k, v in STOP_CODES.items()}[float(self.framing.stopbits)]
            self._sub_reply(command, bytes([code]))
        elif command == SET_CONTROL and len(value) == 1:
            self._control(value[0])
        elif command == NOTIFY_LINESTATE:
            self._sub_reply(command, b"\x00")
        elif command == NOTIFY_MODEMSTATE:
            self._sub_reply(command, bytes([MODEM_READY & self.modemstate_mask]))
        elif command in (FLOWCONTROL_SUSPEND, FLOWCONTROL_RESUME):
            self.suspended = command == FLOWCONTROL_SUSPEND
        elif command == SET_LINESTATE_MASK and len(value) == 1:
            self.linestate_mask = value[0]
            self._sub_reply(command, value)
        elif command == SET_MODEMSTATE_MASK and len(value) == 1:
            self.modemstate_mask = value[0]
            self._sub_reply(command, value)
        elif command == PURGE_DATA and len(value) == 1 and value[0] in (1, 2, 3):
            self._events.append(("purge", value[0]))
            self._sub_reply(command, value)
        else:
            self.counts["refused"] += 1
        if self.framing != fr:
            self._events.append(("settings", self.framing))

    def _set(self, **change: object) -> None:
        values = {"baud": self.framing.baud, "bytesize": self.framing.bytesize,
                  "parity": self.framing.parity, "stopbits": self.framing.stopbits}
        values.update(change)
        try:
            self.framing = Framing(**values)  # type: ignore[arg-type]
        except FramingError:
            self.counts["refused"] += 1  # the answer carries the value still in force

    def _control(self, code: int) -> None:
        if code in CONTROL_SET:
            group, state = CONTROL_SET[code]
            self.control[group] = state
            if group == "break":
                self._events.append(("break", state == 5))
            self._sub_reply(SET_CONTROL, bytes([state]))
        elif code in CONTROL_ASK:
            self._sub_reply(SET_CONTROL, bytes([self.control[CONTROL_ASK[code]]]))
        else:
            self.counts["refused"] += 1
