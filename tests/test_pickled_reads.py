"""A pickle a node loads from a file names classes whose code it does not hold: that code is
read too (run/_audit.py hears ``pickle.find_class``; run/_folders.py's ``unpickled_sources``).

A model trained by one node and saved to disk (``joblib.dump``, ``pickle.dump``) is loaded by
the next; editing the model's class re-runs the trainer, which writes the same bytes (the
pickle names the class), so before, the consumer was a cache hit with the old method's result.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from cli_runner import ran
from etherealfabric import Workflow, node, untracked
from etherealfabric.journal import Journal

MODELS = """
class Model:
    def __init__(self, k):
        self.k = k

    def predict(self, x):
        return self.k * x + 1


def unrelated():
    return "not used"
"""

FLOW = """
import json, pickle
from etherealfabric import Workflow, node
import mymodels

@node(writes=["models/model.pkl"])
def train(k: int = 3):
    with open("models/model.pkl", "wb") as f:
        pickle.dump(mymodels.Model(k), f)
    return k

@node
def final(k):
    with open("models/model.pkl", "rb") as f:
        return pickle.load(f).predict(10)

with Workflow("pickled") as wf:
    final(train())
"""


def test_editing_the_class_of_a_model_a_node_loads_from_disk_runs_it_again(
    tmp_path: Path, ef: Callable[..., object]
) -> None:
    (tmp_path / "mymodels.py").write_text(MODELS)
    (tmp_path / "flow.py").write_text(FLOW)

    first = ran(tmp_path)
    assert first["executed"] == 2
    assert ran(tmp_path)["cached"] == 2  # nothing changed: both hits
    (tmp_path / "mymodels.py").write_text(MODELS.replace("self.k * x + 1", "self.k * x + 500"))
    again = ran(tmp_path)
    assert again["executed"] == 2, again  # train (its key covers Model) and final (its read)
    shown = ef(tmp_path, "cat", "latest", "final")
    assert shown.returncode == 0, shown.stderr
    assert "530" in shown.stdout
    assert ran(tmp_path)["cached"] == 2


def test_only_user_code_counts_and_untracked_loads_do_not(tmp_path: Path, home: Path) -> None:
    (tmp_path / "lib.pkl").write_bytes(pickle.dumps(OrderedDict(a=Path("x"))))

    @node
    def library_classes() -> int:
        with open("lib.pkl", "rb") as f:
            return len(pickle.load(f))

    @node
    def quiet() -> int:
        with untracked(), open("lib.pkl", "rb") as f:
            return len(pickle.load(f))

    with Workflow("library", root=".") as wf:
        library_classes()
        quiet()
    assert wf.execute().executed == 2
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute("SELECT node, record FROM actions").fetchall()
    reads = {name: json.loads(record).get("reads", {}) for name, record in rows}
    assert list(reads["library_classes"]) == ["./lib.pkl"]  # the file; no module of a library
    assert reads["quiet"] == {}
