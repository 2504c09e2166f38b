"""Declared file and folder outputs: stored after a run, put back on a cache hit.

A node declares what it writes (``@node(writes=[...])``, a class's ``writes``) or returns
``File``/``Directory`` objects. Each test asserts what is on disk and which nodes ran.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import pytest

from etherealfabric import Directory, File, Node, OutputError, Workflow, node, root_path
from etherealfabric.errors import DefinitionError, RunFailedError
from etherealfabric.journal import Journal
from etherealfabric.journal._gc import collect_garbage
from etherealfabric.observe._explain import explain_node
from etherealfabric.store import LocalStore
from etherealfabric.store._signing import (
    Signer,
    encode_record,
    read_record,
    record_problem,
    unsigned_problem,
)

CALLS: list[str] = []


@node(writes=["reports/summary.md", "models/"])
def train(n: int) -> int:
    CALLS.append("train")
    os.makedirs(root_path("models", "sub"), exist_ok=True)
    Path(root_path("models/weights.bin")).write_bytes(bytes(range(256)) * (n * 40))
    Path(root_path("models/sub/config.json")).write_text(json.dumps({"n": n}))
    os.makedirs(root_path("models/empty"), exist_ok=True)
    os.makedirs(root_path("reports"), exist_ok=True)
    Path(root_path("reports/summary.md")).write_text(f"# trained with n={n}\n")
    return n * 2


@node
def plot(x: int, name: str = "p.txt") -> File:
    CALLS.append("plot")
    path = Path(root_path("plots", name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"plot of {x}\n")
    return File(path)


@node
def shout(f: File) -> str:
    CALLS.append("shout")
    assert isinstance(f, File)
    return Path(f).read_text().upper()


def pipeline(root: Path, home: Path, n: int = 3, *, shouted: bool = True) -> Workflow:
    with Workflow("files-out", root=root, home=home) as wf:
        x = train(n)
        p = plot(x)
        if shouted:
            shout(p)
    return wf


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (outside the home), by relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "home" not in path.relative_to(root).parts:
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def test_deleted_outputs_come_back_byte_identical_without_running(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    first = pipeline(root, home).execute()
    assert first.executed == 3
    written = snapshot(root)
    assert set(written) == {
        "models/sub/config.json",
        "models/weights.bin",
        "plots/p.txt",
        "reports/summary.md",
    }
    for name in ("models", "reports", "plots"):
        shutil.rmtree(root / name)
    CALLS.clear()
    again = pipeline(root, home).execute()
    assert (again.executed, again.cached) == (0, 3)
    assert CALLS == []
    assert snapshot(root) == written
    assert (root / "models" / "empty").is_dir()  # empty folders are part of a folder output
    assert again["shout"]["result"] == "PLOT OF 6\n"


def test_an_edited_output_is_put_back_and_an_intact_one_left_alone(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home).execute()
    written = snapshot(root)
    (root / "reports" / "summary.md").write_text("edited by hand\n")
    with open(root / "models" / "weights.bin", "r+b") as fh:  # same size, other bytes
        fh.write(b"\xff\xff")
    intact = os.stat(root / "models" / "sub" / "config.json")
    again = pipeline(root, home).execute()
    assert again.executed == 0
    assert snapshot(root) == written
    after = os.stat(root / "models" / "sub" / "config.json")
    assert (after.st_ino, after.st_mtime_ns) == (intact.st_ino, intact.st_mtime_ns)


def test_a_restored_file_is_never_a_hard_link_into_the_store(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home).execute()
    original = (root / "models" / "weights.bin").read_bytes()
    (root / "models" / "weights.bin").unlink()
    pipeline(root, home).execute()
    restored = root / "models" / "weights.bin"
    assert os.stat(restored).st_nlink == 1
    with open(restored, "r+b") as fh:  # an in-place write to the restored file...
        fh.write(b"CORRUPTION")
    restored.unlink()
    pipeline(root, home).execute()  # ...did not reach the stored copy
    assert restored.read_bytes() == original


def test_downstream_gets_a_file_at_the_restored_path_keyed_by_content(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    first = pipeline(root, home).execute()
    value = first["plot"]["result"]
    assert isinstance(value, File)
    assert value.path == str(root / "plots" / "p.txt")
    # a different n writes different files: train, plot and shout run
    CALLS.clear()
    other = pipeline(root, home, n=4).execute()
    assert CALLS == ["train", "plot", "shout"]
    assert other["shout"]["result"] == "PLOT OF 8\n"
    # back to n=3: everything cached, and the files on disk are n=3's again
    CALLS.clear()
    back = pipeline(root, home, n=3).execute()
    assert CALLS == [] and back.cached == 3
    assert (root / "plots" / "p.txt").read_text() == "plot of 6\n"
    assert (root / "reports" / "summary.md").read_text() == "# trained with n=3\n"


def test_a_file_output_with_the_same_content_stops_downstream_reruns(tmp_path: Path) -> None:
    """The consumer's key uses the file's content (and path): an upstream edit that writes
    the same bytes does not re-run it."""

    @node
    def write(text: str, version: int) -> File:
        path = Path(root_path("out.txt"))
        path.write_text(text)
        return File(path)

    runs: list[int] = []

    @node
    def size(f: File) -> int:
        runs.append(1)
        return len(Path(f).read_text())

    def build(version: int, text: str) -> Workflow:
        with Workflow("cutoff", root=tmp_path, home=tmp_path / "home") as wf:
            size(write(text, version))
        return wf

    build(1, "same").execute()
    second = build(2, "same").execute()
    assert second.executed == 1 and len(runs) == 1  # write ran again, size did not
    build(3, "other").execute()
    assert len(runs) == 2


class Report(Node):
    """A class node: the class declares what every instance writes, with a placeholder."""

    writes: ClassVar[list[str]] = ["reports/{region}.md"]

    def __init__(self, region: str, total: int) -> None:
        super().__init__()
        self.region = region
        self.total = total
        self.outputs = ["lines"]

    def run(self) -> dict[str, Any]:
        CALLS.append(f"report-{self.region}")
        path = Path(root_path("reports", f"{self.region}.md"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{self.region}: {self.total}\n")
        return {"lines": 1}


class Export(Node):
    """A class node whose instance chooses its folder in ``__init__``."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder
        self.writes = [f"{folder}/"]
        self.outputs = ["count"]

    def run(self) -> dict[str, Any]:
        CALLS.append("export")
        target = Path(root_path(self.folder))
        target.mkdir(parents=True, exist_ok=True)
        (target / "a.csv").write_text("a\n1\n")
        return {"count": 1}


