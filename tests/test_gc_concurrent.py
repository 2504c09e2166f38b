"""``cache gc`` while runs go on, leftover temp files, and a full disk at close (issue 12.5/8/9).

gc used to delete, from a listing taken at its start, an object that a run had just found
already stored (same bytes as an older output) and was about to name in a new record: the
record then named a missing object. Temp files of killed writers survived every gc and
``cache verify`` called the store clean.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from etherealfabric.errors import StoreError
from etherealfabric.journal import Journal
from etherealfabric.store import LocalStore
from etherealfabric.store._writer import ObjectWriter

PIPELINE = """
import json
import os
import sys
import numpy as np
from etherealfabric import Workflow, node
from etherealfabric.journal import Journal
from etherealfabric.store import LocalStore


@node
def big(i):
    # the bytes depend on i % 2 only: most runs produce bytes that are already stored
    return np.full(50_000, float(i % 2))


@node
def total(a, i):
    return float(a.sum()) + i


if __name__ == "__main__":
    name, count = sys.argv[1], int(sys.argv[2])
    store = LocalStore(os.environ["ETHEREALFABRIC_HOME"])
    journal = Journal(os.path.join(os.environ["ETHEREALFABRIC_HOME"], "journal.db"))
    checked = 0
    for i in range(count):
        with Workflow(f"gc-race-{name}") as wf:
            t = total(big(i), i)
        results = wf.execute()
        assert results.ok, results.statuses
        assert results[t] == 50_000 * (i % 2) + i, results[t]
        # the invariant, checked while gc cannot run (it deletes inside a write transaction):
        # a committed record names present objects
        with journal.write() as conn:
            for key, text, created in conn.execute(
                "SELECT key, record, created_at FROM actions"
            ).fetchall():
                for out in json.loads(text)["outputs"].values():
                    if not out.get("inline"):
                        if not store.has_object(out["digest"]):
                            rows = conn.execute(
                                "SELECT run_id, node, status, finished_at FROM node_runs "
                                "WHERE cache_key = ?",
                                (key,),
                            ).fetchall()
                            runs = conn.execute(
                                "SELECT id, workflow, status, started_at, finished_at FROM runs"
                            ).fetchall()
                            raise AssertionError(
                                f"run {i}: {out} of {key} (created {created}) is gone: "
                                f"{rows} {runs}"
                            )
                        checked += 1
    print(checked)
"""

GC_LOOP = """
import os, sys
from etherealfabric.journal import Journal
from etherealfabric.journal._gc import collect_garbage
from etherealfabric.store import LocalStore

home, stop = sys.argv[1], sys.argv[2]
n = 0
while not os.path.exists(stop) or n < 3:
    if os.path.exists(os.path.join(home, "journal.db")):
        with Journal(os.path.join(home, "journal.db")) as journal:
            collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=0)
        n += 1
