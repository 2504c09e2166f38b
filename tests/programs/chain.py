"""A long cold chain run as a subprocess by tests/test_group_commit.py.

    python tests/programs/chain.py N

``step:0`` -> ``step:1`` -> ... -> ``step:N-1``, each adding one to its input (``step:0``
starts from 0), so ``step:K`` is K. Every node body first appends ``"step:K <pid>"`` to the
executions log ``EF_TEST_LOG`` (one O_APPEND write: it survives the SIGKILL of the process).
The last line printed is the last node's value.
"""

from __future__ import annotations

import os
import sys

from etherealfabric import Workflow, node


@node
def step(previous: int | None, k: int) -> int:
    fd = os.open(os.environ["EF_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"step:{k} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return 0 if previous is None else previous + 1


def build(n: int) -> Workflow:
    with Workflow("long-chain") as wf:
        value = None
        for k in range(n):
            value = step(value, k)
            wf.add_node(value.node, name=f"step:{k}")
    return wf


if __name__ == "__main__":
    count = int(sys.argv[1])
    results = build(count).execute()
    print(results[f"step:{count - 1}"]["result"], flush=True)
