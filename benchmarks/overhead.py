"""The engine's own cost per node, cold and warm, and the big-data workload.

Every measurement runs in a fresh Python process (whole-process wall time, like a user typing
the command), with its own empty home for "cold" and the home a cold run left for "warm".
Marginal per-node cost = (time at N=1000 - time at N=10) / 990.

    python benchmarks/overhead.py            # everything (about a minute)
    python benchmarks/overhead.py --quick    # fewer repetitions
    python benchmarks/overhead.py --scale    # 10,000 and 100,000 nodes (a few minutes)
    python benchmarks/overhead.py --scale 20000
    python benchmarks/overhead.py --bigdata  # only the big-data workload (cold, warm, plain)
    python benchmarks/overhead.py --bigdata --reps 9  # more rounds on a noisy machine

Each per-node row also gives the marginal CPU per node (user + system time of the whole
process), which holds on a machine other work keeps busy, where wall times wander.

When joblib is installed, the same chain also runs with joblib.Memory (one cached call per
node) in the same invocation, and the ratios are printed: they hold on a noisy machine.

The children run with Python's bytecode cache, as a user's Python does (``pip install``
compiles an installed package; an editable checkout compiles on first import), whatever
``PYTHONDONTWRITEBYTECODE`` says here: without it every child would compile EtherealFabric's
sources again (about 0.1 s of CPU), while numpy and joblib come precompiled from site-packages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()

# -- child side: build and run one workflow, print figures as JSON -------------------------------
CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
from etherealfabric import Workflow, node
t_import = time.perf_counter() - t0
shape, n = sys.argv[1], int(sys.argv[2])

@node
def leaf(i):
    return i

@node
def step(x):
    return x + 1

@node
def gather(xs):
    return len(xs)

@node
def item(root, i):
    return root + i

def build():
    with Workflow(f"bench-{shape}-{n}") as wf:
        if shape == "chain":
            x = leaf(0)
            for _ in range(n - 1):
                x = step(x)
        else:  # "files" (--scale) and "fanout": the shape of a fan-out over files, a listing,
            # one node per item and a gather; the items are ints (no File input: no file is
            # hashed or stat'ed). Each item node has its own key: N nodes with one key would
            # compute once and wait for it (run/_samekey.py), which measures no fan-out
            root = leaf(0)
            gather([item(root, i) for i in range(n)])
    return wf

t1 = time.perf_counter()
wf = build()
t_build = time.perf_counter() - t1
results = wf.execute()
t_run = time.perf_counter() - t1
print(json.dumps({"import": t_import, "build": t_build, "run": t_run, "executed": results.executed,
                  "cached": results.cached,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BIG = r"""
import json, resource, sys, time
import numpy as np
from etherealfabric import Node, Workflow
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
MB = int(sys.argv[1])

class Source(Node):
    def __init__(self, mb):
        super().__init__()
        self.mb = mb
        self.outputs = ["array"]
    def run(self):
        return {"array": np.arange(self.mb * 1024 * 1024 // 8, dtype=np.float64)}

class Reduce(Node):
    def __init__(self, array, how):
        super().__init__()
        self.array, self.how = array, how
        self.outputs = ["value"]
    def run(self):
        return {"value": float(getattr(np, self.how)(self.array))}

src = Source(MB)
wf = Workflow("bigdata")
reds = [wf.add_node(Reduce(src.outputs["array"], h)) for h in ("sum", "min", "max", "mean")]
t = time.perf_counter()
results = wf.execute()
values = [results[r]["value"] for r in reds]
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"run": elapsed, "executed": results.executed, "peak_mb": peak,
                  "baseline_mb": baseline, "values": values}))
"""

# the big-data workload as a plain numpy script: what the engine's cold run is compared with
PLAIN_BIG = r"""
import json, resource, sys, time
import numpy as np
MB = int(sys.argv[1])
t = time.perf_counter()
array = np.arange(MB * 1024 * 1024 // 8, dtype=np.float64)
values = [float(getattr(np, how)(array)) for how in ("sum", "min", "max", "mean")]
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"run": elapsed, "peak_mb": peak, "values": values}))
"""

# the plain script that also writes the array once to a file in the home's file system, as
# the store does with durability "fast" (4 MiB writes into the page cache, no fsync): the
# floor of any cold run that stores the array, whatever the engine (``--bigdata`` prints it)
PLAIN_WRITE_BIG = r"""
import json, os, resource, sys, time
import numpy as np
MB = int(sys.argv[1])
t = time.perf_counter()
array = np.arange(MB * 1024 * 1024 // 8, dtype=np.float64)
os.makedirs(os.environ["ETHEREALFABRIC_HOME"], exist_ok=True)
data = array.reshape(-1).view(np.uint8)
with open(os.path.join(os.environ["ETHEREALFABRIC_HOME"], "array.npy"), "wb") as fp:
    for start in range(0, data.size, 4 << 20):
        fp.write(data[start : start + (4 << 20)].data)
values = [float(getattr(np, how)(array)) for how in ("sum", "min", "max", "mean")]
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"run": elapsed, "peak_mb": peak, "values": values}))
"""

# the big-data workload with joblib.Memory: one cached call makes the array, four reduce it
JOBLIB_BIG = r"""
import json, os, resource, sys, time
import numpy as np
from joblib import Memory
memory = Memory(os.environ["ETHEREALFABRIC_HOME"], verbose=0)
MB = int(sys.argv[1])

