"""Frames a data scientist returns, read back in a fresh process (as `cat`, `open_run` and every
later run read them): what was stored is what comes back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOW = """
import pandas as pd
from etherealfabric import Workflow, node

@node
def monthly():
    months = pd.period_range("2024-01", periods=3, freq="M")
    return pd.DataFrame({"sales": [1.0, 2.0, 3.0], "quarter": months.asfreq("Q")}, index=months)

@node
def first_month(frame):
    return str(frame.index[0])

with Workflow("periods") as wf:
    first_month(monthly())
"""

READ = """
import etherealfabric as ef
frame = ef.open_run("latest")["monthly"]["result"]
print(type(frame.index).__name__, frame.index.dtype, frame["quarter"].dtype)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    return env


def test_a_period_index_comes_back_from_parquet_in_a_fresh_process(tmp_path: Path) -> None:
    """pyarrow rebuilds pandas' period type only once pandas has registered it, which pandas
    does lazily: a process that had not written a period frame read the index back as the
    integers it is stored as (Index([648, 649, 650])), silently, in `cat`, `open_run` and the
    inputs of every node that ran later."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = _env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    read = subprocess.run(
        [sys.executable, "-c", READ], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr[-3000:]
    assert read.stdout.split() == ["PeriodIndex", "period[M]", "period[Q-DEC]"]