print(n)
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(home)
    env["ETHEREALFABRIC_LOG_LEVEL"] = "ERROR"
    return env


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args, "--home", str(home)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_gc_in_a_loop_beside_running_pipelines_leaves_a_clean_cache(tmp_path: Path) -> None:
    home, stop = tmp_path / "home", tmp_path / "stop"
    (tmp_path / "wf.py").write_text(PIPELINE)
    (tmp_path / "gc_loop.py").write_text(GC_LOOP)
    runners = [
        subprocess.Popen(
            [sys.executable, "wf.py", name, "30"],
            cwd=tmp_path,
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    gc = subprocess.Popen(
        [sys.executable, "gc_loop.py", str(home), str(stop)],
        cwd=tmp_path,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        outcomes = [r.communicate(timeout=600) for r in runners]
    finally:
        stop.touch()
        gc_out, gc_err = gc.communicate(timeout=300)
    for runner, (out, err) in zip(runners, outcomes, strict=True):
        assert runner.returncode == 0, err[-3000:]
        assert int(out) > 0  # the invariant was checked on stored objects
    assert gc.returncode == 0, gc_err
    assert int(gc_out) >= 3
    verify = _cli(home, "cache", "verify", "--json")
    report = json.loads(verify.stdout)
    assert verify.returncode == 0 and report["problems"] == [], report
    assert report["records"] > 0


def _killed_writer(store_root: Path, size: int) -> int:
    """Start a process that writes ``size`` bytes of an object, SIGKILL it; its pid."""
    script = (
        "import sys, time\n"
        "from etherealfabric.store import LocalStore\n"
        "w = LocalStore(sys.argv[1]).writer(inline_limit=0)\n"
        f"w.write(b'x' * {size})\n"
        "w.flush()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(store_root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return proc.pid


def test_temp_files_of_killed_writers_are_reported_and_collected(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "wf.py").write_text(PIPELINE)
    run = subprocess.run(
        [sys.executable, "wf.py", "0", "1"], cwd=tmp_path, env=_env(home), capture_output=True
    )
    assert run.returncode == 0, run.stderr
    pid = _killed_writer(home, 5_000_000)
    [orphan] = (home / "objects" / ".tmp").glob(f".tmp-{pid}.*")  # .tmp-<pid>.<host tag>-...
    live = LocalStore(home).writer(inline_limit=0)  # a write in progress in this process
    live.write(b"y" * 100_000)
    live.flush()

    verify = _cli(home, "cache", "verify", "--json")
    assert verify.returncode == 0, verify.stdout  # a leftover: it does not make the cache wrong
    report = json.loads(verify.stdout)
    assert report["problems"] == [] and report["remaining"] == 0
    assert [(p["kind"], p["path"]) for p in report["leftovers"]] == [("orphan_temp", str(orphan))]
    shown = _cli(home, "cache", "verify")
    assert "0 problem(s)" in shown.stdout and str(orphan) in shown.stdout, shown.stdout
    assert "1 temp file(s) that killed writers left" in shown.stdout

    gc = _cli(home, "cache", "gc", "--older-than", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    report = json.loads(gc.stdout)
    assert report["temp_files_removed"] == 1 and report["bytes_freed"] >= 5_000_000
    assert not orphan.exists()
    assert live.commit().size == 100_000  # the live write was left alone
    assert _cli(home, "cache", "verify").returncode == 0


def test_disk_full_advice_survives_closing_the_temp_file(tmp_path: Path) -> None:
    """Closing a file whose buffer cannot be flushed fails again: the first error must win."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to produce a real ENOSPC")
    link = tmp_path / "temp-object"
    link.symlink_to("/dev/full")  # removing the temp file removes the link, not the device

    def open_temp() -> tuple:
        return open(link, "wb", buffering=256 * 1024), str(link)

    writer = ObjectWriter(inline_limit=0, open_temp=open_temp, publish=lambda *a: None)
    writer.write(b"z" * 1000)  # buffered: the device has not been written yet
    with pytest.raises(StoreError) as caught:
        writer.commit()
    assert "Free some disk space" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    writer.abort()  # safe after the failure
    assert not link.is_symlink()
    assert os.path.exists("/dev/full")


def test_verify_beside_a_collection_reports_no_problem_for_what_it_removes(
    tmp_path: Path,
) -> None:
    # `cache verify` read the records a collection was dropping (gc deletes objects inside its
    # write transaction, the records' deletion not committed yet) and reported each one as a
    # missing object ("fixed" with --fix, "the affected nodes will be recomputed"): a clean
    # cache, called broken whenever gc ran meanwhile
    home = tmp_path / "home"
    (tmp_path / "wf.py").write_text(PIPELINE)
    ran = subprocess.run(
        [sys.executable, "wf.py", "a", "2"], cwd=tmp_path, env=_env(home), capture_output=True
    )
    assert ran.returncode == 0, ran.stderr
    store = LocalStore(home)
    digests = list(store.iter_objects())
    assert digests
    with Journal(home / "journal.db") as journal:
        with journal.write() as conn:  # what collect_garbage does, held open
            conn.execute("DELETE FROM actions")
            conn.execute("DELETE FROM blobs")
            for digest in digests:
                store.delete_object(digest)
            verify = subprocess.Popen(
                [sys.executable, "-m", "etherealfabric", "cache", "verify", "--fix", "--json"],
                env={**_env(home), "ETHEREALFABRIC_HOME": str(home)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # it reads the records as they were; it ends, or waits for the collection
            with contextlib.suppress(subprocess.TimeoutExpired):
                verify.wait(timeout=15)
        out, err = verify.communicate(timeout=300)
    report = json.loads(out)
    assert report["problems"] == [], report
    assert verify.returncode == 0, err
    after = _cli(home, "cache", "verify", "--json")
    assert after.returncode == 0 and json.loads(after.stdout)["problems"] == []


GC_NOW = ("--keep-runs", "1", "--older-than", "0")
MANY = """
import numpy as np
from etherealfabric import Workflow, node

@node
def items(start: int):
    return list(range(start, start + 400))

@node
def big(i):
    return np.full(10_000, float(i))  # 80 kB: a stored object each

@node
def count(xs):
    return len(xs)

with Workflow("many", params={"start": 0}) as wf:
    count(big.map(items(wf.params.start)))
"""


def test_a_collection_killed_while_it_deletes_leaves_no_record_without_its_bytes(
    tmp_path: Path,
) -> None:
    # gc deleted objects inside the transaction that drops their records: killed (or failing)
    # in the middle, the records came back with the rollback, naming objects already deleted
    home = tmp_path / "home"
    (tmp_path / "many.py").write_text(MANY)
    for _ in range(3):  # (until it is killed before it ends)
        shutil.rmtree(home, ignore_errors=True)
        first = _cli(home, "run", str(tmp_path / "many.py"), "-p", "start=0")
        assert first.returncode == 0, first.stderr
        doomed = [LocalStore(home).location(d) for d in LocalStore(home).iter_objects()]
        second = _cli(home, "run", str(tmp_path / "many.py"), "-p", "start=1000")
        assert second.returncode == 0, second.stderr
        sample = doomed[:: max(1, len(doomed) // 40)]
        gc = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric", "cache", "gc", *GC_NOW, "--home", str(home)],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        while gc.poll() is None and all(os.path.exists(p) for p in sample):
            pass  # (no sleep: the deletions take milliseconds)
        if gc.poll() is None:
            os.kill(gc.pid, signal.SIGKILL)
        gc.communicate(timeout=300)
        if gc.returncode == -signal.SIGKILL:
            break
    assert gc.returncode == -signal.SIGKILL, "gc ended (three times) before it could be killed"
    assert any(not os.path.exists(p) for p in doomed)  # killed while it deleted
    verify = _cli(home, "cache", "verify", "--json")
    report = json.loads(verify.stdout)
    assert report["problems"] == [], report
    again = _cli(home, "run", str(tmp_path / "many.py"), "-p", "start=1000", "--json")
    assert json.loads(again.stdout)["executed"] == 0, again.stderr
    assert _cli(home, "cache", "gc", *GC_NOW).returncode == 0
    verify = _cli(home, "cache", "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["problems"] == []
