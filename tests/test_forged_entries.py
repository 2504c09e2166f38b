"""Forged entries in a shared folder and edits of the journal (a user-level sweep, part 2).

Everything goes through the CLI in fresh processes: text that is not valid Unicode in a record,
store leases and journal rows naming pids no process can have, a forged index of a map's
children, and ``cache gc`` of the shared store keeping what a kept map record names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from etherealfabric.hashing._digest import digest_bytes
from test_shared_store_sweep import KEY, Team

PIPELINE = """
import os
from etherealfabric import Workflow, node


def _log(name):
    with open(os.environ["EF_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


@node
def items(n):
    _log("items")
    return list(range(n))


@node
def square(x):
    _log("square")
    with open("data.txt") as f:  # a read: the map's record counts its children's checks
        return x * x + len(f.read())


@node
def total(xs):
    _log("total")
    return sum(xs)


with Workflow("forged", params={"n": 3}) as workflow:
    result = total(square.map(items(workflow.params.n)))
"""


class MapTeam(Team):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        (root / "wf.py").write_text(PIPELINE)
        (root / "data.txt").write_text("hello\n")

    def record_of(self, node: str) -> Path:
        """The shared record of ``node`` (of a map: the one that indexes its children)."""
        found = []
        for path in (self.shared / "actions").glob("*/*.json"):
            record = json.loads(path.read_text())
            if record["node"] == node and ("children" in record or node != "square"):
                found.append(path)
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
def team(tmp_path: Path) -> MapTeam:
    return MapTeam(tmp_path)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("key", [KEY, None], ids=["signed", "unsigned"])
def test_a_record_holding_a_lone_surrogate_is_a_miss_not_a_failure(
    team: MapTeam, key: str | None
) -> None:
    out = team.cli("run", "wf.py", key=key)
    assert out.returncode == 0, out.stderr
    team.executed()
    path = team.record_of("total")
    record = json.loads(path.read_text())
    if key is None:
        record["node"] = "\ud800total"  # json.dumps writes it escaped, as "\\ud800"
    else:
        record["signature"]["mac"] = "\ud800"
    path.write_text(json.dumps(record))

    out = team.cli("run", "wf.py", home="b", key=key)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "not valid Unicode" in out.stderr
    assert team.executed() == ["total"]  # recomputed, the rest shared
    out = team.cli("run", "wf.py", home="c", key=key)
    assert out.returncode == 0 and team.executed() == [], out.stderr  # the record was repaired


def _forgotten_total(team: MapTeam) -> tuple[str, Path]:
    """Run once, then remove the shared record of ``total``: its key, and the folder of that
    key's leases in the shared store (made), where a test plants entries."""
    assert team.cli("run", "wf.py").returncode == 0
    team.executed()
    path = team.record_of("total")
    key = path.name.removesuffix(".json")
    path.unlink()
    folder = team.shared / "leases" / key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    return key, folder


@pytest.mark.timeout(300)
def test_a_forged_store_lease_naming_an_impossible_pid_is_taken_over(team: MapTeam) -> None:
    key, folder = _forgotten_total(team)
    lease = folder / f"{key}.1"
    holder = {"owner": "x", "host": socket.gethostname(), "pid": 2**70, "start": 1}
    lease.write_text(json.dumps({**holder, "expires": time.time() + 60}))

    started = time.monotonic()
    out = team.cli("run", "wf.py", home="b")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert team.executed() == ["total"]
    assert time.monotonic() - started < 55  # taken over, not waited for


@pytest.mark.timeout(300)
def test_a_run_waiting_for_a_store_lease_says_who_holds_it(team: MapTeam) -> None:
    """A planted live lease stalls a run until it expires: the wait says which pid on which
    host holds it (as the entry says it, printable text only)."""
    key, folder = _forgotten_total(team)
    lease = folder / f"{key}.1"
    holder = {"owner": "x", "host": "build-7\x1b[2J", "pid": 4242}
    lease.write_text(json.dumps({**holder, "expires": time.time() + 6}))

    out = team.cli("run", "wf.py", home="b")
    assert out.returncode == 0, out.stderr
    assert team.executed() == ["total"]  # once the lease expired
    assert "the shared store's lease of it: pid 4242 on build-7?[2J" in out.stderr, out.stderr


@pytest.mark.timeout(300)
def test_thousands_of_planted_lease_generations_are_not_read_one_by_one(team: MapTeam) -> None:
    """50,000 expired generations of a key's lease made a node take 16 s (one read each, a
    GET on S3, on every lease and heartbeat): past 256 the lease is given up for the run, with
    a warning naming the key, and the node is computed."""
    key, folder = _forgotten_total(team)
    expired = json.dumps({"owner": "x", "host": "elsewhere", "pid": 1, "expires": 1.0})
    for generation in range(1, 5001):
        (folder / f"{key}.{generation}").write_text(expired)

    started = time.monotonic()
    out = team.cli("run", "wf.py", home="b")
    assert out.returncode == 0, out.stderr
    assert team.executed() == ["total"]
    assert "go past 256 generations" in out.stderr and key in out.stderr
    assert time.monotonic() - started < 60


@pytest.mark.timeout(300)
def test_journal_rows_naming_impossible_pids_break_neither_the_cli_nor_a_run(
    team: MapTeam,
) -> None:
    assert team.cli("run", "wf.py").returncode == 0
    team.executed()
    with sqlite3.connect(team.root / "a" / "journal.db") as db:
        db.execute("UPDATE runs SET status = 'running', pid = ?, pid_start = 1", (2**63 - 1,))
        db.execute("UPDATE node_runs SET pid = 'not a pid'")
        db.execute(
            "INSERT INTO leases (key, node, run_id, host, pid, acquired_at, expires_at) "
            "VALUES (?, 'total', 'r', ?, ?, 0, ?)",
            ("0" * 32, socket.gethostname(), 2**63 - 1, time.time() + 3600),
        )
    db.close()
    for args in (["runs"], ["status"]):
        out = team.cli(*args)
        assert "Traceback" not in out.stderr, (args, out.stderr)
    out = team.cli("run", "wf.py")
    assert out.returncode == 0, out.stderr
    assert team.executed() == []
    with sqlite3.connect(team.root / "a" / "journal.db") as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM runs ORDER BY started_at")]
    db.close()
    assert statuses == ["interrupted", "succeeded"]


@pytest.mark.timeout(300)
def test_a_forged_index_of_a_maps_children_is_ignored(team: MapTeam, tmp_path: Path) -> None:
    # without a key, a record of json outputs is used unsigned: what it names is untrusted
    assert team.cli("run", "wf.py", key=None).returncode == 0
    team.executed()
    index = b"../../../../etc/passwd\tevil\nnot-a-key\n"
    digest = digest_bytes(index)
    team.object(digest).parent.mkdir(parents=True, exist_ok=True)
    team.object(digest).write_bytes(index)
    path = team.record_of("square")
    record = json.loads(path.read_text())
    assert record["checks"] == 3
    record["children"]["digest"] = digest
    path.write_text(json.dumps(record))

    out = team.cli("run", "wf.py", "--json", home="b", key=None)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert team.executed() == []  # its children's records are found one by one
    run_id = json.loads(out.stdout)["run_id"]
    out = team.cli("show", run_id, "square", "--items", home="b", key=None)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr


@pytest.mark.timeout(300)
def test_gc_of_the_shared_store_keeps_the_index_of_a_kept_maps_children(team: MapTeam) -> None:
    assert team.cli("run", "wf.py").returncode == 0
    index = json.loads(team.record_of("square").read_text())["children"]["digest"]
    assert team.object(index).is_file()
    old = time.time() - 10 * 86400
    for path in team.shared.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))

    out = team.cli("cache", "gc", "--grace", "0")
    assert out.returncode == 0, out.stderr
    assert team.object(index).is_file()  # the kept map record names it
    out = team.cli("run", "wf.py", "--json", home="b")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    out = team.cli("show", run_id, "square", "--items", home="b")
    assert out.returncode == 0, out.stderr
    assert "cannot be listed" not in out.stdout + out.stderr
    assert out.stdout.count("cached") >= 3  # its items, listed from the index


