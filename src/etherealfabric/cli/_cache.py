"""``cache verify`` checks the store and the cache records (and repairs them); ``cache gc`` prunes."""

from __future__ import annotations

import sys
from dataclasses import asdict
from difflib import get_close_matches
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import click

from ..config import ENV, Settings
from ..errors import EtherealFabricError, StoreError
from ._common import (
    EXIT_FAILED,
    Age,
    _echo_json,
    _fail,
    _get_run,
    _home_option,
    _journal_at,
    _json_option,
)

if TYPE_CHECKING:
    from ..journal._journal import Journal
    from ..store import Store

__all__ = ["cache", "cache_forget", "cache_gc", "cache_pin", "cache_verify"]


@click.group(short_help="Inspect, share, prune and repair the artifact cache.")
def cache() -> None:
    """Inspect and repair the artifact cache."""


@cache.command("verify", short_help="Check (and --fix) stored objects and cache records.")
@click.option(
    "--fix", is_flag=True, help="Delete corrupt objects and the records that point at them."
)
@_home_option
@_json_option
def cache_verify(fix: bool, home: str | None, as_json: bool) -> None:
    """Check every stored object against its digest and every cache record against the store.

    Exits with 1 while problems remain, 0 when the cache is clean (or was repaired by --fix).
    """
    from ..journal._audit import audit_cache
    from ..store import LocalStore, open_store

    try:
        settings = Settings.resolve(home=home)
        # a shared folder is opened as one (untrusted: its entries checked as a run checks
        # them), and this home's copies in front of it are checked too
        shared = settings.shared_store
        store = open_store(settings.store_location, shared=shared, timeout=settings.store_timeout)
        local = LocalStore(settings.home) if shared else None
    except EtherealFabricError as exc:
        _fail(str(exc))
    # read-only: the shared store is never written (its credentials may not allow it)
    writable = local is None or settings.store_mode != "read-only"
    with _journal_at(settings) as journal:
        try:  # (a store out of reach: said in one line, as by the other cache commands)
            audit = audit_cache(journal, store, local)
            fixed = _repair(journal, store, audit.problems, local, writable) if fix else set()
        except EtherealFabricError as exc:
            _fail(str(exc))
    # a temp file a killed writer left does not make the cache wrong: listed apart, and not
    # a failure (the next run, `cache gc` or --fix removes it)
    leftover = {i for i, p in enumerate(audit.problems) if p.kind == "orphan_temp"}
    remaining = [p for i, p in enumerate(audit.problems) if i not in fixed | leftover]
    left_shared = sum(1 for p in remaining if p.where == "store") if fix and not writable else 0
    if as_json:
        listed = [{**p.to_dict(), "fixed": i in fixed} for i, p in enumerate(audit.problems)]
        _echo_json(
            {
                "objects": audit.objects,
                "records": audit.records,
                "problems": [p for i, p in enumerate(listed) if i not in leftover],
                "leftovers": [p for i, p in enumerate(listed) if i in leftover],
                "remaining": len(remaining),
            }
        )
    else:
        _print_audit(audit, fixed, leftover, len(remaining))
        if left_shared:
            click.echo(
                f"{left_shared} problem(s) of the shared store {store.url} were left as they "
                "are: ETHEREALFABRIC_STORE_MODE=read-only never writes it; run `etherealfabric "
                "cache verify --fix` from a setup that may write it (read-write mode, write "
                "credentials) to delete them"
            )
    sys.exit(EXIT_FAILED if remaining else 0)


