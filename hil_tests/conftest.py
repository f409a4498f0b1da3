"""Fixtures of the HIL suite: a private Mosquitto per test (skipped with a reason if it is missing), the
link (`--hil-link` / `HIL_LINK`: `sim` by default, a device path or `socket://…` for a real rig) and the
simulated site started on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from hil_tests.broker import Mosquitto, broker_or_skip
from hil_tests.link import SIM_ONLY, SimSite, Target, parse_link

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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "FieldLink hardware-in-the-loop suite")
    group.addoption("--hil-link", default=None, metavar="LINK",
                    help="`sim` (default; env HIL_LINK), a device path (/dev/ttyUSB0) or socket://host:port")
    group.addoption("--hil-rig-config", default=None, metavar="FILE",
                    help="agent config template of a real rig (env HIL_RIG_CONFIG); see docs/hil.md")


@pytest.fixture(scope="session")
def hil_link(pytestconfig: pytest.Config) -> Target:
    """The link under test: the simulator unless --hil-link / HIL_LINK names a real one."""
    spec = pytestconfig.getoption("--hil-link", default=None) or os.environ.get("HIL_LINK")
    try:
        return parse_link(spec)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def hil_rig_config(pytestconfig: pytest.Config) -> str | None:
    """The rig's agent config template (only meaningful with a real link)."""
    return pytestconfig.getoption("--hil-rig-config", default=None) or os.environ.get("HIL_RIG_CONFIG")


@pytest.fixture
def sim_site(hil_link: Target, tmp_path: object) -> Iterator[Callable[..., SimSite]]:
    """`sim_site("demo")` starts `fieldlink sim demo --instant --ports-file …` and returns the running
    SimSite (ports, control client); every site started is stopped by PID at teardown. With a real link
    the test is skipped: it needs the simulator's control channel."""
    if not hil_link.is_sim:
        pytest.skip("%s (--hil-link=%s)" % (SIM_ONLY, hil_link.spec))
    started: list[SimSite] = []

    def start(scenario: str = "demo", **options: object) -> SimSite:
        site = SimSite(scenario, os.path.join(str(tmp_path), "sim%d" % len(started)), **options)  # type: ignore[arg-type]
        started.append(site)
        return site.start()

    try:
        yield start
    finally:
        for site in reversed(started):
            site.stop()
