"""Bad input found by the acceptance sweep: each gets one clear error naming its culprit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etherealfabric import DefinitionError, Node, Workflow


class _One(Node):
    def __init__(self, x: Any, outputs: Any) -> None:
        super().__init__()
        self.x = x
        self.outputs = outputs

    def run(self) -> dict[str, Any]:
        return {"out": self.x}


def test_a_single_output_name_given_as_a_string_is_one_output_not_its_letters(
    tmp_path: Any,
) -> None:
    one = _One(3, "out")
    assert list(one.outputs) == ["out"]
    wf = Workflow("w", home=tmp_path / "home")
    wf.add_node(one)
    assert wf.execute()[one]["out"] == 3


@pytest.mark.parametrize("bad", [5, None, 2.5, b"out"])
def test_outputs_that_are_not_a_list_of_names_name_the_node(bad: Any) -> None:
    with pytest.raises(DefinitionError, match=r"node '_One'.*outputs.*list of output names"):
        _One(1, bad)


def _fails() -> int:
    raise ValueError("boom")


@pytest.mark.parametrize("answer", [42, [-1], "skip"])
def test_an_error_handler_answer_that_is_no_fallback_says_what_to_return(
    tmp_path: Any, answer: Any
) -> None:
    from etherealfabric import NodeStatus, node

    fails = node(name="fails", on_error=lambda error: answer)(_fails)
    with Workflow("w", home=tmp_path / "home") as wf:
        fails()
    results = wf.execute(raise_on_error=False)
    assert results.statuses["fails"] == NodeStatus.FAILED
    error = results.errors["fails"]
    assert "ValueError: boom" in error
    assert f"on_error handler returned {type(answer).__name__}" in error
    assert "SKIP" in error and "None" in error


def test_a_fallback_naming_an_output_the_node_does_not_declare_is_unusable(tmp_path: Any) -> None:
    """As run() returning an undeclared output is an error, so is a fallback naming one (a
    typo beside the right name, say): the failure stands, and says which name."""
    from etherealfabric import NodeStatus, node

    fails = node(name="fails", on_error=lambda error: {"result": 0, "reslt": 0})(_fails)
    with Workflow("w", home=tmp_path / "home") as wf:
        fails()
    results = wf.execute(raise_on_error=False)
    assert results.statuses["fails"] == NodeStatus.FAILED
    error = results.errors["fails"]
    assert "its on_error fallback is unusable" in error and "['reslt']" in error


def test_an_unknown_serializer_name_is_refused_before_the_node_runs(tmp_path: Any) -> None:
    from etherealfabric import node

    ran = tmp_path / "ran"

    def slow() -> int:
        ran.write_text("the node ran")
        return 1

    typo = node(name="slow", serializers={"result": "jsn"})(slow)
    with Workflow("w", home=tmp_path / "home") as wf:
        typo()
    with pytest.raises(DefinitionError) as caught:
        wf.execute()
    message = str(caught.value)
    assert "node 'slow'" in message and "'result'" in message and "'jsn'" in message
    assert "did you mean 'json'" in message
    assert not ran.exists()


@pytest.mark.parametrize("under", ["", "sub"])
def test_a_shared_store_folder_that_is_a_file_is_a_config_error_before_anything_runs(
    tmp_path: Any, under: str
) -> None:
    import os
    import subprocess
    import sys

    from etherealfabric.errors import StoreConfigError

    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n"
        "@node\n"
        "def one():\n"
        "    open('ran', 'w').close()\n"
        "    return 1\n"
        "with Workflow('w') as wf:\n"
        "    one()\n"
    )
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    store = afile / under if under else afile
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_STORE=str(store))
    done = subprocess.run(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"ETHEREALFABRIC_STORE={str(store)!r}" in done.stderr
    assert "file" in done.stderr and "folder" in done.stderr
    assert not (tmp_path / "ran").exists()
    assert afile.read_text() == "not a folder"
    with pytest.raises(StoreConfigError, match="ETHEREALFABRIC_STORE"):
        from etherealfabric import node

        with Workflow("w", home=tmp_path / "home2", store=str(store)) as wf:
            node(lambda: 1)()
        wf.execute()


FLOW = (
    "from etherealfabric import Workflow, node\n"
    "@node\n"
    "def one():\n"
    "    return 1\n"
    "with Workflow('w') as wf:\n"
    "    one()\n"
)


def _ef(cwd: Any, *args: str, **env: str) -> Any:
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=cwd, env={**clean, "COLUMNS": "200", **env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command", [["run", "flow.py"], ["runs"], ["show", "latest"], ["cache", "verify"]]
)
def test_a_journal_damaged_past_its_first_page_is_one_line_naming_it(
    tmp_path: Any, command: list[str]
) -> None:
    """SQLite opens a journal whose schema page is intact, and finds the damage only when a
    query reads a damaged page: that too is the one-line error of a damaged journal."""
    (tmp_path / "flow.py").write_text(FLOW)
    home = tmp_path / "home"
    assert _ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_HOME=str(home)).returncode == 0
    journal = home / "journal.db"
    for extra in ("journal.db-wal", "journal.db-shm"):
        assert not (home / extra).exists()  # checkpointed at the end of the run
    data = journal.read_bytes()
    damaged = data[:4096] + b"\xde\xad" * ((len(data) - 4096) // 2)
    journal.write_bytes(damaged)
    done = _ef(tmp_path, *command, ETHEREALFABRIC_HOME=str(home))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {journal} is not a usable EtherealFabric journal (database disk image is "
        "malformed): the file is damaged. Move it aside and a new one is created on the next "
        "run (its cache index and small outputs are lost with it)"
    ]
    assert journal.read_bytes() == damaged  # nothing written over it


def test_a_journal_another_process_keeps_locked_says_so_not_disk_space(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """Past the wait for a lock (two and a half minutes, cut short here), the error says the
    journal is locked by another process: it advised freeing disk space or permissions."""
    import subprocess
    import sys

    from etherealfabric.errors import JournalError
    from etherealfabric.journal import Journal, _connection

    path = tmp_path / "journal.db"
    journal = Journal(path)
    journal.start_run("r1", workflow="w", backend="local", nodes=1)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setattr(_connection, "_LOCK_WAIT_SECONDS", 0.5)
        journal.conn.execute("PRAGMA busy_timeout=100")
        with pytest.raises(JournalError) as caught:
            journal.start_run("r2", workflow="w", backend="local", nodes=1)
    finally:
        holder.communicate("")
    message = str(caught.value)
    assert str(path) in message and "locked by another process" in message
    assert "disk space" not in message
    journal.start_run("r2", workflow="w", backend="local", nodes=1)  # free again: it works
    assert [r["id"] for r in journal._rows("SELECT id FROM runs ORDER BY id")] == ["r1", "r2"]
    journal.close()


def test_a_journal_that_cannot_open_on_a_full_disk_says_the_disk_may_be_full(
    tmp_path: Any,
) -> None:
    import os
    import subprocess

    from etherealfabric.errors import JournalError
    from etherealfabric.journal import Journal

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        path = mnt / "home" / "journal.db"
        Journal(path).close()
        before = path.read_bytes()
        # fill the disk to its last byte
        with open(mnt / "filler", "wb") as filler, pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        with pytest.raises(JournalError) as caught:
            Journal(path)
        assert str(path) in str(caught.value) and "disk" in str(caught.value)
        assert "full" in str(caught.value)
        assert path.read_bytes() == before
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


class _MethodHandler(Node):
    """``on_error`` written as an instance method: it cannot be called with the error alone."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs = ["out"]

    def on_error(self, error: Any) -> dict[str, Any]:  # type: ignore[override]
        return {"out": -1}

    def run(self) -> dict[str, Any]:
        raise ValueError("boom")


