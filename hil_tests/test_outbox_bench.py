"""`python -m hil_tests.outbox_bench` keeps working: a small run reports its rows and accounts for every
pack (kept + lost = what the file held); no timing is asserted."""

import subprocess
import sys


def test_outbox_bench_small_run_accounts_for_every_pack() -> None:
    done = subprocess.run([sys.executable, "-m", "hil_tests.outbox_bench", "3000"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "packs committed at" in done.stdout and "salvaged in" in done.stdout
