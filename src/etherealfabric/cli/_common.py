"""What the commands share: the ``--home`` and ``--json`` options, exit codes, one-line errors,
opening the journal and loading a workflow, and formatting for tables and times."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ..config import Settings
from ..errors import EtherealFabricError, RunNotFoundError

if TYPE_CHECKING:
    from ..journal._journal import Journal
    from ..workflow import Workflow

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "SUMMARY_ERROR_CHARS",
    "F",
    "_console",
    "_echo_json",
    "_fail",
    "_get_run",
    "_home_option",
    "_journal",
    "_journal_at",
    "_json_option",
    "_json_text",
    "_load",
    "_no_node",
    "_note_unknown_workflow",
    "_run_json",
    "_secs",
    "_settle",
    "_stdout_to_stderr",
    "_table",
    "_when",
    "_workflow_settings",
    "one_line",
]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_FAILED, EXIT_USAGE = 1, 2


# -- options -------------------------------------------------------------------------------------
class Age(click.ParamType):  # type: ignore[type-arg]  # (generic only in click 8.2+)
    """A duration in seconds, or an age as ``runs --since`` takes it: ``30m``, ``2h``, ``3d``."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        from ..journal._history import parse_since

        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
            if text[-1:].lower() in ("s", "m", "h", "d", "w"):
                with contextlib.suppress(ValueError):
                    seconds = -parse_since(text, now=0.0)
        if not 0 <= seconds < math.inf:
            self.fail(f"{value!r} is not a number of seconds (0 or more) or an age such as "
                      "30m, 2h, 3d, 1w", param, ctx)  # fmt: skip
        return seconds


def _home_option(fn: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Home folder (journal and store). Default: $ETHEREALFABRIC_HOME or ./.etherealfabric",
    )(fn)


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


# -- errors and output ---------------------------------------------------------------------------
_TRACEBACKS = {"show": False}  # set by ``etherealfabric --traceback``


def show_tracebacks(show: bool) -> None:
    """Whether :func:`_fail` also prints the traceback of the error being handled."""
    _TRACEBACKS["show"] = show


