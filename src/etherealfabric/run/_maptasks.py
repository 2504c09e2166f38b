"""The tasks of a map's children (``run/_mapping.py``): copies of the map's base task.

A child's task is its map's task with the item in place of the mapped argument, its own name,
key and attempts so far. Like a plain node's (``run/_tasks.py``), a checkpoint that a kill left
after the child's success was committed is never resumed: the journal is asked once per chunk
(:func:`~etherealfabric.run._checkpoint.finished_checkpoints`) and those children start fresh.
"""

from __future__ import annotations

import copy

from ..define._files import Directory, File
from ..journal import Journal
from ._checkpoint import finished_checkpoints
from ._drift import snapshot
from ._mapstate import Child
from ._messages import Task

__all__ = ["child_tasks"]


def child_tasks(base: Task, children: list[Child], *, forced: bool, journal: Journal) -> list[Task]:
    """The tasks of ``children`` of the map whose base task is ``base`` (``forced``: by
    ``--force``, every child starts from scratch)."""
    names = {child.key: child.name for child in children}
    finished = set() if forced else finished_checkpoints(journal, base.store, names)
    tasks = []
    for child in children:
        task = copy.copy(base)
        task.node, task.key, task.attempts_before = child.name, child.key, child.attempts_before
        task.args = (child.item, *base.args[1:])
        task.fresh = forced or child.key in finished  # (the base's is the map's own key's)
        if isinstance(child.item, (File, Directory, list, tuple, dict)):
            task.inputs_seen = {**base.inputs_seen, **snapshot([child.item], child.keyed_at)}
        tasks.append(task)
    return tasks
