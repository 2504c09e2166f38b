"""Artifacts: a large frame through the engine vs pyarrow.parquet, and restoring a file vs cp.

1. **Frame write + read.** A numeric DataFrame (float64 and int64 columns, default 512 MB;
   ``--mb`` to scale) written and read back through the engine (the worker's ``store_values``:
   serializer choice, the parquet probe, the value digest, the streaming object writer with
   its hash and atomic rename; then ``load_value``: digest check and parquet read) against
   ``pyarrow.parquet.write_table(Table.from_pandas(df))`` + ``read_table().to_pandas()`` to a
   file, with the same zstd compression. Each measurement runs in a fresh process, which
   reports its time and its peak resident memory above what the frame itself takes
   (``ru_maxrss`` minus the RSS right after the frame was built), as a multiple of the frame.
2. **Restoring a file output.** A node declares a 200 MB file output (random bytes); after a
   first run the file is deleted and the workflow run again: the node is a cache hit and the
   file is restored. Timed: the whole second ``execute()``, and the restore alone
   (``restore_entry``), against ``cp`` of the stored object, in interleaved rounds with warm
   caches (best and median).

    python benchmarks/artifacts.py              # 512 MB frame, best of 3
    python benchmarks/artifacts.py --mb 128 --repeat 2
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def numeric_frame(mb: int, columns: int = 16) -> pd.DataFrame:
    rows = mb * 10**6 // (8 * columns)
    rng = np.random.default_rng(0)
    data = {f"f{i}": rng.random(rows) for i in range(columns // 2)}
    data |= {f"i{i}": rng.integers(0, 10**6, rows) for i in range(columns - columns // 2)}
    return pd.DataFrame(data)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def reset_peak() -> None:
    """Make the peak resident size the current one (Linux: VmHWM), so temporaries of building
    the frame do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass  # then the peak may include the frame's construction


def peak_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


# -- one measurement, in a fresh process ---------------------------------------------------------
def measure(kind: str, mb: int, folder: str) -> dict[str, Any]:
    frame = numeric_frame(mb)
    size_mb = frame.memory_usage(deep=True).sum() / 1e6
    reset_peak()
    base = rss_mb()
    started = time.perf_counter()
    back = _engine(frame, folder) if kind == "engine" else _pyarrow(frame, folder)
    seconds = time.perf_counter() - started
    assert back.shape == frame.shape and back.equals(frame)
    return {"seconds": seconds, "frame_mb": size_mb, "extra_peak_mb": peak_mb() - base}


def _engine(frame: pd.DataFrame, folder: str) -> pd.DataFrame:
    from etherealfabric.run._worker import store_values
    from etherealfabric.store import LocalStore
    from etherealfabric.store._loading import InputHandle, load_value

    store = LocalStore(folder)
    records, _ = store_values("bench", ("df",), {"df": frame}, {}, store, 64 * 1024)
    record = records["df"]
    assert record["serializer"] == "parquet", record
    del frame  # the consumer is another node: the writer's frame is gone
    handle = InputHandle(record["digest"], record["serializer"])
    return load_value(handle, store, verify=True)  # type: ignore[no-any-return]


def _pyarrow(frame: pd.DataFrame, folder: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(folder, "direct.parquet")
    pq.write_table(pa.Table.from_pandas(frame), path, compression="zstd")
    del frame
    return pq.read_table(path).to_pandas()  # type: ignore[no-any-return]


def run_child(kind: str, mb: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--mb", str(mb), "--folder", folder],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def frames(mb: int, repeat: int) -> None:
    print(f"== write + read a {mb} MB numeric DataFrame (best of {repeat})")
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for kind in ("pyarrow", "engine"):
            found = run_child(kind, mb)
            if kind not in best or found["seconds"] < best[kind]["seconds"]:
                best[kind] = found
    for kind, found in best.items():
        rate = found["frame_mb"] / found["seconds"]
        extra = found["extra_peak_mb"] / found["frame_mb"]
        print(
            f"  {kind:8} {found['seconds']:7.2f} s  {rate:7.0f} MB/s  "
            f"peak memory beyond the frame: {found['extra_peak_mb']:6.0f} MB ({extra:.2f}x frame)"
        )
    ratio = best["pyarrow"]["seconds"] / best["engine"]["seconds"]
    print(f"  engine throughput / pyarrow.parquet: {ratio:.2f}x (target >= 0.8x)")


# -- restoring a file output ------------------------------------------------------------------------
def restore(mb: int, repeat: int) -> None:
    from etherealfabric import Workflow, node, root_path
    from etherealfabric.store import LocalStore
    from etherealfabric.store._trees import restore_entry

    print(f"\n== restore a {mb} MB file output on a cache hit ({repeat} interleaved rounds)")
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "project", Path(tmp) / "home"
        root.mkdir()
        payload = np.random.default_rng(1).bytes(mb * 10**6)

        @node(writes=["out/big.bin"])
        def big() -> int:
            os.makedirs(root_path("out"), exist_ok=True)
            Path(root_path("out", "big.bin")).write_bytes(payload)
            return len(payload)

        def workflow() -> Workflow:
            with Workflow("restore-bench", root=root, home=home) as wf:
                big()
            return wf

        workflow().execute()
        target = root / "out" / "big.bin"
        store = LocalStore(home)
        entry = _entry(home)
        stored = store.object_path(entry["digest"])

        def hit() -> None:
            target.unlink()
            results = workflow().execute()
            assert results.executed == 0 and target.stat().st_size == len(payload)

        def restore_only() -> None:
            target.unlink()
            restore_entry(store, str(root), "out/big.bin", entry, verify=True)

        def restore_unverified() -> None:
            target.unlink()
            restore_entry(store, str(root), "out/big.bin", entry, verify=False)

        def cp() -> None:
            target.unlink()
            subprocess.run(["cp", stored, str(target)], check=True)

        runs = interleaved(
            {
                "cp": cp,
                "restore (verified)": restore_only,
                "restore (no verify)": restore_unverified,
                "whole cache-hit run": hit,
            },
            repeat,
        )
        best = {name: min(times) for name, times in runs.items()}
        median = {name: statistics.median(times) for name, times in runs.items()}
        print(f"  {'':22} {'best':>9} {'':>12} {'':>8}   {'median':>9} {'':>8}")
        for name in runs:
            print(
                f"  {name:22} {best[name] * 1000:6.1f} ms  {mb / best[name]:7.0f} MB/s  "
                f"{best[name] / best['cp']:5.2f}x cp   {median[name] * 1000:6.1f} ms  "
                f"{median[name] / median['cp']:5.2f}x cp"
            )
        print(f"  (target: restore <= 1.2x cp; rounds interleaved, load average {_load()})")


def _entry(home: Path) -> dict[str, Any]:
    import sqlite3

    conn = sqlite3.connect(home / "journal.db")
    try:
        (text,) = conn.execute("SELECT record FROM actions").fetchone()
    finally:
        conn.close()
    return dict(json.loads(text)["files"]["out/big.bin"])


def interleaved(fns: dict[str, Callable[[], None]], repeat: int) -> dict[str, list[float]]:
    """Each function timed ``repeat`` times, one round of all of them after another, so a busy
    moment of the machine falls on every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=512, help="frame size in MB (default 512)")
    parser.add_argument("--file-mb", type=int, default=200, help="restored file size in MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["engine", "pyarrow"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.mb, args.folder)))
        return
    shutil.which("cp") or sys.exit("needs cp")
    frames(args.mb, args.repeat)
    restore(args.file_mb, args.repeat)


if __name__ == "__main__":
    main()