def test_an_error_handler_that_cannot_take_the_error_is_refused_before_the_run(
    tmp_path: Any,
) -> None:
    from etherealfabric import node

    wf = Workflow("w", home=tmp_path / "home")
    wf.add_node(_MethodHandler())
    with pytest.raises(DefinitionError, match=r"node '_MethodHandler'.*one argument.*staticmethod"):
        wf.execute()

    def f() -> int:
        return 1

    with pytest.raises(DefinitionError, match=r"@node f: on_error must take one argument"):
        node(on_error=lambda: None)(f)
    with pytest.raises(DefinitionError, match=r"workflow 'w2': on_error must take one argument"):
        Workflow("w2", on_error=lambda a, b: None)


@pytest.mark.parametrize("flag", ["false", "0", "no"])
def test_keep_going_given_as_text_is_refused_not_taken_as_true(tmp_path: Any, flag: str) -> None:
    with pytest.raises(
        DefinitionError, match=rf"workflow 'w': keep_going must be True or False.*{flag!r}"
    ):
        Workflow("w", home=tmp_path / "home", keep_going=flag)  # type: ignore[arg-type]
    wf = Workflow("w", home=tmp_path / "home")
    wf.add_node(_One(1, "out"))
    with pytest.raises(DefinitionError, match=r"keep_going must be True or False"):
        wf.execute(keep_going=flag)  # type: ignore[arg-type]
    assert not (tmp_path / "home").exists()  # refused before the run started


