"""Each backend against the same work submitted to its engine directly.

Two workloads: ``trivial`` (200 nodes that return their argument, and a sink) and ``numpy`` (8
nodes of about a second of single-threaded numpy work each, and a sink). For each backend, a
fresh driver process times ``execute()`` on an empty home (``ef``), the same work submitted to
the engine directly (``raw``: a thread pool, a process pool, ``client.map``, plain Celery
tasks, ``sc.parallelize(...).map``), and a second ``execute()`` on the home the first left
(``warm``: everything cached; it must not contact a cluster or broker); for ``trivial``, both
again with 1 node (and the sink), which splits the overhead into what each extra node costs
(``marginal``) and what the execute itself costs (``fixed``). Clusters are started
once, before the timings: a Dask LocalCluster of 2 single-threaded workers, a private
``redis-server`` with one Celery worker of concurrency 2, and, inside each Spark driver, a
``local[2]`` session started before the clock (its JVM start is reported on its own). The
raw Dask and Celery drivers import their client library (and connect, for Dask) before the
clock, so the Dask and Celery ``ef`` drivers import it before the clock as well (reported on
its own, ``client import``); opening the client or the broker connection is on the clock. One
untimed run of each kind first warms the cluster's workers (imports).

    python benchmarks/backends.py                     # every backend, 3 repetitions
    python benchmarks/backends.py --reps 5 --only dask celery
    python benchmarks/backends.py --only spark --workloads numpy
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
BACKENDS = ["threads", "processes", "dask", "celery", "spark"]
TRIVIAL_N = 200
NUMPY_N = 8
WORKLOADS = {"trivial": TRIVIAL_N, "numpy": NUMPY_N}
#: QR rounds of a numpy node: about a second on one idle core of a small machine (12 rounds
#: took 0.1 s, which made a fixed cost of a few tens of milliseconds look like 10%)
NUMPY_ROUNDS = 100
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# -- driver side: one measurement in a fresh process ---------------------------------------------
DRIVER = r"""
import json, os, sys, time, warnings

N = {"trivial": @TRIVIAL@, "numpy": @NUMPY@}
workload = os.environ["EF_BENCH_WORKLOAD"]
NODES = os.environ.get("EF_BENCH_NODES")  # another count of nodes (the 1-node runs)


def work(i):
    if workload == "trivial":
        return i
    import numpy as np

    rng = np.random.default_rng(i)
    a = rng.random((400, 400))
    for _ in range(@ROUNDS@):
        a = np.linalg.qr(a)[0] @ a
        a /= np.abs(a).max()
    return float(a.sum())


def raw(backend, n, spark):
    if backend == "threads":
        from concurrent.futures import ThreadPoolExecutor

        t = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            sum(pool.map(work, range(n)))
    elif backend == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        t = time.perf_counter()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
            sum(pool.map(work, range(n)))
    elif backend == "dask":
        import distributed

        with distributed.Client(os.environ["ETHEREALFABRIC_DASK_ADDRESS"]) as client:
            t = time.perf_counter()
            sum(client.gather(client.map(work, range(n), pure=False)))
            return time.perf_counter() - t
    elif backend == "celery":
        import cloudpickle
        from etherealfabric.backends._celery_app import TASK_NAME, make_app

        app = make_app()
        t = time.perf_counter()
        sent = [app.send_task(TASK_NAME, args=(cloudpickle.dumps((work, i)),)) for i in range(n)]
        sum(cloudpickle.loads(r.get(timeout=600)) for r in sent)
        elapsed = time.perf_counter() - t
        app.close()
        return elapsed
    elif backend == "spark":
        t = time.perf_counter()
        sum(spark.sparkContext.parallelize(range(n), n).map(work).collect())
    return time.perf_counter() - t


