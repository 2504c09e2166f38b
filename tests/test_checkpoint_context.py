"""A checkpoint is resumed only with what its state was made from: the data files the node read
by path, and the files it had written into its declared outputs (run/_resumable.py). Killed
runs are real processes that kill themselves with SIGKILL right after a save."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import cloudpickle
import pytest

from cli_runner import ef
from etherealfabric import Workflow, checkpoint, node
from etherealfabric.store import LocalStore

#: a node that adds the number in data.txt once per step, saving after each step; with
#: KILL_AT=n in the environment the process kills itself (SIGKILL) right after the n-th save.
#: steps.log (appended to: written, never a read) counts the steps computed.
ACCUMULATE = """
import os, signal
from etherealfabric import Workflow, checkpoint, node

@node
def accumulate(steps):
    value = int(open("data.txt").read())
    state = checkpoint.load(default={"i": 0, "total": 0})
    if state["i"] == 0 and os.path.exists("extra.txt"):  # read by the first attempt only
        state["total"] += int(open("extra.txt").read())
    for i in range(state["i"], steps):
        state = {"i": i + 1, "total": state["total"] + value}
        with open("steps.log", "a") as log:
            log.write(f"{i}\\n")
        checkpoint.save(state)
        if os.environ.get("KILL_AT") == str(i + 1):
            os.kill(os.getpid(), signal.SIGKILL)
    return state["total"]

with Workflow("accumulate") as wf:
    accumulate(6)
"""

#: a node that writes a file per epoch into its declared folder and saves after each epoch
SNAPSHOTS = """
import os, signal
from etherealfabric import Workflow, checkpoint, node, root_path

@node(writes=["snapshots/"])
def train(epochs):
    state = checkpoint.load(default={"epoch": 0})
    for e in range(state["epoch"], epochs):
        with open(root_path(f"snapshots/epoch{e}.txt"), "w") as fh:
            fh.write(f"weights after epoch {e}\\n")
        state = {"epoch": e + 1}
        checkpoint.save(state)
        if os.environ.get("KILL_AT") == str(e + 1):
            with open(root_path(f"snapshots/epoch{e + 1}.txt"), "w") as fh:
                fh.write("half written\\n")  # the epoch after the save, cut short
            os.kill(os.getpid(), signal.SIGKILL)
    return sorted(os.listdir(root_path("snapshots")))

with Workflow("snapshots", root=".") as wf:
    train(5)
