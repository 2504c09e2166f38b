"""Sales report: a pandas + scikit-learn pipeline whose results are files.

    data/sales.csv ─► load ─► clean ─► dataset  (out/dataset/: parquet, one folder per region)
                                         └─► train    (out/model/: model.joblib, features.json)
                              clean ─► summarise ─► report  (out/report.html)

Every result a person looks at is a file under ``out/``, declared with ``writes=`` (or
returned as a ``File``/``Directory``), so the engine stores it and puts it back:

    python examples/sales_report.py     # first run: every node executes
    python examples/sales_report.py     # nothing changed: nothing executes
    rm -rf examples/out
    python examples/sales_report.py     # still nothing executes; out/ is back, byte for byte

Paths are relative to the workflow's root (the folder of this file), and ``root_path`` turns
them into absolute ones, so it works from any current folder. The input CSV is made on the
first run if it is missing (deterministically, so its content, hence every key, is the same
everywhere). Needs ``pip install 'etherealfabric[examples]'`` (pandas, pyarrow, scikit-learn).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from etherealfabric import Directory, File, Workflow, node, root_path

DATA = "data/sales.csv"
FEATURES = ["units", "price", "discount", "month", "weekday", "region_code"]
REGIONS = ["north", "south", "east", "west"]


def make_csv(path: str, rows: int = 4000) -> None:
    """Synthetic daily sales lines (made once; the same bytes on every machine)."""
    rng = np.random.default_rng(42)
    dates = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    frame = pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "region": rng.choice(REGIONS, rows),
            "product": rng.choice(["basic", "plus", "pro"], rows),
            "units": rng.integers(-1, 40, rows),  # a few returns and bad rows
            "price": rng.choice([9.99, 19.99, 49.0], rows),
            "discount": rng.choice([0.0, 0.05, 0.1, 0.2], rows),
        }
    )
    frame.loc[rng.choice(rows, rows // 100, replace=False), "price"] = np.nan
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frame.to_csv(f"{path}.part", index=False)  # whole or not at all, should the run be killed
    os.replace(f"{path}.part", path)


@node
def load(csv: File) -> pd.DataFrame:
    """Read the CSV (the node's key follows the file's content, not its path)."""
    return pd.read_csv(csv, parse_dates=["date"])


@node
def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Drop bad lines, add revenue and calendar features."""
    df = raw.dropna(subset=["price"])
    df = df[df["units"] > 0].copy()
    df["revenue"] = (df["units"] * df["price"] * (1 - df["discount"])).round(2)
    df["month"] = df["date"].dt.month
    df["weekday"] = df["date"].dt.day_of_week
    df["region_code"] = df["region"].map({r: i for i, r in enumerate(REGIONS)})
    return df.sort_values(["date", "region", "product"]).reset_index(drop=True)


@node(writes=["out/dataset/"])
def dataset(df: pd.DataFrame) -> Directory:
    """The clean lines as a parquet dataset, one folder per region."""
    for region, part in df.groupby("region"):
        folder = Path(root_path("out", "dataset", f"region={region}"))
        folder.mkdir(parents=True, exist_ok=True)
        part.drop(columns="region").to_parquet(folder / "part-0.parquet", index=False)
    return Directory(root_path("out", "dataset"))


@node(writes=["out/model/"])
def train(data: Directory, seed: int = 0) -> dict[str, float]:
    """Fit a revenue model on the dataset; save it (joblib) with its feature list."""
    import joblib
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_absolute_error, r2_score

    df = pd.read_parquet(data).sort_values(["date", "product", "region_code"])
    cut = df["date"] < pd.Timestamp("2026-10-01")  # train on Jan-Sep, test on Oct-Dec
    model = RandomForestRegressor(n_estimators=60, max_depth=8, random_state=seed, n_jobs=1)
    model.fit(df.loc[cut, FEATURES], df.loc[cut, "revenue"])
    predicted = model.predict(df.loc[~cut, FEATURES])
    folder = Path(root_path("out", "model"))
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "features.json").write_text(json.dumps({"features": FEATURES}, indent=2))
    return {
        "r2": round(float(r2_score(df.loc[~cut, "revenue"], predicted)), 4),
        "mae": round(float(mean_absolute_error(df.loc[~cut, "revenue"], predicted)), 2),
        "train_rows": int(cut.sum()),
    }


@node
def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Revenue by month and region."""
    table = df.pivot_table(
        index=df["date"].dt.strftime("%Y-%m"), columns="region", values="revenue", aggfunc="sum"
    )
    return table.round(0).fillna(0)


@node(writes=["out/report.html"])
def report(table: pd.DataFrame, metrics: dict[str, float]) -> File:
    """A small HTML report: the monthly table and the model's test scores."""
    rows = "".join(
        f"<tr><th>{html.escape(str(month))}</th>"
        + "".join(f"<td>{value:,.0f}</td>" for value in values)
        + "</tr>"
        for month, values in zip(table.index, table.to_numpy(), strict=True)
    )
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    page = (
        "<!doctype html><meta charset='utf-8'><title>Sales report</title>"
        "<h1>Revenue by month and region</h1>"
        f"<table><tr><th>month</th>{head}</tr>{rows}</table>"
        f"<h2>Revenue model</h2><p>R² {metrics['r2']}, MAE {metrics['mae']} "
        f"({metrics['train_rows']} training lines)</p>"
    )
    path = Path(root_path("out", "report.html"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return File(path)


with Workflow("sales_report") as workflow:
    if not os.path.exists(root_path(DATA)):  # (also when run with `etherealfabric run`)
        make_csv(root_path(DATA))
    clean_lines = clean(load(File(root_path(DATA))))
    metrics = train(dataset(clean_lines))
    page = report(summarise(clean_lines), metrics)


if __name__ == "__main__":
    results = workflow.execute()
    print(f"report: {results[page]}")
    print(f"model: R² {results[metrics]['r2']}, MAE {results[metrics]['mae']}")
    print(
        f"\nrun {results.run_id}: {results.executed} nodes executed, "
        f"{results.cached} cached, {results.failed} failed"
    )