def main():
    warnings.simplefilter("ignore")
    backend, mode, home = sys.argv[1:4]
    n = int(NODES) if NODES else N[workload]
    extra, spark = {}, None
    if backend == "spark" and mode != "warm":  # a warm run must start no JVM of its own
        from etherealfabric.backends._spark import SparkBackend

        t = time.perf_counter()
        spark = SparkBackend(master="local[2]").session  # the session the engine would start
        spark.sparkContext.parallelize([0], 1).map(lambda x: x).collect()  # Python workers up
        extra["jvm_start"] = time.perf_counter() - t
    if mode == "raw":
        print(json.dumps({"seconds": raw(backend, n, spark), **extra}))
        return
    if mode == "ef" and backend in ("dask", "celery"):
        # what the raw driver does before its clock too: import the client library (and for
        # Celery build an app, which loads its modules); connecting stays on the clock
        t = time.perf_counter()
        if backend == "dask":
            import distributed  # noqa: F401
        else:
            from etherealfabric.backends._celery_app import make_app

            make_app().close()
        extra["client_import"] = time.perf_counter() - t
    from etherealfabric import Workflow, node

    @node
    def item(i):
        return work(i)

    @node
    def sink(xs):
        return len(xs)

    with Workflow(f"bench-{workload}") as wf:
        sink([item(i) for i in range(n)])
    t = time.perf_counter()
    results = wf.execute(home=home, backend=backend, max_workers=2, log_level="WARNING")
    elapsed = time.perf_counter() - t
    print(json.dumps({"seconds": elapsed, "executed": results.executed, **extra}))


if __name__ == "__main__":
    main()