def test_class_nodes_declare_writes_as_a_class_attribute_or_in_init(tmp_path: Path) -> None:
    def run() -> Any:
        wf = Workflow("classes", root=tmp_path, home=tmp_path / "home")
        for node_ in (Report("eu", 3), Report("us", 4), Export("exports/daily")):
            wf.add_node(node_)
        return wf.execute()

    assert run().executed == 3
    written = snapshot(tmp_path)
    assert set(written) == {"reports/eu.md", "reports/us.md", "exports/daily/a.csv"}
    shutil.rmtree(tmp_path / "reports")
    shutil.rmtree(tmp_path / "exports")
    CALLS.clear()
    assert run().cached == 3
    assert CALLS == [] and snapshot(tmp_path) == written


def test_teammates_in_other_folders_share_hits(tmp_path: Path) -> None:
    """The record names root-relative paths: a second checkout gets the hit and its own copy
    of every file, and a store shared between them serves a teammate with an empty home."""
    alice, bob = tmp_path / "alice" / "proj", tmp_path / "bob" / "work" / "proj"
    alice.mkdir(parents=True)
    bob.mkdir(parents=True)
    shared = tmp_path / "team-store"
    env = {"store": str(shared)}
    os.environ["ETHEREALFABRIC_SIGNING_KEY"] = "k" * 32
    try:
        first = pipeline(alice, tmp_path / "alice-home").execute(**env)
        assert first.executed == 3
        CALLS.clear()
        theirs = pipeline(bob, tmp_path / "bob-home").execute(**env)
    finally:
        del os.environ["ETHEREALFABRIC_SIGNING_KEY"]
    assert (theirs.executed, theirs.cached) == (0, 3)
    assert CALLS == []
    assert snapshot(bob) == snapshot(alice)
    assert theirs["plot"]["result"].path == str(bob / "plots" / "p.txt")


