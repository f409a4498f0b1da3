"""The wire model's numbers for docs/simulator.md, measured through the simulator's device servers.

Run: .venv/bin/python -m simulator.tests.wire_numbers  (not a test: it prints; the tests assert bounds)
"""

from __future__ import annotations

import json
import tomllib

from protocols import dlt645
from simulator.scenario import parse
from simulator.site import Site
from simulator.tests.conftest import open_url, read_frame
from simulator.tests.test_mismatch import METER, listen
from simulator.tests.test_physical import REPLY, poll
from simulator.tests.test_physical import bus as lamp_bus

REQUEST = dlt645.read_request("000000000161", "00010000")


def site_of(text: str) -> Site:
    return Site(parse(tomllib.loads(text), "numbers.toml"), start=1717200000.0, speed=1e-6).start()


def client_counts(site: Site, bus: str) -> dict:
    return next(a for a in site.bus(bus).accesses() if a.name == "rfc2217").wire.snapshot()["counts"]


def wrong_baud() -> None:
    site = site_of(METER % "drop")
    try:
        with open_url(site, "meters", baudrate=9600, parity="N", timeout=0.05) as port:
            for _ in range(50):
                port.write(REQUEST)
                listen(port, 0.1)
            wire = client_counts(site, "meters")["to_devices"]
        print("9600 8N1 -> 2400 8E1 meter: %s; the meter answered %d"
              % (json.dumps(wire), site.device("e1").counts["answered"]))
        with open_url(site, "meters", kind="socket") as agent, \
                open_url(site, "meters", baudrate=9600, parity="N", timeout=0.05) as laptop:
            heard = b""
            for _ in range(50):
                agent.write(REQUEST)
                read_frame(agent, dlt645.Dlt645FrameReader())
                heard += listen(laptop, 0.1)
            wire = client_counts(site, "meters")["to_client"]
        print("2400 8E1 traffic heard at 9600 8N1: %s; %.2f characters per byte, %d zero bytes"
              % (json.dumps(wire), wire["chars"] / wire["bytes"], heard.count(0)))
    finally:
        site.stop()


def wrong_framing() -> None:
    cases = (("drop", "8N1"), ("drop", "8O1"), ("drop", "8N2"), ("keep", "8N1"), ("keep", "8O1"))
    for mode, framing in cases:
        site = site_of(METER % mode)
        try:
            valid = 0
            with open_url(site, "meters", parity=framing[1], stopbits=int(framing[2]), timeout=0.05) as port:
                for _ in range(20):
                    port.reset_input_buffer()
                    port.write(REQUEST)
                    valid += read_frame(port, dlt645.Dlt645FrameReader(), timeout=0.3) is not None
                counts = client_counts(site, "meters")
            print("2400 %s on 2400 8E1, meter uart_errors=%s: %d/20 valid replies; %s"
                  % (framing, mode, valid, json.dumps(counts)))
        finally:
            site.stop()


def unterminated() -> None:
    for extra in ("termination = false\nbit_error_rate = 0.002", "termination = false",
                  "termination = false\ncable_length = 1200"):
        site = site_of(lamp_bus(extra))
        try:
            clean = 0
            with open_url(site, "street", kind="socket", timeout=0.02) as port:
                for _ in range(200):
                    port.reset_input_buffer()
                    clean += poll(port, 0.08) == REPLY
            wire = site.bus("street").wire_counts()
            flips = wire["to_devices"]["bit_errors"] + wire["to_client"]["bit_errors"]
            print("%s, 9600 8N1: %d/200 clean replies, %d bits flipped"
                  % (extra.replace("\n", ", "), clean, flips))
        finally:
            site.stop()


if __name__ == "__main__":
    wrong_baud()
    wrong_framing()
    unterminated()
