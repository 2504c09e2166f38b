"""``cat``: print (or write to a file) one result of a past run, without writing Python."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from typing import Any

import click

from ..errors import ArtifactMissingError, CorruptArtifactError, EtherealFabricError, a_or_an
from ..states import NodeStatus
from ._common import (
    _fail,
    _get_run,
    _home_option,
    _journal,
    _json_option,
    _json_text,
    _no_node,
)
from ._history import _workflow_params
from ._run import _params as _recorded

__all__ = ["cat"]

_TABLE_ROWS = 40


@click.command(short_help="Print (or write to a file) a result of a past run.")
@click.argument("run_id")
@click.argument("node")
@click.argument("output", required=False)
@click.option(
    "-o",
    "--output-file",
    "path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the value to FILE instead: .csv/.parquet/.json for data frames, .npy (or .csv, "
    "1-D/2-D) for arrays, .json for JSON-able values; any other name gets the stored "
    "(serialized) bytes.",
)
@_home_option
@_json_option
def cat(
    run_id: str, node: str, output: str | None, path: str | None, home: str | None, as_json: bool
) -> None:
    """Print NODE's result in run RUN_ID (its OUTPUT, for a node with several).

    Values are loaded from the store (verified). Data frames print as a table, other values
    as their repr; --json prints JSON (data frames as records).
    """
    from ..run._reopen import open_run

    try:
        results = open_run(run_id, home=home, item=node)  # (a map's item: ``square[3]``)
        if node not in results.statuses:
            with _journal(home) as journal:  # (still going in another process: it says so)
                _no_node(_get_run(journal, results.run_id), node, sorted(results.statuses))
        if node not in results:
            status = results.statuses[node]
            if status == NodeStatus.DRIFTED:
                _fail(
                    f"node {node!r} of run {results.run_id} drifted (a file it read changed while "
                    f"it ran): its outputs were not stored; {_rerun_hint(home, results.run_id, node)}"
                )
            if status.done:
                _fail(_gone(home, results.run_id, node))
            why = _why_none(status, results.run_id)
            _fail(f"node {node!r} has no results in run {results.run_id}: {why}")
        records = results.record(node)
        if output is None:
            if len(records) != 1:
                _fail(f"node {node!r} has outputs {', '.join(records)}: name the one to print")
            output = next(iter(records))
        elif output not in records:
            _fail(f"node {node!r} has no output {output!r}; its outputs: {', '.join(records)}")
        try:
            value = results.value(node, output)
        except ArtifactMissingError as exc:
            offline = getattr(getattr(results._cache, "store", None), "offline", None)
            if offline is not None:  # not lost: the shared store did not answer
                _fail(
                    f"the result of node {node!r} in run {results.run_id} is not in this home, "
                    f"and the shared store did not answer ({offline}); try again once it "
                    f"answers, or {_rerun_hint(home, results.run_id, node)}"
                )
            if exc.path and _planted(exc.path):  # a FIFO, a folder, a link: not an object
                _fail(
                    f"cannot load {node}.{output} of run {results.run_id}: {exc.path} is not a "
                    "regular file (a damaged entry: `etherealfabric cache verify --fix` removes "
                    f"it); {_rerun_hint(home, results.run_id, node)}"
                )
            _fail(f"{_gone(home, results.run_id, node)} ({exc})")
        except CorruptArtifactError as exc:  # a cached run would hit the same bytes: --force
            if exc.path is None:  # bytes that hash right but are no data of their format
                _fail(
                    f"cannot load {node}.{output} of run {results.run_id}: {exc}; "
                    f"{_rerun_hint(home, results.run_id, node, force=True)}"
                )
            wanted, size = records[output].get("size"), _size(exc.path)
            what = f"{size} bytes instead of {wanted}; " if size not in (None, wanted) else ""
            _fail(
                f"cannot load {node}.{output} of run {results.run_id}: its stored object "
                f"{exc.digest} at {exc.path} is corrupt ({what}changed or damaged after it was "
                f"written); {_rerun_hint(home, results.run_id, node, force=True)} "
                "(`etherealfabric cache verify --fix` deletes every damaged entry)"
            )
        except (EtherealFabricError, KeyboardInterrupt):
            raise
        except Exception as exc:  # bytes its serializer cannot read (a forged unsigned record)
            _fail(
                f"cannot load {node}.{output} of run {results.run_id}: {type(exc).__name__}: "
                f"{exc}; {_rerun_hint(home, results.run_id, node, force=True)}"
            )
        if path is not None:
            _write(path, value, results, node, output)
            click.echo(f"wrote {node}.{output} of run {results.run_id} to {path}", err=True)
            return
        click.echo(_as_json(value) if as_json else _as_text(value))
    except EtherealFabricError as exc:
        _fail(str(exc))


def _size(path: str) -> int | None:
    """The size of a file of a folder store (None for an object store's address)."""
    try:
        return os.path.getsize(path)
    except (OSError, ValueError):
        return None


def _planted(path: str) -> bool:
    """Whether something that is not a regular file stands where an object belongs."""
    return os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path))


