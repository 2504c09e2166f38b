"""Deleting checkpoints leaves no empty prefix folders under the store's ``checkpoints/``.

A checkpoint lives at ``checkpoints/<2 hex>/<key>``; once the last one of a prefix is deleted,
its folder goes too. A writer racing with that removal (another process saving a checkpoint of
the same prefix) recreates the folder: real processes on one store, no save ever fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from etherealfabric.store import LocalStore

KEY_A = "ab" + "0" * 30
KEY_B = "ab" + "1" * 30


def test_deleting_the_last_checkpoint_of_a_prefix_removes_its_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_checkpoint(KEY_A, b"a")
    store.put_checkpoint(KEY_B, b"b")
    store.delete_checkpoint(KEY_A)
    assert (tmp_path / "checkpoints" / "ab").is_dir(), "another checkpoint is still in it"
    store.delete_checkpoint(KEY_B)
    assert not (tmp_path / "checkpoints" / "ab").exists()
    store.delete_checkpoint(KEY_B)  # deleting an absent one again is no error
    store.put_checkpoint(KEY_A, b"again")  # the same store object recreates the folder
    assert store.get_checkpoint(KEY_A) == b"again"


SAVER = textwrap.dedent(
    """
    import sys
    from etherealfabric.store import LocalStore

    store, key = LocalStore(sys.argv[1]), sys.argv[2]
    for i in range(int(sys.argv[3])):
        store.put_checkpoint(key, str(i).encode())
        assert store.get_checkpoint(key) == str(i).encode()
        store.delete_checkpoint(key)
    print("done", flush=True)
    """
)


def test_savers_racing_with_the_folders_removal_never_fail(tmp_path: Path) -> None:
    """Two processes save and delete checkpoints of one prefix in a loop: each deletion may
    remove the folder the other is about to write into; every save succeeds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(tmp_path), key, "400"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key in (KEY_A, KEY_B)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [".tmp"]


def test_a_folder_made_and_removed_again_under_makedirs_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.makedirs(exist_ok=True)`` raises FileExistsError when another process made the
    folder and removed it again before makedirs could see it (CI caught it once in the test
    above): the store makes it again instead of failing the save."""
    store = LocalStore(tmp_path)
    real, raced = os.makedirs, []

    def racing(path: str, *args: object, **kwargs: object) -> None:
        if path.endswith(os.path.join("checkpoints", "ab")) and not raced:
            raced.append(path)
            raise FileExistsError(17, "File exists", path)
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "makedirs", racing)
    store.put_checkpoint(KEY_A, b"state")
    assert raced and store.get_checkpoint(KEY_A) == b"state"


def test_a_real_folder_where_a_planted_one_was_is_never_removed(tmp_path: Path) -> None:
    """Two writers of a shared folder that both found a planted link where ``actions`` belongs:
    the first replaced it by a real folder and wrote a record into it; the second must not
    remove that folder (a record was lost, and a teammate ran the node again)."""
    store = LocalStore(tmp_path / "shared", shared=True)
    folder = tmp_path / "shared" / "actions"
    folder.mkdir(parents=True)
    (folder / "record").write_text("a teammate's record")
    assert store._remove_planted(str(folder), folder=True) is False
    assert (folder / "record").read_text() == "a teammate's record"
