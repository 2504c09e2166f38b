"""Corrupt, truncated, deleted artifacts and a full disk: never wrong data, always recomputed.

Each case damages one stored output of a finished run (a large object file in
``objects/``, or a small output inline in the journal's ``blobs`` table), then runs again or
reads the results. The damage must be detected when loading, reported with the node and
the path (a log record, a warning or an event), treated as a cache miss and recomputed; the
store must hold correct bytes afterwards. A full disk must fail the run with a clear error and
leave journal and store consistent, so a later run with space resumes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from etherealfabric import EtherealFabricError, Workflow, node
from etherealfabric.hashing._digest import digest_bytes
from programs.harness import (
    Checks,
    bad_blobs,
    bad_objects,
    committed_nodes,
    dangling_actions,
    file_digest,
    query,
)

ROWS = 20_000  # float64: 160 kB, stored as a file
CALLS: Counter[str] = Counter()
LOCK = threading.Lock()


def count(name: str) -> None:
    with LOCK:
        CALLS[name] += 1


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@node
def big(rows, salt):
    count("big")
    return np.cos(np.arange(rows, dtype=np.float64)) + salt


@node
def small(n):
    count("small")
    return {"values": list(range(n))}


@node
def total(x, y, offset):
    count("total")
    return round(float(x.sum()) + sum(y["values"]) + offset, 6)


def build(offset: int = 0) -> tuple[Workflow, Any, Any, Any]:
    with Workflow("corruption", max_workers=2) as wf:
        b = big(ROWS, SALT["value"])
        s = small(SALT["value"] + 50)
        t = total(b, s, offset)
    return wf, b, s, t


#: Each test's outputs differ (a salt from its id), so no test can be served a value that an
#: earlier test left in memory (the worker shares loaded values while they are alive).
SALT = {"value": 0}


@pytest.fixture(autouse=True)
def _salt(request: pytest.FixtureRequest) -> None:
    SALT["value"] = zlib.crc32(request.node.nodeid.encode()) % 1000 + 1


def expected_big() -> np.ndarray:
    return np.cos(np.arange(ROWS, dtype=np.float64)) + SALT["value"]


def expected_small() -> dict[str, list[int]]:
    return {"values": list(range(SALT["value"] + 50))}


def expected_total(offset: int = 0) -> float:
    return round(float(expected_big().sum()) + sum(expected_small()["values"]) + offset, 6)


# -- damage -----------------------------------------------------------------------------------
class Damage:
    """One stored output and how to damage it; ``token`` is what a report must name."""

    def __init__(self, kind: str, home: Path, record: dict[str, Any]) -> None:
        self.kind = kind
        self.home = home
        self.digest: str = record["digest"]
        self.journal = home / "journal.db"
        self.path = home / "objects" / self.digest[:2] / self.digest
        #: a report must name this: the object's path, or the inline blob's digest
        self.token = (
            self.digest if kind == "blob" else os.path.join("objects", self.digest[:2], self.digest)
        )

    @property
    def producer(self) -> str:
        return "small" if self.kind == "blob" else "big"

    def apply(self) -> None:
        if self.kind == "flip":  # the exponent of the last float: a very different value
            with self.path.open("r+b") as fp:
                fp.seek(-1, os.SEEK_END)
                byte = fp.read(1)
                fp.seek(-1, os.SEEK_END)
                fp.write(bytes([byte[0] ^ 0x40]))
        elif self.kind == "truncate":
            os.truncate(self.path, self.path.stat().st_size // 2)
        elif self.kind == "delete":
            self.path.unlink()
        else:  # the inline blob: different, still valid JSON (wrong data if loaded unchecked)
            conn = sqlite3.connect(self.journal, timeout=30)
            with conn:
                (data,) = conn.execute(
                    "SELECT data FROM blobs WHERE digest = ?", (self.digest,)
                ).fetchone()
                bad = bytes(data).replace(b"7", b"9", 1)
                assert bad != bytes(data)
                conn.execute("UPDATE blobs SET data = ? WHERE digest = ?", (bad, self.digest))
            conn.close()

    def intact(self) -> str | None:
        """None if the output's bytes verify again, else what is wrong."""
        if self.kind == "blob":
            rows = query(self.journal, "SELECT data FROM blobs WHERE digest = ?", (self.digest,))
            if not rows:
                return None  # forgotten: it is recomputed when needed
            actual = digest_bytes(rows[0]["data"])
            return None if actual == self.digest else f"blob {self.digest} hashes to {actual}"
        if not self.path.is_file():
            return f"{self.path} is missing"
        actual = file_digest(self.path)
        return None if actual == self.digest else f"{self.path} hashes to {actual}"


