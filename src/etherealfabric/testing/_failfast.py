"""The backend contract's fail-fast case (:class:`FailFastContract`, a part of
:class:`~etherealfabric.testing.BackendContract`).

When a node fails and the run stops (fail-fast, the default), a node running on the backend
must make no further attempt: one waiting out a long retry backoff on a worker fails with its
last error at once, instead of holding the run for its whole retry policy. A backend reaches
the retries of tasks run out of process through ``Backend.retry_stop``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

from ..define._function import node
from ..define._policies import RetryPolicy
from ..run._audit import untracked
from ..workflow import Workflow

__all__ = ["FailFastContract"]

#: the backoff of the retried node: a run that waits it out takes this long at least
BACKOFF = 30.0


class FailFastContract:
    """Fail-fast reaches the retries of a node running on the backend."""

    timeout: ClassVar[float]

    def test_fail_fast_ends_the_retries_of_a_node_running_on_the_backend(
        self, backend_name: str, home: Path, tmp_path: Path
    ) -> None:
        # `flaky` retries with a 30 s backoff; `fails` fails once `flaky` failed its first
        # attempt: the run stops, and the worker makes no second attempt of `flaky`
        folder, timeout = str(tmp_path / "attempts"), self.timeout
        os.makedirs(folder)

        @node(retries=RetryPolicy(retries=5, backoff=BACKOFF))
        def flaky() -> None:
            with untracked():  # the attempts are counted in files: the test's, not the node's
                tries = len(os.listdir(folder)) + 1
                Path(folder, f"attempt-{tries}").touch()
            raise ValueError("flaky failed")

        @node
        def fails() -> None:
            deadline = time.monotonic() + timeout
            with untracked():
                while not os.path.exists(os.path.join(folder, "attempt-1")):
                    assert time.monotonic() < deadline, "flaky never ran"
                    time.sleep(0.05)
            raise RuntimeError("boom")

        with Workflow("fail-fast-retries", home=home) as wf:
            flaky()
            fails()
        results = wf.execute(raise_on_error=False)
        ended = time.time()
        said = {name: str(error) for name, error in results.errors.items()}  # (for a failure)
        attempts = sorted(os.listdir(folder))
        assert attempts, said
        # from flaky's first attempt (not from the execute: a cluster's first tasks can take
        # longer than the backoff to start on a loaded machine) to the run's end
        took = ended - os.stat(os.path.join(folder, attempts[0])).st_mtime
        assert took < BACKOFF - 5, (took, said, attempts)  # nor five more attempts
        assert results.statuses == {"flaky": "failed", "fails": "failed"}, (said, attempts)
        assert "flaky failed" in str(results.errors["flaky"])
        assert sorted(os.listdir(folder)) == ["attempt-1"]
