"""A node's key does not depend on how its module was loaded: ``etherealfabric run flow.py``
(module "flow"), ``python flow.py`` ("__main__") and ``import flow`` share results, even for a
node that reads some ``.__name__`` (the module's own ``__name__`` was in its key) or uses
``__file__`` (each checkout's own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_runner import ef

FLOW = """
from pathlib import Path
from etherealfabric import Workflow, node

@node
def kind(x):
    return type(x).__name__

@node
def here(x):
    return (Path(__file__).parent / "data.txt").read_text().strip() * x

with Workflow("names") as wf:
    k = kind(3)
    h = here(2)

if __name__ == "__main__":
    r = wf.execute()
    print("executed", r.executed, "cached", r.cached)
"""


def test_the_cli_a_script_and_an_import_share_the_results_of_one_flow(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "data.txt").write_text("ab\n")
    home = str(tmp_path / "home")
    done = ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_HOME=home)
    assert done.returncode == 0 and "2 executed" in done.stdout, done.stdout + done.stderr
    env = {"ETHEREALFABRIC_HOME": home, "PATH": "/usr/bin:/bin"}
    script = subprocess.run(
        [sys.executable, "flow.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert "executed 0 cached 2" in script.stdout, script.stdout + script.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import flow; r = flow.wf.execute(); print(r.cached, r[flow.k])"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["2", "int"]