@pytest.mark.parametrize(("shared", "setting"), [(False, "HOME"), (True, "STORE")])
def test_a_store_that_cannot_be_written_names_the_setting_that_moves_it(
    tmp_path: Any, shared: bool, setting: str
) -> None:
    """The home's own store moves with ETHEREALFABRIC_HOME, a shared folder with
    ETHEREALFABRIC_STORE: the advice names the one that applies."""
    from etherealfabric import StoreError
    from etherealfabric.store import LocalStore

    (tmp_path / "blocker").write_text("a file where the store's folder should be")
    store = LocalStore(str(tmp_path / "blocker" / "objects-here"), shared=shared)
    with pytest.raises(
        StoreError, match=rf"point the store elsewhere \(ETHEREALFABRIC_{setting}\)"
    ):
        store.put_bytes(b"x" * 10_000)


def test_a_node_given_as_an_input_instead_of_its_output_is_named(tmp_path: Any) -> None:
    """Report(fit) meant Report(fit.outputs['model']): it ran with the node object as its
    value (str: "<Fit node 'Fit'>"), cached. Now a DefinitionError before anything runs."""
    from etherealfabric import Node

    class Fit(Node):
        def __init__(self) -> None:
            super().__init__()
            self.outputs = ["model"]

        def run(self) -> dict[str, Any]:
            return {"model": 1}

    class Report(Node):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model
            self.outputs = ["text"]

        def run(self) -> dict[str, Any]:
            return {"text": str(self.model)}

    fit = Fit()
    wf = Workflow("w", home=tmp_path / "home")
    wf.add_node(fit)
    wf.add_node(Report(fit))
    with pytest.raises(
        DefinitionError, match=r"node 'Report' takes node 'Fit' itself.*\.outputs\['model'\]"
    ):
        wf.execute()
    wf2 = Workflow("w2", home=tmp_path / "home2")
    wf2.add_node(Fit())
    assert wf2.execute().executed == 1  # a right workflow still runs


@pytest.mark.parametrize("planted", ["journal.db", "journal.db-wal"])
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_journal_that_is_no_file_is_one_line_naming_it_never_a_hang(
    tmp_path: Any, ef: Any, planted: str, kind: str
) -> None:
    """A named pipe where the journal (or its -wal file) belongs hung every reading command
    and the web UI; a folder there was called a disk I/O error."""
    import os

    home = tmp_path / "home"
    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n\n@node\ndef one():\n    return 1\n\n"
        "with Workflow('w') as wf:\n    one()\n"
    )
    if planted.endswith("-wal"):
        assert ef(tmp_path, "run", "flow.py", "-q", "--home", str(home)).returncode == 0
        (home / planted).unlink(missing_ok=True)
    home.mkdir(exist_ok=True)
    if kind == "fifo":
        os.mkfifo(home / planted)
    else:
        (home / planted).mkdir()
    for command in (["runs"], ["status"], ["run", "flow.py"]):
        out = ef(tmp_path, *command, "--home", str(home))
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        expected = "named pipe" if kind == "fifo" else "folder"
        assert f"{planted} is a {expected}, not a file" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("store", "home"), [("shared", "shared/home"), ("home/objects", "home")])
