"""``cat``: print (or write to a file) one result of a past run, without writing Python."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
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
    help="Write the value to FILE instead: .csv/.parquet/.json for data frames (index kept), "
    ".npy (or .csv, 1-D/2-D) for arrays and numbers, .json for JSON-able values; any other name "
    "gets the stored (serialized) bytes, not loaded.",
)
@_home_option
@_json_option
def cat(
    run_id: str, node: str, output: str | None, path: str | None, home: str | None, as_json: bool
) -> None:
    """Print NODE's result in run RUN_ID (its OUTPUT, for a node with several).

    Values are loaded from the store (verified). Data frames print as a table, other values
    as their repr; --json prints JSON (data frames and series as records, with their index).
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
        raw = path is not None and not _converts(path)  # -o with the bytes as stored
        folders = [] if raw else _import_as_the_run(home, results.run_id)
        try:
            value = results.stored_bytes(node, output) if raw else results.value(node, output)
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
            missing = _missing_module(exc)
            if missing is not None:  # the bytes are fine: this process cannot import a class
                _fail(_no_module(results.run_id, node, output, missing, folders))
            _fail(
                f"cannot load {node}.{output} of run {results.run_id}: {type(exc).__name__}: "
                f"{exc}; {_rerun_hint(home, results.run_id, node, force=True)}"
            )
        if path is not None:
            _write(path, value, node, output, raw)
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


def _import_as_the_run(home: str | None, run_id: str) -> list[str]:
    """Put the folders run ``run_id`` imported the user's modules from on ``sys.path``, as
    the run had them, before a value is unpickled: a class of the user's (``models.Model``,
    from a ``models.py`` beside the workflow file) is pickled by name and imported again to
    load. First its workflow file's folder (``etherealfabric run`` puts it first) and its
    workflow's root (the folder of the file that built it: a script's own folder); last, as
    fallbacks only, the folder the run was started in and this one (which the installed
    ``etherealfabric`` command does not put on ``sys.path``). The first ones, for the error
    that says a module is still missing."""
    from ._loader import split_target

    with _journal(home) as journal:
        params = _recorded(journal.get_run(run_id))
    target, root, cwd = (params.get(name) for name in ("target", "root", "cwd"))
    first = [str(split_target(target)[0].parent)] if isinstance(target, str) and target else []
    first += [root] if isinstance(root, str) and root else []
    first = [folder for folder in dict.fromkeys(first) if os.path.isdir(folder)]
    for folder in reversed(first):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for last in (cwd if isinstance(cwd, str) and cwd else None, os.getcwd()):
        if last and os.path.isdir(last) and last not in sys.path:
            sys.path.append(last)
    return first


def _missing_module(exc: BaseException) -> str | None:
    """The module whose import failed under ``exc`` (itself, its cause or context)."""
    seen: BaseException | None = exc
    for _ in range(20):  # (a chain, never a cycle)
        if seen is None:
            break
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            return seen.name
        seen = seen.__cause__ or seen.__context__
    return None


def _no_module(run_id: str, node: str, output: str, module: str, folders: list[str]) -> str:
    """A stored value whose class lives in a module this process cannot import: its bytes
    are intact (computing it again would store the same), so how to make the module found."""
    where = f" (the run's workflow folder {', '.join(folders)} is searched already)"
    return (
        f"cannot load {node}.{output} of run {run_id}: it needs the module {module!r}, which "
        f"cannot be imported here (No module named {module!r}); the stored result is intact: "
        f"make {module!r} importable and cat again: run cat from the folder that holds it, or "
        "put that folder on PYTHONPATH (`PYTHONPATH=FOLDER etherealfabric cat ...`), or "
        f"install its package{where if folders else ''}; `-o FILE.pkl` writes the stored bytes "
        "without loading them"
    )


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


_CONVERSIONS = (".csv", ".parquet", ".json", ".npy")


def _converts(path: str) -> bool:
    """Whether ``-o path`` converts the value (else: the stored bytes, never unpickled)."""
    return os.path.splitext(path)[1].lower() in _CONVERSIONS


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_csv")


def _is_series(value: Any) -> bool:
    return type(value).__name__ == "Series" and hasattr(value, "to_frame")


def _default_index(index: Any) -> bool:
    """Whether ``index`` is pandas' default one (0, 1, 2... unnamed): positions, no data."""
    return (
        type(index).__name__ == "RangeIndex"
        and index.start == 0
        and index.step == 1
        and index.name is None
    )