def _repair(
    journal: Journal, shared: Store, problems: list[Any], local: Store | None, writable: bool
) -> set[int]:
    """Delete corrupt objects, orphaned temp files, entries that are not files (of the store,
    or of ``local``: the home's layer in front of a shared store), and action records naming
    bad bytes; the indexes fixed. Unless ``writable``, nothing of the shared store is touched
    (its problems stay, the journal's records are forgotten in the home only)."""
    fixed: set[int] = set()
    forgotten: set[str] = set()
    unsound_here = {p.digest for p in problems if p.where == "local"}
    for i, problem in enumerate(problems):
        store = local if problem.where == "local" and local is not None else shared
        if problem.where == "store" and not writable:
            continue
        if problem.kind == "orphan_temp" and problem.path:
            store.remove_temp_file(problem.path)
            fixed.add(i)
        elif problem.kind == "damaged_entry" and problem.entry:
            store.delete_entry(problem.entry)
            fixed.add(i)
        elif problem.where in ("store", "local") and problem.kind in (
            "corrupt_object",
            "unreadable_object",
        ):
            store.delete_object(problem.digest)
            if store is shared and local is not None and problem.digest not in unsound_here:
                _restore(local, shared, problem.digest)
            fixed.add(i)
        elif problem.where == "journal" and problem.key:
            if problem.kind == "corrupt_blob" and problem.digest:
                journal.delete_blob(problem.digest)
            if problem.key not in forgotten:
                journal.delete_action(problem.key)
                if local is not None and writable:  # a shared store's: forgotten there too
                    shared.delete_action(problem.key)
                forgotten.add(problem.key)
            fixed.add(i)
    return fixed


def _restore(local: Store, shared: Store, digest: str) -> None:
    """Upload this home's sound copy of ``digest`` (if it has one) in place of the shared
    store's damaged one just deleted: the team's record naming it serves again."""
    from ..store import LayeredStore, LocalStore

    if isinstance(local, LocalStore) and local.has_object(digest):
        LayeredStore(local, shared).upload(digest)


def _print_audit(audit: Any, fixed: set[int], leftover: set[int], remaining: int) -> None:
    click.echo(
        f"checked {audit.objects} object(s) and {audit.records} cache record(s): "
        f"{len(audit.problems) - len(leftover)} problem(s)"
    )
    for i, problem in enumerate(audit.problems):
        if i not in leftover:
            click.echo(f"  {problem}{' (fixed)' if i in fixed else ''}")
    if leftover:
        click.echo(
            f"{len(leftover)} temp file(s) that killed writers left, harmless to the cache "
            "(the next run, `etherealfabric cache gc` or --fix removes them):"
        )
        for i in sorted(leftover):
            click.echo(f"  {audit.problems[i].path}{' (removed)' if i in fixed else ''}")
    journal = sum(1 for p in audit.problems if p.kind == "damaged_journal")
    if remaining > journal:
        click.echo(
            f"{remaining} problem(s) remain; run `etherealfabric cache verify --fix` to delete "
            "the bad entries (their nodes are recomputed on the next run)"
        )
    elif remaining:
        click.echo("the journal is damaged: --fix cannot mend it (see above)")
    elif len(audit.problems) > len(leftover):
        click.echo("all problems fixed; the affected nodes will be recomputed on the next run")


