"""PySpark's Python daemon, with the engine's worker side imported before it forks workers.

A session the Spark backend starts for a ``local`` master names this module as
``spark.python.daemon.module``. PySpark's daemon forks one Python worker per concurrent task;
each would import the engine (``etherealfabric.run._worker``, cloudpickle) on its first node.
Imported here once, every forked worker starts with them, as the process backend's workers
do (its forkserver preloads them). Importing them starts no thread, which the daemon requires
before it forks. Anything that fails to import is left to the workers, as without this module.
"""

from __future__ import annotations

import contextlib

with contextlib.suppress(Exception):
    import cloudpickle  # noqa: F401

    import etherealfabric.run._worker  # noqa: F401

from pyspark.daemon import manager

if __name__ == "__main__":
    manager()
