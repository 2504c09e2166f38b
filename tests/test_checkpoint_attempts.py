"""A checkpoint belongs to one attempt: an attempt that is over (abandoned at its timeout on the
thread backend, or ended) can no longer save, load or clear it; ``--force`` starts from scratch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from etherealfabric import Event, EventKind, Workflow, checkpoint, node
from etherealfabric.errors import AttemptOverError
from etherealfabric.run._checkpoint import Checkpoint
from etherealfabric.store import LocalStore

KEY = "0123456789abcdef0123456789abcdef"


def _checkpoint_files(root: Path) -> list[Path]:
    folder = root / "checkpoints"
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp"))


def test_a_closed_checkpoint_refuses_every_use_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "store")
    cp = Checkpoint(store, KEY, "train", attempt=2)
    cp.save({"epoch": 1})
    cp.close("abandoned after its timeout of 1s")
    cp.close("it ended")  # the first reason stays
    caplog.set_level("INFO", logger="etherealfabric.checkpoint")
    for call in (lambda: cp.save({"epoch": 2}), cp.load, cp.exists, cp.clear):
        with pytest.raises(AttemptOverError, match=r"node 'train': attempt 2 is over \(aband"):
            call()
    refusals = [r for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refusals) == 1  # logged once per attempt
    assert Checkpoint(store, KEY, "train").load() == {"epoch": 1}  # neither replaced nor cleared
    assert cp.saves == 1


def _run_abandoned(home: Path, second: Any) -> tuple[Any, Any, list[object], threading.Event]:
    """A node whose first attempt hangs past its timeout (released by the test) and then
    saves a checkpoint, and whose second attempt runs ``second()``; what the abandoned
    attempt's save did (None or the exception) is appended to the returned list."""
    release, finished = threading.Event(), threading.Event()
    saved: list[object] = []
    attempts = {"n": 0}

    @node(timeout=1.0, retries=1)
    def train():
        attempts["n"] += 1
        if attempts["n"] == 1:
            try:
                release.wait(60)  # hangs: abandoned at its timeout, its thread runs on
                checkpoint.save("from the abandoned attempt")
                saved.append(None)
            except Exception as exc:
                saved.append(exc)
            finally:
                finished.set()
            return "abandoned"
        return second(release, finished)

    with Workflow("abandoned") as wf:
        out = train()
    try:
        results = wf.execute()
    finally:
        release.set()
    assert finished.wait(60)
    return results, out, saved, release


def test_an_abandoned_attempt_cannot_recreate_the_checkpoint_after_the_success(
    home: Path,
) -> None:
    def second(release: threading.Event, finished: threading.Event) -> str:
        checkpoint.save("from the retry")  # the success deletes it
        return "done"

    results, out, saved, _ = _run_abandoned(home, second)
    assert results[out] == "done"
    assert len(saved) == 1 and isinstance(saved[0], AttemptOverError), saved
    assert _checkpoint_files(home) == []  # the success's deletion stands


def test_an_abandoned_attempt_cannot_overwrite_the_retrys_checkpoint(home: Path) -> None:
    def second(release: threading.Event, finished: threading.Event) -> str:
        checkpoint.save("from the retry")
        release.set()  # the abandoned attempt tries to save now, while this one runs
        assert finished.wait(60)
        return str(checkpoint.load())

    results, out, saved, _ = _run_abandoned(home, second)
    assert results[out] == "from the retry"
    assert isinstance(saved[0], AttemptOverError), saved


STARTS: list[int] = []


@node(retries=1)
def count_to(n):
    start = checkpoint.load(default=0)
    STARTS.append(start)
    for step in range(start, n):
        checkpoint.save(step + 1)
        if len(STARTS) == 1 and step + 1 == 3:
            raise RuntimeError("the machine died")
    return n


def test_force_starts_from_scratch_but_its_retries_resume(home: Path) -> None:
    keys: list[str] = []

    def on_event(event: Event) -> None:
        if event.kind is EventKind.NODE_SUCCEEDED:
            keys.append(event.data["key"])

    with Workflow("forced") as wf:
        count_to(5)
    STARTS.clear()
    wf.execute(subscribers=[on_event])
    assert STARTS == [0, 3]
    # a checkpoint left under the key after the success (a crash between the commit and its
    # deletion, or an earlier version's abandoned attempt): a forced run does not resume it
    LocalStore(home).put_checkpoint(keys[0], cloudpickle.dumps(5))
    STARTS.clear()
    wf.execute(force=["count_to"])
    assert STARTS == [0, 3]  # from scratch, then the retry resumed its own checkpoint
    assert _checkpoint_files(home) == []
