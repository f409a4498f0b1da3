"""Fixtures of the HIL suite: a private Mosquitto per test (skipped with a reason if it is missing)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hil_tests.broker import Mosquitto, broker_or_skip

if os.path.exists(os.path.join(os.path.dirname(__file__), "mpvm", "fixtures.py")):
    from hil_tests.mpvm.fixtures import *  # noqa: F403  (MicroPython VM fixtures, when present)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A started Mosquitto on a free loopback port, with queues sized for outage tests."""
    broker = broker_or_skip(persistence=True)
    try:
        yield broker
    finally:
        broker.close()
