"""What a failed exchange most likely means on an RS-485 line, in a technician's words.

`explain(exc, where)` turns a link or codec error into the cause to check first, naming the port, the
line settings in use and the address; `read`, `scan`, `run --once` and the agent's log all use it.

    no reply at all            wiring (A/B), address, power, and the baud rate / parity: at wrong
                               settings most meters stay silent (names the profile's settings if they differ)
    garbled / torn replies     baud rate or parity (framing and parity errors give bytes no frame parses)
    checksum (CRC) errors      termination or noise when they come at a steady rate among good replies;
                               an address clash or baud / parity when every reply fails
    our own request echoed     the adapter's receiver hears its own transmission: DE/RE wiring or auto
                               direction control
    exception / error reply    the device is there and answered: wiring, address and settings are right
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.link.base import LinkClosed, LinkTimeout
from protocols.errors import AbnormalReply, CrcError, ExceptionResponse, FrameError

__all__ = ["Where", "explain", "line_text"]


def line_text(baud: int, parity: str, stopbits: int = 1, bytesize: int = 8) -> str:
    """ "2400 8E1"."""
    return "%d %d%s%d" % (baud, bytesize, parity, stopbits)


@dataclass
class Where:
    """The facts a diagnosis names: port, line settings in use, address, and the profile's settings."""

    port: str
    line: str  # "2400 8E1", or "Modbus TCP"
    address: str
    expected_line: str | None = None  # the profile's link settings, when it has them
    device: str = ""

    @classmethod
    def of(cls, bus: Any, address: str, profile: Any = None, device: str = "") -> Where:
        """From a BusConfig (and the device's profile, whose `link` holds its factory settings)."""
        port = str(bus.port)
        if port.lower().startswith("tcp://"):
            return cls(port, "Modbus TCP", str(address), None, device)
        line = line_text(bus.baud, bus.parity, bus.stopbits, bus.bytesize)
        expected = None
        link = getattr(profile, "link", None) or {}
        if link.get("baud"):
            expected = line_text(
                int(link["baud"]), str(link.get("parity", "N")), int(link.get("stopbits", 1))
            )
        return cls(port, line, str(address), expected, device)

    def text(self) -> str:
        who = "%s at address %s" % (self.device, self.address) if self.device else "address %s" % self.address
        return "%s on %s (%s)" % (who, self.port, self.line)


def _settings_hint(where: Where) -> str:
    if where.line == "Modbus TCP":
        return ""
    if where.expected_line and where.expected_line != where.line:
        return (
            "; the line runs %s but the profile says %s: at a wrong baud rate or parity a device "
            "stays silent" % (where.line, where.expected_line)
        )
    return (
        "; or the baud rate / parity (%s here): at wrong settings most meters stay silent "
        "(`fieldlink scan --auto PORT` tries the common settings)" % where.line
    )


def explain(exc: BaseException, where: Where) -> str:
    """The likely cause of `exc` and what to check, naming port, settings and address."""
    if where.line == "Modbus TCP":
        if isinstance(exc, LinkTimeout):
            return (
                "no reply from %s: is unit %s behind this Modbus TCP server, and is the gateway's "
                "serial side wired and powered?" % (where.text(), where.address)
            )
        if isinstance(exc, LinkClosed):
            return "cannot reach %s: is the server on and the TCP port right?" % where.port
    if isinstance(exc, LinkTimeout):
        if getattr(exc, "echoed", False):
            return (
                "only our own request came back from %s: the adapter hears itself (DE/RE tied wrong or "
                "auto direction too slow) and the device did not answer: check its wiring, address "
                "and power%s" % (where.text(), _settings_hint(where))
            )
        if getattr(exc, "received", 0):
            return (
                "garbled or torn reply from %s: %d bytes that make no frame; likely the baud rate or "
                "parity (framing and parity errors), else noise or two devices answering at once"
                % (where.text(), exc.received)
            )  # type: ignore[attr-defined]
        return (
            "no reply at all from %s: check the wiring (A/B, ground), the address (%s), that the "
            "device is powered%s" % (where.text(), where.address, _settings_hint(where))
        )
    if isinstance(exc, CrcError):
        return (
            "checksum (CRC) error from %s: when it comes at a steady rate among good replies, check the "
            "termination (120 ohm at both ends of the line) and noise (shield, cable run beside power); "
            "when every reply fails, two devices answering at one address (their replies collide) or the "
            "baud rate or parity (%s)" % (where.text(), where.line)
        )
    if isinstance(exc, FrameError):
        text = str(exc)
        if "address" in text or "another meter" in text:
            return (
                "a reply from another device on %s: two devices share an address, or another master "
                "polls this line (%s)" % (where.text(), text)
            )
        return (
            "garbled reply from %s (%s): likely the baud rate or parity (%s), else noise or a second "
            "master on the line" % (where.text(), text, where.line)
        )
    if isinstance(exc, ExceptionResponse):
        return (
            "the device at %s answered and refused (exception %02X, %s): wiring, address and settings are "
            "right; check the register map (profile)" % (where.text(), exc.code, exc.meaning)
        )
    if isinstance(exc, AbnormalReply):
        return (
            "the meter at %s answered with an error (%s): wiring, address and settings are right; check "
            "the data identifier or password" % (where.text(), exc.meaning)
        )
    if isinstance(exc, LinkClosed):
        if "lock" in str(exc):
            return ("port %s is in use by another program (the agent's service? `systemctl stop fieldlink` "
                    "first, or read through its broker)" % where.port)
        return "port %s is not usable: %s" % (where.port, exc)
    return "%s: %s" % (where.text(), exc)
