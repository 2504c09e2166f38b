"""Several consumers of one damaged input: the producer is recomputed once, all of them wait.

Issue 12.4: the first consumer's rewind removed the producer's outputs and the second one found
nothing, so the run failed. Here 2 and 5 consumers that must run (their own code or parameter
changed) all read one cached output whose object file was damaged, in parallel, on threads and
on processes; the run must succeed with correct values, the producer running exactly once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etherealfabric import Workflow, node
from etherealfabric.hashing._digest import digest_bytes
from etherealfabric.run import _tasks

ROWS = 20_000  # float64: 160 kB, an object file


def _log(log: str, name: str) -> None:
    with open(log, "a") as f:
        f.write(name + "\n")


@node
def produce(rows, log):
    _log(log, "produce")
    return np.cos(np.arange(rows, dtype=np.float64))


@node
def consume(values, k, salt, log):
    _log(log, f"consume:{k}")
    return float(values.sum()) * k + salt


def build(consumers: int, salt: int, log: Path) -> tuple[Workflow, list]:
    """(The log's path is a parameter: a process pool may outlive a test's environment.)"""
    with Workflow(f"rewind-{consumers}") as wf:
        p = produce(ROWS, str(log))
        refs = [consume(p, k, salt, str(log)) for k in range(consumers)]
    return wf, refs


def _objects(home: Path) -> list[Path]:
    return [p for p in (home / "objects").rglob("*") if p.is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["threads", "processes"])
@pytest.mark.parametrize("consumers", [2, 5])
def test_every_consumer_of_a_damaged_input_waits_for_one_recomputation(
    consumers: int, backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    home = tmp_path / "home"
    wf, _ = build(consumers, 0, log)
    first = wf.execute(home=home, backend=backend, max_workers=consumers)
    assert first.ok
    [obj] = _objects(home)  # the producer's array (the consumers' floats are inline)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    log.unlink()

    wf, refs = build(consumers, 1, log)  # every consumer must run; the producer is cached
    results = wf.execute(home=home, backend=backend, max_workers=consumers)

    assert results.ok, results.statuses
    ran = log.read_text().split()
    assert ran.count("produce") == 1, ran
    assert sorted(r for r in ran if r != "produce") == sorted(
        f"consume:{k}" for k in range(consumers)
    )
    total = float(np.cos(np.arange(ROWS, dtype=np.float64)).sum())
    for k, ref in enumerate(refs):
        assert results[ref] == pytest.approx(total * k + 1)
    # the store holds the right bytes again
    [obj] = _objects(home)
    assert digest_bytes(obj.read_bytes()) == obj.name


@node
def part(i, log):
    _log(log, f"part:{i}")
    return {"i": i, "name": f"part-{i}"}


@node
def gather(parts, salt, log):
    _log(log, "gather")
    return sum(p["i"] for p in parts) + salt


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_consumer_with_many_forged_inputs_has_all_their_producers_recomputed_at_once(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every inline output swapped for another's bytes: building the consumer's task finds
    them all forged, so their producers are recomputed together, then the consumer runs (not
    one round of a producer and the consumer per forged input)."""
    import sqlite3

    log, home = tmp_path / "executions.log", tmp_path / "home"

    tasks: list[str] = []  # the tasks built for the consumer: one per round of rewinds
    build = _tasks.build_task  # (the scheduler imports it when a node runs)

    def counted(info, **kwargs):  # type: ignore[no-untyped-def]
        tasks.append(info.spec.name)
        return build(info, **kwargs)

    monkeypatch.setattr(_tasks, "build_task", counted)

    def run(salt: int):  # type: ignore[no-untyped-def]
        with Workflow("forged-inputs") as wf:
            gather([part(i, str(log)) for i in range(12)], salt, str(log))
        return wf.execute(home=home, backend=backend)

    assert run(0).ok
    with sqlite3.connect(home / "journal.db") as conn:  # rotate the blobs' bytes
        rows = conn.execute("SELECT digest, data FROM blobs ORDER BY digest").fetchall()
        shifted = [data for _, data in rows[1:] + rows[:1]]
        conn.executemany(
            "UPDATE blobs SET data = ? WHERE digest = ?",
            [(data, digest) for (digest, _), data in zip(rows, shifted, strict=True)],
        )
    log.unlink()
    tasks.clear()
    results = run(1)  # the consumer must run; its inputs are cached, and forged
    assert results.ok, results.statuses
    ran = log.read_text().split()
    assert sorted(ran) == sorted(["gather"] + [f"part:{i}" for i in range(12)]), ran
    # one task found every forged input (its producers were recomputed together), one ran
    assert tasks.count("gather") == 2, tasks
    assert [results[n]["result"] for n in results if n.startswith("gather")] == [67]
