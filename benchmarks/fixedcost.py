"""Where the fixed cost of a cold run goes: a fresh process, an empty home, a small workflow.

``overhead.py --bigdata`` gives the engine's fixed cost as one figure (cold 1 MB - plain 1 MB);
this splits it in CPU time (user + sys of whole processes, medians; steadier than wall time
on a busy machine), each row a fresh process doing one step more than the row above:

- ``numpy``: the interpreter and ``import numpy`` (what the plain script costs too);
- ``+ import etherealfabric``: the package (what ``@node`` and ``Workflow`` need);
- ``+ run-path imports``: the modules a cold ``execute()`` imports on first use (listed by
  a probe process; their count is printed);
- ``+ cold execute``: the big-data workflow of ``overhead.py`` with a 1 MB array, cold.

and, inside those processes: the CPU of ``execute()`` itself once its modules are imported,
the CPU the process spends exiting (module teardown and the final garbage collection; the
journal's close), and what creating the engine's dataclasses costs at import (each one
generates and compiles its methods in every process), and the wall time of creating the
journal of an empty home (``Journal(home / "journal.db")``, then its close: mostly syncs to
disk, which CPU time does not see).

    python benchmarks/fixedcost.py            # 7 rounds
    python benchmarks/fixedcost.py --reps 15  # a busy machine
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
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from overhead import BIG  # noqa: E402  (the same workflow as overhead.py --bigdata)

# what every child prints last: its CPU so far (the parent's figure minus it: the exit)
TAIL = r"""
import resource as _r
_u = _r.getrusage(_r.RUSAGE_SELF)
print(json.dumps({**FIGURES, "cpu_in": _u.ru_utime + _u.ru_stime}))
"""

PROBE = (
    r"""
import json, sys
import numpy
import etherealfabric
before = set(sys.modules)
"""
    + BIG.replace("print(json.dumps(", "_unused = str((")
    + r"""
mods = sorted(m for m in set(sys.modules) - before if m.startswith("etherealfabric"))
print(json.dumps({"modules": mods}))
"""
)

DATACLASSES = r"""
import dataclasses, json, sys, time
made = []
_process = dataclasses._process_class
def _timed(cls, *args):
    t = time.process_time()
    out = _process(cls, *args)
    made.append((cls.__module__, time.process_time() - t))
    return out
dataclasses._process_class = _timed
import numpy
import etherealfabric
for name in sys.argv[1:]:
    __import__(name)
ours = [s for m, s in made if m.startswith("etherealfabric")]
FIGURES = {"dataclasses": len(ours), "dataclass_cpu": sum(ours),
           "engine_modules": sum(m.startswith("etherealfabric") for m in sys.modules)}
"""

NEW_JOURNAL = r"""
import json, os, sys, time
from etherealfabric.journal import Journal
path = os.path.join(os.environ["ETHEREALFABRIC_HOME"], "journal.db")
_t = time.perf_counter()
_j = Journal(path)
_t1 = time.perf_counter()
_j.close()
FIGURES = {"journal_create": _t1 - _t, "journal_close": time.perf_counter() - _t1}
"""

STEPS = {
    "numpy": "import json\nimport numpy\nFIGURES = {}\n",
    "+ import etherealfabric": "import json\nimport numpy\nimport etherealfabric\nFIGURES = {}\n",
    "+ run-path imports": (
        "import json, sys\nimport numpy\nimport etherealfabric\n"
        "for name in sys.argv[1:]:\n    __import__(name)\nFIGURES = {}\n"
    ),
    "+ cold execute": (
        "import json, sys, time\nimport numpy\nimport etherealfabric\n"
        "for name in sys.argv[2:]:\n    __import__(name)\n"
        "_c = time.process_time()\n"
        + BIG.replace("import json, resource, sys, time", "import json, resource, time")
        .replace("MB = int(sys.argv[1])", "MB = 1")
        .replace("results = wf.execute()", "results = wf.execute(); _c = time.process_time() - _c")
        .replace("print(json.dumps({", "FIGURES = dict(({'execute_cpu': _c, ")
    ),
}


def _child(code: str, args: list[str], home: Path) -> tuple[dict, float]:
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(home), "ETHEREALFABRIC_LOG_LEVEL": "WARNING"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python caches bytecode
    shutil.rmtree(home, ignore_errors=True)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr}")
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    return json.loads(out.stdout.strip().splitlines()[-1]), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        probe, _ = _child(PROBE.replace("MB = int(sys.argv[1])", "MB = 1"), [], home)
        modules = probe["modules"]
        totals: dict[str, list[float]] = {step: [] for step in STEPS}
        exits: dict[str, list[float]] = {step: [] for step in STEPS}
        execute, made, made_cpu, engine = [], [], [], []
        created, closed = [], []
        for _ in range(args.reps):
            for step, code in STEPS.items():
                argv = ["1", *modules] if step == "+ cold execute" else modules
                figures, cpu = _child(code + TAIL, argv, home)
                totals[step].append(cpu)
                exits[step].append(cpu - figures["cpu_in"])
                if "execute_cpu" in figures:
                    execute.append(figures["execute_cpu"])
            figures, _ = _child(DATACLASSES + TAIL, modules, home)
            made.append(figures["dataclasses"])
            made_cpu.append(figures["dataclass_cpu"])
            engine.append(figures["engine_modules"])
            figures, _ = _child(NEW_JOURNAL + TAIL, [], home)
            created.append(figures["journal_create"])
            closed.append(figures["journal_close"])
    ms = lambda values: statistics.median(values) * 1000  # noqa: E731
    print(f"\ncold fixed cost, CPU of fresh processes (median of {args.reps}; "
          f"load {os.getloadavg()[0]:.1f})")  # fmt: skip
    previous = None
    for step in STEPS:
        total = ms(totals[step])
        more = "" if previous is None else f"  (+{total - previous:5.1f} ms)"
        print(f"  {step:26s} {total:6.1f} ms{more}   of which exit {ms(exits[step]):5.1f} ms")
        previous = total
    print(f"  engine modules imported in all: {int(statistics.median(engine))} "
          f"({len(modules)} of them on the run path)")  # fmt: skip
    print(f"  execute() itself, modules imported:  {ms(execute):5.1f} ms")
    print(
        f"  creating the engine's {int(statistics.median(made))} dataclasses "
        f"(package + run path): {ms(made_cpu):5.1f} ms"
    )
    print(f"  a new journal, empty home (wall): created in {ms(created):5.1f} ms, "
          f"closed in {ms(closed):4.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
