"""Wake-ups of an idle agent (issue #12, the CPU rows; docs/benchmarks.md, "An idle agent").

The street site (simulator without line timing, Mosquitto, `fieldlink run`) with every poll interval at
600 s: after the first poll round nothing is due for ten minutes. Over a window, per thread of the
agent: context switches (voluntary + involuntary, /proc/PID/task/TID/status; each wake-up of a sleeping
thread is one), and the agent's CPU (/proc/PID/stat).

    .venv/bin/python -m hil_tests.bench.idle [--seconds 20] [--dir .bench/idle]
"""

from __future__ import annotations

import argparse
import os
import time

from hil_tests.bench.common import cpu_seconds, load_average
from hil_tests.bench.site import SiteRun


def switches(pid: int) -> dict[str, int]:
    """Context switches so far of each thread (by TID) of process `pid`."""
    out: dict[str, int] = {}
    for tid in sorted(os.listdir("/proc/%d/task" % pid), key=int):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return out


def measure(workdir: str, seconds: float) -> None:
    with SiteRun("street", workdir, instant=True, interval=600) as run:
        run.wait_data(1)
        time.sleep(8)  # the first poll round ends and its packs are acknowledged
        assert run.agent is not None
        pid = run.agent.pid
        s0, c0, t0 = switches(pid), cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        s1, c1, t1 = switches(pid), cpu_seconds(pid), time.monotonic()
    elapsed = t1 - t0
    per = [(s1[tid] - s0.get(tid, 0)) / elapsed for tid in s1]
    print("idle agent, street site, %.0f s window (load average %s)" % (elapsed, load_average()))
    print("  threads %d; wake-ups/s per thread (by TID): %s" % (len(per), " ".join("%.1f" % v for v in per)))
    print("  wake-ups/s in all %.1f; CPU %.2f ms/s" % (sum(per), 1000 * (c1 - c0) / elapsed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--dir", default=os.path.join(".bench", "idle"))
    args = parser.parse_args()
    measure(args.dir, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
