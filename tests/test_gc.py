"""cache gc: keeps what recent runs use, drops the rest, never leaves a record without bytes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from etherealfabric import Workflow, node
from etherealfabric.cli import main
from etherealfabric.config import Settings
from etherealfabric.errors import ConfigError
from etherealfabric.journal._gc import collect_garbage
from etherealfabric.journal._journal import Journal
from etherealfabric.store import LocalStore


@node
def big(n):
    return np.full(20_000, float(n))  # 160 KB: a stored object, not inline


@node
def small(a):
    return float(a.sum())


def run(n: int) -> object:
    with Workflow("gc") as wf:
        small(big(n))
    return wf.execute()


def age_everything(home: Path) -> None:
    """Pretend the artifacts are old: gc leaves young ones alone."""
    past = time.time() - 7200
    for path in (home / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        conn.execute("UPDATE actions SET created_at = ?", (past,))


def objects(home: Path) -> set[str]:
    return {p.name for p in (home / "objects").rglob("*") if p.is_file() and len(p.name) == 32}


def test_gc_keeps_recent_runs_and_drops_the_rest(home: Path) -> None:
    for n in (1, 2, 3):
        run(n)
    assert len(objects(home)) == 3
    age_everything(home)
    with Journal(home / "journal.db") as journal:
        report = collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=3600)
    assert report.records_removed == 4 and report.records_kept == 2  # two nodes per run
    assert report.objects_removed == 2 and report.blobs_removed == 2
    assert report.bytes_freed > 2 * 160_000
    assert len(objects(home)) == 1
    again = run(3)  # the kept run is still fully cached
    assert again.executed == 0 and again[again.workflow["small"].outputs["result"]] == 60_000.0
    old = run(1)  # a dropped one is recomputed, correctly
    assert old.executed == 2


def test_a_run_still_going_is_not_one_of_the_kept_runs(home: Path) -> None:
    """A nightly ``gc --keep-runs 1`` overlapping today's run: the run going is kept besides
    the last finished one, whose records it is about to find cached (before, it counted as
    the one kept run, and the finished run's records were removed under it)."""
    run(1)
    age_everything(home)
    with Journal(home / "journal.db") as journal:
        journal.start_run("going", workflow="gc", backend="threads", nodes=2)  # nothing yet
        report = collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=0)
    assert report.records_removed == 0 and report.objects_removed == 0
    again = run(1)
    assert again.executed == 0  # all cached


def test_gc_dry_run_and_recent_artifacts_remove_nothing(home: Path) -> None:
    run(1)
    run(2)
    with Journal(home / "journal.db") as journal:
        young = collect_garbage(journal, LocalStore(home), keep_runs=1, older_than=3600)
        assert young.records_removed == 0 and young.objects_removed == 0  # all too recent
    age_everything(home)
    with Journal(home / "journal.db") as journal:
        dry = collect_garbage(journal, LocalStore(home), keep_runs=1, dry_run=True)
        assert dry.records_removed == 2 and dry.objects_removed == 1
        assert journal.db["actions"].count == 4
    assert len(objects(home)) == 2


def test_gc_refuses_a_shared_store(tmp_path: Path) -> None:
    settings = Settings.resolve(home=str(tmp_path / "h"), store=str(tmp_path / "team"))
    journal = Journal(settings.journal_path)
    try:
        with pytest.raises(ConfigError, match="shared store"):
            collect_garbage(journal, LocalStore(tmp_path / "team"), shared=settings.shared_store)
    finally:
        journal.close()


def test_cache_gc_command(home: Path) -> None:
    run(1)
    run(2)
    age_everything(home)
    result = CliRunner().invoke(main, ["cache", "gc", "--keep-runs", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["objects_removed"] == 1
    result = CliRunner().invoke(main, ["cache", "verify"])
    assert result.exit_code == 0, result.output  # nothing left dangling