def _gone(home: str | None, run_id: str, node: str) -> str:
    """Why a result that was made is not there, and how to get it back."""
    return (
        f"the result of node {node!r} in run {run_id} is no longer in the store (dropped by "
        f"`etherealfabric cache forget` or `cache gc`, or lost); {_rerun_hint(home, run_id, node)} "
        f"(`etherealfabric cache pin RUN_ID` keeps a run's results from gc)"
    )


def _rerun_hint(home: str | None, run_id: str, node: str, force: bool = False) -> str:
    """How to compute ``node`` again: the ``run`` command of ``run_id`` (its workflow file and
    parameters, when ``etherealfabric run`` started it) with ``--node``, then ``cat``; with
    ``--force`` too when the stored result is there but bad (a plain run would take it from
    the cache again)."""
    with _journal(home) as journal:
        row = _get_run(journal, run_id)
    target = _recorded(row).get("target")
    if not target:
        again = f"with --force {node} " if force else ""
        return f"run its workflow again {again}to recompute it, then cat the new run"
    words = ["etherealfabric", "run", str(target), "--node", node]
    if force:
        words += ["--force", node]
    if home is not None:
        words += ["--home", home]
    for name, value in _workflow_params(row).items():
        words += ["-p", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    return f"recompute it with `{shlex.join(words)}`, then cat the new run"


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_csv")


def _as_text(value: Any) -> str:
    if _is_frame(value) or type(value).__name__ == "Series":
        return str(value.to_string(max_rows=_TABLE_ROWS))
    return repr(value)


def _as_json(value: Any) -> str:
    if _is_frame(value):
        return str(_json_ready(value).to_json(orient="records", date_format="iso"))
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    try:
        return _json_text(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EtherealFabricError(f"this value cannot be printed as JSON: {exc}") from None


def _json_ready(frame: Any) -> Any:
    """``frame`` with the columns JSON cannot hold (periods, intervals, complex numbers...)
    as their text, said on stderr; the frame itself when every column can be written."""
    texts = []
    for name in frame.columns:
        try:
            frame[[name]].head(1).to_json(orient="records", date_format="iso")
        except (ValueError, TypeError, OverflowError, NotImplementedError):
            texts.append(name)
    if not texts:
        return frame
    click.echo(
        f"columns {', '.join(map(str, texts))} printed as text (JSON has no such type)", err=True
    )
    return frame.astype({name: str for name in texts})


def _write(path: str, value: Any, results: Any, node: str, output: str) -> None:
    existed = os.path.lexists(path)
    try:
        _write_as(path, value, results, node, output)
    except EtherealFabricError:
        raise
    except Exception as exc:  # pyarrow's, numpy's, the file system's: said with what failed
        if not existed:
            with contextlib.suppress(OSError):
                os.unlink(path)  # no half-written file left behind
        ext = os.path.splitext(path)[1] or "(no extension)"
        raise EtherealFabricError(
            f"cannot write {node}.{output} to {path} as {ext}: {type(exc).__name__}: {exc}; "
            "choose another extension (.csv, .json; any other writes the bytes as stored)"
        ) from None


def _write_as(path: str, value: Any, results: Any, node: str, output: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if _is_frame(value) and ext in (".csv", ".parquet", ".json"):
        if ext == ".csv":
            value.to_csv(path)
        elif ext == ".parquet":
            value.to_parquet(path)
        else:
            _json_ready(value).to_json(path, orient="records", date_format="iso")
    elif ext == ".npy" and hasattr(value, "dtype"):
        import numpy as np

        np.save(path, value, allow_pickle=False)
    elif ext == ".csv" and getattr(value, "ndim", None) in (1, 2) and hasattr(value, "dtype"):
        import numpy as np

        np.savetxt(path, value, delimiter=",", fmt="%s")  # one row a line (a 1-D: one column)
    elif ext in (".csv", ".parquet"):  # never table bytes that are not a table
        raise EtherealFabricError(
            f"{node}.{output} is {a_or_an(type(value).__name__)}, not a data frame"
            + (" or a 1-D/2-D array" if ext == ".csv" else "")
            + f", so it cannot be written as {ext}; use .json (JSON-able values), .npy (arrays) "
            "or another extension for the bytes as stored"
        )
    elif ext == ".json":
        with open(path, "w") as f:
            f.write(_as_json(value))
    else:  # the stored bytes, as the serializer wrote them
        with open(path, "wb") as f:
            f.write(results.stored_bytes(node, output))


_NO_RESULT = {
    NodeStatus.PENDING: "it has not started yet",
    NodeStatus.RUNNING: "it is still running",
    NodeStatus.RETRYING: "it is still running (retrying)",
    NodeStatus.INTERRUPTED: "its run stopped while it ran (`etherealfabric resume {run}` "
    "finishes it)",
    NodeStatus.CANCELLED: "it was cancelled (`etherealfabric resume {run}` runs it)",
    NodeStatus.UPSTREAM_FAILED: "a node it needs failed, so it did not run",
    NodeStatus.SKIPPED: "it was skipped",
}


def _why_none(status: NodeStatus, run_id: str) -> str:
    """Why a node of run ``run_id`` with (unfinished) ``status`` has no result, in words."""
    return _NO_RESULT.get(status, f"its status is {status.value}").format(run=run_id)