KINDS = ["flip", "truncate", "delete", "blob"]


def first_run(home: Path, kind: str) -> Damage:
    wf, _, _, _ = build()
    results = wf.execute()
    output = "small" if kind == "blob" else "big"
    record = dict(results.record(output)["result"])
    assert record["inline"] == (kind == "blob"), record
    if kind == "blob":
        assert record["serializer"] == "json", record  # the corruption below keeps it valid JSON
    CALLS.clear()
    return Damage(kind, home, record)


ROUTINE_EVENTS = {"run_started", "node_cached", "node_started", "node_succeeded", "run_finished"}


class Reports:
    """Everything the engine says: log records, Python warnings and run events."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.events: list[Any] = []
        self.warned: list[str] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def capture(self, fn: Callable[[], Any]) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return fn()
            finally:
                self.warned += [str(w.message) for w in caught]

    def texts(self) -> list[str]:
        logs = [f"{r.name}: {r.getMessage()}" for r in self.caplog.records]
        events = [  # not the routine ones: their records name every digest a node produced
            f"event {e.kind} node={e.node} {dict(e.data)}"
            for e in self.events
            if e.kind not in ROUTINE_EVENTS
        ]
        return logs + self.warned + events

    def naming(self, token: str, nodes: tuple[str, ...]) -> list[str]:
        return [t for t in self.texts() if token in t and any(n in t for n in nodes)]


def _value(checks: Checks, what: str, fn: Callable[[], Any], expected: Any) -> None:
    try:
        value = fn()
    except Exception as exc:
        checks.check(False, f"reading {what} raised {type(exc).__name__}: {exc}")
        return
    same = (
        np.array_equal(value, expected) if isinstance(expected, np.ndarray) else value == expected
    )
    checks.check(same, f"{what} returned WRONG DATA: {str(value)[:120]}")


def _report_checks(
    checks: Checks, reports: Reports, damage: Damage, nodes: tuple[str, ...]
) -> None:
    named = reports.naming(damage.token, nodes)
    checks.check(
        named,
        f"no log record, warning or event names node {' or '.join(nodes)} together with "
        f"{damage.token}; the engine said: {[t[:300] for t in reports.texts()]}",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_output_is_reported_and_recomputed_on_the_next_run(
    kind: str, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damage = first_run(home, kind)
    damage.apply()
    caplog.set_level(logging.WARNING, logger="etherealfabric")
    reports = Reports(caplog)
    checks = Checks()
    wf, b, s, t = build()
    try:
        results = reports.capture(lambda: wf.execute(subscribers=[reports]))
    except Exception as exc:
        pytest.fail(f"the re-run after damaging {damage.token} ({kind}) failed: {exc}")
    _value(checks, "results[big]", lambda: reports.capture(lambda: results[b]), expected_big())
    _value(checks, "results[small]", lambda: reports.capture(lambda: results[s]), expected_small())
    _value(checks, "results[total]", lambda: reports.capture(lambda: results[t]), expected_total())
    checks.check(
        CALLS[damage.producer] == 1,
        f"node {damage.producer!r}, whose output was damaged ({kind}), executed "
        f"{CALLS[damage.producer]} times in the re-run; expected once (recomputed). "
        f"Statuses: {results.statuses}",
    )
    _report_checks(checks, reports, damage, (damage.producer,))
    problem = damage.intact()
    checks.check(problem is None, f"after the re-run: {problem}")
    for problem in bad_objects(home) + bad_blobs(home / "journal.db"):
        checks.check(False, f"after the re-run: {problem}")
    checks.done()


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_input_of_a_node_that_must_run_is_recomputed_first(
    kind: str, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damage = first_run(home, kind)
    damage.apply()
    caplog.set_level(logging.WARNING, logger="etherealfabric")
    reports = Reports(caplog)
    checks = Checks()
    wf, _, _, t = build(offset=1)  # `total` must run, and it reads the damaged output
    try:
        results = reports.capture(lambda: wf.execute(subscribers=[reports]))
    except Exception as exc:
        pytest.fail(f"the run reading the damaged {damage.token} ({kind}) failed: {exc}")
    _value(checks, "results[total]", lambda: reports.capture(lambda: results[t]), expected_total(1))
    checks.check(
        CALLS[damage.producer] == 1,
        f"node {damage.producer!r} (damaged output, {kind}) executed {CALLS[damage.producer]} "
        f"times; expected once, before `total` used its output. Statuses: {results.statuses}",
    )
    checks.check(CALLS["total"] == 1, f"`total` executed {CALLS['total']} times; expected once")
    _report_checks(checks, reports, damage, (damage.producer, "total"))
    problem = damage.intact()
    checks.check(problem is None, f"after the run: {problem}")
    checks.done()


@pytest.mark.parametrize("kind", KINDS)
def test_damage_after_execute_never_returns_wrong_data_from_results(kind: str, home: Path) -> None:
    first_run(home, kind)
    wf, b, s, t = build()
    results = wf.execute()  # everything cached: values load lazily, from the store
    assert results.cached == 3
    damage = Damage(kind, home, dict(results.record(damage_output(kind))["result"]))
    damage.apply()
    checks = Checks()
    for what, ref, expected in (
        ("results[big]", b, expected_big()),
        ("results[small]", s, expected_small()),
        ("results[total]", t, expected_total()),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = results[ref]
        except Exception as exc:  # acceptable if it says what is wrong and where
            checks.check(
                damage.token in str(exc),
                f"{what} raised {type(exc).__name__} without naming {damage.token}: {exc}",
            )
            continue
        same = (
            np.array_equal(value, expected)
            if isinstance(expected, np.ndarray)
            else value == expected
        )
        checks.check(same, f"{what} returned WRONG DATA after {kind}: {str(value)[:120]}")
    checks.done()


def damage_output(kind: str) -> str:
    return "small" if kind == "blob" else "big"


# -- a full disk --------------------------------------------------------------------------------
CHUNK_ROWS = 40_000  # float64: 320 kB; six of them do not fit in 1 MiB


@node
def chunk(k, rows):
    count(f"chunk:{k}")
    # longer than the journal's group-commit window: the first chunk's rows are committed
    # before a later one fills the disk (all of them finished within one window on a fast
    # machine, and with the journal on the full disk nothing was ever committed)
    time.sleep(0.05)
    return np.arange(rows, dtype=np.float64) + k


@node
def chunk_sum(k, values):
    count(f"chunk_sum:{k}")
    return float(values.sum())


@node
def grand_total(sums):
    count("grand_total")
    return sum(sums)


def build_chunks(**settings: Any) -> tuple[Workflow, Any]:
    with Workflow("full-disk", max_workers=1, **settings) as wf:
        out = grand_total([chunk_sum(k, chunk(k, CHUNK_ROWS)) for k in range(6)])
    return wf, out


EXPECTED_GRAND = sum(float((np.arange(CHUNK_ROWS, dtype=np.float64) + k).sum()) for k in range(6))


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root); grow it with ``mount -o remount,size=...``."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("simulating a full disk needs root to mount a 1 MiB tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a full disk: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _temp_leftovers(root: Path) -> list[str]:
    return [str(p) for kind in ("objects", "actions") for p in (root / kind / ".tmp").glob("*")]


@pytest.mark.parametrize("where", ["store", "home"])
def test_full_disk_fails_clearly_and_a_later_run_with_space_resumes(
    where: str, tiny_disk: Path, home: Path
) -> None:
    if where == "store":  # artifacts on the full disk, the journal on a roomy one
        settings, root, journal = {"store": str(tiny_disk)}, tiny_disk, home / "journal.db"
    else:  # journal and artifacts both on the full disk
        settings, root, journal = {"home": str(tiny_disk)}, tiny_disk, tiny_disk / "journal.db"
    checks = Checks()
    wf, _ = build_chunks(**settings)
    with pytest.raises(EtherealFabricError) as failure:
        wf.execute()
    message = str(failure.value).lower()
    checks.check(
        "space" in message or "full" in message,
        f"the error does not say the disk is full: {type(failure.value).__name__}: {failure.value}",
    )
    # consistent: nothing half-written under a final name, no record naming missing bytes
    for problem in bad_objects(root) + bad_blobs(journal) + dangling_actions(journal, root):
        checks.check(False, f"after the failure: {problem}")
    leftovers = _temp_leftovers(root)
    checks.check(not leftovers, f"temp files left on the full disk: {leftovers}")
    integrity = query(journal, "PRAGMA integrity_check")
    checks.check(integrity == [{"integrity_check": "ok"}], f"journal integrity: {integrity}")
    if where == "store":
        statuses = [r["status"] for r in query(journal, "SELECT status FROM runs")]
        checks.check(statuses == ["failed"], f"the run's status is {statuses}, not ['failed']")
    committed = committed_nodes(journal)
    checks.check(
        0 < len(committed) < 13, f"expected a partial run before the disk filled: {committed}"
    )
    # more space: the next run succeeds and does not redo what was committed
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    CALLS.clear()
    wf, out = build_chunks(**settings)
    results = wf.execute()
    checks.check(results[out] == EXPECTED_GRAND, f"grand total {results[out]} != {EXPECTED_GRAND}")
    redone = sorted(name for name in committed if CALLS[_call_name(name)])
    checks.check(not redone, f"committed before the disk filled, yet executed again: {redone}")
    for problem in bad_objects(root) + bad_blobs(journal) + dangling_actions(journal, root):
        checks.check(False, f"after the resumed run: {problem}")
    checks.done()


def _call_name(node_name: str) -> str:
    """The CALLS key of a node of ``build_chunks`` from its workflow name (``chunk-3`` → chunk:2)."""
    if node_name == "grand_total":
        return node_name
    base, _, n = node_name.partition("-")
    return f"{base}:{int(n or 1) - 1}"


@node
def ones() -> np.ndarray:
    return np.ones(50_000)


@node
def twos() -> np.ndarray:
    return np.full(50_000, 2.0)


@node
def both(a: np.ndarray, b: np.ndarray, salt: int) -> float:
    return float(a.sum() + b.sum()) + salt


def test_two_damaged_inputs_are_each_named_for_what_is_wrong_with_them(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node finding two inputs damaged at once says so for each, with its own object (the
    second warning repeated the first one's error, naming the other object)."""

    def flow(salt: int) -> tuple[Workflow, Any]:
        with Workflow("two-damaged") as wf:
            out = both(ones(), twos(), salt)
        return wf, out

    wf, _ = flow(0)
    first = wf.execute()
    digests = {name: first.record(name)["result"]["digest"] for name in ("ones", "twos")}
    for digest in digests.values():
        path = home / "objects" / digest[:2] / digest
        path.chmod(0o644)
        with open(path, "r+b") as fh:
            fh.seek(200)
            fh.write(b"damaged!")
    caplog.set_level(logging.WARNING, logger="etherealfabric")
    wf, out = flow(1)
    assert wf.execute()[out] == 150_001.0
    said = {
        name: [
            r.getMessage()
            for r in caplog.records
            if f"input from {name!r} is unusable" in r.getMessage()
        ]
        for name in digests
    }
    for name, digest in digests.items():
        other = next(d for n, d in digests.items() if n != name)
        assert len(said[name]) == 1 and digest in said[name][0] and other not in said[name][0], said
