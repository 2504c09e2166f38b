"""Threads writing a shared folder whose ``actions`` is a planted symbolic link lose nothing.

Each writer that found the link replaced it with a real folder. One that had seen the link,
then found a real folder there by the time it removed it (another thread had replaced it and
written its record into it), removed that folder with ``rmtree``: the other thread's record
was gone, and a teammate computed that node again (a CI flake of
``test_shared_folder.py::test_folders_of_a_shared_folder_linked_outside_it_are_never_gone_through``;
16% of rounds of 8 threads lost a record). Replacing a planted link never removes a folder now.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from etherealfabric.store import LocalStore
from etherealfabric.store._writer import remove_path

WRITERS = 8


def test_writers_racing_to_replace_a_planted_link_keep_every_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="etherealfabric.store")  # (a warning per round)
    lost = []
    for round_ in range(100):
        outside, folder = tmp_path / f"outside-{round_}", tmp_path / f"store-{round_}"
        outside.mkdir()
        folder.mkdir()
        (folder / "actions").symlink_to(outside, target_is_directory=True)
        stores = [LocalStore(folder, shared=True) for _ in range(WRITERS)]
        keys = [f"{round_:02x}{i:02x}" * 8 for i in range(WRITERS)]
        gate = threading.Barrier(WRITERS)

        threads = [
            threading.Thread(target=_write, args=(gate, store, key))
            for store, key in zip(stores, keys, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        missing = [k for k in keys if stores[0].get_action(k) is None]
        if missing:
            lost.append((round_, missing))
        assert not (folder / "actions").is_symlink()
        assert list(outside.iterdir()) == []  # nothing was written through the link
    assert lost == []


def _write(gate: threading.Barrier, store: LocalStore, key: str) -> None:
    gate.wait()
    store.put_action(key, {"node": key[:4], "outputs": {}})


def test_remove_path_leaves_a_real_folder_when_told_to(tmp_path: Path) -> None:
    real = tmp_path / "actions"
    (real / "ab").mkdir(parents=True)
    (real / "ab" / "record").write_text("kept")
    assert remove_path(str(real), files=False, folders=False) is False
    assert (real / "ab" / "record").read_text() == "kept"
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert remove_path(str(link), files=False, folders=False) is True
    assert not link.exists() and (real / "ab" / "record").exists()
