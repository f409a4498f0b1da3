"""`make bench` keeps working: the quick run completes and reports every row (no timing is asserted)."""

import subprocess
import sys


def test_bench_quick_run_reports_sizes_and_ratios() -> None:
    out = subprocess.run([sys.executable, "-m", "hil_tests.bench", "--quick"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert "compact <= 12 B/reading -> met" in out
    for row in ("compact pack", "SenML-CBOR, units in birth", "ThingsBoard-style", "CBOR encode",
                "CBOR decode", "Modbus RTU build", "Modbus RTU parse"):
        assert row in out, row
