"""Files a node reads in processes it forks itself (``multiprocessing.Pool``, a
``ProcessPoolExecutor``, a plain ``os.fork``) are its reads (``run/_forked.py``).

They were not: the forked child noted them in its own memory, so a run after one of the data
files was edited served the total computed from the old content. Each case runs the real
command line in fresh processes, on the threads and the processes backends.
"""

from __future__ import annotations

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

@node
def with_pool():
    with mp.get_context("fork").Pool(2) as pool:  # (its __exit__ terminates the workers)
        return sum(pool.map(load, FILES))

@node
def with_executor():
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        return sum(ex.map(load, FILES))

@node
def grandchild():
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child forks again; its own child reads the file
        inner = os.fork()
        if inner == 0:
            os.write(write, str(load("3.txt")).encode())
            os._exit(0)
        os.waitpid(inner, 0)
        os._exit(0)
    os.close(write)
    value = int(os.read(read, 100))
    os.waitpid(child, 0)
    return value

@node
def pool_in_a_thread():
    import threading
    found = []
    def work():
        with mp.get_context("fork").Pool(2) as pool:
            found.append(sum(pool.map(load, FILES)))
    helper = threading.Thread(target=work)
    helper.start()
    helper.join()
    return found[0]

with Workflow("forked-reads") as wf:
    with_pool(); with_executor(); grandchild(); pool_in_a_thread()
"""


NODES = ("with_pool", "with_executor", "grandchild", "pool_in_a_thread")


def _run(tmp_path: Path, backend: str, temp: Path) -> dict[str, object]:
    return ran_with_values(
        tmp_path, NODES, "flow.py", "--backend", backend,
        ETHEREALFABRIC_HOME=str(tmp_path / "home"), TMPDIR=str(temp),
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_an_edited_file_read_in_a_forked_process_reruns_its_node(
    tmp_path: Path, backend: str, short_tmpdir: Path
) -> None:
    temp = short_tmpdir
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "data").mkdir()
    for i in (1, 2, 3):
        (tmp_path / "data" / f"{i}.txt").write_text(str(i))
    first = _run(tmp_path, backend, temp)
    assert (first["executed"], first["with_pool"], first["with_executor"]) == (4, 6, 6)
    assert (first["grandchild"], first["pool_in_a_thread"]) == (3, 6)
    assert _run(tmp_path, backend, temp)["cached"] == 4  # nothing changed: all hits
    (tmp_path / "data" / "2.txt").write_text("20")  # read by the pools' workers only
    again = _run(tmp_path, backend, temp)
    assert (again["executed"], again["with_pool"], again["with_executor"]) == (3, 24, 24)
    assert again["pool_in_a_thread"] == 24  # (a thread the node started made that pool)
    (tmp_path / "data" / "3.txt").write_text("30")  # read by every node, in a grandchild too
    last = _run(tmp_path, backend, temp)
    assert (last["executed"], last["with_pool"], last["grandchild"]) == (4, 51, 30)
    assert list(temp.glob("etherealfabric-forked-*")) == []  # spill folders go
