"""MicroPython VM fixtures, star-imported by hil_tests/conftest.py (keep `__all__` to fixtures)."""

from __future__ import annotations

import pytest

from hil_tests.mpvm.vm import micropython_available

__all__ = ["micropython_vm"]


@pytest.fixture(scope="session")
def micropython_vm() -> None:
    """Skip the test (with the reason) when Node.js or the npm MicroPython package is missing."""
    if not micropython_available():
        pytest.skip("MicroPython VM missing: needs node and `make setup` (npm install in hil_tests/mpvm)")