"""


def _run(cwd: Path, **env: str) -> tuple[int, str]:
    done = ef(cwd, "run", "flow.py", ETHEREALFABRIC_HOME=str(cwd / "home"), **env)
    return done.returncode, done.stdout + done.stderr


def _result(cwd: Path, node_name: str) -> object:
    done = ef(cwd, "cat", "latest", node_name, ETHEREALFABRIC_HOME=str(cwd / "home"))
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip())  # (cat prints the value's repr)


def _steps(cwd: Path) -> list[int]:
    return [int(line) for line in (cwd / "steps.log").read_text().split()]


def test_a_checkpoint_made_from_a_file_changed_since_is_not_resumed(tmp_path: Path) -> None:
    """Killed after 3 of 6 steps with data 1; the user fixes the data to 100: the node starts
    over (600, not 3 + 300), says why, and the next run serves 600."""
    (tmp_path / "flow.py").write_text(ACCUMULATE)
    (tmp_path / "data.txt").write_text("1\n")
    code, _ = _run(tmp_path, KILL_AT="3")
    assert code == -9
    (tmp_path / "data.txt").write_text("100\n")
    code, out = _run(tmp_path)
    assert code == 0, out
    assert "ignoring its checkpoint" in out and "data.txt" in out
    assert _result(tmp_path, "accumulate") == 600
    assert _steps(tmp_path) == [0, 1, 2, 0, 1, 2, 3, 4, 5]  # started over
    code, out = _run(tmp_path)
    assert code == 0 and "0 executed, 1 cached" in out
    assert _result(tmp_path, "accumulate") == 600


def test_a_checkpoint_made_from_unchanged_files_is_resumed(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(ACCUMULATE)
    (tmp_path / "data.txt").write_text("7\n")
    assert _run(tmp_path, KILL_AT="4")[0] == -9
    code, out = _run(tmp_path)
    assert code == 0, out
    assert "ignoring its checkpoint" not in out
    assert _steps(tmp_path) == [0, 1, 2, 3, 4, 5]  # went on from step 4
    assert _result(tmp_path, "accumulate") == 42


def test_a_file_only_the_killed_attempt_read_is_in_the_record_of_the_one_that_resumed(
    tmp_path: Path,
) -> None:
    """extra.txt is read before the first save only: the attempt that resumes never opens
    it, but its result holds it. Changing it later must refuse the hit."""
    (tmp_path / "flow.py").write_text(ACCUMULATE)
    (tmp_path / "data.txt").write_text("1\n")
    (tmp_path / "extra.txt").write_text("1000\n")
    assert _run(tmp_path, KILL_AT="2")[0] == -9
    assert _run(tmp_path)[0] == 0
    assert _result(tmp_path, "accumulate") == 1006
    assert _steps(tmp_path) == [0, 1, 2, 3, 4, 5]
    (tmp_path / "extra.txt").write_text("2000\n")
    code, out = _run(tmp_path)
    assert code == 0 and "1 executed" in out, out
    assert _result(tmp_path, "accumulate") == 2006


def test_a_resumed_node_keeps_the_files_it_wrote_into_its_declared_folder(
    tmp_path: Path,
) -> None:
    """Killed after saving epoch 2 (epoch 3 half written): the resumed attempt finds epochs
    0-2 as they were, not the half-written file, and the stored folder holds every epoch."""
    (tmp_path / "flow.py").write_text(SNAPSHOTS)
    assert _run(tmp_path, KILL_AT="3")[0] == -9
    snapshots = tmp_path / "snapshots"
    assert (snapshots / "epoch3.txt").read_text() == "half written\n"
    code, out = _run(tmp_path)
    assert code == 0, out
    expected = [f"epoch{e}.txt" for e in range(5)]
    assert _result(tmp_path, "train") == expected
    assert sorted(p.name for p in snapshots.iterdir()) == expected
    assert (snapshots / "epoch3.txt").read_text() == "weights after epoch 3\n"
    for path in snapshots.iterdir():  # a cache hit restores the whole folder
        path.unlink()
    code, out = _run(tmp_path)
    assert code == 0 and "1 cached" in out, out
    assert sorted(p.name for p in snapshots.iterdir()) == expected


def test_a_retry_keeps_the_files_written_before_its_checkpoint(home: Path) -> None:
    failed: list[int] = []

    @node(writes=["out/"], retries=1)
    def train(epochs: int) -> list[str]:
        state = checkpoint.load(default={"epoch": 0})
        for e in range(state["epoch"], epochs):
            Path(f"out/epoch{e}.txt").write_text(str(e))
            checkpoint.save({"epoch": e + 1})
            if e == 2 and not failed:
                failed.append(e)
                raise RuntimeError("transient")
        return sorted(p.name for p in Path("out").iterdir())

    with Workflow("retry-files", root=".") as wf:
        out = train(5)
    assert wf.execute()[out] == [f"epoch{e}.txt" for e in range(5)]
    assert failed == [2]


def test_a_checkpoint_whose_files_cannot_be_put_back_starts_over(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An object of the saved folder collected meanwhile: the folder is emptied again and the
    node starts from the beginning (never resumed with files missing)."""
    runs: list[int] = []

    @node(writes=["out/"], retries=1)
    def train(epochs: int) -> list[str]:
        state = checkpoint.load(default={"epoch": 0})
        runs.append(state["epoch"])
        for e in range(state["epoch"], epochs):
            Path(f"out/epoch{e}.txt").write_text(f"epoch {e}")
            checkpoint.save({"epoch": e + 1})
            if e == 1 and len(runs) == 1:
                store = LocalStore(home)
                for digest in list(store.iter_objects()):  # the snapshot's objects go
                    store.delete_object(digest)
                raise RuntimeError("transient")
        return sorted(p.name for p in Path("out").iterdir())

    with Workflow("lost-files", root=".") as wf:
        out = train(3)
    with caplog.at_level(logging.WARNING, logger="etherealfabric.checkpoint"):
        assert wf.execute()[out] == ["epoch0.txt", "epoch1.txt", "epoch2.txt"]
    assert runs == [0, 0]  # started over
    assert "declared outputs cannot be put back" in caplog.text


def _planted(home: Path, name: str, stored: bytes) -> tuple[int, list[int]]:
    """Run a node that adds 1 to the state it loads, with ``stored`` planted as its
    checkpoint: (its result, the states it loaded)."""
    seen: list[int] = []

    @node
    def count(n: int) -> int:
        state = checkpoint.load(default=0)
        seen.append(state)
        return state + n

    with Workflow(name) as wf:
        out = count(1)
    LocalStore(home).put_checkpoint(wf.plan()["count"].key, stored)
    return wf.execute()[out], seen


def test_a_checkpoint_saved_without_a_context_is_resumed(home: Path) -> None:
    """A state an earlier version stored (the pickle alone) goes on as before."""
    assert _planted(home, "old-format", cloudpickle.dumps(41)) == (42, [41])


def test_a_checkpoint_with_a_damaged_context_starts_over(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = b"EFRESUME1\n{not json\n" + cloudpickle.dumps(41)
    with caplog.at_level(logging.WARNING, logger="etherealfabric.checkpoint"):
        assert _planted(home, "damaged-context", damaged) == (1, [0])
    assert "ignoring its checkpoint" in caplog.text
