"""Intra-node checkpoints: the Checkpoint object, the proxy, and resuming a killed training run."""

from __future__ import annotations

import logging
import os
import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path

import cloudpickle
import pytest

from etherealfabric import Node, Workflow, checkpoint, node
from etherealfabric.define._context import activate_checkpoint as activate
from etherealfabric.define._context import current_checkpoint
from etherealfabric.errors import ExecutionError, SerializationError, StoreError
from etherealfabric.run._checkpoint import Checkpoint
from etherealfabric.store import LocalStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "resume_training.py"
KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _checkpoint_files(root: Path) -> list[Path]:
    """Checkpoint files (not temp files) under a store or home root."""
    folder = root / "checkpoints"
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp"))


# -- Checkpoint ---------------------------------------------------------------------------------
def test_save_load_exists_clear_round_trip(store: LocalStore) -> None:
    cp = Checkpoint(store, KEY, "train")
    assert not cp.exists()
    assert cp.load() is None
    assert cp.load(default={"epoch": 0}) == {"epoch": 0}
    assert cp.saves == 0

    state = {"epoch": 3, "weights": [0.5, -1.25], "name": "run", "nested": ({1, 2}, b"\x00")}
    cp.save(state)
    assert cp.saves == 1
    assert cp.exists()
    assert cp.load(default="unused") == state
    assert _checkpoint_files(Path(store.root)) == [Path(store.root) / "checkpoints" / KEY[:2] / KEY]

    cp.clear()
    assert not cp.exists()
    assert cp.load(default=7) == 7
    cp.clear()  # clearing nothing is fine
    assert _checkpoint_files(Path(store.root)) == []


def test_a_later_save_replaces_the_earlier_one(store: LocalStore) -> None:
    cp = Checkpoint(store, KEY, "train")
    for epoch in range(5):
        cp.save({"epoch": epoch})
    assert cp.saves == 5
    assert cp.load() == {"epoch": 4}
    assert len(_checkpoint_files(Path(store.root))) == 1
    # a new attempt (a new Checkpoint object on the same key) sees the state, counts its own saves
    again = Checkpoint(store, KEY, "train")
    assert again.saves == 0
    assert again.load() == {"epoch": 4}


def test_checkpoints_of_different_keys_are_independent(store: LocalStore) -> None:
    a, b = Checkpoint(store, KEY, "a"), Checkpoint(store, OTHER_KEY, "b")
    a.save("state of a")
    assert not b.exists()
    b.save("state of b")
    a.clear()
    assert b.load() == "state of b"


def test_load_returns_a_fresh_copy(store: LocalStore) -> None:
    cp = Checkpoint(store, KEY, "train")
    cp.save({"weights": [1, 2]})
    first = cp.load()
    first["weights"].append(3)
    assert cp.load() == {"weights": [1, 2]}


