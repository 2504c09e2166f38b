"""Nodes that are distributed computations themselves: one aggregates a partitioned dataset
with Spark, one with dask.dataframe. Both are cached like any node.

    pip install 'etherealfabric[spark,dask,pandas]'     # Spark needs Java 17+
    ETHEREALFABRIC_EXECUTION_BACKEND=spark python examples/distributed_nodes.py

``spark_totals`` is marked ``on_driver=True``: it runs in this process, where the Spark session
lives (the spark backend's, or one this script starts), and Spark spreads the work over its
executors. ``dask_totals`` builds a ``dask.dataframe`` over the same files; on the dask backend it
computes on the run's cluster (``context().dask_client``), elsewhere on Dask's local threads.
Run it twice: the second run executes nothing. Add a partition to ``data/daily_sales/``, or edit a
node, and only what depends on it runs again.
"""

from __future__ import annotations

import os
from pathlib import Path

import etherealfabric
from etherealfabric import Directory, Workflow, node

HERE = Path(__file__).resolve().parent
REGIONS = ["north", "south", "east", "west"]


@node(writes=["data/daily_sales/"])
def make_sales(days: int) -> Directory:
    """A partitioned parquet dataset: one file per day (the kind Spark and Dask read)."""
    import numpy as np
    import pandas as pd

    folder = Path(etherealfabric.root_path("data/daily_sales"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for day in range(days):
        frame = pd.DataFrame(
            {
                "region": rng.choice(REGIONS, size=500),
                "amount": rng.integers(1, 100, size=500).astype("int64"),
            }
        )
        frame.to_parquet(folder / f"day={day:03d}.parquet", index=False)
    return Directory(folder)


@node(on_driver=True)
def spark_totals(sales: Directory) -> dict[str, int]:
    """Sales per region, computed by Spark over every partition."""
    spark = etherealfabric.context().spark
    rows = spark.read.parquet(str(sales.path)).groupBy("region").sum("amount").collect()
    return {row["region"]: int(row["sum(amount)"]) for row in rows}


@node
def dask_totals(sales: Directory) -> dict[str, int]:
    """The same with dask.dataframe (on the run's Dask cluster when there is one)."""
    import dask.dataframe as dd

    frame = dd.read_parquet(str(sales.path))
    totals = frame.groupby("region")["amount"].sum()
    try:
        computed = etherealfabric.context().dask_client.compute(totals).result()
    except etherealfabric.ExecutionError:  # no cluster: Dask's own threads
        computed = totals.compute()
    return {str(region): int(total) for region, total in computed.items()}


@node
def check(spark: dict[str, int], dask: dict[str, int]) -> dict[str, int]:
    if spark != dask:
        raise ValueError(f"Spark and Dask disagree: {spark} != {dask}")
    return spark


with Workflow("distributed-nodes", root=HERE) as wf:
    sales = make_sales(30)
    check(spark_totals(sales), dask_totals(sales))


def main() -> int:
    if os.environ.get("ETHEREALFABRIC_EXECUTION_BACKEND", "local") != "spark":
        from pyspark.sql import SparkSession  # the spark backend starts its own when needed

        SparkSession.builder.master("local[2]").config(
            "spark.ui.showConsoleProgress", "false"
        ).getOrCreate()
    results = wf.execute()
    print("sales per region:", dict(sorted(results["check"]["result"].items())))
    print(f"run {results.run_id}: executed {results.executed}, cached {results.cached}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
