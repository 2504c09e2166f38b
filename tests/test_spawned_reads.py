"""Files a node reads in processes it starts *afresh* with multiprocessing (``spawn``: macOS's
and Windows' default, torch's choice; ``forkserver``: Python 3.14's default on Linux) are its
reads (``run/_spawned.py``), as those of processes it forks are (``test_forked_reads.py``).

They were not: such a child is a new interpreter that no audit followed, so a run after a data
file its pool loaded was edited served the result computed from the old content. Each case
runs the real command line in fresh processes, on the threads and the processes backends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import ran_with_values

FLOW = """
import multiprocessing as mp, os
from concurrent.futures import ProcessPoolExecutor
from etherealfabric import Workflow, node

FILES = ["1.txt", "2.txt", "3.txt"]

def load(name):
    with open(os.path.join("data", name)) as fh:
        return int(fh.read())

def total_forked(names):  # a spawned worker that forks a pool of its own
    with mp.get_context("fork").Pool(2) as pool:
        return sum(pool.map(load, names))

@node
def spawn_pool():
    with mp.get_context("spawn").Pool(2) as pool:  # (its __exit__ terminates the workers)
        return sum(pool.map(load, FILES))

@node
def forkserver_executor():
    with ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver")) as ex:
        return sum(ex.map(load, FILES))

@node
def spawned_process_in_a_thread():
    import threading
    def work():
        child = mp.get_context("spawn").Process(target=load, args=("3.txt",))
        child.start()
        child.join()
    helper = threading.Thread(target=work)
    helper.start()
    helper.join()
    return load("1.txt")  # (what the child read decides whether this node runs again)

@node
def spawned_then_forked():
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(total_forked, FILES).result()

with Workflow("spawned-reads") as wf:
    spawn_pool(); forkserver_executor(); spawned_process_in_a_thread(); spawned_then_forked()
"""

NODES = ("spawn_pool", "forkserver_executor", "spawned_process_in_a_thread", "spawned_then_forked")


def _run(tmp_path: Path, backend: str, temp: Path) -> dict[str, object]:
    return ran_with_values(
        tmp_path, NODES, "flow.py", "--backend", backend,
        ETHEREALFABRIC_HOME=str(tmp_path / "home"), TMPDIR=str(temp),
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_an_edited_file_read_in_a_spawned_process_reruns_its_node(
    tmp_path: Path, backend: str, short_tmpdir: Path
) -> None:
    temp = short_tmpdir
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "data").mkdir()
    for i in (1, 2, 3):
        (tmp_path / "data" / f"{i}.txt").write_text(str(i))
    first = _run(tmp_path, backend, temp)
    assert first["executed"] == 4
    assert [first[n] for n in NODES] == [6, 6, 1, 6]
    assert _run(tmp_path, backend, temp)["cached"] == 4  # nothing changed: all hits
    (tmp_path / "data" / "2.txt").write_text("20")  # read by the pools' workers only
    again = _run(tmp_path, backend, temp)
    assert again["executed"] == 3
    assert [again[n] for n in NODES] == [24, 24, 1, 24]
    (tmp_path / "data" / "3.txt").write_text("30")  # read in a process a thread spawned too
    last = _run(tmp_path, backend, temp)
    assert last["executed"] == 4
    assert [last[n] for n in NODES] == [51, 51, 1, 51]
    assert list(temp.glob("etherealfabric-forked-*")) == []  # spill folders go


LAZY = """
import os
from etherealfabric import Workflow, node

def load(name):
    with open(os.path.join("data", name)) as fh:
        return int(fh.read())

@node
def lazy_pool():
    import multiprocessing  # (first imported here: the pickler learns it then)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return sum(pool.map(load, ["1.txt"]))

with Workflow("lazy") as wf:
    lazy_pool()
"""


def test_a_node_importing_multiprocessing_itself_is_followed(
    tmp_path: Path, short_tmpdir: Path
) -> None:
    temp = short_tmpdir
    (tmp_path / "flow.py").write_text(LAZY)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "1.txt").write_text("1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    env.update(ETHEREALFABRIC_HOME=str(tmp_path / "home"), TMPDIR=str(temp))
    run = [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--json", "--quiet"]
    check = "import sys, etherealfabric.cli as c; assert 'multiprocessing' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, env=env, timeout=60)
    results = []
    for text in ("1", "1", "5"):
        (tmp_path / "data" / "1.txt").write_text(text)
        done = subprocess.run(
            run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout)["executed"])
    assert results == [1, 0, 1]
