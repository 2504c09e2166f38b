"""A process's first run: what it does once, on top of what every run does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import gc, json, sys
from etherealfabric import Workflow, node

@node
def item(i):
    return i

with Workflow("first") as wf:
    item(1)

during_import = []

def watch(phase, info):
    session = sys.modules.get("etherealfabric.run._session")
    if phase == "start" and session is not None and not hasattr(session, "execute_workflow"):
        during_import.append(info["generation"])

gc.callbacks.append(watch)
results = wf.execute(home=HOME, log_level="WARNING")
gc.callbacks.remove(watch)
print(json.dumps({"executed": results.executed, "collections": during_import,
                  "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def test_the_run_machinery_is_imported_without_collections(tmp_path: Path) -> None:
    """The first run's import of the run machinery makes only long-lived objects: no
    collection traverses them (one took 5-15 ms); the collector is back as it was after."""
    script = tmp_path / "first.py"
    script.write_text(textwrap.dedent(SCRIPT).replace("HOME", repr(str(tmp_path / "home"))))
    env = {k: v for k, v in os.environ.items() if k != "ETHEREALFABRIC_HOME"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures == {"executed": 1, "collections": [], "enabled": True, "frozen": 0}
