"""How a run is wired: events as enums, subscribers that fail, the journal writer, registries
that travel to worker processes, and a definition that knows nothing about running."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from etherealfabric import Event, EventKind, NodeStatus, RunStatus, Workflow, node
from etherealfabric.define._definition import Definition
from etherealfabric.run._recorder import JournalRecorder


@node
def double(x: int) -> int:
    return x * 2


def _workflow(home: Path) -> Workflow:
    with Workflow("wiring", home=home) as wf:
        double(double(3))
    return wf


def test_events_carry_enum_kinds_and_statuses(tmp_path: Path) -> None:
    seen: list[Event] = []
    results = _workflow(tmp_path).execute(subscribers=[seen.append])
    kinds = [e.kind for e in seen]
    assert all(isinstance(k, EventKind) for k in kinds)
    assert kinds[0] is EventKind.RUN_STARTED and kinds[-1] is EventKind.RUN_FINISHED
    assert kinds.count(EventKind.NODE_SUCCEEDED) == 2
    assert results.status is RunStatus.SUCCEEDED
    assert set(results.statuses.values()) == {NodeStatus.SUCCEEDED}
    again = _workflow(tmp_path).execute()
    assert set(again.statuses.values()) == {NodeStatus.CACHED}


def test_event_kind_given_as_text_is_checked() -> None:
    assert Event("node_cached", "r1").kind is EventKind.NODE_CACHED
    with pytest.raises(ValueError, match="node_cachd"):
        Event("node_cachd", "r1")


def test_a_failing_subscriber_is_logged_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    caplog.set_level(logging.ERROR, logger="etherealfabric.events")
    results = _workflow(tmp_path).execute(subscribers=[broken])
    assert results.executed == 2
    assert "subscriber bug" in caplog.text


def test_a_failing_journal_recorder_fails_the_run_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: JournalRecorder, event: Event) -> None:
        raise OSError("journal write failed")

    monkeypatch.setattr(JournalRecorder, "_on_succeeded", broken)
    with pytest.raises(OSError, match="journal write failed"):
        _workflow(tmp_path).execute()


def test_definition_has_no_way_to_run() -> None:
    definition = Definition("only-nodes")
    assert not hasattr(definition, "execute")
    assert isinstance(_workflow(Path("unused")), Definition)


SCRIPT = """
import sys
from etherealfabric import Workflow, node, Serializer, register_serializer


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class PointSerializer(Serializer):
    name = "point"

    def dump(self, value, fp):
        fp.write(f"{value.x},{value.y}".encode())

    def load(self, fp):
        x, y = fp.read().decode().split(",")
        return Point(int(x), int(y))


register_serializer(PointSerializer(), types=(Point,))


@node
def make(n):
    return Point(n, n + 1)


@node
def norm(p):
    return p.x * p.x + p.y * p.y


with Workflow("points") as wf:
    total = norm(make(3))

results = wf.execute(backend=sys.argv[1], max_workers=2)
print(results[total], results.executed, results.cached,
      results.record("make")["result"]["serializer"])
"""


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_a_serializer_registered_in_the_script_travels_to_workers(
    tmp_path: Path, backend: str
) -> None:
    script = tmp_path / "points.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {"ETHEREALFABRIC_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.run(
            [sys.executable, str(script), backend],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[0].stdout.split() == ["25", "2", "0", "point"]
    assert runs[1].stdout.split() == ["25", "0", "2", "point"]