# -- the home's journal, edited ------------------------------------------------------------------
FILES_PIPELINE = """
import os
from etherealfabric import Workflow, node


@node(writes=["out/report.txt", "models/"])
def writer(n):
    with open(os.environ["EF_TEST_LOG"], "a") as f:
        f.write("writer\\n")
    os.makedirs("models", exist_ok=True)
    with open("out/report.txt", "w") as f:
        f.write(f"report {n}\\n")
    with open("models/m.bin", "wb") as f:
        f.write(b"m" * 100)
    return n


@node
def count(n):
    with open(os.environ["EF_TEST_LOG"], "a") as f:
        f.write("count\\n")
    return list(range(n))


with Workflow("home", params={"n": 3}) as workflow:
    w = writer(workflow.params.n)
    c = count(workflow.params.n)
"""


class Home:
    """A project with its own home (no shared store), run through the CLI."""

    def __init__(self, root: Path) -> None:
        self.project = root / "project"
        self.project.mkdir()
        (self.project / "wf.py").write_text(FILES_PIPELINE)
        self.log = root / "executions.log"
        self.journal = self.project / ".etherealfabric" / "journal.db"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        env["EF_TEST_LOG"] = str(self.log)
        return subprocess.run(
            [sys.executable, "-m", "etherealfabric", *args],
            cwd=self.project, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def executed(self) -> list[str]:
        found = self.log.read_text().split() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return sorted(found)

    def edit(self, node: str, edit: Callable[[str], str]) -> None:
        with sqlite3.connect(self.journal) as db:
            rows = db.execute("SELECT key, record FROM actions WHERE node = ?", (node,)).fetchall()
            for key, record in rows:
                db.execute("UPDATE actions SET record = ? WHERE key = ?", (edit(record), key))
        db.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("entry", ["out/report.txt", "models/"])
def test_a_journal_record_naming_a_path_out_of_the_project_writes_and_deletes_nothing_there(
    tmp_path: Path, entry: str
) -> None:
    home = Home(tmp_path)
    assert home.cli("run", "wf.py").returncode == 0
    home.executed()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    escape = "../victim/" if entry.endswith("/") else "../victim/escaped.txt"
    home.edit("writer", lambda record: record.replace(f'"{entry}"', f'"{escape}"'))
    shutil.rmtree(home.project / "out")
    shutil.rmtree(home.project / "models")

    out = home.cli("run", "wf.py")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["precious"]  # nothing written, removed
    assert (victim / "precious").read_text() == "keep me"
    assert "not a normalised path inside the root" in out.stderr
    assert home.executed() == ["writer"]  # recomputed: its files are back where they belong
    assert (home.project / "out" / "report.txt").read_text() == "report 3\n"
    assert (home.project / "models" / "m.bin").read_bytes() == b"m" * 100


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "edit",
    [
        "[1, 2]",
        '{"node": "count", "outputs": "x"}',
        '{"node": "count", "outputs": {"result": {"digest": 5, "serializer": null}}}',
        '{"node": "count", "outputs": {"result": {"digest": "%s", "serializer": null, '
        '"size": 1, "inline": true}}}' % ("0" * 32),
    ],
    ids=["list", "outputs", "digest", "serializer"],
)
def test_a_journal_record_of_the_wrong_shape_is_reported_and_a_miss(
    tmp_path: Path, edit: str
) -> None:
    home = Home(tmp_path)
    out = home.cli("run", "wf.py", "--json")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    home.executed()
    home.edit("count", lambda record: edit)

    out = home.cli("cat", run_id, "count")  # the run's own row still names its result
    assert (out.returncode, out.stdout.strip()) == (0, "[0, 1, 2]"), out.stderr
    with sqlite3.connect(home.journal) as db:  # the run's row edited too
        db.execute("UPDATE node_runs SET outputs = ? WHERE node = 'count'", (edit,))
    db.close()
    out = home.cli("cat", run_id, "count")  # its result is gone, said in one line
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    out = home.cli("cache", "verify")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "bad record (node count" in out.stdout
    if edit.startswith("[") or "null" in edit:  # verify --fix forgets it (a hit whose
        assert home.cli("cache", "verify", "--fix").returncode == 0  # inline output is loaded
    out = home.cli("run", "wf.py")  # by nobody is not checked); else the run does
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert home.executed() == ["count"]
    out = home.cli("cache", "verify")
    assert out.returncode == 0, out.stdout + out.stderr


