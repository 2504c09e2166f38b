"""A run SIGKILLed while it puts a declared file output back leaves nothing in the user's folder.

A cache hit restores a missing file by copying it to a temp file next to it and renaming that
over it. A process killed between the two used to leave the temp file (as big as the output)
in the output's folder for good: no run, ``cache gc`` or ``cache verify`` looked there. The
kill here is real (SIGKILL, from inside the copy, so it always lands in the window), and the
checks go through the command line in fresh processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

FLOW = textwrap.dedent(
    """
    from pathlib import Path

    from etherealfabric import Workflow, node, root_path


    @node(writes=["out/data.bin", "out/notes.txt"])
    def produce(n: int) -> int:
        Path(root_path("out/data.bin")).write_bytes(bytes(range(256)) * n)
        Path(root_path("out/notes.txt")).write_text(f"{n} blocks\\n")
        return n


    with Workflow("restore-kill") as workflow:
        produce(4000)
    """
)

#: Runs the workflow in-process with the restore's copy cut short by a SIGKILL of the process,
#: after half the bytes: what a machine dying in the middle of a restore leaves behind.
KILLED_RESTORE = textwrap.dedent(
    """
    import importlib, os, signal, sys

    from etherealfabric.store import _trees

    def copy_then_die(source, temp):
        with open(source, "rb") as src, open(temp, "xb") as dst:
            data = src.read()
            dst.write(data[: len(data) // 2])
            dst.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    _trees._copy_file = copy_then_die
    sys.path.insert(0, os.getcwd())
    importlib.import_module("flow").workflow.execute()
    """
)


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_restore_killed_midway_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    first = _cli(tmp_path, env, "run", "flow.py")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    expected = {p.name: p.read_bytes() for p in out.iterdir()}

    (out / "data.bin").unlink()  # the next run is a cache hit that puts it back...
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RESTORE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr  # ...and dies in the middle of the copy
    assert any(p.name.startswith(".ef-restore-") for p in out.iterdir()), sorted(os.listdir(out))

    again = _cli(tmp_path, env, "run", "flow.py")
    assert again.returncode == 0, again.stderr
    assert "0 executed, 1 cached" in again.stdout + again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == expected
    verify = _cli(tmp_path, env, "cache", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_node_that_runs_again_clears_a_killed_restore_of_its_file(tmp_path: Path) -> None:
    """The leftover goes also when the node runs instead of being restored (``--force``)."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    assert _cli(tmp_path, env, "run", "flow.py").returncode == 0
    out = tmp_path / "out"
    expected = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "data.bin").unlink()
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RESTORE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr

    forced = _cli(tmp_path, env, "run", "flow.py", "--force", "produce")
    assert forced.returncode == 0, forced.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == expected


#: A run whose process dies (SIGKILL) with an output's bytes complete in ``objects/.tmp``,
#: before they are renamed to their final name.
KILLED_WRITE = textwrap.dedent(
    """
    import importlib, os, signal, sys

    from etherealfabric.store import _local

    def die(self, name, path, size):
        os.kill(os.getpid(), signal.SIGKILL)

    _local.LocalStore.put_file = die
    sys.path.insert(0, os.getcwd())
    importlib.import_module("flow").workflow.execute()
    """
)


def test_the_next_run_removes_the_temp_file_of_a_write_a_kill_cut_short(tmp_path: Path) -> None:
    """A kill during an output's write leaves its temp file; the run after the crash removes
    it (its writer is gone), so that ``cache verify`` is clean after a resumed run."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    temps = tmp_path / "home" / "objects" / ".tmp"
    assert any(temps.iterdir()), "the kill must leave the write's temp file"

    again = _cli(tmp_path, env, "run", "flow.py")
    assert again.returncode == 0, again.stderr
    assert not any(temps.iterdir()), sorted(os.listdir(temps))
    verify = _cli(tmp_path, env, "cache", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _killed_writer(store_root: Path) -> Path:
    """A process (not a run) that starts writing an object to the store, SIGKILLed: the temp
    file it leaves."""
    script = (
        "import sys, time\n"
        "from etherealfabric.store import LocalStore\n"
        "w = LocalStore(sys.argv[1]).writer(inline_limit=0)\n"
        "w.write(b'x' * 100_000)\n"
        "w.flush()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(store_root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    [left] = (store_root / "objects" / ".tmp").glob(f".tmp-{proc.pid}.*")
    return left


def test_warm_runs_look_for_dead_writers_temp_files_only_after_a_crash(tmp_path: Path) -> None:
    """The temp folders are swept as a run starts only when a run was marked interrupted
    since the last sweep (or the last sweep is old): a warm run after a clean one does not
    scan them; the run after a crash removes the dead writers' temp files, as before."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    assert _cli(tmp_path, env, "run", "flow.py").returncode == 0  # the first run sweeps
    left = _killed_writer(tmp_path / "home")  # a writer that is not a run: nothing in the journal

    warm = _cli(tmp_path, env, "run", "flow.py")
    assert warm.returncode == 0, warm.stderr
    assert left.exists(), "a warm run after a clean one scanned the temp folders"

    assert _cli(tmp_path, env, "cache", "forget", "produce").returncode == 0  # so it writes
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    temps = tmp_path / "home" / "objects" / ".tmp"
    assert len(list(temps.iterdir())) >= 2  # the killed run's write, and the writer's

    again = _cli(tmp_path, env, "run", "flow.py")  # after a crash: swept
    assert again.returncode == 0, again.stderr
    assert not any(temps.iterdir()), sorted(os.listdir(temps))


STOPPED = """
import pathlib
import time
from etherealfabric import Workflow, node

@node
def fails():
    raise ValueError("no")

@node
def waits():
    pathlib.Path("waiting").touch()
    time.sleep(120)

with Workflow("failing") as failing:
    fails()

with Workflow("stopped") as stopped:
    waits()
"""


@pytest.mark.parametrize("how", ["failed", "SIGTERM"])
def test_the_run_after_one_that_ended_badly_removes_dead_writers_temp_files(
    tmp_path: Path, how: str
) -> None:
    """A run that recorded its own bad end (failed, or stopped by SIGTERM or Ctrl-C: it ends
    its workers, maybe in the middle of a write) left the sweep stamp fresh, so a dead
    writer's temp file (a checkpoint of gigabytes, say) stayed for up to an hour of runs
    (found by review)."""
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "other.py").write_text(STOPPED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), ETHEREALFABRIC_LOG_LEVEL="WARNING")
    assert _cli(tmp_path, env, "run", "flow.py").returncode == 0  # the first run sweeps
    left = _killed_writer(tmp_path / "home")
    if how == "failed":
        assert _cli(tmp_path, env, "run", "other.py:failing").returncode == 1
    else:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric", "run", "other.py:stopped"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (tmp_path / "waiting").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "waits never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    assert left.exists()  # (neither sweeps: the stamp is fresh)
    again = _cli(tmp_path, env, "run", "flow.py")
    assert again.returncode == 0, again.stderr
    assert not left.exists(), "the run after a bad end did not sweep"
