"""`python -m hil_tests.lighting_bench` keeps working: a small street's group commands reach every lamp
(simulator truth), both lamp by lamp and as one broadcast; no timing is asserted."""

import subprocess
import sys


def test_lighting_bench_small_run_dims_every_lamp() -> None:
    done = subprocess.run([sys.executable, "-m", "hil_tests.lighting_bench", "4"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("(4 of 4, simulator truth)") == 2, done.stdout
    assert "in_force" in done.stdout and "Longyearbyen" in done.stdout