#: the inline output of ``count`` only
COUNTS = (
    " WHERE digest IN (SELECT json_extract(record, '$.outputs.result.digest') FROM actions "
    "WHERE node = 'count')"
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "sql,runs_again",
    [
        ("UPDATE actions SET record = CAST(record AS BLOB) WHERE node = 'count'", False),
        ("UPDATE actions SET record = 42 WHERE node = 'count'", True),
        ("UPDATE actions SET record = CAST(x'ff7b22' AS TEXT) WHERE node = 'count'", True),
        ("UPDATE blobs SET data = CAST(data AS TEXT)" + COUNTS, False),
        ("UPDATE blobs SET data = CAST(x'ff00' AS TEXT)" + COUNTS, True),
        ("UPDATE blobs SET data = 7" + COUNTS, True),
    ],
    ids=["record-blob", "record-int", "record-not-utf8", "blob-text", "blob-not-utf8", "blob-int"],
)
def test_journal_values_of_another_type_are_judged_by_their_content_never_a_traceback(
    tmp_path: Path, sql: str, runs_again: bool
) -> None:
    # a hand-edited journal may hold TEXT where BLOB belongs (or the reverse, or a number, or
    # text that is not UTF-8, which Python cannot even fetch as text): the same bytes still
    # serve, anything else is a miss that recomputes, and no command shows a traceback
    home = Home(tmp_path)
    assert home.cli("run", "wf.py").returncode == 0
    home.executed()
    with sqlite3.connect(home.journal) as db:
        db.execute(sql)
    db.close()
    for args in (("cache", "verify"), ("cache", "ls"), ("cache", "du"), ("runs",)):
        out = home.cli(*args)
        assert "Traceback" not in out.stderr, (args, out.stderr)
    if runs_again and sql.startswith("UPDATE blobs"):  # an inline output is checked when read:
        out = home.cli("cat", "latest", "count")  # the hit stands until then
        assert out.returncode != 0 and "Traceback" not in out.stderr, out
        out = home.cli("cache", "verify", "--fix")
        assert "corrupt blob" in out.stdout and "Traceback" not in out.stderr, out
    out = home.cli("run", "wf.py")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert home.executed() == (["count"] if runs_again else [])
    out = home.cli("cat", "latest", "count")
    assert out.returncode == 0 and out.stdout.strip() == "[0, 1, 2]", out
    out = home.cli("cache", "verify")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.timeout(300)
