"""The team cache commands: ``cache push``, ``cache pull``, ``cache ls`` and ``cache du``.

``push`` and ``pull`` need a shared store (``ETHEREALFABRIC_STORE``) in front of which the home is
the local layer (``store/_layered.py``); ``ls`` and ``du`` work on any home. Which results: those
of a run (``RUN_ID``, or ``--workflow W``: the last run of W; ``--all-runs`` with it: every run
of W), or, for ``push`` without either, every result in the journal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import click

from ..config import Settings
from ..errors import EtherealFabricError, StoreUnreachableError
from ._common import (
    EXIT_FAILED,
    _echo_json,
    _fail,
    _home_option,
    _journal_at,
    _json_option,
    _note_unknown_workflow,
)

if TYPE_CHECKING:
    from ..journal._journal import Journal
    from ..run._sync import SyncReport
    from ..store import LayeredStore, Store

__all__ = ["cache_du", "cache_ls", "cache_pull", "cache_push"]


def _run_options(fn: Any) -> Any:
    fn = click.option(
        "--all-runs", is_flag=True, help="With --workflow: every run of it, not only the last."
    )(fn)
    fn = click.option(
        "--workflow", "-w", "workflow", default=None, help="The last run of this workflow."
    )(fn)
    return click.argument("run_id", required=False)(fn)


@click.command("push", short_help="Upload results to the shared store.")
@_run_options
@click.option("--dry-run", is_flag=True, help="Only list what is not in the shared store yet.")
@_home_option
@_json_option
def cache_push(
    run_id: str | None,
    workflow: str | None,
    all_runs: bool,
    dry_run: bool,
    home: str | None,
    as_json: bool,
) -> None:
    """Upload results to the shared store: those of RUN_ID, of --workflow W, or all of them.

    Objects first, then each action record (signed with ETHEREALFABRIC_SIGNING_KEY); results
    already there are skipped, so pushing again sends nothing. --dry-run lists what a
    read-only or push-on-demand run, or a run that could not reach the store, left local.
    Exits with 1 if some results cannot be pushed (the reasons are listed).
    """
    from ..run._sync import push

    with _team_store(home) as (journal, store):
        keys = _keys(journal, run_id, workflow, all_runs, every=True)
        with _progress(len(keys), "pushing", as_json or dry_run) as step:
            report = _sync(push, journal, store, keys, dry_run, step)
    _report(report, as_json)


@click.command("pull", short_help="Download what a run needs, to reload or re-run it.")
@_run_options
@click.option("--dry-run", is_flag=True, help="Only list what would be downloaded.")
@_home_option
@_json_option
def cache_pull(
    run_id: str | None,
    workflow: str | None,
    all_runs: bool,
    dry_run: bool,
    home: str | None,
    as_json: bool,
) -> None:
    """Download everything needed to load RUN_ID's results (or --workflow W's last run's) and
    to run it again offline: records, small outputs and every object they name.

    Objects are verified as they arrive and kept in the home (the local layer); what is
    already there is not downloaded again.
    """
    from ..run._sync import pull

    with _team_store(home) as (journal, store):
        keys = _keys(journal, run_id, workflow, all_runs, every=False)
        with _progress(len(keys), "pulling", as_json or dry_run) as step:
            report = _sync(pull, journal, store, keys, dry_run, step)
    _report(report, as_json)


@contextmanager
def _team_store(home: str | None) -> Iterator[tuple[Journal, LayeredStore]]:
    from ..store import LayeredStore, open_run_store

    try:
        settings = Settings.resolve(home=home)
        store = open_run_store(settings)
    except EtherealFabricError as exc:
        _fail(str(exc))
    if not isinstance(store, LayeredStore):
        _fail(
            "there is no shared store to push to or pull from: set ETHEREALFABRIC_STORE to the "
            "team's bucket (s3://bucket/prefix) or shared folder"
        )
    with _journal_at(settings) as journal:
        yield journal, store


def _keys(
    journal: Journal, run_id: str | None, workflow: str | None, all_runs: bool, *, every: bool
) -> dict[str, str]:
    """``key -> node`` of the results the command is about."""
    from ..journal._team import cache_entries, latest_run, run_keys, workflow_keys

    if run_id and workflow:
        _fail("give a RUN_ID or --workflow, not both")
    try:
        if run_id:
            return run_keys(journal, run_id)
        if workflow and all_runs:
            return workflow_keys(journal, workflow)
        if workflow:
            return run_keys(journal, latest_run(journal, workflow))
    except EtherealFabricError as exc:
        _fail(f"{exc}; list runs with `etherealfabric runs`")
    if not every:
        _fail("name a run to pull: RUN_ID, or --workflow W for its last run")
    return {entry["key"]: str(entry["node"]) for entry in cache_entries(journal)}


@contextmanager
def _progress(total: int, label: str, quiet: bool) -> Iterator[Any]:
    if quiet or total == 0:
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def _sync(
    fn: Any, journal: Journal, store: LayeredStore, keys: Mapping[str, str], dry: bool, step: Any
) -> SyncReport:
    try:
        report: SyncReport = fn(journal, store, keys, dry_run=dry, progress=step)
    except StoreUnreachableError as exc:
        _fail(str(exc))
    except EtherealFabricError as exc:
        _fail(str(exc))
    return report


def _report(report: SyncReport, as_json: bool) -> None:
    problems = report.count("refused", "missing")
    if as_json:
        _echo_json(report.to_dict())
        sys.exit(EXIT_FAILED if problems else 0)
    verb = {"push": "pushed", "pull": "pulled"}[report.direction]
    pending = f"to {report.direction}"
    done = report.count(pending if report.dry_run else verb)
    objects = sum(i.objects for i in report.items)
    direction = "to" if report.direction == "push" else "from"
    click.echo(
        f"{'would have ' if report.dry_run else ''}{verb} {done} result(s) ({objects} object(s), "
        f"{report.bytes:,} bytes) {direction} {report.store}; "
        f"{report.count('present')} already there"
    )
    for item in report.items:
        if item.status in (pending, "refused", "missing"):
            detail = f"{item.objects} object(s), {item.bytes:,} bytes"
            why = f": {item.reason}" if item.reason else f" ({detail})"
            click.echo(f"  {item.status:<8} {item.node}  {item.key}{why}")
    sys.exit(EXIT_FAILED if problems else 0)


# -- ls and du -------------------------------------------------------------------------------------
@click.command("ls", short_help="List the cache entries this home knows.")
@click.option(
    "--workflow", "-w", default=None, metavar="W", help="Only the entries runs of workflow W used."
)
@_home_option
@_json_option
def cache_ls(workflow: str | None, home: str | None, as_json: bool) -> None:
    """List the cache entries this home knows: node, key, size, the workflows that used them,
    and whether their bytes are in the home (local) and, with a shared store, there."""
    from ..journal._team import cache_entries
    from ..store import open_run_store

    try:
        settings = Settings.resolve(home=home)
        store = open_run_store(settings)
    except EtherealFabricError as exc:
        _fail(str(exc))
    with _journal_at(settings) as journal:
        entries = cache_entries(journal, workflow)
        if not entries and workflow is not None:
            _note_unknown_workflow(journal, workflow)
    rows = [_entry_row(e, store) for e in entries]
    if as_json:
        _echo_json(rows)
        return
    from ._common import _console, _print_table, _table, _when

    table = _table("NODE", "KEY", "SIZE", "LOCAL", "WORKFLOWS", "CREATED")
    for row in rows:
        table.add_row(
            row["node"], row["key"], f"{row['bytes']:,}", row["local"],
            ", ".join(row["workflows"]) or "-", _when(row["created_at"]),
        )  # fmt: skip
    _print_table(_console(), table)


def _entry_row(entry: Mapping[str, Any], store: Store) -> dict[str, Any]:
    local = _local_part(store)
    sizes = _record_sizes(entry["record"], local)
    here = sum(1 for digest in sizes if local.has_object(digest))
    stored = len(sizes)
    return {
        "node": entry["node"],
        "key": entry["key"],
        "bytes": sum(sizes.values()) + _inline_bytes(entry["record"]),
        "local": "yes" if here == stored else ("no" if here == 0 else f"{here}/{stored}"),
        "workflows": entry["workflows"],
        "created_at": entry["created_at"],
    }


def _local_part(store: Store) -> Store:
    from ..store import LayeredStore

    return store.local if isinstance(store, LayeredStore) else store


def _record_sizes(record: Mapping[str, Any], local: Store | None = None) -> dict[str, int]:
    """The stored (not inline) objects a record names, with their sizes: outputs, files,
    folder manifests and (read from ``local``, when it has them) the files they list."""
    from ..store._trees import read_manifest

    sizes = {
        str(o["digest"]): int(o.get("size", 0))
        for o in record.get("outputs", {}).values()
        if isinstance(o, dict) and not o.get("inline") and "digest" in o
    }
    for entry in (record.get("files") or {}).values():
        if not isinstance(entry, dict) or "digest" not in entry:
            continue
        sizes[str(entry["digest"])] = int(entry.get("size", 0))
        if entry.get("kind") == "dir" and local is not None and local.has_object(entry["digest"]):
            with suppress(EtherealFabricError, OSError):
                for member in read_manifest(local, str(entry["digest"])):
                    if member[1] != "dir":
                        sizes[str(member[2])] = int(member[3])
    return sizes


def _inline_bytes(record: Mapping[str, Any]) -> int:
    outputs = record.get("outputs", {}).values()
    return sum(int(o.get("size", 0)) for o in outputs if isinstance(o, dict) and o.get("inline"))


@click.command("du", short_help="Bytes of cached results by workflow and node.")
@click.option(
    "--workflow", "-w", default=None, metavar="W", help="Only the entries runs of workflow W used."
)
@_home_option
@_json_option
def cache_du(workflow: str | None, home: str | None, as_json: bool) -> None:
    """Bytes of cached results by workflow and node: in all, in the home (the local layer and
    the journal's small outputs) and, with a shared store, in the shared store."""
    from ..journal._team import cache_entries
    from ..store import LayeredStore, open_run_store
    from ..store._budget import object_sizes

    try:
        settings = Settings.resolve(home=home)
        store = open_run_store(settings)
        with _journal_at(settings) as journal:
            entries = cache_entries(journal, workflow)
            if not entries and workflow is not None:
                _note_unknown_workflow(journal, workflow)
        local = object_sizes(_local_part(store))
        remote = object_sizes(store.remote) if isinstance(store, LayeredStore) else None
        # inline outputs travel inside the records: in the shared store where its record is
        published = set(store.remote.iter_actions()) if isinstance(store, LayeredStore) else set()
    except EtherealFabricError as exc:
        _fail(str(exc))
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        for wf in entry["workflows"] or ["-"]:
            group = groups.setdefault(
                (wf, str(entry["node"])),
                {"entries": 0, "objects": {}, "inline": 0, "inline_remote": 0},
            )
            group["entries"] += 1
            group["objects"].update(_record_sizes(entry["record"], _local_part(store)))
            inline = _inline_bytes(entry["record"])
            group["inline"] += inline
            if entry["key"] in published:
                group["inline_remote"] += inline
    rows = [_du_row(wf, node, g, local, remote) for (wf, node), g in sorted(groups.items())]
    if as_json:
        _echo_json({"rows": rows, "local_bytes": sum(local.values()),
                    "remote_bytes": None if remote is None else sum(remote.values())})  # fmt: skip
        return
    from ._common import _console, _print_table, _table

    table = _table("WORKFLOW", "NODE", "ENTRIES", "BYTES", "LOCAL", "REMOTE")
    for row in rows:
        table.add_row(
            row["workflow"], row["node"], str(row["entries"]), f"{row['bytes']:,}",
            f"{row['local']:,}", "-" if row["remote"] is None else f"{row['remote']:,}",
        )  # fmt: skip
    _print_table(_console(), table)
    click.echo(
        f"local layer: {sum(local.values()):,} bytes in {len(local)} object(s)"
        + (
            ""
            if remote is None
            else f"; shared store: {sum(remote.values()):,} bytes in {len(remote)} object(s)"
        )
    )


def _du_row(
    workflow: str,
    node: str,
    group: Mapping[str, Any],
    local: Mapping[str, int],
    remote: Mapping[str, int] | None,
) -> dict[str, Any]:
    objects: dict[str, int] = group["objects"]
    return {
        "workflow": workflow,
        "node": node,
        "entries": group["entries"],
        "bytes": sum(objects.values()) + group["inline"],
        "local": sum(local.get(d, 0) for d in objects) + group["inline"],
        "remote": None
        if remote is None
        else sum(remote.get(d, 0) for d in objects) + group["inline_remote"],
    }