def test_a_missing_stored_object_makes_the_hit_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home, shouted=False).execute()
    written = snapshot(root)
    store = LocalStore(home)
    digest = _record_files(home, "train")["reports/summary.md"]["digest"]
    os.unlink(store.object_path(digest))
    (root / "reports" / "summary.md").unlink()
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        again = pipeline(root, home, shouted=False).execute()
    assert CALLS == ["train"]  # recomputed; plot's input is unchanged, so plot is cached
    assert again.cached == 1
    assert snapshot(root) == written
    assert "reports/summary.md" in caplog.text


def test_a_corrupt_stored_object_is_never_restored(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home, shouted=False).execute()
    written = snapshot(root)
    digest = _record_files(home, "train")["reports/summary.md"]["digest"]
    object_path = LocalStore(home).object_path(digest)
    data = bytearray(Path(object_path).read_bytes())
    data[0] ^= 0xFF
    Path(object_path).write_bytes(bytes(data))
    (root / "reports" / "summary.md").unlink()
    CALLS.clear()
    pipeline(root, home, shouted=False).execute()
    assert CALLS == ["train"]
    assert snapshot(root) == written


def test_gc_keeps_the_objects_of_file_outputs(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home).execute()
    written = snapshot(root)
    with Journal(home / "journal.db") as journal:
        report = collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=0)
    assert report.objects_removed == 0
    for name in ("models", "reports", "plots"):
        shutil.rmtree(root / name)
    CALLS.clear()
    assert pipeline(root, home).execute().cached == 3
    assert CALLS == [] and snapshot(root) == written


def test_gc_drops_file_objects_no_kept_record_names(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home, n=3).execute()
    old = _record_files(home, "train")["models/"]["digest"]
    for _ in range(2):
        pipeline(root, home, n=5).execute()
    with Journal(home / "journal.db") as journal:
        report = collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=0)
    assert report.objects_removed > 0
    assert not LocalStore(home).has_object(old)


def test_a_declared_output_the_node_did_not_write_fails_it(tmp_path: Path) -> None:
    @node(writes=["out/never.txt"])
    def lazy() -> int:
        return 1

    with Workflow("lazy", root=tmp_path, home=tmp_path / "home") as wf:
        lazy()
    with pytest.raises(RunFailedError) as caught:
        wf.execute()
    message = caught.value.failures["lazy"]
    assert "out/never.txt" in message and "was not written" in message


def test_a_folder_declared_as_a_file_fails_with_advice(tmp_path: Path) -> None:
    @node(writes=["models"])
    def folder_writer() -> int:
        os.makedirs(root_path("models"), exist_ok=True)
        return 1

    with Workflow("kinds", root=tmp_path, home=tmp_path / "home") as wf:
        folder_writer()
    with pytest.raises(RunFailedError) as caught:
        wf.execute()
    assert "declare it as 'models/'" in caught.value.failures["folder_writer"]


