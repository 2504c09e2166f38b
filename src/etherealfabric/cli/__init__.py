"""The ``etherealfabric`` command line.

Commands: ``run``, ``resume``, ``plan`` (a dry run), ``runs``, ``show``, ``status`` (live),
``explain`` (why a node ran), ``logs``, ``graph`` (Mermaid / DOT) and ``cache verify``.

Exit codes: 0 success; 1 the run failed (a node failed or the run was cancelled), or a check
found problems (``cache verify``) or the run looked at ended badly (``status``); 2 a usage or
configuration error (bad option, missing file, unknown run id, a workflow file with a syntax or
import error), reported in one line on stderr that says what to do, without a traceback
(``etherealfabric --traceback COMMAND ...`` prints it too); 143 a ``run`` or ``resume``
stopped by SIGTERM (recorded ``interrupted``).

Layout: this module holds the ``main`` group and adds the commands of ``run`` (run, resume,
celery-worker), ``history`` (runs, show, status, logs), ``inspect`` (plan, explain, graph) and
``cache`` (cache verify), and ``ui`` (the web UI, from ``etherealfabric.ui``, which
imports its web framework only when the command runs); ``_common`` holds the options and helpers they share.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError, JournalError
from ..ui._command import ui as ui_command
from . import _cache as cache
from . import _cat as cat
from . import _history as history
from . import _inspect as inspect
from . import _run as run
from . import _team as team
from ._common import _fail, show_tracebacks

__all__ = ["main"]


class _Main(click.Group):
    """The command group: a bad setting met by any command (``ETHEREALFABRIC_HOME`` naming a
    file, a bad ``ETHEREALFABRIC_DURABILITY``...), or a journal that cannot be read (damage
    SQLite finds only when a query reads it), is a one-line error and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, JournalError) as exc:
            _fail(str(exc))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="etherealfabric")
@click.option(
    "--traceback",
    "traceback_",
    is_flag=True,
    help="On an error, print the full traceback as well as the one-line message.",
)
def main(traceback_: bool) -> None:
    """EtherealFabric: run pipelines that never do the same work twice."""
    show_tracebacks(traceback_)


main.add_command(run.run)
main.add_command(run.resume)
main.add_command(inspect.plan)
main.add_command(history.runs)
main.add_command(history.show)
main.add_command(history.status)
main.add_command(inspect.explain)
main.add_command(history.logs)
main.add_command(cat.cat)
main.add_command(inspect.graph_command)
main.add_command(cache.cache)
for _command in (team.cache_push, team.cache_pull, team.cache_ls, team.cache_du):
    cache.cache.add_command(_command)
main.add_command(run.celery_worker)
main.add_command(ui_command)
