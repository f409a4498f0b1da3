"""The protocol registry: one table, one line per protocol name -> the folder that implements it.

Like python-can's interface table, a line names where a protocol lives and nothing is imported until
it is used: `family(name)` (what host code asks: profiles, options, addresses, planning, compiled
form; protocols/<folder>/family.py) and `device(name)` (the sans-I/O read/write/action steps shared
by the agent and the board; protocols/<folder>/device.py). Variants of one protocol (dlt645 and
dlt645_1997) are one folder. An unknown name is an `UnknownProtocol` error naming the known ones;
generic code never compares protocol names.

Adding a protocol is adding its folder and one line here.
"""

import sys

# (protocol name, folder under protocols/); a tuple, not a dict: MicroPython's dicts keep no order
PROTOCOLS = (
    ("modbus", "modbus"),
    ("dlt645", "dlt645"),
    ("dlt645_1997", "dlt645"),
    ("cjt188", "cjt188"),
    ("dlt698", "dlt698"),
)

_families: dict = {}


class UnknownProtocol(ValueError):
    """A protocol name the registry does not know: says which it knows."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__("protocol %r is not one of %s" % (name, ", ".join(names())))


def names() -> list:
    """Every registered protocol name, in table order."""
    return [name for name, _ in PROTOCOLS]


def folder(name: object) -> str:
    """The folder (family) of protocol `name`: dlt645_1997 -> dlt645."""
    for known, where in PROTOCOLS:
        if known == name:
            return where
    raise UnknownProtocol(name)


def _module(path: str):  # type: ignore[no-untyped-def]
    __import__(path)
    return sys.modules[path]


def family(name: object):  # type: ignore[no-untyped-def]
    """The `Family` of protocol `name` (built once); UnknownProtocol for a name not in the table."""
    got = _families.get(name)
    if got is None:
        got = _module("protocols.%s.family" % folder(name)).Family(name)
        _families[name] = got
    return got


def device(name: object):  # type: ignore[no-untyped-def]
    """The sans-I/O device steps (module) of protocol `name`."""
    return _module("protocols.%s.device" % folder(name))


def codec(name: object):  # type: ignore[no-untyped-def]
    """The codec (module) of protocol `name`."""
    return _module("protocols.%s" % folder(name))
