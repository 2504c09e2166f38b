"""Teammates sharing a folder store do not undo each other's work (a user-level sweep).

``cache verify --fix`` on one machine never deletes a teammate's upload in progress, ``cache
forget`` drops only the records this home published (and nothing in read-only mode), ``cache
gc`` and ``cache verify --fix`` of a read-only home leave the shared store alone, and ``cache
gc --grace 0`` keeps what a teammate's run still going has finished. Everything goes through
the CLI in fresh processes, as users run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from etherealfabric.errors import StoreError
from etherealfabric.store import LocalStore

KEY = "team-secret-0123456789abcdef"

PIPELINE = """
import os
from etherealfabric import Workflow, node


@node
def first(n):
    return "y" * 100_000 + str(n)  # a stored object


@node
def second(s):
    gate = os.environ.get("EF_TEST_GATE")
    if gate:  # a teammate's job that is still going
        open(gate + ".waiting", "w").close()
        while not os.path.exists(gate):
            import time

            time.sleep(0.05)
    return len(s)


with Workflow("mates", params={"n": 3}) as workflow:
    result = second(first(workflow.params.n))
"""

OTHER = """
from etherealfabric import Workflow, node


@node
def other():
    return 1


with Workflow("other") as workflow:
    other()
"""


class Team:
    """A project with the pipeline, a shared folder, and one home per teammate."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "wf.py").write_text(PIPELINE)
        (root / "other.py").write_text(OTHER)
        self.shared = root / "shared"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        env.update(ETHEREALFABRIC_STORE=str(self.shared), ETHEREALFABRIC_SIGNING_KEY=KEY)
        env.update(extra)
        return env

    def argv(self, home: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "etherealfabric", *args, "--home", str(self.root / home)]

    def cli(self, home: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(home, *args),
            cwd=self.root,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def run(self, home: str, flow: str = "wf.py", **extra: str) -> dict[str, Any]:
        out = self.cli(home, "run", flow, "--json", **extra)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def keys(self) -> dict[str, str]:
        out = self.cli("scratch", "plan", "wf.py", "--json")
        assert out.returncode == 0, out.stderr
        return {n["node"]: n["key"] for n in json.loads(out.stdout)["nodes"] if n["key"]}

    def record(self, key: str) -> Path:
        return self.shared / "actions" / key[:2] / f"{key}.json"

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file of the shared folder, with its size and mtime."""
        return {
            str(p.relative_to(self.shared)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in self.shared.rglob("*")
            if p.is_file()
        }


@pytest.fixture
def team(tmp_path: Path) -> Team:
    return Team(tmp_path)


def _dead_pid() -> int:
    """A pid no process of this machine has (a teammate's writer on another machine)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- 1. a teammate's upload in progress is not an orphan ---------------------------------------
@pytest.mark.timeout(300)
def test_verify_fix_never_deletes_a_recent_temp_file_another_machine_writes(team: Team) -> None:
    """A temp file whose pid means nothing here (named by another machine, in the format
    of older versions too) is a write in progress while young: never reported, never deleted."""
    team.run("a")
    folder = team.shared / "objects" / ".tmp"
    folder.mkdir(parents=True, exist_ok=True)
    pid = _dead_pid()
    other = [
        folder / f".tmp-{pid}-{'ab' * 16}",  # an older version's name: no host in it
        folder / f".tmp-{pid}.000000000000-{'cd' * 16}",  # another host's
    ]
    for path in other:
        path.write_bytes(b"x" * 1000)
    out = team.cli("a", "cache", "verify", "--fix", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["leftovers"] == []
    assert all(path.exists() for path in other)
    # once older than the shared grace period (a day), they are leftovers
    old = time.time() - 2 * 86400
    for path in other:
        os.utime(path, (old, old))
    out = team.cli("a", "cache", "verify", "--fix", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    found = json.loads(out.stdout)["leftovers"]
    assert {p["kind"] for p in found} == {"orphan_temp"} and all(p["fixed"] for p in found)
    assert sorted(p["path"] for p in found) == sorted(map(str, other))
    assert not any(path.exists() for path in other)


def test_a_temp_file_of_this_host_names_it_and_is_judged_by_its_pid(tmp_path: Path) -> None:
    from etherealfabric.store._writer import host_tag

    store = LocalStore(tmp_path / "store", shared=True)
    fp, path = store.open_temp()
    fp.close()
    assert os.path.basename(path).startswith(f".tmp-{os.getpid()}.{host_tag()}-")
    dead = os.path.join(os.path.dirname(path), f".tmp-{_dead_pid()}.{host_tag()}-{'ef' * 16}")
    Path(dead).write_bytes(b"x")
    stale = store.stale_temp_files(max_age=3600, writer_gone=lambda pid: pid != os.getpid())
    assert [p for p, _ in stale] == [dead]  # ours lives on; a dead writer's of this host goes


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_another_pid_namespace_has_another_host_tag(tmp_path: Path) -> None:
    """A container (another pid namespace) cannot check our pids: its tag differs."""
    from etherealfabric.store._writer import host_tag

    code = "from etherealfabric.store._writer import host_tag; print(host_tag())"
    proc = subprocess.run(
        ["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        pytest.skip(f"unshare -p is not allowed here: {proc.stderr.strip()}")
    assert proc.stdout.strip() != host_tag()


def test_a_write_whose_temp_file_was_removed_says_so(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", shared=True)
    writer = store.writer(inline_limit=0)
    writer.write(b"z" * 4096)
    os.unlink(writer.name)  # another process took it for a leftover
    with pytest.raises(StoreError) as caught:
        writer.commit()
    message = str(caught.value)
    assert "another process removed" in message and writer.name in message
    assert "Make sure this folder" not in message


# -- 4. cache forget drops this home's records only ------------------------------------------
@pytest.mark.timeout(300)
def test_forget_drops_only_the_records_this_home_published(team: Team) -> None:
    keys = team.keys()
    record = team.record(keys["first"])
    assert team.run("a")["executed"] == 2 and record.is_file()
    assert team.run("b", ETHEREALFABRIC_STORE_MODE="read-only")["cached"] == 2
    for mode in ("read-only", "read-write"):
        out = team.cli("b", "cache", "forget", "first", ETHEREALFABRIC_STORE_MODE=mode)
        assert out.returncode == 0, out.stderr
        assert record.is_file(), mode  # A's record: the team keeps its hit
        assert team.run("b", ETHEREALFABRIC_STORE_MODE="read-only")["cached"] == 2
    assert (
        "read-only never writes it"
        in team.cli("b", "cache", "forget", "first", ETHEREALFABRIC_STORE_MODE="read-only").stdout
    )
    assert "left 1 it did not publish" in out.stdout
    out = team.cli("a", "cache", "forget", "first")
    assert out.returncode == 0, out.stderr
    assert not record.exists()  # A published it: gone for everyone, it runs again
    assert "dropped 1 record(s) this home published" in out.stdout
    assert team.run("c")["executed"] == 1


# -- 6. a read-only home collects itself and leaves the shared store alone ---------------------
@pytest.mark.timeout(300)
def test_read_only_gc_and_verify_fix_never_write_the_shared_store(team: Team) -> None:
    team.run("a")
    team.run("b", ETHEREALFABRIC_STORE_MODE="read-only")
    old = time.time() - 10 * 86400
    for path in team.shared.rglob("*"):
        os.utime(path, (old, old))  # collectable by age, were gc to collect it
    before = team.snapshot()
    ro = {"ETHEREALFABRIC_STORE_MODE": "read-only"}
    out = team.cli("b", "cache", "gc", "--grace", "0", **ro)
    assert out.returncode == 0, out.stderr
    assert "removed 0 cache record(s)" in out.stdout  # the home's report
    assert "not collected" in out.stdout and "read-only" in out.stdout
    assert team.snapshot() == before
    out = team.cli("b", "cache", "gc", "--json", **ro)
    assert out.returncode == 0 and "home" in json.loads(out.stdout)
    # a damaged object of the shared store stays, and the report says why
    obj = next(p for p in (team.shared / "objects").rglob("*") if p.is_file())
    obj.write_bytes(b"damaged")
    before = team.snapshot()
    out = team.cli("b", "cache", "verify", "--fix", **ro)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "corrupt" in out.stdout and "from a setup that may write it" in out.stdout
    assert team.snapshot() == before


# -- 7. gc keeps what a teammate's run still going has finished ---------------------------------
@pytest.mark.timeout(300)
def test_gc_keeps_the_records_of_a_teammates_run_still_going(team: Team) -> None:
    keys = team.keys()
    gate = team.root / "gate"
    running = subprocess.Popen(
        team.argv("t", "run", "wf.py", "--json"),
        cwd=team.root,
        env=team.env(EF_TEST_GATE=str(gate)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 150
        waiting = Path(f"{gate}.waiting")
        while not waiting.exists():  # `first` is done and published, `second` runs
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the run never reached its second node"
            time.sleep(0.1)
        record = team.record(keys["first"])
        assert record.is_file()
        team.run("g", "other.py")
        out = team.cli("g", "cache", "gc", "--grace", "0", "--json")
        assert out.returncode == 0, out.stderr
        assert record.is_file()  # T's finished node is kept while T runs
        assert json.loads(out.stdout)["shared"]["runs_going"] == 1
    finally:
        gate.touch()
        stdout, stderr = running.communicate(timeout=150)
    assert running.returncode == 0, stderr
    assert json.loads(stdout)["executed"] == 2
    assert (
        list((team.shared / "roots").rglob("*.run-*")) == []
    )  # the run's mark went with it; its roots took over
    assert team.run("u")["cached"] == 2  # a fresh teammate gets every result


def test_a_warm_run_writes_no_mark(team: Team) -> None:
    team.run("a")
    before = team.snapshot()
    assert team.run("a")["cached"] == 2
    assert team.snapshot() == before


@pytest.mark.parametrize("when", ["1" + "0" * 400, "1e400"])
def test_gc_takes_a_forged_run_mark_whose_times_no_float_holds_for_a_dead_runs(
    team: Team, when: str
) -> None:
    """A mark planted with an integer time no float holds (or an infinity) protects nothing and
    goes, as a dead run's does (``cache gc`` failed with an OverflowError traceback)."""
    team.run("a")
    (roots,) = (team.shared / "roots").rglob("*.json")
    mark = roots.with_name(roots.name.removesuffix(".json") + ".run-" + "ab" * 16 + ".json")
    mark.write_text(
        '{"home": "h", "host": "x", "run": "r", "keys": [], '
        f'"started_at": {when}, "updated_at": {when}}}'
    )
    out = team.cli("a", "cache", "gc", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["shared"]["runs_going"] == 0
    assert not mark.exists()
    assert team.run("u")["cached"] == 2  # nothing of the team's was lost