""".replace("@TRIVIAL@", str(TRIVIAL_N)).replace("@NUMPY@", str(NUMPY_N))
DRIVER = DRIVER.replace("@ROUNDS@", str(NUMPY_ROUNDS))


def _measure(
    backend: str, workload: str, mode: str, home: str, env: dict[str, str], nodes: int = 0
) -> dict:
    script = Path(home).parent / "driver.py"
    if not script.exists():
        script.write_text(DRIVER)
    count = {"EF_BENCH_NODES": str(nodes)} if nodes else {}
    done = subprocess.run(
        [sys.executable, str(script), backend, mode, home],
        env={**env, "EF_BENCH_WORKLOAD": workload, **count},
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{backend}/{workload}/{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- clusters ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate, what: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout:.0f}s")
        time.sleep(0.2)


def _start_dask(env: dict[str, str], folder: Path) -> tuple[list[subprocess.Popen], str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (folder / "dask.log").open("wb")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--dashboard-address", ":0"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
         "--nthreads", "1", "--dashboard-address", ":0"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    import distributed

    with distributed.Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    return [worker, scheduler], address


def _start_celery(env: dict[str, str], folder: Path) -> tuple[list[subprocess.Popen], dict]:
    port = _free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
    )  # fmt: skip
    settings = {
        "ETHEREALFABRIC_CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{port}/1",
    }
    worker_env = {**env, **settings, "C_FORCE_ROOT": "1", "PYTHONPATH": str(HERE.parent)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric.backends._celery", "worker", "--concurrency",
         "2", "--loglevel", "WARNING"],
        env=worker_env, stdout=(folder / "celery.log").open("wb"), stderr=subprocess.STDOUT,
        cwd=folder,
    )  # fmt: skip
    from etherealfabric.backends._celery_app import make_app

    app = make_app(settings["ETHEREALFABRIC_CELERY_BROKER_URL"],
                   settings["ETHEREALFABRIC_CELERY_RESULT_BACKEND"])  # fmt: skip
    try:
        _wait(lambda: bool(app.control.ping(timeout=0.5)), "the Celery worker")
    finally:
        app.close()
    return [worker, redis], settings


def _stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the table -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (the median is shown)")
    parser.add_argument("--only", nargs="*", choices=BACKENDS, help="these backends only")
    parser.add_argument(
        "--workloads", nargs="*", choices=list(WORKLOADS), help="these workloads only"
    )
    args = parser.parse_args()
    chosen = args.only or BACKENDS
    if "celery" in chosen and shutil.which("redis-server") is None:
        print("celery: skipped (redis-server is not installed)")
        chosen = [b for b in chosen if b != "celery"]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    base_env.update(SINGLE_THREAD)
    # drivers and workers cache bytecode, as a user's Python does (see overhead.py): with
    # PYTHONDONTWRITEBYTECODE (set in some shells and CI) a checkout whose sources changed
    # since their last compile (a new branch, a fresh worktree) compiled them again in every
    # driver, on the clock (about 0.1 s for a cold run's modules)
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    folder = Path(tempfile.mkdtemp(prefix="ef-bench-backends-"))
    started: list[subprocess.Popen] = []
    rows = []
    try:
        for backend in chosen:
            env = dict(base_env)
            if backend == "dask":
                procs, address = _start_dask(env, folder)
                started += procs
                env["ETHEREALFABRIC_DASK_ADDRESS"] = address
            elif backend == "celery":
                procs, settings = _start_celery(env, folder)
                started += procs
                env.update(settings)
            for workload in args.workloads or WORKLOADS:
                n = WORKLOADS[workload]
                # untimed: the cluster's workers import the engine, numpy and the task once
                _measure(backend, workload, "ef", str(folder / f"warmup-{backend}-{workload}"), env)
                _measure(backend, workload, "raw", str(folder / f"warmup-raw-{backend}"), env)
                ef, raw, warm, jvm, imports = [], [], [], [], []
                ef1, raw1 = [], []  # trivial: 1 node (+ the sink), for the fixed cost
                for rep in range(args.reps):
                    home = str(folder / f"home-{backend}-{workload}-{rep}")
                    first = _measure(backend, workload, "ef", home, env)
                    assert first["executed"] == n + 1, first
                    ef.append(first["seconds"])
                    again = _measure(backend, workload, "warm", home, env)
                    assert again["executed"] == 0, again
                    warm.append(again["seconds"])
                    direct = _measure(backend, workload, "raw", home + "-raw", env)
                    raw.append(direct["seconds"])
                    if workload == "trivial":  # the same execute with 1 node: what is fixed
                        one = _measure(backend, workload, "ef", home + "-one", env, nodes=1)
                        assert one["executed"] == 2, one
                        ef1.append(one["seconds"])
                        raw1.append(
                            _measure(backend, workload, "raw", home + "-one-raw", env, nodes=1)[
                                "seconds"
                            ]
                        )
                    if "jvm_start" in first:
                        jvm.append(first["jvm_start"])
                    if "client_import" in first:
                        imports.append(first["client_import"])
                e, r, w = (statistics.median(x) for x in (ef, raw, warm))
                marginal = fixed = None
                if ef1:  # each extra node's overhead, and that of the execute itself
                    e1, r1 = statistics.median(ef1), statistics.median(raw1)
                    marginal = ((e - e1) - (r - r1)) / (n - 1) * 1000
                    fixed = e1 - r1
                rows.append((workload, backend, e, r, e / r, (e - r) / (n + 1) * 1000,
                             marginal, fixed, w, jvm, imports))  # fmt: skip
                print(f"  measured {backend}/{workload}", file=sys.stderr, flush=True)
    finally:
        _stop(started)
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\nBackends against their raw engines ({os.cpu_count()} CPUs, median of {args.reps})\n")
    print(f"{'workload':<10}{'backend':<11}{'EF':>9}{'raw':>9}{'ratio':>8}"
          f"{'ms/node':>10}{'marginal':>10}{'fixed':>9}{'warm':>9}")  # fmt: skip
    for workload, backend, e, r, ratio, per_node, marginal, fixed, w, jvm, imports in rows:
        note = f"   (JVM start {statistics.median(jvm):.1f}s, not counted)" if jvm else ""
        if imports:
            note = f"   (client import {statistics.median(imports):.2f}s, not counted)"
        extra = f"{'-':>10}{'-':>9}"
        if marginal is not None and fixed is not None:
            extra = f"{marginal:>10.3f}{fixed:>8.3f}s"
        print(f"{workload:<10}{backend:<11}{e:>8.3f}s{r:>8.3f}s{ratio:>7.2f}x"
              f"{per_node:>10.2f}{extra}{w:>8.3f}s{note}")  # fmt: skip
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\nEF: execute() on an empty home; raw: the same work given to the engine directly;")
    print("warm: execute() again, all cached (no cluster, broker or JVM is contacted or started).")
    print("ms/node: (EF - raw) / nodes, the fixed cost included; trivial rows also time 1 node")
    print("(+ the sink): marginal = each extra node's overhead in ms, ((EF - EF 1) - (raw -")
    print(f"raw 1)) / {TRIVIAL_N - 1}; fixed = EF 1 - raw 1: an execute of 1 node and its sink")
    print("on an empty home.")


if __name__ == "__main__":
    main()
