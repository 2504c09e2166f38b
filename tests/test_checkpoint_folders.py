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