def test_a_home_and_a_shared_folder_inside_each_other_are_refused(
    tmp_path: Any, ef: Any, store: str, home: str
) -> None:
    """A home inside the shared folder could be written by anyone who writes the shared folder,
    and a home's outputs load without checks: refused before anything runs."""
    (tmp_path / "flow.py").write_text(
        "from etherealfabric import Workflow, node\n\n@node\ndef one():\n"
        "    open('ran', 'w').close()\n    return 1\n\nwith Workflow('w') as wf:\n    one()\n"
    )
    out = ef(
        tmp_path, "run", "flow.py",
        ETHEREALFABRIC_STORE=str(tmp_path / store), ETHEREALFABRIC_HOME=str(tmp_path / home),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "must be apart" in out.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("alias", ["link", "x/../home"])
def test_a_store_that_is_the_home_by_another_name_is_the_home(
    tmp_path: Any, ef: Any, alias: str
) -> None:
    """ETHEREALFABRIC_STORE naming the home through a link or with ``..`` was a shared store
    of its own: the local layer's budget deleted the home's objects as copies the shared
    store held (the same files), and every run executed everything again."""
    (tmp_path / "flow.py").write_text(
        "import numpy as np\nfrom etherealfabric import Workflow, node\n\n@node\ndef one():\n"
        "    return np.arange(100_000.0)\n\nwith Workflow('w') as wf:\n    one()\n"
    )
    (tmp_path / "home").mkdir()
    (tmp_path / "x").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "home")
    settings = {
        "ETHEREALFABRIC_HOME": str(tmp_path / "home"),
        "ETHEREALFABRIC_STORE": str(tmp_path / alias),
        "ETHEREALFABRIC_LOCAL_CACHE_SIZE": "1KB",
        "ETHEREALFABRIC_SIGNING_KEY": "0123456789abcdef0123456789abcdef",
    }
    for executed in (1, 0, 0):
        out = ef(tmp_path, "run", "flow.py", "--json", **settings)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["executed"] == executed, out.stderr


SURROGATES = """
from etherealfabric import Workflow, node

@node
def first():
    return 1

@node
def talk(x):
    name = b"report-\\xff.csv".decode("utf-8", "surrogateescape")  # as os.listdir gives it
    print("reading", name)
    raise FileNotFoundError(f"cannot open {name}")

with Workflow("surrogates", keep_going=True) as wf:
    talk(first())
"""


def test_text_that_is_not_valid_unicode_is_recorded_escaped_not_a_lost_run(
    tmp_path: Any, ef: Any
) -> None:
    """A node's error naming a file whose name is not UTF-8 (a lone surrogate) crashed the
    journal write: the run was left 'interrupted', the finished node with it, the error lost."""
    (tmp_path / "flow.py").write_text(SURROGATES)
    done = ef(tmp_path, "run", "flow.py", ETHEREALFABRIC_HOME=str(tmp_path / "home"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    shown = ef(tmp_path, "show", "latest", "--json", ETHEREALFABRIC_HOME=str(tmp_path / "home"))
    assert shown.returncode == 0, shown.stderr
    import json

    run = json.loads(shown.stdout)
    assert run["run"]["status"] == "failed"
    nodes = {n["node"]: n for n in run["nodes"]}
    assert nodes["first"]["status"] == "succeeded" and nodes["talk"]["status"] == "failed"
    assert "cannot open report-\\xff.csv" in nodes["talk"]["error"], nodes["talk"]
    logs = ef(tmp_path, "logs", "latest", "talk", ETHEREALFABRIC_HOME=str(tmp_path / "home"))
    assert "reading report-\\xff.csv" in logs.stdout, logs.stdout
    assert "FileNotFoundError: cannot open report-\\xff.csv" in logs.stdout
