"""Value-hash throughput for frames, against ``pandas.util.hash_pandas_object``.

Two workloads:

- a 200 MB numeric frame (float64 and int64 columns, 1.3M rows x 20 columns, no NaN),
  also in Fortran order and with a few NaNs (the path that normalises NaNs);
- a 1M-row frame with object (strings and mixed cells), "str", categorical and
  numeric columns.

For each: EtherealFabric's canonical value hash (``hash_value``, what a value digest costs) and
``pandas.util.hash_pandas_object(frame, index=True)`` reduced to one value, best of N runs,
in MB/s of the frame's ``memory_usage(deep=True)``. A large numpy array and raw xxh3 over the
same bytes give the ceiling of the machine.

    python benchmarks/hashing.py             # best of 5
    python benchmarks/hashing.py --quick     # best of 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xxhash

from etherealfabric.hashing._outputs import value_digest
from etherealfabric.hashing._values import hash_value


def numeric_frame(nbytes: int = 200 * 10**6, columns: int = 20) -> pd.DataFrame:
    rows = nbytes // (8 * columns)
    rng = np.random.default_rng(0)
    data = {f"f{i}": rng.random(rows) for i in range(columns // 2)}
    data |= {f"i{i}": rng.integers(0, 10**9, rows) for i in range(columns - columns // 2)}
    return pd.DataFrame(data)


def mixed_frame(rows: int = 1_000_000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    words = np.array([f"word{i}" for i in range(5000)], dtype=object)
    strings = words[rng.integers(0, len(words), rows)]
    mixed = strings.copy()
    mixed[::10] = rng.integers(0, 100, len(mixed[::10])).tolist()  # every 10th cell an int
    return pd.DataFrame(
        {
            "obj_str": pd.Series(strings, dtype=object),  # pandas 3 would infer "str"
            "obj_mixed": pd.Series(mixed, dtype=object),
            "str": pd.array(strings.tolist(), dtype="str"),
            "cat": pd.Categorical.from_codes(
                rng.integers(0, 50, rows), [f"c{i}" for i in range(50)]
            ),
            "x": rng.random(rows),
            "n": rng.integers(0, 1000, rows),
        }
    )


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(label: str, nbytes: int, seconds: float) -> None:
    print(f"  {label:44} {seconds * 1000:9.1f} ms  {nbytes / seconds / 1e6:9.0f} MB/s")


def compare(title: str, frame: pd.DataFrame, repeat: int) -> None:
    nbytes = int(frame.memory_usage(deep=True).sum())
    print(f"\n{title}: {frame.shape[0]:,} rows x {frame.shape[1]} columns, {nbytes / 1e6:.0f} MB")
    row("etherealfabric hash_value", nbytes, best(lambda: hash_value(frame), repeat))
    row(
        "etherealfabric value_digest (an output)", nbytes, best(lambda: value_digest(frame), repeat)
    )
    pandas_hash = lambda: int(pd.util.hash_pandas_object(frame, index=True).sum())  # noqa: E731
    row("pandas.util.hash_pandas_object", nbytes, best(pandas_hash, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="best of 2 instead of 5")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    print(f"{os.cpu_count()} CPUs, numpy {np.__version__}, pandas {pd.__version__}")

    numeric = numeric_frame()
    ceiling(numeric, repeat)
    compare("numeric frame", numeric, repeat)
    grid = np.asfortranarray(numeric.to_numpy(dtype="float64"))
    compare("numeric frame, one float64 block (2-D, Fortran order)", pd.DataFrame(grid), repeat)
    grid = None
    with_nan = numeric.copy()
    with_nan.iloc[::1000, :10] = np.nan
    compare("numeric frame with NaNs", with_nan, repeat)
    numeric = with_nan = None
    compare("mixed frame (object, str, categorical, numeric)", mixed_frame(), repeat)


def ceiling(frame: pd.DataFrame, repeat: int) -> None:
    """Raw xxh3 and the array hash over one contiguous buffer of the same size."""
    flat = np.ascontiguousarray(frame.to_numpy(dtype="float64"))
    print(f"\nceiling: {flat.nbytes / 1e6:.0f} MB contiguous buffer")
    raw = best(lambda: xxhash.xxh3_128(flat).digest(), repeat)
    row("raw xxh3-128 over the bytes", flat.nbytes, raw)
    row("etherealfabric hash_value(ndarray)", flat.nbytes, best(lambda: hash_value(flat), repeat))


if __name__ == "__main__":
    main()
