"""Shared pytest setup: hypothesis profiles sized for a 2-core CI machine."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(  # `make test-fast`, the inner loop; `make test` runs the default 300
    "fast", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Under CI nothing may skip silently (a missing broker, VM or simulator is a red run), except
    tests marked `hardware`, which need a real rig that CI does not have."""
    if not os.environ.get("CI") or call.excinfo is None or item.get_closest_marker("hardware"):
        return
    import pytest

    if call.excinfo.errisinstance(pytest.skip.Exception) and not hasattr(item, "_ci_skip_reported"):
        item._ci_skip_reported = True
        reason = str(call.excinfo.value)
        call.excinfo = None
        try:
            pytest.fail("skipped under CI, which must run every test: %s" % reason)
        except pytest.fail.Exception:
            import _pytest._code

            call.excinfo = _pytest._code.ExceptionInfo.from_current()


# Whole modules that start processes, brokers or the MicroPython VM (besides the tests that mark
# themselves `slow`, such as firmware_py/tests' VM tests through firmware_py/tests/mpvm.needs_vm).
# `make test-fast` runs everything else: codecs, rules and units, in well under 90 s.
SLOW_PATHS = (
    "hil_tests/",  # the end-to-end suite: Mosquitto, simulator and agent subprocesses, the VM
    "agent/tests/test_install.py",  # builds wheels into a fresh venv
    "agent/tests/test_sim_e2e.py",  # `fieldlink sim` and `fieldlink run` as subprocesses
    "agent/tests/test_cli_conventions.py",  # every subcommand as a subprocess, its exit codes
    "agent/tests/test_schedule_cli.py",  # `fieldlink schedule` as a subprocess for cities and dates
    "agent/tests/test_publisher_faults.py",  # the uplink against a real Mosquitto, a failing disk, a stall
    "agent/tests/test_reconnect.py",  # the uplink through a relay to a real Mosquitto
    "agent/tests/test_idle.py",  # a running uplink's wake-ups over seconds, with a real Mosquitto
    "agent/tests/test_latency.py",  # packs at the wire with a real Mosquitto
    "protocols/tests/test_micropython.py",  # every check script under the VM
    "protocols/tests/test_mqtt_packet_interop.py",  # paho-mqtt and a real Mosquitto on loopback sockets
    "simulator/tests/test_physical.py",  # the line at real baud timing, with bit errors
    "simulator/tests/test_mismatch.py",  # wrong line settings against real-time meters
)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    import pytest

    root = str(config.rootpath) + os.sep
    for item in items:
        path = str(item.path)
        rel = path[len(root):] if path.startswith(root) else path
        if rel.replace(os.sep, "/").startswith(SLOW_PATHS):
            item.add_marker(pytest.mark.slow)


import threading as _threading  # noqa: E402

import pytest as _pytest  # noqa: E402


@_pytest.fixture(autouse=True)
def _no_bus_owner_outlives_its_test():  # type: ignore[no-untyped-def]
    """A bus owner thread (agent/scheduler.py: "bus-<name>") left running by a test keeps reopening its
    port, and the next test's pty may get the same /dev/pts number: every test stops what it started."""
    before = {t.ident for t in _threading.enumerate()}
    yield
    left = [t.name for t in _threading.enumerate()
            if t.ident not in before and t.name.startswith("bus-") and t.is_alive()]
    assert not left, "bus owner threads still running after the test: %s" % left