@cache.command("gc", short_help="Remove what recent runs no longer use.")
@click.option(
    "--keep-runs",
    type=click.IntRange(min=1, max=2**63 - 1),
    default=5,
    show_default=True,
    help="Keep what the last N finished runs of each workflow used.",
)
@click.option(
    "--older-than",
    type=Age(),
    default=3600.0,
    show_default=True,
    help="Never remove anything younger than this (the home): seconds, or 30m, 2h, 3d, 1w.",
)
@click.option(
    "--grace",
    type=Age(),
    default=86400.0,
    show_default=True,
    help="With a shared store: never remove anything of it younger than this (seconds, 2d...).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@_home_option
@_json_option
def cache_gc(
    keep_runs: int,
    older_than: float,
    grace: float,
    dry_run: bool,
    home: str | None,
    as_json: bool,
) -> None:
    """Remove cache entries and stored outputs that recent runs no longer use.

    Keeps whatever the last --keep-runs finished runs of each workflow executed or found
    cached, pinned runs (`cache pin`), runs still going, and anything younger than
    --older-than. Temp files of
    killed writers are removed too. Checkpoints are kept, but for those a finished execution
    left behind (saved before a later success of their key, held by no run going). Safe while
    runs go on in other processes.

    With a shared store (ETHEREALFABRIC_STORE), the home is collected as above (its journal and
    local layer, then the local layer is brought within ETHEREALFABRIC_LOCAL_CACHE_SIZE), this
    home's roots are published, and the shared store is collected: records no home's roots keep
    and objects no kept record names go, once older than --grace.
    """
    from ..journal._gc import collect_garbage
    from ..run._teamcache import pins
    from ..store import LayeredStore, open_run_store

    report: dict[str, Any] = {}
    try:
        settings = Settings.resolve(home=home)
        if not settings.journal_path.exists():  # no run used this home: nothing it can collect
            said = (
                f"nothing to collect: the home {settings.home} has no journal "
                f"({settings.journal_path}), so no run has used it and no record says what is "
                f"in use; its folder is left as it is (pass --home or set {ENV['home']} to "
                "collect another home)"
            )
            if as_json:
                _echo_json({"nothing_to_collect": said})
            else:
                click.echo(said)
            return
        store = open_run_store(settings)
        with _journal_at(settings) as journal:
            local = store.local if isinstance(store, LayeredStore) else store
            home_report = collect_garbage(
                journal, local, keep_runs=keep_runs, older_than=older_than, dry_run=dry_run,
                pinned=pins(settings.home),
            )  # fmt: skip
            report["home"] = home_report.to_dict()
            if isinstance(store, LayeredStore):
                report.update(_collect_shared(store, journal, settings, keep_runs, grace, dry_run))
    except EtherealFabricError as exc:
        _fail(str(exc))
        return
    if as_json:
        _echo_json(report if len(report) > 1 else report["home"])
        return
    verb = "would remove" if dry_run else "removed"
    h = home_report
    click.echo(
        f"{verb} {h.records_removed} cache record(s), {h.blobs_removed} inline "
        f"output(s), {h.objects_removed} object(s), {len(h.checkpoints_removed)} finished "
        f"checkpoint(s) and {h.temp_files_removed} leftover temp file(s) "
        f"({h.bytes_freed:,} bytes)"
        + _damaged(h.removed_damaged)
        + f"; kept {h.records_kept} record(s)"
        + (f", {h.objects_too_recent} recent object(s)" if h.objects_too_recent else "")
    )
    if "evicted" in report:
        e = report["evicted"]
        click.echo(
            f"local layer: {verb} {len(e['evicted'])} object(s) ({e['bytes_freed']:,} bytes) "
            f"to stay within {e['budget']:,} bytes; {e['size_after']:,} bytes left"
        )
    if "shared_skipped" in report:
        click.echo(report["shared_skipped"])
    if "shared" in report:
        g = report["shared"]
        click.echo(
            f"shared store {g['store']} ({g['homes']} home(s) publish roots): {verb} "
            f"{g['records_removed']} record(s), {g['objects_removed']} object(s) and "
            f"{g['leases_removed']} stale lease(s) ({g['bytes_freed']:,} bytes)"
            f"{_damaged(g['removed_damaged'])}; kept "
            f"{g['records_kept']} record(s), {g['objects_kept']} object(s) in use and "
            f"{g['objects_too_recent']} younger than the grace period"
            + (
                f" or than the start of the {g['runs_going']} teammate run(s) still going"
                if g["runs_going"]
                else ""
            )
        )
        if dry_run:
            for name in g["removed_records"]:
                click.echo(f"  record {name}")
            for digest in g["removed_objects"]:
                click.echo(f"  object {digest}")


def _damaged(names: list[str]) -> str:
    """The part of gc's summary about entries that are not files (each was also warned about)."""
    return f", and {len(names)} entr(ies) that are not files" if names else ""


def _collect_shared(
    store: Any, journal: Journal, settings: Settings, keep_runs: int, grace: float, dry_run: bool
) -> dict[str, Any]:
    """The local layer's budget, this home's roots, then the shared store's collection (a dry
    run publishes nothing, and collects as if it had)."""
    from ..run._teamcache import enforce_budget, publish, roots_keys
    from ..store._sharedgc import collect_shared, home_id

    report: dict[str, Any] = {}
    if settings.local_cache_size is not None:
        eviction = enforce_budget(store, journal, settings.local_cache_size, dry_run=dry_run)
        report["evicted"] = asdict(eviction)
    if settings.store_mode == "read-only":  # never writes the shared store (nor may it)
        report["shared_skipped"] = (
            f"shared store {store.remote.url}: not collected, and this home's roots not "
            "published (ETHEREALFABRIC_STORE_MODE=read-only never writes it); `cache gc` from "
            "a read-write setup collects it"
        )
        return report
    if not dry_run:
        publish(store, journal, settings.home, keep_runs, force=True)
    own = (home_id(settings.home), roots_keys(journal, settings.home, keep_runs))
    collected = collect_shared(store.remote, grace=grace, dry_run=dry_run, own=own)
    report["shared"] = collected.to_dict()
    return report


@cache.command("pin", short_help="Keep what runs used from cache gc.")
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option("--remove", is_flag=True, help="Unpin the runs instead.")
@_home_option
def cache_pin(run_ids: tuple[str, ...], remove: bool, home: str | None) -> None:
    """Pin runs: `cache gc` never removes what they used, here or (through this home's roots)
    in a shared store. Without RUN_ID, list the pinned runs."""
    from ..run._teamcache import pins, set_pins

    if remove and not run_ids:
        raise click.UsageError("--remove needs the RUN_ID... to unpin (list them: `cache pin`)")
    settings = Settings.resolve(home=home)
    pinned = pins(settings.home)
    if not run_ids:
        for run_id in pinned:
            click.echo(run_id)
        if not pinned:
            click.echo("no pinned runs (pin one with `etherealfabric cache pin RUN_ID`)", err=True)
        return
    with _journal_at(settings) as journal:
        full = [str(_get_run(journal, r)["id"]) for r in run_ids]
    if remove:
        set_pins(settings.home, [r for r in pinned if r not in full])
        unpinned = [r for r in full if r in pinned]
        click.echo(f"unpinned {', '.join(unpinned)}" if unpinned else "nothing unpinned")
        for run_id in (r for r in full if r not in pinned):
            click.echo(f"run {run_id} was not pinned", err=True)
    else:
        set_pins(settings.home, [*pinned, *full])
        click.echo(f"pinned {', '.join(full)}")


@cache.command("forget", short_help="Drop a node's cache entries so it runs next time.")
@click.argument("patterns", nargs=-1, required=False, metavar="[NODE]...")
@click.option(
    "--key", "keys", multiple=True, metavar="K", help="A cache key to forget (repeatable)."
)
@_home_option
@_json_option
def cache_forget(
    patterns: tuple[str, ...], keys: tuple[str, ...], home: str | None, as_json: bool
) -> None:
    """Drop every cache entry of NODE (a name or a glob such as 'train*'), or the entries
    --key K: they run next time.

    The stored bytes stay until `cache gc` finds nothing uses them. With a shared store, the
    records this home published there are dropped first (never a teammate's, nor a record that
    does not say which home published it: the next run takes those results from there, and
    `run --force NODE` computes them again); in ETHEREALFABRIC_STORE_MODE=read-only the shared
    store is left as it is. A shared store that does not answer leaves everything as it was.
    """
    from ..store._base import check_name

    if not patterns and not keys:
        _fail("name the nodes to forget (NODE..., globs allowed) or give --key K")
    shared: dict[str, list[str]] = {"dropped": [], "left": []}
    try:
        for key in keys:
            check_name(key, "cache key")
        settings = Settings.resolve(home=home)
        with _journal_at(settings) as journal:
            _check_forget(journal, patterns, keys)  # nothing is forgotten unless all are known
            cached = journal.node_names(cached=True) if patterns else []
            gone = [p for p in patterns if not any(fnmatchcase(n, p) for n in cached)]
            matched = journal.node_keys(patterns) if patterns else []
            read_only = settings.store_mode == "read-only"
            asked = [*matched, *(k for k in keys if k not in matched)]  # (the shared store's)
            if asked and settings.shared_store and not read_only:  # first: if the store does
                shared = _forget_shared(settings, asked)  # not answer, nothing is forgotten
            forgotten = journal.forget_nodes(patterns) if patterns else []
            forgotten += [k for k in keys if k not in forgotten and journal.delete_action(k)]
    except StoreError as exc:
        _fail(f"{exc}; nothing was forgotten (forget again once the shared store answers)")
        return
    except EtherealFabricError as exc:
        _fail(str(exc))
        return
    for name in [*gone, *(k for k in keys if k not in forgotten)]:
        unless = ", unless the shared store holds its result" if settings.shared_store else ""
        click.echo(
            f"{name!r} has no cache entry here (forgotten already, or never cached): "
            f"it runs next time{unless}",
            err=True,
        )
    if as_json:
        _echo_json({"forgotten": len(forgotten), "keys": forgotten, "shared": shared})
        return
    click.echo(f"forgot {len(forgotten)} cache entr{'y' if len(forgotten) == 1 else 'ies'}")
    if settings.shared_store and (forgotten or asked):
        click.echo(_shared_forget_line(settings, shared))


def _check_forget(journal: Journal, patterns: tuple[str, ...], keys: tuple[str, ...]) -> None:
    """A NODE that names no node the journal knows, or a --key no record or run had: exit 2
    naming it (and the close node names), before anything is forgotten."""
    known = journal.node_names() if patterns else []
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in known):
            close = get_close_matches(pattern, known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            _fail(
                f"cache forget: no node named {pattern!r} in the journal {journal.path}{hint}; "
                f"its nodes: {listed or 'none'}; nothing was forgotten"
            )
    for key in keys:
        if not journal.key_known(key):
            _fail(
                f"cache forget: no cache entry with key {key!r} in the journal {journal.path} "
                "(list the keys with `etherealfabric cache ls`); nothing was forgotten"
            )


def _forget_shared(settings: Settings, keys: list[str]) -> dict[str, list[str]]:
    """Delete the shared store's records of ``keys`` that this home published (they name its
    id); the keys of those ``dropped`` and of those ``left`` (a teammate's, or one that does
    not say whose it is: published by an older version)."""
    from ..store import open_store
    from ..store._sharedgc import home_id

    store = open_store(settings.store_location, shared=True, timeout=settings.store_timeout)
    me = home_id(settings.home)
    found: dict[str, list[str]] = {"dropped": [], "left": []}
    for key in keys:
        record = store.get_action(key)
        if record is None:
            continue  # none there (or none we could verify: not ours either way)
        if record.get("home") == me:
            store.delete_action(key)
            found["dropped"].append(key)
        else:
            found["left"].append(key)
    return found


def _shared_forget_line(settings: Settings, shared: dict[str, list[str]]) -> str:
    """What ``cache forget`` did in the shared store, in one line."""
    where = f"the shared store {settings.store_location}"
    rerun = "`etherealfabric run --force NODE` computes them again"
    if settings.store_mode == "read-only":
        return (
            f"{where} was left as it is (ETHEREALFABRIC_STORE_MODE=read-only never writes it): "
            f"the next run takes the results it holds from there; {rerun}"
        )
    line = f"dropped {len(shared['dropped'])} record(s) this home published in {where}"
    if shared["left"]:
        line += (
            f"; left {len(shared['left'])} it did not publish (a teammate's, or one published "
            "before records named their home: `cache gc` removes it once no home uses it): "
            f"the next run takes those results from there; {rerun}"
        )
    return line
