"""PySpark's Python daemon, with the engine's worker side imported before it forks workers.

A session the Spark backend starts for a ``local`` master names this module as
``spark.python.daemon.module``. PySpark's daemon forks one Python worker per concurrent task;
each would import the engine (``etherealfabric.run._worker``, cloudpickle, the Spark task
``_grouping.run_group``) on its first node.
Imported here once, every forked worker starts with them, as the process backend's workers
do (its forkserver preloads them). Importing them starts no thread, which the daemon requires
before it forks. Anything that fails to import is left to the workers, as without this module.
"""

from __future__ import annotations

import contextlib
import importlib

from pyspark.daemon import manager

from ._base import WORKER_MODULES

#: what every Spark task of the backend runs (``run_group``), beside the engine's worker side
SPARK_TASK_MODULES = (*WORKER_MODULES, "etherealfabric.backends._grouping")

for _name in SPARK_TASK_MODULES:  # by name: backends sit below the run layer (WORKER_MODULES)
    with contextlib.suppress(Exception):
        importlib.import_module(_name)

if __name__ == "__main__":
    manager()
