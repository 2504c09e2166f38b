"""Paging through the run history: ``/api/runs?before=`` (the web UI) and ``runs --before``.

The cursor is a run's (started_at, id), so runs that started at the same time are neither
skipped nor listed twice; the old cursor, a bare time in seconds, still means "started before
then". Real journals (SQLite files) with rows inserted as runs write them; the CLI runs in a
subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etherealfabric.journal import Journal
from etherealfabric.ui._views import runs_view
from test_ui_browse import insert_run

SAME = 1_700_000_000.0  # five runs started in the same second (the same recorded time)


def _journal(tmp_path: Path) -> Path:
    path = tmp_path / "home" / "journal.db"
    path.parent.mkdir()
    with Journal(path) as journal:
        insert_run(journal, "20231114-221320-000001", {}, started=SAME - 10)
        for n in range(5):
            insert_run(journal, f"20231114-221320-{n:06x}a", {}, started=SAME)
        insert_run(journal, "20231114-221330-000009", {}, started=SAME + 10)
    return path


def _everything(path: Path) -> list[str]:
    with Journal(path) as journal:
        return [r["id"] for r in journal.list_runs(limit=100)]


def test_the_ui_pages_through_runs_of_the_same_second_once_each(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    expected = _everything(path)
    assert len(expected) == 7
    seen: list[str] = []
    before = None
    with Journal(path) as journal:
        for _ in range(10):
            page = runs_view(journal, limit=2, before=before)
            seen += [r["id"] for r in page["runs"]]
            if not page["more"]:
                break
            before = page["next"]
    assert seen == expected


def test_the_old_cursor_a_time_in_seconds_still_pages(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with Journal(path) as journal:
        page = runs_view(journal, limit=10, before=str(SAME))
    assert [r["id"] for r in page["runs"]] == ["20231114-221320-000001"]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", "runs", "--home", str(home), *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_runs_before_a_run_id_pages_the_cli_once_each(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    expected = _everything(path)
    seen: list[str] = []
    args: list[str] = []
    for _ in range(10):
        out = _cli(path.parent, "--limit", "2", "--json", *args)
        assert out.returncode == 0, out.stderr
        page = [r["id"] for r in json.loads(out.stdout)]
        if not page:
            break
        seen += page
        args = ["--before", page[-1]]
    assert seen == expected
    old = _cli(path.parent, "--before", str(SAME), "--json")
    assert [r["id"] for r in json.loads(old.stdout)] == ["20231114-221320-000001"]
    bad = _cli(path.parent, "--before", "no-such-run")
    assert bad.returncode == 2 and "--before" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--before", "NaN"),
        ("--before", "inf"),
        ("--before", "9" * 400),
        ("--before", "1,"),
        ("--before", ""),
        ("--limit", "9" * 20),  # past SQLite's integers: was an OverflowError traceback
    ],
)
def test_garbage_paging_values_are_a_clear_exit_2(tmp_path: Path, args: tuple[str, str]) -> None:
    path = _journal(tmp_path)
    out = _cli(path.parent, *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and args[0] in out.stderr, out.stderr


def test_an_injection_like_cursor_is_only_a_cursor(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    expected = _everything(path)
    out = _cli(path.parent, "--before", "1,'; DROP TABLE runs;--", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    assert _everything(path) == expected
