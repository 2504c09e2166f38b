"""Ctrl-C of a run on the processes backend: the terminal sends SIGINT to the whole process
group, so the worker processes (idle, or the forkserver still starting) each died of it with
a ``KeyboardInterrupt`` traceback printed under the run's own "cancelled" lines (found by
review: 9 runs of 10 here). Workers now leave Ctrl-C to the run (``backends/_procpool.py``).
Real runs in their own process group, interrupted as a terminal does, at moments from the
workers' start to a node running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOW = """
import subprocess, time
from etherealfabric import Workflow, node

@node
def quick(n):
    return n

@node
def slow(n):
    open("slow-started", "w").close()
    # a program the node starts still gets Ctrl-C (the default action is back for it)
    child = subprocess.Popen(["sleep", "60"])
    open("child-pid", "w").write(str(child.pid))
    time.sleep(n)
    return n

with Workflow("ctrl-c") as wf:
    slow(quick(60))
"""


@pytest.mark.parametrize("when", [0.0, 0.3, "node"])
def test_ctrl_c_of_a_processes_run_prints_no_worker_traceback(
    tmp_path: Path, when: float | str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--backend", "processes",
             "--max-workers", "2"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            if when == "node":
                deadline = time.monotonic() + 120
                while not (tmp_path / "child-pid").exists():
                    assert proc.poll() is None and time.monotonic() < deadline, "slow never ran"
                    time.sleep(0.05)
            else:  # (a Ctrl-C as the run starts its workers: its journal is there; before
                # that, on a loaded machine, Python itself may still be importing the package)
                deadline = time.monotonic() + 120
                while not (tmp_path / "home" / "journal.db").exists():
                    assert proc.poll() is None and time.monotonic() < deadline, "no run began"
                    time.sleep(0.01)
                time.sleep(float(when))
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            code = proc.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    text = (tmp_path / "out.txt").read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    if code != 0:  # (interrupted before the run began, it may also end at once, exit 130)
        assert code in (1, 130), (code, text)
    if when == "node":
        assert code == 1 and "resume" in text, text
        child = int((tmp_path / "child-pid").read_text())
        deadline = time.monotonic() + 30
        while _alive(child):  # the node's own program died of the Ctrl-C
            assert time.monotonic() < deadline, "the node's program ignored Ctrl-C"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_a_second_ctrl_c_as_the_run_stops_keeps_its_exit_code_and_summary(
    tmp_path: Path, backend: str
) -> None:
    """A second Ctrl-C 10 ms after the first reached the command as it exited: Python puts
    SIGINT's default action back as it finalises, so the command died of it (exit -2, the
    shell's 130) in most tries, where a cancelled run exits 1 (found by review)."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env["ETHEREALFABRIC_HOME"] = str(tmp_path / "home")
    for _ in range(3):
        (tmp_path / "child-pid").unlink(missing_ok=True)
        with open(tmp_path / "out.txt", "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--backend", backend],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 120
                while not (tmp_path / "child-pid").exists():
                    assert proc.poll() is None and time.monotonic() < deadline, "slow never ran"
                    time.sleep(0.02)
                os.killpg(proc.pid, signal.SIGINT)
                time.sleep(0.01)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
                code = proc.wait(timeout=120)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        text = (tmp_path / "out.txt").read_text()
        assert code == 1, (code, text)
        assert "cancelled:" in text and "resume: etherealfabric resume" in text, text


INTERRUPTED_IMPORT = """
import sys, etherealfabric.__main__ as entry

class Interrupt:  # a Ctrl-C in the middle of importing the command (a loaded machine)
    def find_spec(self, name, path=None, target=None):
        if name == "etherealfabric.cli._run":
            raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt())
sys.argv = ["etherealfabric", "runs"]
entry.main()
"""


def test_ctrl_c_while_the_command_starts_prints_no_traceback(tmp_path: Path) -> None:
    """A Ctrl-C while the command was still importing (a few hundred ms on a loaded machine)
    printed Python's ``KeyboardInterrupt`` traceback of the import; the entry point (also of
    the ``etherealfabric`` script) ends quietly with the shell's code for SIGINT."""
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 130, done
    assert done.stdout == done.stderr == "", done
    script = (Path(sys.executable).parent / "etherealfabric").read_text()
    assert "from etherealfabric.__main__ import main" in script, script
