"""Helpers shared by test_crash, test_concurrency and test_corruption (imported, not run).

They start ``flow.py`` as a subprocess with its own home and executions log, read that log,
read the journal read-only (so the tests never change what they observe), and check every
stored artifact against its digest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etherealfabric.hashing._digest import digest_bytes, new_hasher

FLOW = Path(__file__).with_name("flow.py")
#: Node labels of ``flow.py``'s variants (see its docstring).
NODES_A = (
    ["source"]
    + [f"{kind}:{k}" for kind in ("branch", "stats", "scale") for k in range(10)]
    + ["join", "mix", "report", "chain:1", "chain:2"]
)
NODES_B = (
    ["source"]
    + [f"{kind}:{k}" for kind in ("branch", "stats", "scale", "extra") for k in range(5)]
    + ["join-b"]
)
POLL = 0.003


@dataclass
class Program:
    """One run of ``flow.py``: the process and where its output goes."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def err(self) -> str:
        return self.stderr.read_text(errors="replace")

    def summary(self) -> dict[str, Any]:
        """The JSON summary the program printed last."""
        lines = self.stdout.read_text().strip().splitlines()
        if not lines:
            raise AssertionError(
                f"flow.py pid {self.pid} printed no summary; stderr:\n{self.err()}"
            )
        return json.loads(lines[-1])


def flow_env(home: Path, log: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``flow.py`` run: its home, a quiet log level, its executions log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETHEREALFABRIC_", "EF_TEST_"))}
    env.update(
        ETHEREALFABRIC_HOME=str(home),
        ETHEREALFABRIC_LOG_LEVEL="WARNING",
        EF_TEST_LOG=str(log),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def start_flow(env: dict[str, str], outdir: Path, *args: str, name: str | None = None) -> Program:
    """Start ``flow.py``; its stdout and stderr go to files (never a pipe that could fill up)."""
    outdir.mkdir(parents=True, exist_ok=True)
    tag = name or f"run-{time.monotonic_ns()}"
    stdout, stderr = outdir / f"{tag}.out", outdir / f"{tag}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(FLOW), *args], env=env, stdout=out, stderr=err, cwd=outdir
        )
    return Program(proc, stdout, stderr)


def run_flow(env: dict[str, str], outdir: Path, *args: str, timeout: float = 120) -> Program:
    """Run ``flow.py`` to the end; fail with its stderr if it does not exit 0."""
    program = start_flow(env, outdir, *args)
    code = program.wait(timeout)
    if code != 0:
        raise AssertionError(f"flow.py exited {code}; stderr:\n{program.err()}")
    return program


def read_log(log: Path) -> list[tuple[str, int]]:
    """The executions log: one ``(label, pid)`` per node body started, in order."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        label, pid = line.rsplit(" ", 1)
        rows.append((label, int(pid)))
    return rows


def wait_until(
    condition: Callable[[], bool], *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """Poll ``condition`` until it holds (True) or ``proc`` exits or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(POLL)
    return condition()


# -- the journal, read-only ---------------------------------------------------------------------
def query(journal: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a read-only query on the journal (none if it does not exist yet)."""
    if not journal.exists():
        return []
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql, params)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # killed before its schema was committed
                return []
            raise
    finally:
        conn.close()


def committed_nodes(journal: Path) -> set[str]:
    """Nodes whose run is committed: a ``succeeded`` row whose cache key has an action record."""
    rows = query(
        journal,
        "SELECT DISTINCT nr.node FROM node_runs nr JOIN actions a ON a.key = nr.cache_key "
        "WHERE nr.status = 'succeeded'",
    )
    return {row["node"] for row in rows}


def runs_of_pid(journal: Path, pid: int) -> list[dict[str, Any]]:
    return query(journal, "SELECT * FROM runs WHERE pid = ? ORDER BY started_at", (pid,))


def node_rows(journal: Path, run_id: str) -> list[dict[str, Any]]:
    return query(journal, "SELECT * FROM node_runs WHERE run_id = ? ORDER BY node", (run_id,))


# -- artifacts ------------------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    hasher = new_hasher()
    with path.open("rb") as fp:
        while chunk := fp.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def object_files(root: Path) -> list[Path]:
    """Every file under ``root/objects/<2 hex>/`` (temp files live elsewhere)."""
    objects = root / "objects"
    if not objects.is_dir():
        return []
    return sorted(
        f for d in objects.iterdir() if d.is_dir() and len(d.name) == 2 for f in d.iterdir()
    )


def bad_objects(root: Path) -> list[str]:
    """Objects whose bytes do not hash to their name, or that sit in the wrong folder."""
    problems = []
    for path in object_files(root):
        actual = file_digest(path)
        if actual != path.name or path.parent.name != path.name[:2]:
            problems.append(f"{path} hashes to {actual} ({path.stat().st_size} bytes)")
    return problems


def bad_blobs(journal: Path) -> list[str]:
    """Inline blobs in the journal whose bytes do not hash to their digest."""
    return [
        f"blob {row['digest']} hashes to {digest_bytes(row['data'])}"
        for row in query(journal, "SELECT digest, data FROM blobs")
        if digest_bytes(row["data"]) != row["digest"]
    ]


def dangling_actions(journal: Path, store: Path) -> list[str]:
    """Action records whose outputs are missing (objects in ``store``, blobs in the journal)."""
    blobs = {row["digest"] for row in query(journal, "SELECT digest FROM blobs")}
    problems = []
    for row in query(journal, "SELECT key, node, record FROM actions"):
        for name, out in json.loads(row["record"])["outputs"].items():
            digest = out["digest"]
            where = (
                digest in blobs
                if out.get("inline")
                else (store / "objects" / digest[:2] / digest).is_file()
            )
            if not where:
                problems.append(
                    f"action {row['key']} of {row['node']}.{name} names missing {digest}"
                )
    return problems


class Checks:
    """Soft assertions: collect every failure, then report them all at once."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: object, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return bool(ok)

    def done(self) -> None:
        if self.failures:
            listing = "\n".join(f"  {i}. {m}" for i, m in enumerate(self.failures, 1))
            raise AssertionError(f"{len(self.failures)} check(s) failed:\n{listing}")