def test_a_forced_run_replaces_an_inline_output_whose_bytes_were_changed(tmp_path: Path) -> None:
    # the message for a damaged inline output says to run the node again with --force: that
    # run writes the same digest, which must replace the damaged bytes, not keep them
    home = Home(tmp_path)
    first = home.cli("run", "wf.py", "--json")
    assert first.returncode == 0
    with sqlite3.connect(home.journal) as db:
        db.execute("UPDATE blobs SET data = CAST('[9, 9, 9]' AS BLOB)")
    db.close()
    out = home.cli("cat", json.loads(first.stdout)["run_id"], "count")
    assert out.returncode != 0 and "--force count" in out.stdout + out.stderr, out
    assert home.cli("run", "wf.py", "--force", "count").returncode == 0
    out = home.cli("cat", "latest", "count")
    assert out.returncode == 0 and out.stdout.strip() == "[0, 1, 2]", out


@pytest.mark.timeout(300)
def test_cache_verify_reports_a_journal_whose_pages_are_damaged(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert home.cli("run", "wf.py").returncode == 0
    for _ in range(3):  # rows enough for pages the audit's own queries never read
        assert home.cli("run", "wf.py", "--force", "count").returncode == 0
    data = bytearray(home.journal.read_bytes())
    page = len(data) // 4096 - 1  # the last page: old rows, not the schema
    for i in range(page * 4096, page * 4096 + 200):
        data[i] ^= 0x5A
    home.journal.write_bytes(bytes(data))
    out = home.cli("cache", "verify")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stdout + out.stderr
    assert "damaged journal" in out.stdout and "move it aside" in out.stdout, out.stdout


BIG_PIPELINE = """
from etherealfabric import Workflow, node


@node
def big():
    return bytes(range(256)) * 1200  # 300 KB: an object of the store, not inline


with Workflow("big") as workflow:
    big()
"""


def _big_object(tmp_path: Path) -> tuple[Home, Path]:
    home = Home(tmp_path)
    (home.project / "wf.py").write_text(BIG_PIPELINE)
    assert home.cli("run", "wf.py").returncode == 0
    with sqlite3.connect(home.journal) as db:
        [(record,)] = db.execute("SELECT record FROM actions WHERE node = 'big'").fetchall()
    db.close()
    digest = json.loads(record)["outputs"]["result"]["digest"]
    [path] = [p for p in (home.project / ".etherealfabric").rglob(digest) if p.is_file()]
    return home, path


@pytest.mark.timeout(300)
def test_cat_refuses_an_object_of_the_wrong_size_before_reading_it(tmp_path: Path) -> None:
    # a planted sparse file of 2 GiB in place of a 300 KB object: its size says it is not the
    # object (one stat), so cat need not hash 2 GiB of zeros first to say so
    home, path = _big_object(tmp_path)
    path.unlink()
    with path.open("wb") as f:
        f.truncate(2 << 30)
    out = home.cli("cat", "latest", "big")
    assert out.returncode != 0
    assert f"{2 << 30} bytes instead of" in out.stderr and "--force big" in out.stderr, out
    assert home.cli("run", "wf.py").returncode == 0  # a run sees the size and recomputes it
    assert path.stat().st_size < 1 << 20


@pytest.mark.timeout(300)
@pytest.mark.parametrize("planted", ["fifo", "folder"])
def test_cat_calls_a_planted_entry_damaged_not_gone(tmp_path: Path, planted: str) -> None:
    home, path = _big_object(tmp_path)
    path.unlink()
    os.mkfifo(path) if planted == "fifo" else path.mkdir()
    out = home.cli("cat", "latest", "big")
    assert out.returncode != 0
    assert "is not a regular file" in out.stderr and "cache verify --fix" in out.stderr, out
    assert "no longer in the store" not in out.stderr