@memory.cache
def source(mb):
    return np.arange(mb * 1024 * 1024 // 8, dtype=np.float64)

@memory.cache
def reduce(array, how):
    return float(getattr(np, how)(array))

t = time.perf_counter()
array = source(MB)
values = [reduce(array, how) for how in ("sum", "min", "max", "mean")]
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"run": elapsed, "peak_mb": peak, "values": values}))
"""

# the same chain with joblib.Memory (one cached function call per node), for the ratios
JOBLIB = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
from joblib import Memory
t_import = time.perf_counter() - t0
n = int(sys.argv[2])
memory = Memory(os.environ["ETHEREALFABRIC_HOME"], verbose=0)
calls = []

@memory.cache
def leaf(i):
    calls.append(i)
    return i

@memory.cache
def step(x):
    calls.append(x)
    return x + 1

t1 = time.perf_counter()
x = leaf(0)
for _ in range(n - 1):
    x = step(x)
t_run = time.perf_counter() - t1
print(json.dumps({"import": t_import, "run": t_run, "executed": len(calls), "cached": n - len(calls),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# the first warm execute in a process against the second (imports, first fingerprints...)
FIRST = r"""
import json, sys, time
from etherealfabric import Workflow, node

@node
def leaf(i):
    return i

@node
def step(x):
    return x + 1

def run():
    with Workflow("first-second") as wf:
        x = leaf(0)
        for _ in range(99):
            x = step(x)
    t, c = time.perf_counter(), time.process_time()
    wf.execute()
    return time.perf_counter() - t, time.process_time() - c

(first, first_cpu), (second, second_cpu) = run(), run()
heavy = sorted(m for m in ("pandas", "pyarrow", "numpy", "sqlite_utils") if m in sys.modules)
print(json.dumps({"first": first, "second": second, "first_cpu": first_cpu,
                  "second_cpu": second_cpu, "heavy": heavy}))
