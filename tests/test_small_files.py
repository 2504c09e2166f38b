"""``write_small_file``: the one way the engine writes its small files (home id, pins, memos,
the workflow-import shim): whole or not at all, and first-maker-wins when asked not to replace."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from etherealfabric.run._teamcache import pins, set_pins
from etherealfabric.store._sharedgc import home_id
from etherealfabric.store._smallfiles import write_small_file


def test_replaces_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "memo"
    assert write_small_file(target, "one\n")
    assert write_small_file(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(os.listdir(tmp_path)) == ["memo"]


def test_without_replace_the_first_file_stays(tmp_path: Path) -> None:
    target = tmp_path / "id"
    assert write_small_file(target, "first\n", replace=False)
    assert not write_small_file(target, "second\n", replace=False)
    assert target.read_text() == "first\n"
    assert sorted(os.listdir(tmp_path)) == ["id"]


def test_a_missing_folder_is_an_error_and_nothing_is_left(tmp_path: Path) -> None:
    try:
        write_small_file(tmp_path / "nowhere" / "memo", "x")
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a write into a missing folder must fail")
    assert os.listdir(tmp_path) == []


def test_readers_never_see_part_of_a_file(tmp_path: Path) -> None:
    target = tmp_path / "pins"
    texts = ["a" * 50_000 + "\n", "b" * 50_000 + "\n"]
    write_small_file(target, texts[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            write_small_file(target, texts[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(texts) and seen


def test_concurrent_home_ids_agree_and_pins_round_trip(tmp_path: Path) -> None:
    for round_ in range(20):  # threads racing to make a home's id all get the same one
        home = tmp_path / f"home-{round_}"
        home.mkdir()
        found: list[str] = []
        start = threading.Barrier(8)

        def ask(home: Path = home, found: list[str] = found, start: threading.Barrier = start):
            start.wait()
            found.append(home_id(home))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(found)) == 1 and len(found[0]) == 32, (round_, found)
        assert (home / "home-id").read_text() == found[0] + "\n"
        assert os.listdir(home) == ["home-id"]
    (home / "home-id").write_text("garbage\n")  # a malformed id is replaced
    again = home_id(home)
    assert again != found[0] and (home / "home-id").read_text() == again + "\n"
    set_pins(home, ["r2", "r1", "r2"])
    assert pins(home) == ["r2", "r1"]
    assert sorted(os.listdir(home)) == ["home-id", "pinned-runs"]