def test_a_returned_file_outside_the_root_fails_the_node(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")

    @node
    def escape(path: str) -> File:
        return File(path)

    (tmp_path / "root").mkdir()
    with Workflow("escape", root=tmp_path / "root", home=tmp_path / "home") as wf:
        escape(str(outside))
    with pytest.raises(RunFailedError) as caught:
        wf.execute()
    assert "outside the workflow's root" in caught.value.failures["escape"]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up.txt", "a/../../b", ".", "~/x"])
def test_writes_must_be_relative_paths_inside_the_root(bad: str) -> None:
    with pytest.raises(DefinitionError, match="writes="):

        @node(writes=[bad])
        def f() -> None: ...


def test_a_placeholder_without_a_parameter_is_a_definition_error(tmp_path: Path) -> None:
    @node(writes=["out/{nope}.txt"])
    def f(x: int) -> int:
        return x

    with Workflow("ph", root=tmp_path, home=tmp_path / "home") as wf:
        f(1)
    with pytest.raises(DefinitionError, match="nope"):
        wf.build()


def test_the_root_defaults_to_the_folder_of_the_workflow_file() -> None:
    assert Workflow("here").root == str(Path(__file__).resolve().parent)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"../../.bashrc": {"kind": "file", "digest": "0" * 32, "size": 1}}, "unsafe"),
        ({"/etc/x": {"kind": "file", "digest": "0" * 32, "size": 1}}, "unsafe"),
        ({"a/": {"kind": "file", "digest": "0" * 32, "size": 1}}, "unsafe"),
        ({".": {"kind": "file", "digest": "0" * 32, "size": 1}}, "unsafe"),
        ({"./": {"kind": "dir", "digest": "0" * 32, "size": 1}}, "unsafe"),  # the whole root
        ({"a": {"kind": "file", "digest": "nope", "size": 1}}, "digest"),
        ({"a": {"kind": "link", "digest": "0" * 32, "size": 1}}, "not a file or folder"),
    ],
)
def test_a_shared_record_naming_unsafe_files_is_rejected(
    files: dict[str, Any], problem: str
) -> None:
    record = {"node": "n", "created_at": 1.0, "outputs": {}, "files": files}
    assert problem in record_problem(record)


def test_a_shared_record_with_an_unsafe_file_output_path_is_rejected() -> None:
    out = {"digest": "0" * 32, "serializer": "file", "size": 1, "path": "../x"}
    assert "unsafe" in record_problem({"node": "n", "outputs": {"r": out}})


def test_a_signed_record_edited_to_name_an_unsafe_path_names_the_path() -> None:
    """Its signature no longer matches either, but the warning names the forged entry."""
    signer = Signer(b"k" * 32)
    entry = {"kind": "file", "digest": "ab" * 16, "size": 1}
    stored = encode_record("key", {"node": "n", "created_at": 1.0, "outputs": {},
                                   "files": {"out.txt": entry}}, signer)  # fmt: skip
    assert read_record("key", json.dumps(stored).encode(), signer)[0] is not None
    stored["files"] = {"../../.bashrc": entry}
    record, problem = read_record("key", json.dumps(stored).encode(), signer)
    assert record is None
    assert problem.startswith("its file entry '../../.bashrc' is unsafe"), problem


def test_undeclared_writes_are_not_restored(tmp_path: Path) -> None:
    @node(writes=["declared.txt"])
    def both() -> int:
        Path(root_path("declared.txt")).write_text("d")
        Path(root_path("undeclared.txt")).write_text("u")
        return 1

    def run() -> Any:
        with Workflow("undeclared", root=tmp_path, home=tmp_path / "home") as wf:
            both()
        return wf.execute()

    run()
    (tmp_path / "declared.txt").unlink()
    (tmp_path / "undeclared.txt").unlink()
    assert run().cached == 1
    assert (tmp_path / "declared.txt").read_text() == "d"
    assert not (tmp_path / "undeclared.txt").exists()


def _record_files(home: Path, node_name: str) -> dict[str, Any]:
    conn = sqlite3.connect(home / "journal.db")
    try:
        rows = conn.execute(
            "SELECT record FROM actions WHERE node = ? ORDER BY created_at DESC", (node_name,)
        ).fetchall()
    finally:
        conn.close()
    return dict(json.loads(rows[0][0])["files"])


def test_error_types_are_public() -> None:
    assert issubclass(OutputError, Exception)
    assert Directory("x").path == os.path.abspath("x")