def _fail(message: str) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with code 2.

    With ``--traceback``, the full traceback of the exception being handled (and its cause,
    such as the error a workflow file raised) is printed first.
    """
    if _TRACEBACKS["show"] and sys.exc_info()[1] is not None:
        import traceback

        traceback.print_exc()
    one_line = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    click.echo(f"error: {one_line}", err=True)
    sys.exit(EXIT_USAGE)


#: the longest a node's error is shown in a run's summary (the full text: ``logs``, ``show``)
SUMMARY_ERROR_CHARS = 300


def one_line(text: str, limit: int = SUMMARY_ERROR_CHARS) -> str:
    """``text`` (a node's error, which may span lines) as one line for a run's summary: its
    lines stripped and joined (with a space after a line ending in ``:``, else ``; ``), cut
    at ``limit`` characters with `` ...``; no terminal escape, control character or lone
    surrogate (each a ``?``: :func:`~etherealfabric.observe._progress.printable`)."""
    from ..observe._progress import printable

    joined = ""
    for line in (printable(part).strip() for part in text.strip().splitlines()):
        if line:
            joined += ("" if not joined else " " if joined.endswith(":") else "; ") + line
    return joined if len(joined) <= limit else joined[: limit - 4].rstrip() + " ..."


def _echo_json(data: Any) -> None:
    click.echo(_json_text(data))


def _json_text(data: Any) -> str:
    """``data`` as strict JSON: NaN and infinite floats become ``null`` (as pandas writes them
    in frames; ``json.dumps`` would write ``NaN``, which JSON parsers refuse), other values
    that JSON lacks their ``str``."""
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False)


def _finite(value: Any, depth: int = 0) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth < 500 and isinstance(value, dict):
        return {k: _finite(v, depth + 1) for k, v in value.items()}
    if depth < 500 and isinstance(value, (list, tuple)):
        return [_finite(v, depth + 1) for v in value]
    return value


# -- journal, runs and workflows -----------------------------------------------------------------
def _journal(home: str | None) -> Journal:
    """The home's journal, for a command that shows runs (see :func:`_journal_at`)."""
    return _journal_at(Settings.resolve(home=home), reading=True)


def _journal_at(settings: Settings, *, reading: bool = False) -> Journal:
    """The home's journal; opened read-only when the home cannot be written (a read-only
    mount): reading commands work there, writing ones say that the home is read-only.

    ``reading``: a journal that cannot be opened for writing for another reason (its disk is
    full: SQLite cannot create the files it keeps beside it) is read read-only, with a
    warning, so that the runs that failed for it can still be looked at."""
    from ..errors import DamagedJournalError
    from ..journal._connection import ReadOnlyJournalError
    from ..journal._journal import Journal

    if not settings.journal_path.exists():
        _fail(f"no journal at {settings.journal_path}; run a workflow first or pass --home")
    try:
        return Journal(settings.journal_path, read_only=None)
    except EtherealFabricError as exc:
        if not reading or isinstance(exc, (DamagedJournalError, ReadOnlyJournalError)):
            _fail(str(exc))
        try:
            journal = Journal(settings.journal_path, read_only=True)
        except EtherealFabricError:
            _fail(str(exc))
        click.echo(f"warning: {str(exc).rstrip('.')}; showing it read-only", err=True)
        return journal


def _run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A run row for ``--json``: its ``params`` column (how the run was started: its file,
    options and workflow parameters, stored as JSON text) as an object, not a string."""
    text = row.get("params")
    if not isinstance(text, str):
        return row
    try:
        return {**row, "params": json.loads(text)}
    except ValueError:
        return row  # (not written by this version: shown as it is stored)


def _settle(journal: Journal) -> None:
    """Mark the runs of this host whose process died ``interrupted`` (as ``runs`` and
    ``status`` do), so that a command showing one run never calls a killed run ``running``;
    a journal that cannot be written (a full disk) is shown as it is."""
    with contextlib.suppress(EtherealFabricError):
        journal.mark_interrupted()


def _get_run(journal: Journal, run_id: str) -> dict[str, Any]:
    """The run with id ``run_id`` or the one run whose id starts with it (matched literally);
    an unknown or ambiguous id is a one-line error (an ambiguous one names its matches).
    Runs whose process died are marked ``interrupted`` first (:func:`_settle`)."""
    from ..journal._browse import shown

    _settle(journal)
    try:
        return shown(journal.get_run(run_id), journal)  # (a read-only home is not marked)
    except EtherealFabricError as exc:
        text = str(exc)
        _fail(
            text
            if "etherealfabric runs" in text or not isinstance(exc, RunNotFoundError)
            else f"{text}; list runs with `etherealfabric runs`"
        )


def _no_node(run: dict[str, Any], node: str, known: list[str]) -> NoReturn:
    """The one-line error for a ``node`` that run ``run`` has no row of: while the run is still
    going (in another process), its nodes so far, and that a node is listed once it starts."""
    from ..journal._history import no_node

    _fail(no_node(run, node, known)[0])


def _note_unknown_workflow(journal: Journal, workflow: str) -> None:
    """For a listing filtered by ``--workflow`` that found nothing: when no run of ``workflow``
    is recorded at all (a typo, another home), say so on stderr with the workflows that have
    runs, the closest first; the (empty) listing on stdout and exit 0 stay as they are."""
    import difflib

    from ..journal._browse import workflow_names

    names = workflow_names(journal)
    if workflow in names:
        return
    close = difflib.get_close_matches(workflow, names, n=3, cutoff=0.6)
    known = [*close, *(n for n in names if n not in close)]
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = f"workflows with runs: {', '.join(known)}" if known else "no workflow has run yet"
    click.echo(f"note: no runs of workflow {workflow!r} found; {hint}{listed}", err=True)


def _load(target: str, *, machine: bool = False) -> Workflow:
    """Import the workflow file ``target`` names; ``machine``: the command's stdout is for a
    program (``--json``, ``graph``), so what the file prints while it is imported (a module
    level ``print``, a factory's, a run it starts) goes to stderr, keeping the document
    parseable."""
    from ._loader import load_workflow

    try:
        with _stdout_to_stderr() if machine else contextlib.nullcontext():
            return load_workflow(target)
    except EtherealFabricError as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what is printed to stderr (nodes, a workflow file being imported), keeping
    stdout for the JSON document.

    Python-level (threads of this process) and, when stdout is a real file descriptor, at the
    descriptor level too (worker processes, C extensions).
    """
    sys.stdout.flush()
    try:
        fd, target = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = target = -1
    saved = os.dup(fd) if fd >= 0 else -1
    if saved >= 0:
        os.dup2(target, fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved >= 0:
            os.dup2(saved, fd)
            os.close(saved)


def _workflow_settings(workflow: Workflow, home: str | None) -> Settings:
    """The settings a run of ``workflow`` would use (``--home`` beats the workflow's own)."""
    explicit = {**workflow.settings, **({"home": home} if home else {})}
    try:
        return Settings.resolve(**explicit)
    except EtherealFabricError as exc:
        _fail(str(exc))


# -- formatting ----------------------------------------------------------------------------------
def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


#: the width of output to a file or a pipe without COLUMNS: no table loses a column
_PIPE_WIDTH = 100_000


def _console() -> Any:
    """Rich's console for stdout: the terminal's width; to a file or a pipe, ``$COLUMNS`` or,
    unset, no limit (Rich's 80 columns would leave a table's last columns out)."""
    import os

    from rich.console import Console

    console = Console(markup=False)  # names, labels and errors are text: "[x]" is no markup tag
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip():
        console.width = _PIPE_WIDTH
    return console


def _table(*columns: str) -> Any:
    """A table whose first column (a run id, a node name) is never cut (see _print_table)."""
    from rich.table import Table

    table = Table()
    for i, header in enumerate(columns):
        table.add_column(header, overflow="fold" if i == 0 else "ellipsis")
    return table


def _print_table(console: Any, table: Any) -> None:
    """Print ``table`` never cutting its first column (ids are copied from it): on a narrow
    terminal (or ``COLUMNS``) the last columns are left out (a caption names them) rather than
    cut; to a file or a pipe every column is printed."""
    from rich.table import Table

    columns = table.columns
    cells = [[str(c) for c in col.cells] for col in columns]
    natural = [
        max([len(str(col.header)), *map(len, cs)]) for col, cs in zip(columns, cells, strict=True)
    ]
    keep, used = 1, natural[0] + 4
    while keep < len(columns) and used + natural[keep] + 3 <= console.width:
        used += natural[keep] + 3
        keep += 1
    shown = Table()
    for i, col in enumerate(columns[:keep]):
        shown.add_column(
            col.header,
            overflow="fold" if i == 0 else "ellipsis",
            min_width=natural[0] if i == 0 else None,
        )
    for row in zip(*(col.cells for col in columns[:keep]), strict=True):
        shown.add_row(*row)
    if keep < len(columns):
        dropped = ", ".join(str(c.header) for c in columns[keep:])
        shown.caption = f"(not shown, the terminal is too narrow: {dropped})"
    console.print(shown)
