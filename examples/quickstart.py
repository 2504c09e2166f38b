"""Quickstart: a small data-science pipeline, cached node by node.

    make data -> clean -> split -> features (train, test) -> fit -> evaluate -> report

Run it twice. The first run executes every node; the second executes none, because nothing
changed. Then edit something (the ``RIDGE`` constant, the body of ``features``, the number of
rows) and run again: only the nodes that depend on the edit run.

    python examples/quickstart.py          # or: etherealfabric run examples/quickstart.py
"""

from __future__ import annotations

import numpy as np

from etherealfabric import Workflow, node

RIDGE = 1e-3  # regularisation strength; edit it and only `fit` onwards re-runs
FEATURES = ("size", "rooms", "age", "size*rooms", "log size")


@node
def make_data(n_rows: int, seed: int) -> np.ndarray:
    """Synthetic house prices with missing values and a few outliers."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 250, n_rows)
    rooms = rng.integers(1, 8, n_rows).astype(float)
    age = rng.uniform(0, 100, n_rows)
    price = 3000 * size + 12000 * rooms - 800 * age + rng.normal(0, 20000, n_rows)
    data = np.column_stack([size, rooms, age, price])
    data[rng.choice(n_rows, n_rows // 50, replace=False), 2] = np.nan
    data[rng.choice(n_rows, n_rows // 100, replace=False), 3] *= 10
    return data


@node
def clean(raw: np.ndarray) -> np.ndarray:
    """Drop rows with missing values and clip prices to the 1st-99th percentile."""
    data = raw[~np.isnan(raw).any(axis=1)]
    low, high = np.percentile(data[:, 3], [1, 99])
    keep = (data[:, 3] >= low) & (data[:, 3] <= high)
    return data[keep]


@node(outputs=["train", "test"])
def split(data: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle and split the rows."""
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(len(data) * (1 - test_fraction))
    return data[order[:cut]], data[order[cut:]]


@node(outputs=["X", "y"])
def features(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix (with an intercept column) and the target."""
    size, rooms, age = data[:, 0], data[:, 1], data[:, 2]
    X = np.column_stack([np.ones(len(data)), size, rooms, age, size * rooms, np.log(size)])
    return X, data[:, 3]


@node
def fit(X: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge regression on standardised features, returned in the original units."""
    mean, std = X[:, 1:].mean(axis=0), X[:, 1:].std(axis=0)
    Z = np.column_stack([np.ones(len(X)), (X[:, 1:] - mean) / std])
    penalty = ridge * len(X) * np.eye(Z.shape[1])
    penalty[0, 0] = 0.0
    w = np.linalg.solve(Z.T @ Z + penalty, Z.T @ y)
    coef = w[1:] / std
    return np.concatenate([[w[0] - coef @ mean], coef])


@node
def evaluate(model: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Root mean squared error and R² on held-out rows."""
    residual = y - X @ model
    rmse = float(np.sqrt(np.mean(residual**2)))
    r2 = float(1 - residual.var() / y.var())
    return {"rmse": round(rmse, 2), "r2": round(r2, 4), "rows": len(y)}


@node
def report(metrics: dict[str, float], model: np.ndarray) -> str:
    """A short text report."""
    lines = [
        f"test rows: {metrics['rows']}",
        f"RMSE: {metrics['rmse']:,.0f}",
        f"R²: {metrics['r2']:.3f}",
    ]
    lines += [
        f"  {name:>10}: {w:12.2f}" for name, w in zip(("intercept", *FEATURES), model, strict=True)
    ]
    return "\n".join(lines)


with Workflow("quickstart") as workflow:
    raw = make_data(n_rows=20_000, seed=7)
    train, test = split(clean(raw), test_fraction=0.2, seed=7)
    X_train, y_train = features(train)
    X_test, y_test = features(test)
    model = fit(X_train, y_train, ridge=RIDGE)
    metrics = evaluate(model, X_test, y_test)
    summary = report(metrics, model)


if __name__ == "__main__":
    results = workflow.execute()
    print(results[summary])
    print(
        f"\nrun {results.run_id}: {results.executed} nodes executed, "
        f"{results.cached} cached, {results.failed} failed"
    )