"""

HASH = r"""
import json, time
import numpy as np
from etherealfabric.hashing._values import hash_value
a = np.random.default_rng(0).random(200 * 1024 * 1024 // 8)
hash_value(a)
best = min((lambda t: (hash_value(a), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(json.dumps({"gbps": a.nbytes / best / 1e9}))
"""


def child(code: str, *args: str, home: Path) -> dict[str, float]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home), "ETHEREALFABRIC_LOG_LEVEL": "WARNING"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python caches bytecode (see above)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["wall"] = wall
    # the child's CPU time (user + sys, all its threads): steadier than wall on a busy machine
    figures["cpu"] = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    return figures


def first_warm(home: Path) -> dict[str, float]:
    """FIRST in a process whose home a previous process made warm: both executes are warm
    (in a new home the first would run the 100 nodes, the second find them cached)."""
    child(FIRST, home=home)
    return child(FIRST, home=home)


def overhead(
    shape: str, n: int, reps: int, tmp: Path, code: str = CHILD, label: str = ""
) -> dict[str, float]:
    cold, warm = [], []
    for rep in range(reps):
        home = tmp / f"{label}{shape}-{n}-{rep}"
        cold.append(child(code, shape, str(n), home=home))
        warm.append(child(code, shape, str(n), home=home))
        assert warm[-1]["executed"] == 0, warm[-1]
        shutil.rmtree(home)
    pick = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    return {
        "cold_wall": pick(cold, "wall"),
        "warm_wall": pick(warm, "wall"),
        "cold_run": pick(cold, "run"),
        "warm_run": pick(warm, "run"),
        "import": pick(warm, "import"),
        "cold_cpu": pick(cold, "cpu"),
        "warm_cpu": pick(warm, "cpu"),
    }


def _per_cpu(small: dict[str, float], large: dict[str, float]) -> tuple[float, float]:
    """The marginal CPU per node (user + system of the whole process, ms), cold and warm: on
    a machine other work keeps busy the wall figures wander (a negative warm/node even); the
    CPU a node costs holds better."""
    cold = (large["cold_cpu"] - small["cold_cpu"]) / 990 * 1000
    warm = (large["warm_cpu"] - small["warm_cpu"]) / 990 * 1000
    return cold, warm


def bigdata(mb: int, reps: int, tmp: Path) -> None:
    """The big-data workload cold, warm, as a plain numpy script and with joblib.Memory,
    interleaved (so that they share the machine's load), medians of ``reps``; ratios to plain.
    Reference rows say where a cold run's time goes: the plain script that also writes the
    array to a file (the floor of storing it), and both with a 1 MB array (their difference:
    the engine's fixed cost, imports, a new journal, code fingerprints)."""
    try:
        import joblib  # noqa: F401
    except ImportError:
        joblib_code = None
    else:
        joblib_code = JOBLIB_BIG
    labels = ("plain", "plain+write", "cold", "warm", "joblib", "plain 1 MB", "cold 1 MB")
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    for rep in range(reps):
        home = tmp / f"big-{rep}"
        runs["plain"].append(child(PLAIN_BIG, str(mb), home=tmp / "plain"))
        runs["plain+write"].append(child(PLAIN_WRITE_BIG, str(mb), home=tmp / f"write-{rep}"))
        shutil.rmtree(tmp / f"write-{rep}")
        runs["cold"].append(child(BIG, str(mb), home=home))
        runs["warm"].append(child(BIG, str(mb), home=home))
        assert runs["warm"][-1]["executed"] == 0, runs["warm"][-1]
        assert (
            runs["cold"][-1]["values"] == runs["warm"][-1]["values"] == runs["plain"][-1]["values"]
        )
        shutil.rmtree(home)
        # the engine's own fixed cost: the same workflow, cold, with a 1 MB array (handed
        # over, written before its consumers start: below the background size)
        runs["plain 1 MB"].append(child(PLAIN_BIG, "1", home=tmp / "plain"))
        runs["cold 1 MB"].append(child(BIG, "1", home=tmp / f"small-{rep}"))
        shutil.rmtree(tmp / f"small-{rep}")
        if joblib_code is not None:
            runs["joblib"].append(child(joblib_code, str(mb), home=tmp / f"joblib-big-{rep}"))
            shutil.rmtree(tmp / f"joblib-big-{rep}")
    pick = lambda label, k: statistics.median(r[k] for r in runs[label])  # noqa: E731
    print(
        f"\nbigdata ({mb} MB float64 array, four reductions; whole processes, median of {reps}; "
        f"load {os.getloadavg()[0]:.1f})"
    )
    for label in labels:
        if not runs[label]:
            continue
        wall, peak, cpu = pick(label, "wall"), pick(label, "peak_mb"), pick(label, "cpu")
        name = {"plain": "plain numpy", "joblib": "joblib.Memory cold"}.get(label, label)
        base = "plain 1 MB" if label == "cold 1 MB" else "plain"  # ratios to the same size
        print(
            f"  {name:<19}{wall:>7.2f}s wall ({wall / pick(base, 'wall'):.2f}x {base})"
            f"{cpu:>7.2f}s CPU ({cpu / pick(base, 'cpu'):.2f}x)"
            f"{peak:>8.0f} MiB peak RSS ({peak / pick(base, 'peak_mb'):.2f}x {base})"
        )
    gap = lambda a, b, k: pick(a, k) - pick(b, k)  # noqa: E731
    parts = {
        "storing the array once (plain+write - plain)": ("plain+write", "plain"),
        "the engine's fixed cost (cold 1 MB - plain 1 MB)": ("cold 1 MB", "plain 1 MB"),
    }
    print(f"  cold - plain: {gap('cold', 'plain', 'wall'):+.2f}s wall, "
          f"{gap('cold', 'plain', 'cpu'):+.2f}s CPU; of which")  # fmt: skip
    for text, (a, b) in parts.items():
        print(f"    {text}: {gap(a, b, 'wall'):+.2f}s wall, {gap(a, b, 'cpu'):+.2f}s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (medians of these)")
    parser.add_argument("--mb", type=int, default=200, help="size of the big array (MB)")
    parser.add_argument(
        "--scale",
        type=int,
        nargs="*",
        default=None,
        metavar="N",
        help="only the fan-out over files at these sizes (default 10000 100000), once each",
    )
    parser.add_argument("--bigdata", action="store_true", help="only the big-data workload")
    args = parser.parse_args()
    if args.scale is not None:
        scale(args.scale or [10_000, 100_000])
        return
    reps = args.reps or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="ef-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if args.bigdata:
            bigdata(args.mb, reps, tmp)
            return
        print(f"EtherealFabric overhead benchmark ({os.cpu_count()} CPUs, median of {reps})\n")
        print(
            f"{'workload':<14}{'cold wall':>11}{'warm wall':>11}{'cold/node':>11}{'warm/node':>11}"
            f"{'(CPU cold':>11}{'warm)':>8}"
        )
        imports = []
        chain: tuple[float, float, dict[str, float]] = (0.0, 0.0, {})
        chain_cpu = (0.0, 0.0)
        for shape in ("chain", "fanout"):
            small = overhead(shape, 10, reps, tmp)
            large = overhead(shape, 1000, reps, tmp)
            imports.append(large["import"])
            per_cold = (large["cold_wall"] - small["cold_wall"]) / 990 * 1000
            per_warm = (large["warm_wall"] - small["warm_wall"]) / 990 * 1000
            cpu = _per_cpu(small, large)
            print(
                f"{shape + ' N=1000':<14}{large['cold_wall']:>10.3f}s{large['warm_wall']:>10.3f}s"
                f"{per_cold:>9.3f}ms{per_warm:>9.3f}ms{cpu[0]:>9.3f}ms{cpu[1]:>7.3f}ms"
            )
            if shape == "chain":
                chain, chain_cpu = (per_cold, per_warm, large), cpu
        try:
            import joblib  # noqa: F401
        except ImportError:
            print("joblib.Memory chain: joblib is not installed (pip install joblib)")
        else:
            small = overhead("chain", 10, reps, tmp, JOBLIB, "joblib-")
            large = overhead("chain", 1000, reps, tmp, JOBLIB, "joblib-")
            jl_cold = (large["cold_wall"] - small["cold_wall"]) / 990 * 1000
            jl_warm = (large["warm_wall"] - small["warm_wall"]) / 990 * 1000
            jl_cpu = _per_cpu(small, large)
            print(
                f"{'joblib N=1000':<14}{large['cold_wall']:>10.3f}s{large['warm_wall']:>10.3f}s"
                f"{jl_cold:>9.3f}ms{jl_warm:>9.3f}ms{jl_cpu[0]:>9.3f}ms{jl_cpu[1]:>7.3f}ms"
            )
            print(
                f"chain, EtherealFabric / joblib.Memory per node: cold {chain[0] / jl_cold:.2f}x, "
                f"warm {chain[1] / jl_warm:.2f}x (whole warm process "
                f"{chain[2]['warm_wall'] / large['warm_wall']:.2f}x); in CPU: cold "
                f"{chain_cpu[0] / jl_cpu[0]:.2f}x, warm {chain_cpu[1] / jl_cpu[1]:.2f}x"
            )
        print(f"\nimport etherealfabric: {statistics.median(imports) * 1000:.1f} ms")
        firsts = [first_warm(tmp / f"first-{rep}") for rep in range(reps)]
        extra = statistics.median(f["first"] - f["second"] for f in firsts)
        extra_cpu = statistics.median(f["first_cpu"] - f["second_cpu"] for f in firsts)
        heavy = sorted({m for f in firsts for m in f["heavy"]})
        print(
            f"first warm execute in a process costs {extra * 1000:.1f} ms more than the second "
            f"({extra_cpu * 1000:.1f} ms of CPU; 100-node chain, load {os.getloadavg()[0]:.1f}); "
            f"optional packages loaded: {', '.join(heavy) or 'none'}"
        )
        hashing = child(HASH, home=tmp / "hash")
        print(f"hash a 200 MB float64 array: {hashing['gbps']:.1f} GB/s")
        bigdata(args.mb, reps, tmp)


def scale(sizes: list[int]) -> None:
    """A listing, N per-item nodes and a gather: cold then warm, whole processes (wall and
    CPU, user + system), peak RSS. The shape of a fan-out over files; the items are ints, so
    the figures hold no file hashing (a ``File`` input adds a stat and a digest look-up)."""
    print(f"fan-out over files (int items), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'nodes':>8}{'cold wall':>11}{'(CPU)':>8}{'warm wall':>11}{'(CPU)':>8}"
          f"{'warm define':>12}{'cold RSS':>10}{'warm RSS':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ef-scale-") as tmpdir:
        for n in sizes:
            home = Path(tmpdir) / str(n)
            cold = child(CHILD, "files", str(n), home=home)
            warm = child(CHILD, "files", str(n), home=home)
            assert cold["executed"] == n + 2 and warm["executed"] == 0, (cold, warm)
            print(f"{n + 2:>8}{cold['wall']:>10.2f}s{cold['cpu']:>7.2f}s{warm['wall']:>10.2f}s"
                  f"{warm['cpu']:>7.2f}s{warm['build']:>11.2f}s"
                  f"{cold['maxrss_mb']:>8.0f}MB{warm['maxrss_mb']:>8.0f}MB")  # fmt: skip
            shutil.rmtree(home)
    print(f"(load afterwards {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