def test_unsigned_shared_records_never_restore_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restoring writes files into the project: from a shared store, only signed records may.
    (An unsigned record naming ``src/pipeline.py`` must not rewrite it.)"""
    monkeypatch.delenv("ETHEREALFABRIC_SIGNING_KEY", raising=False)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    bob.mkdir()
    shared = {"store": str(tmp_path / "team-store")}
    pipeline(alice, tmp_path / "alice-home", shouted=False).execute(**shared)
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        theirs = pipeline(bob, tmp_path / "bob-home", shouted=False).execute(**shared)
    assert "train" in CALLS and theirs.executed == 2
    assert "file outputs" in caplog.text  # not published unsigned, and not used unsigned:
    files = {"src/pipeline.py": {"kind": "file", "digest": "0" * 32, "size": 9}}
    assert "signed" in unsigned_problem({"node": "n", "outputs": {}, "files": files})
    assert snapshot(bob) == snapshot(alice)  # made by running, not restored


def test_a_large_output_is_restored_checked_while_copied(tmp_path: Path) -> None:
    """A stored file of 8 MiB or more is hashed while the kernel copies it: an intact one comes
    back without running, a corrupt one is never restored (no file, no temp file left) and the
    node runs again."""
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    pipeline(root, home, n=1000, shouted=False).execute()
    written = snapshot(root)
    assert len(written["models/weights.bin"]) >= 8 << 20
    (root / "models" / "weights.bin").unlink()
    CALLS.clear()
    pipeline(root, home, n=1000, shouted=False).execute()
    assert CALLS == []
    assert snapshot(root) == written

    digest = _record_files(home, "train")["models/"]["digest"]
    store = LocalStore(home)
    manifest = json.loads(Path(store.object_path(digest)).read_bytes())["entries"]
    weights = next(m for m in manifest if m[0] == "weights.bin")
    object_path = Path(store.object_path(weights[2]))
    data = bytearray(object_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    object_path.write_bytes(bytes(data))
    (root / "models" / "weights.bin").unlink()
    pipeline(root, home, n=1000, shouted=False).execute()
    assert CALLS == ["train"]
    assert snapshot(root) == written
    assert not [p for p in root.rglob(".ef-restore-*")]


def _emitter(writes: list[str]) -> Any:
    @node(writes=writes, name="emit")
    def emit() -> int:
        for path in writes:
            Path(root_path(path)).write_text(path)
        return len(writes)

    return emit


def test_explain_names_a_declared_write_added_or_removed(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    run_ids = []
    for writes in (["a.txt"], ["a.txt", "b.txt"], ["b.txt"]):
        with Workflow("explain-writes", root=root, home=home) as wf:
            _emitter(writes)()
        run_ids.append(wf.execute().run_id)
    with Journal(home / "journal.db") as journal:
        added = explain_node(journal, run_ids[1], "emit")
        removed = explain_node(journal, run_ids[2], "emit")
    assert added.verdict == "executed" and "write b.txt: added" in str(added), str(added)
    assert "write a.txt: removed" in str(removed), str(removed)
    assert "write b.txt" not in str(removed)


# -- files inside an output (a dict of reports, a list of plots) ------------------------------------
@node
def figures(n: int) -> dict[str, Any]:
    CALLS.append("figures")
    os.makedirs(root_path("figs", "parts"), exist_ok=True)
    for i in range(n):
        Path(root_path("figs", f"fig{i}.txt")).write_text(f"figure {i} of {n}\n")
    Path(root_path("figs", "parts", "a.bin")).write_bytes(bytes(range(256)) * n)
    return {
        "plots": [File(root_path("figs", f"fig{i}.txt")) for i in range(n)],
        "parts": Directory(root_path("figs", "parts")),
        "count": n,
    }


@node
def album(found: dict[str, Any]) -> str:
    CALLS.append("album")
    assert all(isinstance(p, File) for p in found["plots"])
    assert isinstance(found["parts"], Directory)
    sizes = sorted(p.name for p in Path(found["parts"]).iterdir())
    return "".join(Path(p).read_text() for p in found["plots"]) + ",".join(sizes)


def figures_pipeline(root: Path, home: Path, n: int = 3) -> Workflow:
    with Workflow("nested-files", root=root, home=home) as wf:
        album(figures(n))
    return wf


def test_files_inside_an_output_are_stored_and_come_back(tmp_path: Path) -> None:
    """A File or Directory inside an output (here a dict holding a list of files and a folder)
    is stored with the output: a cache hit puts them back without running, and a teammate
    with another checkout folder gets paths under his own root."""
    alice, bob = tmp_path / "alice" / "proj", tmp_path / "bob" / "work" / "proj"
    alice.mkdir(parents=True)
    bob.mkdir(parents=True)
    home = tmp_path / "home"
    first = figures_pipeline(alice, home).execute()
    assert CALLS == ["figures", "album"]
    written = snapshot(alice)
    assert set(written) == {"figs/fig0.txt", "figs/fig1.txt", "figs/fig2.txt", "figs/parts/a.bin"}
    assert first["album"]["result"].startswith("figure 0 of 3\n")

    shutil.rmtree(alice / "figs")
    CALLS.clear()
    again = figures_pipeline(alice, home).execute()
    assert (again.executed, CALLS) == (0, [])
    assert snapshot(alice) == written  # every file back, byte for byte

    theirs = figures_pipeline(bob, home).execute()  # another checkout of the project
    assert (theirs.executed, CALLS) == (0, [])
    assert snapshot(bob) == written
    value = theirs["figures"]["result"]
    assert [p.path for p in value["plots"]] == [str(bob / "figs" / f"fig{i}.txt") for i in range(3)]
    assert value["parts"].path == str(bob / "figs" / "parts")

    (alice / "figs" / "fig1.txt").write_text("edited by hand\n")
    figures_pipeline(alice, home).execute()
    assert CALLS == []  # still a hit: the edited file is put back as it was recorded
    assert snapshot(alice) == written


def test_a_missing_file_inside_an_output_fails_the_node_by_name(tmp_path: Path) -> None:
    @node
    def promises() -> dict[str, Any]:
        return {"report": File(root_path("never", "written.md"))}

    root = tmp_path / "project"
    root.mkdir()
    with Workflow("nested-missing", root=root, home=tmp_path / "home") as wf:
        promises()
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    text = str(info.value)
    assert "promises" in text and "written.md" in text and "which is not a file" in text


# -- a declared folder comes back exactly as recorded -----------------------------------------------
@node(writes=["parts/"])
def partitions(names: list[str]) -> int:
    os.makedirs(root_path("parts"), exist_ok=True)
    for name in names:
        Path(root_path("parts", f"{name}.csv")).write_text(f"{name}\n")
    return len(names)


@node
def read_parts(n: int) -> list[str]:
    return sorted(p.name for p in Path(root_path("parts")).rglob("*") if p.is_file())


def test_a_restored_folder_has_no_stale_files(tmp_path: Path) -> None:
    """Switching back to an earlier version of a node restores its folder exactly: the
    partition a later version added is gone, so a reader of the folder sees the old data."""
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()

    def run(names: list[str]) -> Any:
        with Workflow("partitions", root=root, home=home) as wf:
            read_parts(partitions(names))
        return wf.execute()

    assert run(["a", "b"])["read_parts"]["result"] == ["a.csv", "b.csv"]
    assert run(["a", "b", "c"])["read_parts"]["result"] == ["a.csv", "b.csv", "c.csv"]
    (root / "parts" / "sub").mkdir()
    (root / "parts" / "sub" / "notes.txt").write_text("left by hand\n")
    back = run(["a", "b"])  # the first version again: a cache hit
    assert (back.executed, back.cached) == (0, 2)
    assert sorted(p.relative_to(root).as_posix() for p in (root / "parts").rglob("*")) == [
        "parts/a.csv",
        "parts/b.csv",
    ]
    assert (root / "parts" / "a.csv").read_text() == "a\n"


@node(writes=["out/"])
def whole_folder() -> int:
    return 0


@node(writes=["out/inner.txt"])
def inner_file() -> int:
    return 0


def test_two_nodes_declaring_overlapping_paths_is_a_definition_error(tmp_path: Path) -> None:
    with Workflow("overlap", root=tmp_path) as wf:
        whole_folder()
        inner_file()
    with pytest.raises(
        DefinitionError,
        match=r"node 'inner_file' declares writes= 'out/inner.txt', inside the folder 'out/' that node 'whole_folder' declares too",
    ):
        wf.plan()


PARTS: list[str] = ["a", "b"]


@node(writes=["out/parts/", "out/summary.txt"])
def export_parts(version: int) -> int:
    folder = Path(root_path("out/parts"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in PARTS:
        (folder / f"{name}.csv").write_text(f"{name},{version}\n")
    if version < 3:  # version 3 no longer writes the summary it declares
        Path(root_path("out/summary.txt")).write_text(f"{len(PARTS)}\n")
    return len(PARTS)


def test_a_declared_folder_holds_only_what_this_version_wrote(tmp_path: Path) -> None:
    """Files an older version left in a declared folder are not stored with the new result
    (they were, and every later hit restored them): the folder is emptied before each attempt,
    and a declared file the node no longer writes is an error, not the old file stored."""
    with Workflow("parts", root=str(tmp_path), home=str(tmp_path / "home")) as wf:
        export_parts(1)
    wf.execute()
    assert sorted(os.listdir(tmp_path / "out" / "parts")) == ["a.csv", "b.csv"]
    PARTS[:] = ["x", "y"]
    with Workflow("parts", root=str(tmp_path), home=str(tmp_path / "home")) as wf:
        export_parts(2)
    assert wf.execute().executed == 1
    assert sorted(os.listdir(tmp_path / "out" / "parts")) == ["x.csv", "y.csv"]
    shutil.rmtree(tmp_path / "out")
    assert wf.execute().cached == 1  # restored: the new version's files only
    assert sorted(os.listdir(tmp_path / "out" / "parts")) == ["x.csv", "y.csv"]
    with Workflow("parts", root=str(tmp_path), home=str(tmp_path / "home")) as wf:
        export_parts(3)
    with pytest.raises(RunFailedError, match=r"'out/summary\.txt' was not written"):
        wf.execute()
    PARTS[:] = ["a", "b"]


def test_the_folder_of_a_declared_file_output_is_created_before_the_node_runs(
    tmp_path: Path,
) -> None:
    @node(writes=["models/v1/model.txt"])
    def train() -> int:
        Path("models/v1/model.txt").write_text("weights")  # no makedirs
        return 1

    with Workflow("parents", root=str(tmp_path)) as wf:
        train()
    assert wf.execute().executed == 1
    assert Path("models/v1/model.txt").read_text() == "weights"
    shutil.rmtree("models")
    assert wf.execute().cached == 1  # restored
    assert Path("models/v1/model.txt").read_text() == "weights"


def test_a_declared_folder_exists_before_the_node_runs(tmp_path: Path) -> None:
    """A declared folder that is not there yet is created before the node's code runs, so
    ``open("models/x.txt", "w")`` works without a makedirs first; a cache hit restores it."""

    @node(writes=["models/", "deep/er/logs/"])
    def train() -> int:
        with open(root_path("models", "x.txt"), "w") as f:  # no makedirs
            f.write("weights")
        Path("deep/er/logs/run.log").write_text("ok")  # relative to the root too
        return 1

    with Workflow("folders", root=str(tmp_path), home=str(tmp_path / "home")) as wf:
        train()
    assert not (tmp_path / "models").exists()
    assert wf.execute().executed == 1
    assert (tmp_path / "models" / "x.txt").read_text() == "weights"
    assert (tmp_path / "deep/er/logs/run.log").read_text() == "ok"
    shutil.rmtree(tmp_path / "models")
    shutil.rmtree(tmp_path / "deep")
    assert wf.execute().cached == 1  # restored
    assert (tmp_path / "models" / "x.txt").read_text() == "weights"
    assert (tmp_path / "deep/er/logs/run.log").read_text() == "ok"
