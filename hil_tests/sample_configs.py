"""Config texts both test trees write, built in one place: the agent's tests (agent/tests) and the
board's tests (firmware_py/tests, which run on the host) describe the same lamp sites.

Each function returns a block of TOML (a site config, or a simulator scenario) ending in a newline;
tests put blocks together with a blank line between them, as a person would write the file:

    text = site_head() + "\\n" + bus() + "\\n" + lamp(1) + "\\n" + lamp(2) + "\\n" \\
        + group("street", ["lamp-01", "lamp-02"]) + "\\n" + schedule("street", EVENING, group="street")

The blocks are the very lines the tests were first written with, so the line numbers that
`fieldlink check-config` prints for them are those the tests expect.
"""

from __future__ import annotations

from collections.abc import Sequence

# Jinan (Shandong), the place of the sample street: Asia/Shanghai, no daylight saving
PLACE = 'latitude = 36.6512\nlongitude = 117.1201\ntimezone = "Asia/Shanghai"\n'


def site_head(site: str = "street", gateway: str = "gw1", place: str = PLACE,
              signed: str | None = "none") -> str:
    """format, [gateway] (with its place), [outbox], and [commands] unless `signed` is None."""
    text = 'format = 1\n\n[gateway]\nsite = "%s"\nid = "%s"\n%s\n[outbox]\npath = "outbox.sqlite"\n' % (
        site, gateway, place)
    if signed is not None:
        text += '\n[commands]\nsigned = "%s"\n' % signed
    return text


def bus(name: str = "lamps", port: str = "/dev/ttyFAKE0") -> str:
    """One [[buses]] entry."""
    return '[[buses]]\nname = "%s"\nport = "%s"\n' % (name, port)


def lamp(n: int, bus: str = "lamps", extra: str = "") -> str:
    """The [[devices]] entry of lamp `lamp-NN` (a generic-lamp at address n); `extra`: more key lines."""
    return '[[devices]]\nid = "lamp-%02d"\nbus = "%s"\nprofile = "generic-lamp"\naddress = %d\n%s' % (
        n, bus, n, extra)


def group(name: str, members: Sequence[str]) -> str:
    """A [groups] table with one group."""
    return "[groups]\n%s = [%s]\n" % (name, ", ".join('"%s"' % m for m in members))


def step(at: str, values: str, days: str | None = None) -> str:
    """One [[schedules.steps]] entry: at `at` (a time or a sun event), set {values}, on `days`."""
    when = 'days = "%s"\n' % days if days else ""
    return '[[schedules.steps]]\nat = "%s"\n%sset = {%s}\n' % (at, when, values)


def schedule(name: str, steps: Sequence[str], group: str | None = None,
             devices: Sequence[str] | None = None) -> str:
    """A [[schedules]] entry for a group or a list of devices, then its steps."""
    text = '[[schedules]]\nname = "%s"\n' % name
    if group is not None:
        text += 'group = "%s"\n' % group
    if devices is not None:
        text += "devices = [%s]\n" % ", ".join('"%s"' % d for d in devices)
    return text + steps_text(steps)


def steps_text(steps: Sequence[str]) -> str:
    """Steps one after another, each after a blank line (a schedule's tail)."""
    return "".join("\n" + s for s in steps)


# the street's evening: full light ten minutes before sunset, half from 23:30 on weeknights, off after dawn
EVENING = (step("sunset-10m", "on = true, dim = 1.0"), step("23:30", "dim = 0.5", days="mon-fri"),
           step("sunrise+15m", "on = false"))
# dusk to dawn
SUN = (step("sunset", "on = true, dim = 1.0"), step("sunrise", "on = false"))
# on from 22:00 to 02:00 (a night across midnight)
NIGHT = (step("22:00", "on = true, dim = 1.0"), step("02:00", "on = false"))


def lamp_scenario(site: str, lamps: int, line: str, dim: float, speed: float | None = None) -> str:
    """A simulator scenario: one bus `street` of `lamps` generic lamps (lamp-01.., addresses from 1) at
    `dim`, rated 100 W, seed 5, UTC+8; `speed` when the test sets it."""
    return ('[site]\nname = "%s"\nseed = 5\n%sutc_offset = 8\n\n[[bus]]\nname = "street"\nline = "%s"\n\n'
            '[[bus.device]]\nid = "lamp-{n:02}"\ncount = %d\nprofile = "generic-lamp"\naddress = 1\n'
            "params = { dim = %s, rated_power = 100 }\n"
            % (site, "" if speed is None else "speed = %s\n" % speed, line, lamps, dim))


__all__ = ["EVENING", "NIGHT", "PLACE", "SUN", "bus", "group", "lamp", "lamp_scenario", "schedule",
           "site_head", "step", "steps_text"]