def _table(value: Any) -> Any:
    """A frame or series as the frame of its records: its index levels first as columns (a
    ``groupby``'s keys; unnamed: ``index``, or ``level_0``, ``level_1``... for several; a name
    a column has already: ``index_`` before it), unless it is the default 0, 1, 2...; a series
    is one column, its name (``value`` when it has none)."""
    frame = value if _is_frame(value) else _one_column(value)
    index = frame.index
    if _default_index(index):
        return frame
    taken = {str(name) for name in frame.columns}
    names = []
    for i, name in enumerate(index.names):
        label = str(name) if name is not None else "index" if index.nlevels == 1 else f"level_{i}"
        while label in taken:
            label = f"index_{label}"
        taken.add(label)
        names.append(label)
    return frame.set_axis(index.set_names(names), axis=0).reset_index()


def _one_column(series: Any) -> Any:
    """``series`` as a frame of one column: its name, ``value`` when it has none."""
    return series.to_frame() if series.name is not None else series.to_frame("value")


def _as_text(value: Any) -> str:
    if _is_frame(value) or _is_series(value):
        return str(value.to_string(max_rows=_TABLE_ROWS))
    return repr(value)


def _as_json(value: Any) -> str:
    if _is_frame(value) or (_is_series(value) and not _default_index(value.index)):
        return str(_json_ready(_table(value)).to_json(orient="records", date_format="iso"))
    if hasattr(value, "tolist"):  # numpy arrays and scalars, a series' values (0, 1, 2... index)
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


def _write(path: str, value: Any, node: str, output: str, raw: bool) -> None:
    existed = os.path.lexists(path)
    try:
        if raw:  # the stored bytes, as the serializer wrote them
            with open(path, "wb") as f:
                f.write(value)
        else:
            _write_as(path, value, node, output)
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


def _write_as(path: str, value: Any, node: str, output: str) -> None:
    """``value`` converted to the format ``path``'s extension names (one of _CONVERSIONS)."""
    ext = os.path.splitext(path)[1].lower()
    kind = a_or_an(type(value).__name__)
    if ext == ".npy":
        array = _npy_array(value)
        if array is None:
            raise EtherealFabricError(_no_npy(value, f"{node}.{output}", kind))
        import numpy as np

        with open(path, "wb") as f:  # (np.save of a name would add .npy to ``x.NPY``)
            np.save(f, array, allow_pickle=False)
    elif _is_frame(value) and ext == ".parquet":
        value.to_parquet(path)
    elif (_is_frame(value) or _is_series(value)) and ext == ".csv":
        (value if _is_frame(value) else _one_column(value)).to_csv(path)  # index too
    elif _is_frame(value) and ext == ".json":
        _json_ready(_table(value)).to_json(path, orient="records", date_format="iso")
    elif ext == ".csv" and getattr(value, "ndim", None) in (1, 2) and hasattr(value, "dtype"):
        import numpy as np

        np.savetxt(path, value, delimiter=",", fmt="%s")  # one row a line (a 1-D: one column)
    elif ext in (".csv", ".parquet"):  # never table bytes that are not a table
        raise EtherealFabricError(
            f"{node}.{output} is {kind}, not a data frame"
            + (" or a 1-D/2-D array" if ext == ".csv" else "")
            + f", so it cannot be written as {ext}; use .json (JSON-able values), .npy (arrays) "
            "or another extension for the bytes as stored"
        )
    else:
        with open(path, "w") as f:
            f.write(_as_json(value))


def _npy_array(value: Any) -> Any:
    """What a ``.npy`` of ``value`` holds, when it holds all of it: an array (a numpy scalar)
    itself, a series' values when its index is the default 0, 1, 2..., a Python number as a
    0-d array; None for anything else (a frame's column names, a series' index would be lost;
    a list, a dict, an object are no array)."""
    if _is_frame(value):
        return None
    if _is_series(value):
        return value.to_numpy() if _default_index(value.index) else None
    if hasattr(value, "dtype"):
        return value
    if type(value) in (bool, int, float, complex):
        import numpy as np

        array = np.asarray(value)
        return array if array.dtype != object else None  # (an int beyond 64 bits)
    return None


def _no_npy(value: Any, name: str, kind: str) -> str:
    """Why ``value`` cannot be written as .npy, and the extensions that fit it."""
    if _is_frame(value):
        why, fits = ": a .npy would lose its column names", ".csv, .parquet or .json"
    elif _is_series(value):
        why, fits = (
            " with an index of its own (not 0, 1, 2...): a .npy would lose it",
            ".csv or .json",
        )
    else:
        why, fits = ", not an array", ".json (JSON-able values) or another extension (the bytes"
        fits += " as stored)"
    return f"{name} is {kind}{why}, so it cannot be written as .npy; use {fits}"


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
