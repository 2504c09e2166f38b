"""Readers of the run-event stream and of the journal: what users see of a run.

Public (documented in ``docs/monitoring.md`` and ``docs/api.md``):

* :class:`Progress`: a live display on a terminal, lines otherwise (``execute(subscribers=[...])``);
* :class:`Metrics`: Prometheus metrics of runs and nodes;
* :func:`explain_node` / :class:`Explanation`: why a node of a past run ran or was cached;
* :class:`DryRun`: what ``Workflow.plan()`` returns.

Private modules, one job each: ``_logging`` (the run's log lines), ``_progress``, ``_metrics``,
``_explain`` (diff of a node's key components against its previous run), ``_dryrun`` (the plan
with history's reasons and estimates), ``_export`` (mermaid and dot graphs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dryrun import DryRun
    from ._explain import Explanation, explain_node
    from ._metrics import Metrics
    from ._progress import Progress

__all__ = ["DryRun", "Explanation", "Metrics", "Progress", "explain_node"]

# imported when first used: a run imports ``_logging`` (hence this package) and none of these
_HOMES = {
    "DryRun": "_dryrun",
    "Explanation": "_explain",
    "explain_node": "_explain",
    "Metrics": "_metrics",
    "Progress": "_progress",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