def test_closures_and_lambdas_are_saved_with_cloudpickle(store: LocalStore) -> None:
    factor = 3
    cp = Checkpoint(store, KEY, "train")
    cp.save({"schedule": lambda epoch: epoch * factor})
    assert cp.load()["schedule"](2) == 6


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "header only"])
def test_a_damaged_checkpoint_loads_as_the_default_with_a_warning(
    store: LocalStore, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cp = Checkpoint(store, KEY, "train")
    cp.save({"epoch": 12, "weights": list(range(1000))})
    path = Path(store.checkpoint_path(KEY))
    data = path.read_bytes()
    damaged = {
        "flip": data[:-10] + bytes([data[-10] ^ 0x01]) + data[-9:],
        "truncate": data[: len(data) // 2],
        "garbage": b"not a checkpoint at all, " * 10,
        "empty": b"",
        "header only": data[: data.index(b"\n", data.index(b"\n") + 1) + 1],
    }[damage]
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        assert cp.load(default={"epoch": 0}) == {"epoch": 0}
        assert not cp.exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert all(str(path) in r.getMessage() for r in warnings)
    assert "damaged checkpoint" in warnings[0].getMessage()
    cp.save({"epoch": 13})  # the next save replaces the damaged file
    assert cp.load() == {"epoch": 13}


def test_a_checkpoint_that_no_longer_unpickles_loads_as_the_default(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.put_checkpoint(KEY, b"intact bytes, but not a pickle")
    cp = Checkpoint(store, KEY, "train")
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        assert cp.load(default="fresh") == "fresh"
    assert any(
        "cannot be unpickled" in r.getMessage() and "'train'" in r.getMessage()
        for r in caplog.records
    )


def test_an_unpicklable_state_is_a_serialization_error_naming_the_node(
    store: LocalStore,
) -> None:
    cp = Checkpoint(store, KEY, "train")
    cp.save("good")
    with pytest.raises(SerializationError, match=r"node 'train'.*cannot be pickled") as info:
        cp.save({"lock": threading.Lock()})
    assert info.value.node == "train"
    assert cp.saves == 1
    assert cp.load() == "good"  # the previous checkpoint is intact


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "ABCDEF0123456789ABCDEF0123456789", None])
def test_an_invalid_key_is_refused(store: LocalStore, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid cache key"):
        Checkpoint(store, bad, "train")
    for call in (
        lambda: store.put_checkpoint(bad, b"x"),
        lambda: store.get_checkpoint(bad),
        lambda: store.delete_checkpoint(bad),
    ):
        with pytest.raises(StoreError, match="invalid cache key"):
            call()
    assert not Path(store.root).exists()


# -- the current checkpoint and the proxy -------------------------------------------------------
def test_the_proxy_outside_a_running_node_is_an_execution_error() -> None:
    message = r"checkpoints exist only while a node runs"
    with pytest.raises(ExecutionError, match=message):
        current_checkpoint()
    for call in (
        lambda: checkpoint.save(1),
        lambda: checkpoint.load(),
        lambda: checkpoint.exists(),
        lambda: checkpoint.clear(),
        lambda: checkpoint.saves,
    ):
        with pytest.raises(ExecutionError, match=message):
            call()
    assert "none active" in repr(checkpoint)


def test_the_proxy_delegates_to_the_active_checkpoint(store: LocalStore) -> None:
    cp = Checkpoint(store, KEY, "train")
    with activate(cp) as active:
        assert active is cp
        assert current_checkpoint() is cp
        assert checkpoint.load(default="none yet") == "none yet"
        checkpoint.save({"epoch": 1})
        assert checkpoint.exists()
        assert checkpoint.load() == {"epoch": 1}
        assert checkpoint.saves == 1
        assert "'train'" in repr(checkpoint)
        checkpoint.clear()
        assert not cp.exists()
    with pytest.raises(ExecutionError):
        current_checkpoint()


def test_activate_nests_and_restores_even_after_an_error(store: LocalStore) -> None:
    outer, inner = Checkpoint(store, KEY, "outer"), Checkpoint(store, OTHER_KEY, "inner")
    with activate(outer):
        with pytest.raises(RuntimeError), activate(inner):
            assert current_checkpoint() is inner
            raise RuntimeError("node failed")
        assert current_checkpoint() is outer
    with pytest.raises(ExecutionError):
        current_checkpoint()


def test_each_thread_sees_its_own_checkpoint(store: LocalStore) -> None:
    keys = [f"{i:032x}" for i in range(8)]
    barrier = threading.Barrier(len(keys))
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            with activate(Checkpoint(store, key, f"node-{key[-1]}")):
                barrier.wait(timeout=10)  # all threads are inside activate at once
                checkpoint.save(key)
                barrier.wait(timeout=10)
                seen[key] = checkpoint.load()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen == {key: key for key in keys}


def test_the_proxy_pickles_by_reference() -> None:
    for module in (pickle, cloudpickle):
        assert module.loads(module.dumps(checkpoint)) is checkpoint


# -- inside a workflow --------------------------------------------------------------------------
STARTS: list[int] = []


@node(retries=1)
def count_to(n: int) -> int:
    """Saves after each step; the first attempt fails after step 3."""
    start = checkpoint.load(default=0)
    STARTS.append(start)
    for step in range(start, n):
        checkpoint.save(step + 1)
        if len(STARTS) == 1 and step + 1 == 3:
            raise RuntimeError("the machine died")
    return int(checkpoint.saves)


def test_a_retry_continues_from_the_last_checkpoint_and_success_removes_it(
    home: Path,
) -> None:
    STARTS.clear()
    with Workflow("retry_resume") as wf:
        total = count_to(5)
    results = wf.execute()
    assert STARTS == [0, 3]  # the retry resumed at step 3
    assert results[total] == 2  # the second attempt saved steps 4 and 5 only
    assert _checkpoint_files(home) == []  # deleted once the success is committed


class Accumulate(Node):
    """A class node that checkpoints through self.checkpoint."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.outputs = ["total"]

    def run(self) -> dict[str, int]:
        done, total = self.checkpoint.load(default=(0, 0))
        for i in range(done, self.n):
            total += i
            self.checkpoint.save((i + 1, total))
        return {"total": total}


def test_a_class_node_checkpoints_through_self_checkpoint(home: Path) -> None:
    wf = Workflow("class_checkpoint")
    acc = Accumulate(10)
    wf.add_node(acc)
    results = wf.execute()
    assert results[acc]["total"] == 45
    assert _checkpoint_files(home) == []


@node
def steps_of(x: int) -> int:
    """A map child that checkpoints after each of its steps."""
    done, total = checkpoint.load(default=(0, 0))
    for step in range(done, 3):
        total += x * step
        checkpoint.save((step + 1, total))
    return total


@node
def numbers(n: int) -> list[int]:
    return list(range(n))


def test_the_checkpoints_of_map_children_are_removed_once_their_success_is_committed(
    home: Path,
) -> None:
    # they were kept forever (only a plain node's success deleted its checkpoint), and
    # `cache gc` keeps checkpoints: one file per item of every map that checkpointed
    with Workflow("map_checkpoints") as wf:
        parts = steps_of.map(numbers(4))
    results = wf.execute()
    assert results[parts] == [0, 3, 6, 9]
    assert _checkpoint_files(home) == []


# -- the example, killed and resumed in real processes ------------------------------------------
def _run_example(
    cwd: Path, home: Path, fail_at: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETHEREALFABRIC_", "EF_"))}
    env["ETHEREALFABRIC_HOME"] = str(home)
    if fail_at is not None:
        env["EF_FAIL_AT_EPOCH"] = str(fail_at)
    return subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _digest(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.findall(r"^weights digest ([0-9a-f]{16})$", proc.stdout, re.MULTILINE)
    assert len(found) == 1, proc.stdout
    return found[0]


def test_a_killed_training_resumes_at_its_checkpoint_bit_identically(tmp_path: Path) -> None:
    clean = _run_example(tmp_path, tmp_path / "clean-home")
    expected = _digest(clean)
    assert "resuming" not in clean.stdout
    assert "epoch 30/30" in clean.stdout

    home = tmp_path / "home"
    killed = _run_example(tmp_path, home, fail_at=7)
    assert killed.returncode == -9, killed.stdout + killed.stderr  # SIGKILL
    assert "epoch  7/30" in killed.stdout and "epoch  8/30" not in killed.stdout
    assert "weights digest" not in killed.stdout
    assert len(_checkpoint_files(home)) == 1

    resumed = _run_example(tmp_path, home)
    assert _digest(resumed) == expected
    assert "resuming at epoch 7\n" in resumed.stdout
    assert "epoch  7/30" not in resumed.stdout and "epoch  8/30" in resumed.stdout

    cached = _run_example(tmp_path, home)
    assert _digest(cached) == expected
    assert "0 nodes executed, 3 cached" in cached.stdout
    assert "epoch" not in cached.stdout.replace("weights digest", "")

    # the scheduler deletes the checkpoint once train's success is committed
    assert _checkpoint_files(home) == []


NOTEBOOK = """
import os, signal, sys, threading, time
from pathlib import Path
from etherealfabric import Workflow, checkpoint, node
from etherealfabric.errors import AttemptOverError

LOG = Path("log.txt")

def note(text):
    with LOG.open("a") as f:
        f.write(text + "\\n")

@node
def train(epochs):
    state = checkpoint.load(default={"epoch": 0, "w": 0})
    note(f"start {state['epoch']}")
    try:
        for epoch in range(state["epoch"], epochs):
            time.sleep(0.05)
            checkpoint.save({"epoch": epoch + 1, "w": state["w"] + epoch})
            state["w"] += epoch
            note(f"saved {epoch + 1}")
    except AttemptOverError:
        note("over")
        raise
    return state["w"]

with Workflow("notebook") as wf:
    train(60)

def interrupt():  # Ctrl-C once the first epoch is saved
    while "saved" not in (LOG.read_text() if LOG.exists() else ""):
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    wf.execute()
except KeyboardInterrupt:
    pass
saved = LOG.read_text().count("saved")
for _ in range(6000):  # the cell's thread goes on computing: until its next save is refused
    if "over" in LOG.read_text():
        break
    time.sleep(0.01)
after = LOG.read_text().split("over")[0].count("saved") - saved
print("saved after the interrupt:", after, "over:", "over" in LOG.read_text())
print("result:", wf.execute()["train"]["result"])
"""


def test_ctrl_c_in_a_notebook_ends_the_running_attempts_checkpoint(tmp_path: Path) -> None:
    """Interrupted (the kernel lives on), a run's node thread went on training and saving
    its checkpoint, then trained the same key beside the re-run's attempt. Its next save is
    refused now, as an attempt abandoned at its timeout's is; the re-run resumes."""
    (tmp_path / "cell.py").write_text(NOTEBOOK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    done = subprocess.run(
        [sys.executable, "cell.py"], cwd=tmp_path, capture_output=True, text=True,
        env={**env, "ETHEREALFABRIC_HOME": str(tmp_path / "home")}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] in ("saved after the interrupt: 0 over: True",
                        "saved after the interrupt: 1 over: True"), done.stdout  # fmt: skip
    assert lines[1] == f"result: {sum(range(60))}", done.stdout
    starts = [line for line in (tmp_path / "log.txt").read_text().splitlines() if "start" in line]
    assert starts[0] == "start 0" and starts[1] != "start 0", starts  # resumed, not redone
