"""Dynamic fan-out at scale: a map over 100,000 trivial items on the threads backend.

Each measurement runs in a fresh Python process (whole-process wall time and peak memory of
the driver, like a user typing the command), in one home:

- **cold**: an empty home; every child runs, then the collection;
- **warm**: the same run again; the whole map is one cache lookup;
- **one more item**: 100,001 items; one child runs, the other 100,000 are found in one bulk
  lookup, then the collection runs again;
- **one changed item**: a different item in place of one; as above.

    python benchmarks/fanout.py              # 100,000 items
    python benchmarks/fanout.py --items 20000

Targets (issue 13), on a 2-core machine: warm <= 5 s, cold <= 60 s, driver <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from etherealfabric import Workflow, node

@node
def items(n, extra):
    return list(range(n)) + list(extra)

@node
def square(x):
    return x * x

@node
def total(xs):
    return sum(xs)

n, extra = int(sys.argv[1]), json.loads(sys.argv[2])
with Workflow("fanout") as wf:
    sq = square.map(items(n, extra))
    t = total(sq)
t1 = time.perf_counter()
results = wf.execute()
t_run = time.perf_counter() - t1
report = results.map_report(sq)
print(json.dumps({
    "run": t_run, "whole": time.perf_counter() - t0, "total": results[t],
    "children_executed": len(report.executed), "children_cached": report.cached,
    "map_whole_hit": report.whole,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(home: Path, n: int, extra: list[int]) -> dict[str, float]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home), "ETHEREALFABRIC_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), json.dumps(extra)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    n = args.items
    print(f"map over {n:,} trivial items, threads backend, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ef-fanout-") as folder:
        home = Path(folder) / "home"
        cases = [
            ("cold", n, []),
            ("warm", n, []),
            ("one more item", n, [-1]),
            ("one changed item", n - 1, [-1, -2]),
        ]
        print(f"{'case':<18} {'whole s':>8} {'run s':>8} {'ran':>8} {'cached':>8} {'MB':>7}")
        for label, count, extra in cases:
            f = measure(home, count, extra)
            ran = f["children_executed"]
            cached = "whole" if f["map_whole_hit"] else f"{f['children_cached']:,}"
            print(
                f"{label:<18} {f['whole']:8.2f} {f['run']:8.2f} {ran:8,} {cached:>8} "
                f"{f['maxrss_mb']:7.0f}"
            )
        size = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
        print(f"home after the runs: {size / 1e6:.0f} MB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
